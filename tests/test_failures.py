"""Failure-level evaluation (the evaluate stage): failures taken from the replayed events,
warnings, lead times, alarm episodes and false alarms counted by hand on a small replay
(tests/failure_synthetic.py), and the curves across thresholds against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from f07_validation.deployrun import DeployRun, DeployRunError
from f07_validation.evaluation import evaluate_deployrun
from f07_validation.thresholds import EDGES
from tests import failure_synthetic as fs
from tests.f07_synthetic import run_f07_stage

O = fs.ORIGIN
# Replay rows (one per 10 s) holding events; codes: noise 1, fail_a 5, fail_b 6.
EVENTS = {2: [5], 10: [6], 16: [5, 6], 20: [1, 5], 21: [1], 29: [5]}
# v401 (fail_a OR fail_b) fails at rows 2, 10, 16, 20, 29; v402 (fail_a AND noise) at row 20 only.
# Window k (t0 = O + 10k) predicts over [O + 10k + 30, O + 10k + 60); 28 windows (k = 0..27).
# v501: positive runs {0,1} {4} {11,12,13} {20} {25} {27}, k = 8 non-finite:
#   {0,1}: PW [O+30, O+70) holds no failure: false alarm
#   {4}:   PW [O+70, O+100) ends just before the failure at O+100: false alarm, and that failure is missed
#   {11..13}: k = 11's PW [O+140, O+170) covers O+160: warned, lead 160 - (110 + 20) = 30 s
#   {20}:  PW [O+230, O+260): false alarm
#   {25}:  PW [O+280, O+310) covers O+290 (the replay's last instant): warned, lead 290 - 270 = 20 s
#   {27}:  PW [O+300, O+330) lies after the replay's end: open, not a false alarm
#   O+20 falls before any window's PW: not covered; O+200 (covered by k = 15..17, negative): missed
# v502: never positive, k = 12 non-finite. v503 (v402): {16} warns O+200 (lead 200 - 180 = 20 s),
#   {26,27} reach past the replay's end: open.
MODELS = [
    {"objective": "v401", "source_f05": "v501",
     "probability": fs.probabilities({0, 1, 4, 11, 12, 13, 20, 25, 27}, seed=1, non_finite={8})},
    {"objective": "v401", "source_f05": "v502", "probability": fs.probabilities(set(), seed=2, non_finite={12})},
    {"objective": "v402", "source_f05": "v503", "probability": fs.probabilities({16, 26, 27}, seed=3)},
]
DAYS = 28 * fs.TU / 86_400


def run_of(root) -> DeployRun:
    return DeployRun("v701", {"parent_variant_f06": "v601"}, executions=root / "executions")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("failures")
    fs.build(root, EVENTS, MODELS)
    return evaluate_deployrun(run_of(root))


def test_failures_come_from_the_replayed_events_as_the_objective_combines_them(evaluated):
    objectives = evaluated.summary["objectives"]
    assert (objectives["v401"]["failures"], objectives["v402"]["failures"]) == (5, 1)
    assert objectives["v401"]["codes"] == [5, 6] and objectives["v402"]["operator"] == "AND"
    assert "02_prepareeventsds/v201/02_prepareeventsds_event_catalog.json" in objectives["v401"]["derivation"]
    rows = evaluated.failures[evaluated.failures["source_f05"] == "v501"]
    assert list(rows["failure_segs"] - O) == [20, 100, 160, 200, 290]
    assert list(rows["events"]) == ["fail_a", "fail_b", "fail_a fail_b", "fail_a", "fail_a"]
    assert list(evaluated.failures[evaluated.failures["objective"] == "v402"]["failure_segs"] - O) == [200]


def test_warned_missed_lead_times_per_failure(evaluated):
    rows = evaluated.failures.set_index(["source_f05", evaluated.failures["failure_segs"] - O])
    v501 = rows.loc["v501"]
    assert list(v501["status"]) == ["not covered", "missed", "warned", "missed", "warned"]
    assert v501["lead_time_s"].tolist()[2::2] == [30, 20]
    assert v501["lead_time_s"].isna().tolist() == [True, True, False, True, False]
    assert v501.loc[160, "first_warning_t0"] == O + 110
    assert list(v501["covering_windows"]) == [0, 3, 3, 3, 3]
    assert list(rows.loc["v502"]["status"]) == ["not covered", "missed", "missed", "missed", "missed"]
    assert rows.loc["v502"].loc[160, "covering_windows"] == 3  # the non-finite window covers it too
    assert rows.loc[("v503", 200), "lead_time_s"] == 20


def test_per_model_failures_episodes_and_false_alarms(evaluated):
    models = evaluated.summary["models"]
    v501 = models["v401/v501/unit_down"]
    assert (v501["failures"], v501["warned"], v501["missed"], v501["not_covered"]) == (5, 2, 2, 1)
    assert v501["failure_recall"] == 0.5
    assert v501["lead_time_s"] == {"min": 20, "p50": 20, "p90": 30}
    declared = v501["declared"]
    assert (declared["episodes"], declared["warning_episodes"], declared["open_episodes"],
            declared["false_alarms"]) == (6, 2, 1, 3)
    assert declared["false_alarms_per_day"] == pytest.approx(3 / DAYS)
    assert declared["failure_precision"] == pytest.approx(0.4)
    assert declared["threshold"] == 0.5
    v502 = models["v401/v502/unit_down"]
    assert (v502["warned"], v502["missed"], v502["failure_recall"]) == (0, 4, 0.0)
    assert v502["declared"]["episodes"] == 0 and v502["lead_time_s"]["p50"] is None
    # never positive: no episode and no window predicted positive, so those ratios are 0/0
    assert (v502["declared"]["failure_precision"], v502["declared"]["precision"]) == (None, None)
    assert v502["undefined"]["declared.failure_precision"].startswith("no alarm episode")
    assert v502["undefined"]["declared.precision"] == "no window predicted positive"
    assert "declared.failure_precision" not in v501["undefined"] and "failure_recall" not in v502["undefined"]
    v503 = models["v402/v503/unit_down_noisy"]
    assert (v503["warned"], v503["failure_recall"]) == (1, 1.0)
    assert (v503["declared"]["episodes"], v503["declared"]["open_episodes"], v503["declared"]["false_alarms"]) == (2, 1, 0)
    assert evaluated.headline["v501"] == {"failure_recall": 0.5, "lead_time_p50_s": 20,
                                          "false_alarms_per_day": round(3 / DAYS, 4)}
    assert evaluated.headline["v502"]["lead_time_p50_s"] is None


def _brute_force(t0, p, label, referenced, failures, threshold, last_segs):
    """Everything at one threshold, window by window (no histogram, no vectorized trick)."""
    positive = [v is not None and v >= threshold for v in p]
    tp = sum(1 for i in range(len(p)) if referenced[i] and positive[i] and label[i] == 1)
    fp = sum(1 for i in range(len(p)) if referenced[i] and positive[i] and label[i] == 0)
    episodes, current = [], None
    for i in range(len(p)):
        if positive[i] and current is not None and t0[i] - t0[i - 1] == fs.TU:
            current.append(i)
        elif positive[i]:
            current = [i]
            episodes.append(current)
        else:
            current = None
    warning = sum(any(fs.covers(t0[i], tf) for i in e for tf in failures) for e in episodes)
    open_ = sum(not any(fs.covers(t0[i], tf) for i in e for tf in failures)
                and any(t0[i] + 60 > last_segs + 1 for i in e) for e in episodes)
    warned = sum(any(positive[i] and fs.covers(t0[i], tf) for i in range(len(p))) for tf in failures)
    return {"TP": tp, "FP": fp, "episodes": len(episodes), "warning_episodes": warning, "open_episodes": open_,
            "false_alarms": len(episodes) - warning - open_, "failures_warned": warned}


def test_curves_across_thresholds_equal_brute_force_and_auc_within_its_bound(tmp_path):
    rng = np.random.default_rng(7)
    rows = 160
    events = {int(i): [5] for i in rng.choice(rows, 12, replace=False)}
    windows = rows - fs.OW
    probability = [None if rng.random() < 0.05 else float(v) for v in rng.beta(0.7, 0.7, windows)]
    probability[10] = 0.5  # exactly at the declared threshold: positive
    run = fs.build(tmp_path, events, [{"objective": "v401", "source_f05": "v501", "probability": probability}], rows)
    evaluation = evaluate_deployrun(run_of(tmp_path))
    table = evaluation.thresholds
    t0 = [O + fs.TU * k for k in range(windows)]
    failures = sorted(O + fs.TU * i for i in events)
    label = [int(any(fs.covers(t, tf) for tf in failures)) for t in t0]
    referenced = [v is not None for v in probability]  # every window is in F04; non-finite ones are counted apart
    last_segs = O + fs.TU * (rows - 1)
    assert len(table) == len(EDGES)  # the declared 0.5 is one of the grid's edges
    for k in range(0, len(table), 7):
        row = table.iloc[k]
        expected = _brute_force(t0, probability, label, referenced, failures, row["threshold"], last_segs)
        assert {name: int(row[name]) for name in expected} == expected, row["threshold"]
    covered = [tf for tf in failures if any(fs.covers(t, tf) for t in t0)]
    assert evaluation.summary["models"]["v401/v501/unit_down"]["warned"] == \
        _brute_force(t0, probability, label, referenced, covered, 0.5, last_segs)["failures_warned"]
    # AUC: exact (every positive/negative pair) within the stated bound of the binned one
    scores = np.array([v for v in probability if v is not None])
    labels = np.array([l for l, v in zip(label, probability) if v is not None])
    pos, neg = scores[labels == 1], scores[labels == 0]
    exact = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    model = evaluation.summary["models"]["v401/v501/unit_down"]
    assert abs(exact - model["roc_auc"]) <= model["roc_auc_bound"] + 1e-12
    assert model["roc_auc_bound"] < 0.01
    # and the binned AUC is the exact AUC of the scores rounded down to their bin
    floor_pos, floor_neg = np.floor(pos * 1000), np.floor(neg * 1000)
    floored = np.mean((floor_pos[:, None] > floor_neg[None, :]) + 0.5 * (floor_pos[:, None] == floor_neg[None, :]))
    assert model["roc_auc"] == pytest.approx(floored, abs=1e-12)
    # average precision, brute force over the grid
    ap = 0.0
    for k, threshold in enumerate(EDGES):
        higher = EDGES[k + 1] if k + 1 < len(EDGES) else np.inf
        gained = np.sum((pos >= threshold) & (pos < higher)) / len(pos)
        kept = (scores >= threshold)
        ap += gained * (np.sum(kept & (labels == 1)) / kept.sum() if kept.sum() else 0.0)
    assert model["average_precision"] == pytest.approx(ap, abs=1e-12)


def test_an_objective_joined_by_ow_content_is_labelled_from_the_logs_ow_lists(tmp_path, evaluated):
    """The stage reads the log's OW lists only when a reference joins by content: v401's
    F04 dataset without t0 labels its windows by OW content, so its window-level counts
    take only the windows whose content has one label (brute force here), while every
    failure-level figure, which no reference touches, is the same as by t0."""
    run = fs.build(tmp_path, EVENTS, MODELS)
    dataset = run.parents[1] / "06_packaging" / "v601" / "datasets" / "v401" / "04_targetengineering_dataset.parquet"
    table = pq.read_table(dataset).drop_columns(["t0"])
    pq.write_table(table, dataset)
    by_content = evaluate_deployrun(run_of(tmp_path))
    assert by_content.summary["objectives"] == evaluated.summary["objectives"]
    pd.testing.assert_frame_equal(by_content.failures, evaluated.failures)
    contents, labels = [tuple(ow) for ow in table["OW_events"].to_pylist()], table["label"].to_pylist()
    seen = {}
    for content, label in zip(contents, labels):
        seen.setdefault(content, set()).add(label)
    for spec in MODELS[:2]:  # v401's models
        key = next(k for k, m in by_content.summary["models"].items() if m["source_f05"] == spec["source_f05"])
        model, before = by_content.summary["models"][key], evaluated.summary["models"][key]
        failure_level = ("failures", "warned", "missed", "not_covered", "failure_recall", "lead_time_s")
        assert {name: model[name] for name in failure_level} == {name: before[name] for name in failure_level}
        assert model["declared"]["false_alarms"] == before["declared"]["false_alarms"]
        referenced = [k for k, p in enumerate(spec["probability"]) if p is not None and len(seen[contents[k]]) == 1]
        lowest = by_content.thresholds[(by_content.thresholds["model"] == key) & (by_content.thresholds["threshold"] == 0)]
        assert int(lowest["TP"].iloc[0]) == sum(labels[k] for k in referenced)
        assert int(lowest["TP"].iloc[0] + lowest["FP"].iloc[0]) == len(referenced) < 27  # some are ambiguous


def test_stage_files_are_stable_and_survive_a_rescore(tmp_path):
    run = fs.build(tmp_path, EVENTS, MODELS)
    result = run_f07_stage("evaluate", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = run / "metrics"
    first = {p.relative_to(metrics).as_posix(): p.read_bytes() for p in metrics.rglob("*") if p.is_file()}
    assert set(first) == {
        "failures.csv", "evaluation.json", "thresholds.csv", "plots/evaluation/thresholds.png",
        *(f"failure_level/{f05}.json" for f05 in ("v501", "v502", "v503")),
        *(f"plots/curves/{kind}/{model}.csv" for kind in ("pr", "roc", "alarms")
          for model in ("v401__v501__unit_down", "v401__v502__unit_down", "v402__v503__unit_down_noisy"))}
    assert json.loads(first["failure_level/v503.json"])["failure_recall"] == 1.0
    (metrics / "failure_level" / "v599.json").write_text("{}")  # a model the package no longer holds
    assert run_f07_stage("evaluate", tmp_path).returncode == 0
    assert {p.relative_to(metrics).as_posix(): p.read_bytes() for p in metrics.rglob("*") if p.is_file()} == first
    # the score stage replaces its own files in metrics/ and keeps these
    result = run_f07_stage("score", tmp_path)
    assert result.returncode == 0, result.stderr
    after = {p.relative_to(metrics).as_posix(): p.read_bytes() for p in metrics.rglob("*") if p.is_file()}
    assert {name: after[name] for name in first} == first
    # at the declared threshold the curves give the score stage's window counts
    scored = pd.read_csv(metrics / "metrics_per_model.csv", dtype={"model_id": str})
    thresholds = pd.read_csv(metrics / "thresholds.csv")
    declared = thresholds[thresholds["threshold"] == 0.5].set_index("model")
    for row in scored.itertuples():
        key = f"{row.objective}/{row.source_f05}/{row.model_id}"
        assert (declared.loc[key, "TP"], declared.loc[key, "FP"]) == (row.TP, row.FP)


def test_an_objective_event_missing_from_the_catalog_is_refused_naming_it(tmp_path):
    fs.build(tmp_path, EVENTS, MODELS)
    catalog = tmp_path / "executions" / "02_prepareeventsds" / "v201" / "02_prepareeventsds_event_catalog.json"
    catalog.write_text(json.dumps({"noise": 1, "fail_a": 5}))
    with pytest.raises(DeployRunError, match=r"\['fail_b'\].*02_prepareeventsds_event_catalog.json"):
        evaluate_deployrun(run_of(tmp_path))
    catalog.unlink()
    result = run_f07_stage("evaluate", tmp_path)
    assert result.returncode == 1 and "event_catalog.json is missing" in result.stderr
    assert not (tmp_path / "executions" / "07_deployrun" / "v701" / "metrics").exists()


def test_report_shows_failures_lead_times_false_alarms_and_the_curves(tmp_path):
    run = fs.build(tmp_path, EVENTS, MODELS)
    keys = ["v401/v501/unit_down", "v401/v502/unit_down", "v402/v503/unit_down_noisy"]
    (run / "logs" / "run_summary.json").write_text(json.dumps({
        "windows_sent": 28, "windows_answered": 28, "rows_logged": 84, "batches": 7, "batch_size": 4,
        "first_t0": O, "last_t0": O + 270, "fault": None, "log": "logs/raw_predictions.parquet",
        "models": {key: {"non_finite": 0} for key in keys}}))
    (run / "logs" / "equivalence.json").write_text(json.dumps({"enabled": False, "passed": None}))
    (run / "logs" / "timing.json").write_text(json.dumps({"seconds": 1.0, "windows_per_second": 28.0,
                                                          "latency_ms": {"4": {"batches": 7, "p50": 1.5, "p90": 2.0,
                                                                               "p99": 2.5}},
                                                          "latency_note": "test"}))
    for stage in ("score", "evaluate", "report"):
        result = run_f07_stage(stage, tmp_path)
        assert result.returncode == 0, (stage, result.stderr)
    html = (run / "report" / "report.html").read_text()
    section = html[html.index('id="failure-metrics"'):html.index('id="thresholds"')]
    v501 = section[section.index("v401 · v501"):section.index("</tr>", section.index("v401 · v501"))]
    cells = [cell.split("<")[0] for cell in v501.split('<td class="n">')[1:]]
    assert cells == ["0.5", "5", "2", "2", "1", "0.5000", "20 / 20 / 30", "6", "2", "1", "3",
                     f"{3 / DAYS:.2f}", "0.4000"]
    v502 = section[section.index("v401 · v502"):section.index("</tr>", section.index("v401 · v502"))]
    assert v502.rsplit('<td class="n">', 1)[1].startswith(  # failure precision: 0/0 episodes
        '<span class="undefined">undefined</span><br><small>no alarm episode that warned a failure or was false')
    assert "fail_a, fail_b" in html and "02_prepareeventsds_event_catalog.json" in html
    assert (run / "report" / "figures" / "thresholds.png").read_bytes() == \
        (run / "metrics" / "plots" / "evaluation" / "thresholds.png").read_bytes()
    assert "latency_ms" in (run / "report" / "runtime.js").read_text()
    latency = json.loads((run / "metrics" / "timing.json").read_text())
    assert latency["latency_ms"]["4"]["p99"] == 2.5
    from tests.chromium import CHROMIUM, open_page
    if not CHROMIUM.exists():
        pytest.skip("no Chromium to open the page with (Debian/Ubuntu: sudo apt-get install -y chromium)")
    page = open_page(run / "report" / "report.html", {
        "latency": "document.getElementById('latency').textContent",
        "failure_rows": "document.querySelectorAll('#failure-metrics tr').length - 1"})
    assert page.errors == []
    assert "4 windows: p50 1.5 ms, p90 2 ms, p99 2.5 ms over 7 batches" in page.values["latency"]
    assert page.values["failure_rows"] == 3
    assert all(image["complete"] and image["width"] > 0 for image in page.images), page.images


def test_latency_percentiles_are_at_most_one_percent_high():
    from f07_validation.latency import LatencyHistogram
    seconds = np.random.default_rng(3).lognormal(-4, 0.7, 2_000)
    histogram = LatencyHistogram()
    for value in seconds:
        histogram.add(256, float(value))
    histogram.add(17, 0.25)
    summary = histogram.summary()
    assert summary["17"] == {"batches": 1, "p50": summary["17"]["p50"], "p90": summary["17"]["p50"],
                             "p99": summary["17"]["p50"]}
    assert 250 <= summary["17"]["p50"] <= 250 * 1.01
    for percentile in (50, 90, 99):
        exact = 1000 * np.percentile(seconds, percentile, method="inverted_cdf")
        assert exact <= summary["256"][f"p{percentile}"] <= exact * 1.01 + 1e-3


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory):
    """Two runs of the same small replay, scored and evaluated, the second (v702) served
    at another batch size; tests copy it before changing it."""
    import shutil
    root = tmp_path_factory.mktemp("compare7")
    run = fs.build(root, EVENTS, MODELS)
    (run / "params.yaml").write_text("batch_size: 4\nparent_variant_f06: v601\nvariant: v701\n")
    for stage in ("score", "evaluate"):
        assert run_f07_stage(stage, root).returncode == 0
    second = run.parent / "v702"
    shutil.copytree(run, second)
    (second / "params.yaml").write_text("batch_size: 64\nparent_variant_f06: v601\nvariant: v702\n")
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["variant"] = "v702"
    (second / "manifest.json").write_text(json.dumps(manifest))
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root


def copy_of(root, tmp_path):
    import shutil
    return Path(shutil.copytree(root, tmp_path / "project"))


def test_compare7_renders_two_variants_side_by_side(two_variants, tmp_path):
    """The page holds both variants' failure-level rows and names what differs; one variant is refused."""
    import subprocess
    import sys

    from tests.conftest import PROJECT
    root = copy_of(two_variants, tmp_path)
    command = [sys.executable, "-m", "lifecycle", "compare7", "--variants"]
    env = {"PYTHONPATH": str(PROJECT), "PATH": ""}
    result = subprocess.run(command + ["v701"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "two or more" in result.stderr
    result = subprocess.run(command + ["v701 v702"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    html = (root / "executions" / "07_comparison" / "v701_v702.html").read_text()
    rows = html[html.index('id="failure-metrics"'):html.index("Threshold curves")]
    assert rows.count("<td>v701</td><td>v401/v501/unit_down</td>") == 1
    assert rows.count("<td>v702</td><td>v401/v501/unit_down</td>") == 1
    assert rows.count("undefined</span><br><small>no alarm episode") == 2  # v502's failure precision, per variant
    window = html[html.index('id="window-metrics"'):html.index('id="failure-metrics"')]
    assert "undefined</span><br><small>no window predicted positive" in window  # v502's precision
    differing = html[html.index('id="differences"'):]
    assert "<code>deployrun.batch_size</code></td><td><code>4</code></td><td><code>64</code>" in differing
    assert "data:image/png;base64," in html


def overlay_rows(root, *dvc_args) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """`dvc plots <dvc_args> --json` in ``root``: the PR overlay of v501's model, as
    (revision, file label) -> its (recall, precision) points, as DVC filled them in."""
    import sys

    from tests.conftest import run
    shown = json.loads(run([sys.executable, "-m", "dvc", "plots", *dvc_args, "--json"], root).stdout)
    assert not shown.get("errors"), shown["errors"]
    (plot,) = shown["data"]["v701_v702/pr/v401__v501__unit_down"]
    assert plot["content"]["title"]["text"] == "Precision against recall: v401/v501/unit_down, v701 vs v702"
    rows = {}
    for row in plot["content"]["data"]["values"]:
        rows.setdefault((row["rev"], row["filename"]), []).append((row["recall"], row["precision"]))
    return rows


def test_compare7_writes_dvc_plots_that_overlay_the_variants(two_variants, tmp_path, capsys):
    """In a git + DVC repo, the dvc.yaml compare7 writes makes `dvc plots show` draw v701's
    and v702's curve files on one plot (each point labelled with its file), and `dvc plots
    diff HEAD` both variants at both revisions; it declares the stage's own axes and
    template. A model one variant lacks is left out, said so. A curve file the evaluation lists but that is gone is refused by name, and
    variants that share no evaluated model leave nothing to draw."""
    import sys

    import yaml

    from lifecycle.cli import main
    from tests.conftest import PROJECT, commit_all, run
    root = copy_of(two_variants, tmp_path)
    curves = root / "executions" / "07_deployrun" / "{}" / "metrics" / "plots" / "curves"
    pr = "pr/v401__v501__unit_down.csv"
    (Path(str(curves).format("v702")) / pr).write_text("threshold,recall,precision\n0.1,0.9,0.25\n0.5,0.4,0.75\n")
    assert main(["compare7", "--variants", "v701 v702"], root=root) == 0
    assert "not overlaid" not in capsys.readouterr().out  # every model is in both
    plots_file = root / "executions" / "07_comparison" / "v701_v702" / "dvc.yaml"
    written = plots_file.read_bytes()
    declared = {Path(path).name: props for item in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
                ["evaluate"]["do"]["plots"] for path, props in item.items()}
    for item in yaml.safe_load(written)["plots"]:
        ((plot_id, props),) = item.items()
        kind = plot_id.split("/")[1]
        assert (props["x"], set(props["y"].values()), props["template"]) == \
            (declared[kind]["x"], {declared[kind]["y"]}, declared[kind]["template"])
        assert len(props["y"]) == 2
    run(["git", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    commit_all(root, "two variants compared")
    v701 = pd.read_csv(Path(str(curves).format("v701")) / pr, dtype=str)
    assert len(v701) > 2
    label = "{}/metrics/plots/curves/" + pr
    assert overlay_rows(root, "show") == {
        ("workspace", label.format("v701")): list(zip(v701["recall"], v701["precision"])),
        ("workspace", label.format("v702")): [("0.9", "0.25"), ("0.4", "0.75")]}
    (Path(str(curves).format("v701")) / pr).write_text("threshold,recall,precision\n0.5,0.6,0.5\n")
    assert overlay_rows(root, "diff", "HEAD") == {
        ("HEAD", label.format("v701")): list(zip(v701["recall"], v701["precision"])),
        ("HEAD", label.format("v702")): [("0.9", "0.25"), ("0.4", "0.75")],
        ("workspace", label.format("v701")): [("0.6", "0.5")],
        ("workspace", label.format("v702")): [("0.9", "0.25"), ("0.4", "0.75")]}

    evaluation = root / "executions" / "07_deployrun" / "v702" / "metrics" / "evaluation.json"
    summary = json.loads(evaluation.read_text())
    del summary["models"]["v402/v503/unit_down_noisy"]  # as if v702's package had not held it
    evaluation.write_text(json.dumps(summary))
    assert main(["compare7", "--variants", "v701 v702"], root=root) == 0
    assert "evaluated in one variant only: v402/v503/unit_down_noisy (v701)" in capsys.readouterr().out
    written = plots_file.read_bytes()
    ids = [next(iter(item)) for item in yaml.safe_load(written)["plots"]]
    assert len(ids) == 6 and not any("v503" in plot_id for plot_id in ids)
    gone = Path(str(curves).format("v702")) / "roc" / "v401__v502__unit_down.csv"
    gone.unlink()
    assert main(["compare7", "--variants", "v701 v702"], root=root) == 1
    error = capsys.readouterr().err
    assert f"missing {root / 'executions/07_deployrun/v702/metrics/plots/curves/roc/v401__v502__unit_down.csv'}" \
        f" (run `dvc repro evaluate@v702`)" in error, error
    assert plots_file.read_bytes() == written  # refused before writing anything
    evaluation.unlink()
    assert main(["compare7", "--variants", "v701 v702"], root=root) == 1
    error = capsys.readouterr().err
    assert "no threshold curve to overlay" in error and "v702: not evaluated (run `dvc repro evaluate@v702`)" in error


def test_compare7_dvc_yaml_is_not_git_ignored_as_its_page_is():
    """DVC skips every dvc.yaml that git ignores (its collect_files), so the project's
    .gitignore must leave compare7's plots file visible while it ignores the page."""
    import subprocess

    from contract import layout
    from tests.conftest import PROJECT

    def ignored(path) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=PROJECT).returncode == 0

    variants = ["v701", "v702"]
    assert ignored(layout.comparison_page(variants)) and not ignored(layout.comparison_plots(variants))


def test_failures_after_a_log_cut_short_are_not_covered_never_missed(tmp_path):
    """A runtime fault ends the log at window 14: the failures at O+200 and O+290 got no
    logged window whose prediction period covers them, so they are not counted as missed."""
    import pyarrow.parquet as pq
    run = fs.build(tmp_path, EVENTS, MODELS)
    log = run / "logs" / "raw_predictions.parquet"
    table = pq.read_table(log)
    pq.write_table(table.slice(0, 15 * len(MODELS)), log)
    evaluation = evaluate_deployrun(run_of(tmp_path))
    v501 = evaluation.failures[evaluation.failures["source_f05"] == "v501"]
    assert list(v501["status"]) == ["not covered", "missed", "warned", "not covered", "not covered"]
    model = evaluation.summary["models"]["v401/v501/unit_down"]
    assert (model["warned"], model["missed"], model["failure_recall"]) == (1, 1, 0.5)
    assert evaluation.summary["windows"]["days"] == round(15 * fs.TU / 86_400, 6)


def test_a_log_covering_no_failure_leaves_failure_recall_undefined_never_0(tmp_path):
    """Two windows logged: their prediction periods (O+30 to O+70) hold no failure of v401,
    so no failure could be warned or missed: failure recall is 0/0, null in its failure_level/ file."""
    import pyarrow.parquet as pq
    run = fs.build(tmp_path, EVENTS, MODELS)
    log = run / "logs" / "raw_predictions.parquet"
    pq.write_table(pq.read_table(log).slice(0, 2 * len(MODELS)), log)
    evaluation = evaluate_deployrun(run_of(tmp_path))
    model = evaluation.summary["models"]["v401/v501/unit_down"]
    assert (model["warned"], model["missed"], model["failure_recall"]) == (0, 0, None)
    assert model["undefined"]["failure_recall"] == "no failure of the replay falls in a logged window's prediction period"
    assert evaluation.headline["v501"]["failure_recall"] is None


@pytest.mark.parametrize("damage, what", [("truncate", "truncated or not parquet"),
                                          ("damage_inside", "damaged inside")])
def test_a_truncated_or_damaged_replay_is_one_error_line_naming_it_and_the_fix(tmp_path, damage, what):
    from tests import f07_synthetic
    fs.build(tmp_path, EVENTS, MODELS)
    replay = "executions/06_packaging/v601/replay/replay_events.parquet"
    getattr(f07_synthetic, damage)(tmp_path / replay)
    line = f07_synthetic.one_error_line(run_f07_stage("evaluate", tmp_path))
    assert f"{replay} is not a readable parquet file" in line and what in line, line
    assert "`python -m contract.seal verify " in line and "`dvc repro seal_package@v601`" in line, line


def test_episode_counts_do_not_depend_on_where_the_log_batches_split():
    """The pass feeds each model's windows batch by batch (65,536 log rows at a time): an
    episode or a path between warning windows that straddles a batch counts once."""
    from f07_validation.thresholds import BELOW, EpisodeTally, threshold_edges
    rng = np.random.default_rng(11)
    t0 = np.cumsum(np.where(rng.random(400) < 0.03, 2 * fs.TU, fs.TU))  # a few gaps
    values = np.where(rng.random(400) < 0.05, BELOW, rng.random(400))
    marks = {"warns": rng.random(400) < 0.1}
    edges = threshold_edges(0.5)
    whole = EpisodeTally(edges, fs.TU, ("warns",))
    whole.add(t0, values, marks)
    for cuts in ([1, 2, 3], [199], sorted(rng.choice(np.arange(1, 400), 25, replace=False))):
        split = EpisodeTally(edges, fs.TU, ("warns",))
        for part in np.split(np.arange(400), cuts):
            split.add(t0[part], values[part], {"warns": marks["warns"][part]})
        assert (split.episodes() == whole.episodes()).all()
        assert (split.marked_episodes("warns") == whole.marked_episodes("warns")).all()
