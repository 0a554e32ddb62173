"""F07 scoring: metrics against hand-computed cases, the files the score stage writes, and
its refusals. Inputs are the small synthetic run of f07_synthetic.py (see its docstring)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract import layout
from f07_validation.deployrun import DeployRunError
from f07_validation.heldout import held_out_statement
from f07_validation.matching import (AMBIGUOUS, JOIN_OW_CONTENT, JOIN_T0, NO_LABEL, NO_REFERENCE, REFERENCED,
                                     load_reference)
from f07_validation.reference import content_hashes
from f07_validation.scoring import TIMELINE_BINS, confusion_metrics, headline_metrics, undefined_reasons
from tests import f07_synthetic as synthetic
from tests.f07_synthetic import run_f07_stage

# Worked out by hand from f07_synthetic (windows 0..7):
# v501 y_pred 0 1 0 1 0 1 | 1 0 vs labels 0 1 1 0 0 1 (windows 6, 7 have no reference)
#   -> TP 2 (w1, w5), TN 2 (w0, w4), FP 1 (w3), FN 1 (w2); no-ref: one 1, one 0.
# v502 y_pred 0 0 - 0 0 0 | - 0 ('-' non-finite, w2 and w6)
#   -> referenced finite w0 w1 w3 w4 w5, labels 0 1 0 0 1, all predicted 0:
#      TN 3, FN 2, no positive predicted so precision 0/0 is undefined (empty), recall 0, f1 0.
# v503 (OW content): [1,2]->1 TP; [3]->0 TN; []->0 TN; [4,5] ambiguous; [9] no ref (pred 1);
#   [2,1]->0 TN (order matters); [4,5] ambiguous; [3]->0 but pred 1: FP.
EXPECTED = pd.DataFrame([
    ["v401", "power_high", "v501", "power_high", "t0", 2, 2, 1, 1, 2 / 3, 2 / 3, 2 / 3, 1, 1, 2, 0, 0, 6, 8],
    ["v401", "power_high", "v502", "power_high", "t0", 0, 3, 0, 2, np.nan, 0.0, 0.0, 0, 1, 1, 0, 2, 5, 8],
    ["v402", "temp.alarm", "v503", "temp.alarm", "ow_content", 1, 3, 1, 0, 0.5, 1.0, 2 / 3, 1, 0, 1, 2, 0, 5, 8],
], columns=["objective", "prediction_name", "source_f05", "model_id", "join", "TP", "TN", "FP", "FN",
            "precision", "recall", "f1", "no_ref_pred_1", "no_ref_pred_0", "no_ref_total",
            "ambiguous", "non_finite", "referenced", "predictions"])


def score_tree(root: Path) -> Path:
    run = synthetic.write_everything(root)
    result = run_f07_stage("score", root)
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """The synthetic run, scored once for the tests that only read it."""
    return score_tree(tmp_path_factory.mktemp("scored"))


def test_metrics_per_model_match_hand_computed(scored):
    table = pd.read_csv(scored / "metrics" / "metrics_per_model.csv", dtype={"model_id": str})
    assert list(table["model_family"]) == ["dense_bow", "sequence_embedding", "cnn1d"]
    pd.testing.assert_frame_equal(table[EXPECTED.columns], EXPECTED, check_dtype=False)


def test_every_prediction_lands_in_exactly_one_bucket(scored):
    table = pd.read_csv(scored / "metrics" / "metrics_per_model.csv")
    confusion = table[["TP", "TN", "FP", "FN"]].sum(axis=1)
    assert (confusion == table["referenced"]).all()
    parts = table["referenced"] + table["ambiguous"] + table["no_ref_total"] + table["non_finite"]
    assert (parts == table["predictions"]).all()
    assert (table["no_ref_pred_1"] + table["no_ref_pred_0"] == table["no_ref_total"]).all()


def headline_files(run: Path, folder: str) -> dict[str, dict]:
    """A headline folder's files (layout.WINDOW_HEADLINES or FAILURE_HEADLINES), by name."""
    return {path.name: json.loads(path.read_text()) for path in sorted((run / folder).iterdir())}


def test_window_level_holds_a_file_of_three_values_per_model_named_by_short_key(scored):
    """`dvc metrics show` prints a row per file and a column per value: three values per
    model, in a file named by its F05; an undefined rate is left out (v502 predicted no
    positive: its precision is 0/0), never 0."""
    assert headline_files(scored, layout.WINDOW_HEADLINES) == {
        "v501.json": {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667},
        "v502.json": {"recall": 0.0, "f1": 0.0},
        "v503.json": {"precision": 0.5, "recall": 1.0, "f1": 0.6667},
    }


def test_short_keys_add_the_model_id_when_an_f05_has_several_models_and_refuse_a_clash():
    row = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "objective": "v401"}
    models = pd.DataFrame([{**row, "source_f05": "v501", "model_id": "a/b"},
                           {**row, "source_f05": "v501", "model_id": "c"},
                           {**row, "source_f05": "v502", "model_id": "a"}])
    assert sorted(headline_metrics(models)) == ["v501__a_b", "v501__c", "v502"]
    models.loc[1, "model_id"] = "a_b"  # the same file name once '/' is replaced
    with pytest.raises(DeployRunError, match="share the metrics file name v501__a_b"):
        headline_metrics(models)


def test_dvc_metrics_show_and_diff_read_an_undefined_rate_as_absent(scored, tmp_path):
    """Real DVC on the score stage's window_level/ folder, committed once with v502's
    precision as the old code wrote it (0.0): `dvc metrics show` lists the defined values,
    and `dvc metrics diff` the undefined one as gone (new: null), with no error."""
    import shutil
    import sys

    from tests.conftest import run
    folder = tmp_path / "window_level"
    shutil.copytree(scored / layout.WINDOW_HEADLINES, folder)
    v502 = json.loads((folder / "v502.json").read_text())
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - window_level\n")
    (folder / "v502.json").write_text(json.dumps({**v502, "precision": 0.0}))
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "old"]):
        run(command, tmp_path)
    (folder / "v502.json").write_text(json.dumps(v502))
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], tmp_path).stdout)
    assert shown[""]["data"]["window_level/v502.json"]["data"] == {"recall": 0.0, "f1": 0.0}
    diff = json.loads(run([sys.executable, "-m", "dvc", "metrics", "diff", "--json"], tmp_path).stdout)
    assert diff == {"window_level/v502.json": {"precision": {"old": 0.0, "new": None}}}


def test_figures_are_images_drawn_from_counts(scored):
    """DVC's confusion template would count one row per window: the score stage logs
    the matrices (and the timeline) as PNG images instead, one per prediction_name."""
    images = scored / "metrics" / "plots" / "images"
    assert sorted(p.name for p in images.iterdir()) == [
        "confusion_power_high.png", "confusion_temp.alarm.png", "timeline.png"]
    for path in images.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (scored / "metrics" / "confusion").exists()


def test_timeline_bins_count_every_prediction(scored):
    timeline = pd.read_csv(scored / "metrics" / "timeline.csv")
    by_model = timeline.groupby("model")[["windows", "finite", "positive", "no_reference", "ambiguous",
                                          "non_finite"]].sum()
    assert by_model.loc["v401/v502/power_high"].tolist() == [8, 6, 2, 1, 0, 2]
    assert by_model.loc["v402/v503/temp.alarm"].tolist() == [8, 8, 1, 1, 2, 0]
    assert (timeline.groupby("model").size() <= TIMELINE_BINS).all()
    v501 = timeline[timeline["model"] == "v401/v501/power_high"]
    assert v501["min_probability"].min() >= 0 and v501["max_probability"].max() <= 1


def test_scoring_json_reports_join_ambiguity_and_held_out(scored):
    scoring = json.loads((scored / "metrics" / "scoring.json").read_text())
    v401, v402 = scoring["objectives"]["v401"], scoring["objectives"]["v402"]
    assert (v401["join"], v402["join"]) == ("t0", "ow_content")
    assert (v401["referenced_windows"], v401["no_reference_windows"], v401["ambiguous_windows"]) == (6, 2, 0)
    assert (v402["ambiguous_contents"], v402["ambiguous_windows"]) == (1, 2)
    assert (v402["referenced_windows"], v402["no_reference_windows"]) == (5, 1)
    assert v401["ow_mismatch_windows"] == 0
    # v501 tells it was fitted before the replay, v502 has no metadata, v503 no split times
    assert scoring["held_out"] is None
    assert [scoring["held_out_by_f05"][v]["held_out"] for v in ("v501", "v502", "v503")] == [True, None, None]
    assert "v502" in scoring["held_out_reason"] and "v503" in scoring["held_out_reason"]
    assert (scoring["first_t0"], scoring["last_t0"]) == (synthetic.T0[0], synthetic.T0[-1])


def test_rerun_gives_identical_bytes_and_dvclive_leaves_nothing_else(tmp_path):
    scored = score_tree(tmp_path)
    metrics = scored / "metrics"
    first = {p.relative_to(metrics): p.read_bytes() for p in metrics.rglob("*") if p.is_file()}
    assert run_f07_stage("score", tmp_path).returncode == 0
    second = {p.relative_to(metrics): p.read_bytes() for p in metrics.rglob("*") if p.is_file()}
    assert first == second
    assert set(map(str, first)) == {
        "metrics_per_model.csv", "scoring.json", "timeline.csv",
        "window_level/v501.json", "window_level/v502.json", "window_level/v503.json",
        "plots/images/confusion_power_high.png", "plots/images/confusion_temp.alarm.png",
        "plots/images/timeline.png"}
    assert not list(tmp_path.rglob("dvc.yaml")) and not list(tmp_path.rglob("dvclive"))
    assert not [p for p in scored.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_a_nan_probability_is_non_finite_even_when_y_pred_says_0(tmp_path):
    """Upstream F07 turned NaN into 0; a log that does the same must not score it as 0."""
    run = synthetic.write_everything(tmp_path)
    log = run / "logs" / "raw_predictions.parquet"
    table = pq.read_table(log)
    y_pred = pa.array(table["y_pred"].to_pandas().fillna(0).astype("int8"), type=pa.int8())
    pq.write_table(table.set_column(table.schema.get_field_index("y_pred"), "y_pred", y_pred), log)
    assert run_f07_stage("score", tmp_path).returncode == 0
    table = pd.read_csv(run / "metrics" / "metrics_per_model.csv")
    assert table.loc[1, ["non_finite", "TN", "FN", "no_ref_pred_0"]].tolist() == [2, 3, 2, 1]


@pytest.mark.parametrize("y_true, y_pred, expected", [
    # no positive predicted: precision 0/0 undefined, recall 0/2, f1 0/2
    ([0, 1, 1], [0, 0, 0], {"TP": 0, "TN": 1, "FP": 0, "FN": 2, "precision": None, "recall": 0.0, "f1": 0.0}),
    # no positive in the reference: recall 0/0 undefined, precision 0/1, f1 0/1
    ([0, 0, 0], [1, 0, 0], {"TP": 0, "TN": 2, "FP": 1, "FN": 0, "precision": 0.0, "recall": None, "f1": 0.0}),
    # neither: every ratio 0/0
    ([0, 0], [0, 0], {"TP": 0, "TN": 2, "FP": 0, "FN": 0, "precision": None, "recall": None, "f1": None}),
    # only positives, all found
    ([1, 1], [1, 1], {"TP": 2, "TN": 0, "FP": 0, "FN": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}),
    # precision 1/2, recall 1/3, f1 = 2pr/(p+r) = 0.4
    ([1, 1, 1, 0, 0], [1, 0, 0, 1, 0], {"TP": 1, "TN": 1, "FP": 1, "FN": 2, "precision": 0.5,
                                        "recall": 1 / 3, "f1": 0.4}),
    # no referenced window at all (an empty replay)
    ([], [], {"TP": 0, "TN": 0, "FP": 0, "FN": 0, "precision": None, "recall": None, "f1": None}),
])
def test_confusion_metrics_hand_cases(y_true, y_pred, expected):
    got = confusion_metrics(np.array(y_true, dtype=np.int8), np.array(y_pred, dtype=np.int8))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] is None if value is None else got[key] == pytest.approx(value, abs=1e-12), key
    reasons = undefined_reasons({**got, "referenced": len(y_true)})
    assert sorted(reasons) == sorted(key for key, value in expected.items() if value is None)
    if not len(y_true):
        assert set(reasons.values()) == {"no prediction fell on a window with a reference label"}
    elif expected["recall"] is None:
        assert reasons["recall"] == "no positive window in the reference"


def _dataset(path: Path, ow: list, labels: list, t0: list | None = None) -> Path:
    columns = {"OW_events": pa.array(ow, type=pa.list_(pa.int32())), "label": pa.array(labels, type=pa.int8())}
    if t0 is not None:
        columns["t0"] = pa.array(t0, type=pa.int64())
    pq.write_table(pa.table(columns), path)
    return path


def _match(reference, t0: list, ow: list):
    return reference.match(np.array(t0, np.int64), content_hashes(pa.array(ow, pa.list_(pa.int64()))))


def test_t0_join_flags_windows_whose_ow_content_differs(tmp_path):
    """Matched by t0 but with other events than the F04 row: the package's regime does
    not reproduce F03's windows; counted so the report can warn."""
    reference = load_reference(_dataset(tmp_path / "d.parquet", [[1], [2, 3]], [0, 1], t0=[100, 110]),
                               "v4", "OW_events", "label")
    assert reference.join == JOIN_T0
    matched = _match(reference, [100, 110, 120], [[1], [2], [5]])
    assert matched.status.tolist() == [REFERENCED, REFERENCED, NO_REFERENCE]
    assert matched.mismatch.tolist() == [False, True, False]
    assert matched.label.tolist() == [0, 1, NO_LABEL]


def test_a_reference_whose_ow_column_is_damaged_fails_naming_it_while_it_streams(tmp_path):
    """The labels read when the reference is loaded; the OW lists only as the merge join
    streams them (contract.row_stream.RowStream): a damaged page there is the same error."""
    path = _dataset(tmp_path / "d.parquet", [[1], [2, 3]], [0, 1], t0=[100, 110])
    synthetic.damage_inside(path, columns=("OW_events",))
    reference = load_reference(path, "v4", "OW_events", "label", fix="restore it")
    with pytest.raises(DeployRunError, match=rf"reference of objective v4: {path} is not a readable parquet file "
                                             r".*damaged inside.*: restore it"):
        _match(reference, [100, 110], [[1], [2, 3]])


def test_t0_join_streams_the_reference_across_batches(tmp_path, monkeypatch):
    """The merge join reads the reference a few rows at a time, just ahead of the log,
    and drops what the log has passed: every window still finds its row."""
    monkeypatch.setattr("f07_validation.matching.BATCH_ROWS", 3)
    t0 = list(range(0, 200, 10))
    reference = load_reference(_dataset(tmp_path / "d.parquet", [[k] for k in range(20)], [k % 2 for k in range(20)],
                                        t0=t0), "v4", "OW_events", "label")
    got = [_match(reference, t0[a:a + 7], [[k] for k in range(a, min(a + 7, 20))]) for a in range(0, 20, 7)]
    assert np.concatenate([m.label for m in got]).tolist() == [k % 2 for k in range(20)]
    assert not np.concatenate([m.mismatch for m in got]).any()


def test_ow_content_join_is_exact_and_flags_both_labels_as_ambiguous(tmp_path):
    path = _dataset(tmp_path / "d.parquet", [[1, 2], [1, 2], [2, 1], [], [], [7]], [1, 1, 0, 0, 1, 1])
    reference = load_reference(path, "v4", "OW_events", "label")
    assert (reference.join, reference.ambiguous_contents, reference.rows, reference.positives) == (
        JOIN_OW_CONTENT, 1, 6, 4)
    matched = _match(reference, [0, 10, 20, 30, 40], [[1, 2], [2, 1], [], [1], [1, 2, 2]])
    assert matched.status.tolist() == [REFERENCED, REFERENCED, AMBIGUOUS, NO_REFERENCE, NO_REFERENCE]
    assert matched.label.tolist()[:2] == [1, 0]


@pytest.mark.parametrize("defect, message", [
    ("label", "values other than 0/1"),
    ("duplicate_t0", "repeated t0"),
    ("unordered_t0", "t0 values out of order"),
])
def test_unusable_reference_is_refused_naming_the_file(tmp_path, defect, message):
    path = tmp_path / "d.parquet"
    if defect == "label":
        _dataset(path, [[1], [2]], [0, 2])
    else:
        _dataset(path, [[1], [2]], [0, 1], t0=[5, 5] if defect == "duplicate_t0" else [15, 5])
    with pytest.raises(DeployRunError, match=message) as caught:
        load_reference(path, "v4", "OW_events", "label")
    assert str(path) in str(caught.value)


def test_stage_refuses_a_log_of_another_manifest_and_keeps_previous_metrics(tmp_path):
    scored = score_tree(tmp_path)
    before = headline_files(scored, layout.WINDOW_HEADLINES)
    log = scored / "logs" / "raw_predictions.parquet"
    table = pq.read_table(log)
    names = pa.array(["v599"] * len(table), type=pa.string())
    pq.write_table(table.set_column(table.schema.get_field_index("source_f05"), "source_f05", names), log)
    result = run_f07_stage("score", tmp_path)
    assert result.returncode == 1
    assert "not in manifest.json" in result.stderr and "infer@v701" in result.stderr
    assert "Traceback" not in result.stderr
    assert headline_files(scored, layout.WINDOW_HEADLINES) == before
    assert not [p for p in scored.iterdir() if p.name.startswith(".")]


LOG = "executions/07_deployrun/v701/logs/raw_predictions.parquet"


F04_V401 = "executions/06_packaging/v601/datasets/v401/04_targetengineering_dataset.parquet"
DAMAGES = {"truncate": "it is truncated or not parquet", "damage_inside": "it is damaged inside"}


@pytest.mark.parametrize("stage, cut, damage, fix", [
    ("score", LOG, "truncate", "run `dvc repro infer@v701` first"),
    ("score", LOG, "damage_inside", "run `dvc repro infer@v701` first"),
    ("verdict", LOG, "truncate", "run `dvc repro infer@v701` first"),
    ("score", F04_V401, "truncate", "verify the package (`python -m contract.seal verify "),
    ("score", F04_V401, "damage_inside", "verify the package (`python -m contract.seal verify "),
])
def test_a_truncated_or_damaged_parquet_input_is_one_error_line_naming_the_file_and_the_fix(tmp_path, stage, cut,
                                                                                           damage, fix):
    """Cut short, the footer does not read; damaged inside, the file opens and a data page
    does not decode while the stage streams it: both are one line, not pyarrow's traceback."""
    run = synthetic.write_everything(tmp_path)
    # what the verdict reads before the log (its content is judged after)
    (run / "serve.json").write_text(json.dumps({"seal": {}, "served_digest": None, "ready": {}}))
    getattr(synthetic, damage)(tmp_path / cut)
    line = synthetic.one_error_line(run_f07_stage(stage, tmp_path))
    assert f"{cut} is not a readable parquet file" in line and DAMAGES[damage] in line, line
    assert fix in line, line
    if "06_packaging" in cut:
        assert "or rebuild it (`dvc repro seal_package@v601`)" in line, line


def test_stage_refuses_a_log_out_of_time_order(tmp_path):
    """The reference join merges two t0-ordered streams: a log out of order is refused."""
    run = synthetic.write_everything(tmp_path)
    log = run / "logs" / "raw_predictions.parquet"
    table = pq.read_table(log)
    pq.write_table(table.take(list(range(len(table) - 1, -1, -1))), log)
    result = run_f07_stage("score", tmp_path)
    assert result.returncode == 1 and "not in time order" in result.stderr and "infer@v701" in result.stderr


def test_stage_names_the_missing_variant_and_the_fix(tmp_path):
    synthetic.write_everything(tmp_path)
    result = run_f07_stage("score", tmp_path, variant="v799")
    assert result.returncode == 1
    assert "deployrun.v799" in result.stderr and "v701" in result.stderr
    assert not (tmp_path / "executions" / "07_deployrun" / "v799").exists()


def test_stage_refuses_a_manifest_of_another_package(tmp_path):
    synthetic.write_everything(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("v601", "v602"))
    result = run_f07_stage("score", tmp_path)
    assert result.returncode == 1
    assert "v602" in result.stderr and "serve@v701" in result.stderr


@pytest.mark.parametrize("fitted_last, expected", [
    (-40, True),   # fitted windows end (last t0 + span 40 s) exactly at the first replayed t0
    (-39, False),  # one second later: the first replayed window overlaps a fitted one
])
def test_held_out_compares_replay_start_with_end_of_fitted_windows(fitted_last, expected):
    metadata = {"splits": {"train": {"t0_first": -500, "t0_last": -200},
                           "val": {"t0_first": -190, "t0_last": fitted_last}}}
    statement = held_out_statement(0, 40, {"v501": metadata})
    assert statement["held_out"] is expected
    assert "v501" in statement["reason"]


def test_held_out_overall_is_false_if_any_run_saw_replayed_windows():
    seen = {"splits": {"train": {"t0_first": 0, "t0_last": 100}}}
    before = {"splits": {"train": {"t0_first": -90, "t0_last": -50}, "val": {"t0_first": None, "t0_last": None}}}
    assert held_out_statement(0, 40, {"a": seen, "b": None})["held_out"] is False
    assert held_out_statement(0, 40, {"a": before, "b": before})["held_out"] is True
    assert held_out_statement(0, 40, {"a": before, "b": None})["held_out"] is None
    assert held_out_statement(None, 40, {"a": before})["held_out"] is None
