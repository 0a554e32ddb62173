"""Failure-level evaluation of a deploy run (the evaluate stage): which failures each
model warned and how early, how many alarm episodes it raised and how many of them were
false, per day of replay, and all of it across decision thresholds from the logged
probabilities, in one streamed pass over the prediction log.

Window-level scores (the score stage) count one failure as many times as windows cover
it, a burst of alarms as precision, and a warning after the prediction period as a hit
elsewhere. Here, per model:
- failures (``f07_validation.failures``): warned, missed, not covered; failure-level
  recall = warned / (warned + missed); lead time min, p50, p90;
- alarm episodes: runs of consecutive positive windows (starts ``Tu`` apart). An episode
  *warns* when one of its windows warns a failure; it is *open* when it warns none but a
  window's prediction period reaches past the replay's last instant (a failure after
  the replay could make it right); every other episode is a **false alarm**. False
  alarms per day over the logged windows' span; failure-level precision = warning
  episodes / (warning + false);
- across thresholds (``f07_validation.thresholds``, exact at every 1/1000 and at the
  declared threshold): window-level precision, recall, F1, FPR against the F04 references
  (matched as the score stage matches them), ROC AUC with its binning bound, average
  precision, failure recall, false alarms per day. The threshold that maximises F1 is
  reported beside the declared one, never applied.

Memory does not grow with the log: per model a few histograms of ~1000 bins and a few
numbers per failure. A log batch is read without its OW lists (~90% of its bytes) and the
references without theirs, unless an objective joins by OW content: labels are all this
stage takes from them (at 1 M F02 rows the peak fell from 532 to 235 MiB).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from console.progress import progress
from contract import layout
from contract.files import atomic_path, write_json_atomic, write_text_atomic
from f07_validation.deployrun import DeployRun
from f07_validation.failures import (MISSED, NOT_COVERED, WARNED, FailureCoverage, ObjectiveFailures,
                                     lead_time_summary, read_failures)
from f07_validation.matching import REFERENCED, joins_by_content, match_windows, window_starts
from f07_validation.scoring import (UNDEFINED_BECAUSE, headline_key, headline_values,
                                    load_references, log_batches, model_index, open_log, time_span,
                                    write_headlines)
from f07_validation.thresholds import (BELOW, EpisodeTally, Histogram, average_precision, ratio, roc_auc,
                                       roc_auc_bound, threshold_edges)
from f07_validation.timefmt import utc_iso

DAY = 86_400
WARNS, WARNS_OR_OPEN = "warns", "warns_or_open"   # kinds of marked windows (thresholds.EpisodeTally)
THRESHOLD_COLUMNS = ["model", "threshold", "TP", "FP", "precision", "recall", "f1", "fpr", "episodes",
                     "warning_episodes", "open_episodes", "false_alarms", "false_alarms_per_day",
                     "failures_warned", "failure_recall", "failure_precision"]
FAILURE_COLUMNS = ["objective", "prediction_name", "failure_segs", "failure_utc", "events", "source_f05",
                   "model_id", "status", "lead_time_s", "first_warning_t0", "covering_windows",
                   "max_probability"]
CURVES = {"pr": ("recall", "precision"), "roc": ("fpr", "recall"),
          "alarms": ("false_alarms_per_day", "failure_recall")}
CURVE_TEMPLATE = "linear"   # DVC's plot template for them, as dvc.yaml declares the stage's plots
# Why a value of evaluation.json is undefined (None there, an empty cell in thresholds.csv,
# no point in the curves), shown with it: its denominator is 0. Beside the window-level
# rates' reasons, at the threshold of the point.
UNDEFINED = {
    **UNDEFINED_BECAUSE,
    "fpr": "no negative window in the reference",
    "false_alarms_per_day": "no window logged",
    "failure_recall": "no failure of the replay falls in a logged window's prediction period",
    "failure_precision": "no alarm episode that warned a failure or was false (open ones are not judged)",
    "roc_auc": "the reference's windows are of one class only",
    "roc_auc_bound": "the reference's windows are of one class only",
    "average_precision": UNDEFINED_BECAUSE["recall"],
    "best_f1": "f1 is undefined at every threshold: " + UNDEFINED_BECAUSE["f1"],
}


class _ModelTally:
    """One model through the pass."""

    def __init__(self, model, failures: ObjectiveFailures, regime, last_segs: int):
        self.model, self.regime, self.last_segs = model, regime, last_segs
        self.edges = threshold_edges(model.threshold)
        self.positives, self.negatives = Histogram(self.edges), Histogram(self.edges)
        self.episodes = EpisodeTally(self.edges, regime.Tu, (WARNS, WARNS_OR_OPEN))
        self.coverage = FailureCoverage(failures, regime, model.threshold)

    def add(self, t0: np.ndarray, values: np.ndarray, referenced: np.ndarray, label: np.ndarray) -> None:
        self.positives.add(values[referenced & (label == 1)])
        self.negatives.add(values[referenced & (label == 0)])
        warns = self.coverage.add(t0, values)
        # the prediction period reaches past the replay's last instant: unobserved
        open_ = t0 + self.regime.horizon_seconds > self.last_segs + 1
        self.episodes.add(t0, values, {WARNS: warns, WARNS_OR_OPEN: warns | open_})


@dataclass(frozen=True)
class Evaluation:
    summary: dict               # evaluation.json
    failures: pd.DataFrame      # failures.csv: FAILURE_COLUMNS
    thresholds: pd.DataFrame    # thresholds.csv: THRESHOLD_COLUMNS
    headline: dict              # failure_level/<model>.json: {short key: values}


def _curves(tally: _ModelTally, days: float) -> pd.DataFrame:
    tp, fp = tally.positives.at_least(), tally.negatives.at_least()
    positives, negatives = tally.positives.counts[1:].sum(), tally.negatives.counts[1:].sum()
    precision, recall = ratio(tp, tp + fp), ratio(tp, positives)
    episodes = tally.episodes.episodes()
    warning = tally.episodes.marked_episodes(WARNS)
    marked = tally.episodes.marked_episodes(WARNS_OR_OPEN)
    false = episodes - marked
    coverable = tally.coverage.covering > 0
    reached = Histogram(tally.edges)
    reached.add(tally.coverage.max_value[coverable])
    warned = reached.at_least()
    return pd.DataFrame({
        "model": tally.model.key, "threshold": tally.edges, "TP": tp, "FP": fp,
        "precision": precision, "recall": recall, "f1": ratio(2 * tp, 2 * tp + fp + (positives - tp)),
        "fpr": ratio(fp, negatives), "episodes": episodes, "warning_episodes": warning,
        "open_episodes": marked - warning, "false_alarms": false, "false_alarms_per_day": false / days if days else np.nan,
        "failures_warned": warned, "failure_recall": ratio(warned, coverable.sum()),
        "failure_precision": ratio(warning, warning + false),
    }, columns=THRESHOLD_COLUMNS)


def _defined(value) -> float | None:
    """A float of the summary, None where it is undefined (NaN)."""
    return None if np.isnan(value) else float(value)


def _model_summary(tally: _ModelTally, curves: pd.DataFrame) -> dict:
    declared = int(np.searchsorted(tally.edges, tally.model.threshold))
    at = curves.iloc[declared]
    f1 = curves["f1"].to_numpy()
    best = None if np.isnan(f1).all() else int(np.nanargmax(f1))
    status = tally.coverage.status()
    lead = tally.coverage.lead_times()[status == WARNED]
    counts = {name: int(np.sum(status == name)) for name in (WARNED, MISSED, NOT_COVERED)}

    def point(row) -> dict:
        return {name: (_defined(row[name]) if isinstance(row[name], (float, np.floating)) else int(row[name]))
                for name in THRESHOLD_COLUMNS if name != "model"}

    summary = {
        **tally.model.identity(), "threshold": tally.model.threshold,
        "failures": len(status), "warned": counts[WARNED], "missed": counts[MISSED],
        "not_covered": counts[NOT_COVERED],
        "failure_recall": _defined(ratio(counts[WARNED], counts[WARNED] + counts[MISSED])),
        "lead_time_s": lead_time_summary(lead),
        "declared": point(at), "best_f1": None if best is None else point(curves.iloc[best]),
        "roc_auc": _defined(roc_auc(curves["recall"].to_numpy(), curves["fpr"].to_numpy())),
        "roc_auc_bound": _defined(roc_auc_bound(tally.positives.counts[1:], tally.negatives.counts[1:])),
        "average_precision": _defined(average_precision(curves["precision"].to_numpy(),
                                                        curves["recall"].to_numpy())),
    }
    return {**summary, "undefined": undefined_in(summary)}


def undefined_in(summary: dict) -> dict[str, str]:
    """``{"failure_recall": why, "declared.precision": why, ...}`` for each undefined value
    of a model's summary (points by their path), so that the pages show why."""
    reasons = {}
    for name, value in summary.items():
        if value is None:
            reasons[name] = UNDEFINED[name]
        elif name in ("declared", "best_f1"):
            reasons.update({f"{name}.{key}": UNDEFINED[key] for key, item in value.items() if item is None})
    return reasons


def _failure_rows(tally: _ModelTally) -> pd.DataFrame:
    failures, coverage = tally.coverage.failures, tally.coverage
    status = coverage.status()
    warned = status == WARNED
    return pd.DataFrame({
        "objective": failures.objective, "prediction_name": failures.prediction_name,
        "failure_segs": failures.times, "failure_utc": [utc_iso(t) for t in failures.times],
        "events": failures.names, "source_f05": tally.model.source_f05, "model_id": tally.model.model_id,
        "status": status,
        "lead_time_s": pd.Series(np.where(warned, coverage.lead_times(), 0), dtype="Int64").mask(~warned),
        "first_warning_t0": pd.Series(np.where(warned, coverage.first_warning, 0), dtype="Int64").mask(~warned),
        "covering_windows": coverage.covering,
        # the highest finite probability among the covering windows (empty: none had one)
        "max_probability": np.where(np.isfinite(coverage.max_value), np.round(coverage.max_value, 6), np.nan),
    }, columns=FAILURE_COLUMNS)


def evaluate_deployrun(run: DeployRun) -> Evaluation:
    """The replay's failures, then one streamed pass over the log."""
    failures = read_failures(run)
    log = open_log(run)
    first_t0, last_t0 = time_span(run, log)
    # labels only: the OW lists (~90% of the log's and the references' bytes) are read when
    # a reference joins by content, and the OW mismatch is the score stage's to report
    references = load_references(run, contents=False)
    events = joins_by_content(references)
    regime = run.manifest.regime()
    last_segs = run.package_metadata()["replay"]["last_segs"]
    tallies = [_ModelTally(model, failures[model.objective], regime, last_segs) for model in run.models]
    objective_of = np.array([list(references).index(m.objective) for m in run.models], np.int64)
    pool = pa.default_memory_pool()
    with progress(desc=f"evaluate@{run.variant}", total=log.metadata.num_rows, unit="prediction",
                  unit_scale=True) as bar:
        for batch in log_batches(run, log, events):
            model = model_index(run, batch)
            t0 = batch["t0"].to_numpy().astype(np.int64)
            starts = window_starts(t0)
            first_row = np.zeros(len(t0), bool)
            first_row[starts] = True
            window_of = np.cumsum(first_row) - 1
            ow = batch["OW_events"].combine_chunks().take(pa.array(starts)) if events else None
            matched = list(match_windows(t0[starts], ow, references).values())
            probability = batch["probability"].to_numpy(zero_copy_only=False)
            finite = batch["y_pred"].is_valid().to_numpy(zero_copy_only=False) & np.isfinite(probability)
            values = np.where(finite, probability, BELOW)
            for position, tally in enumerate(tallies):
                rows = np.flatnonzero(model == position)
                result = matched[objective_of[position]]
                windows = window_of[rows]
                tally.add(t0[rows], values[rows], finite[rows] & (result.status[windows] == REFERENCED),
                          result.label[windows])
            bar.update(batch.num_rows)
            pool.release_unused()  # as the score stage: the peak stays that of one batch
    days = (last_t0 - first_t0 + regime.Tu) / DAY if first_t0 is not None else 0.0
    curves = [_curves(tally, days) for tally in tallies]
    models = {tally.model.key: _model_summary(tally, table) for tally, table in zip(tallies, curves)}
    summary = {
        "variant": run.variant,
        "objectives": {objective: {
            "prediction_name": item.prediction_name, "operator": item.operator, "events": list(item.events),
            "codes": list(item.codes), "event_catalog": item.catalog, "failures": len(item.times),
            "derivation": item.describe()} for objective, item in failures.items()},
        "windows": {"first_t0": first_t0, "last_t0": last_t0, "days": round(days, 6),
                    "replay_last_segs": last_segs,
                    "warning": f"t0 + {regime.pw_start_seconds} s <= tf < t0 + {regime.horizon_seconds} s "
                               f"((OW+LT)*Tu and (OW+LT+PW)*Tu after its start t0), and the lead time is tf - "
                               f"(t0 + {regime.ow_seconds} s) of the first such window"},
        "binning": {"edges": f"every 1/{len(threshold_edges(0.0)) - 1} from 0 to 1, and each model's declared "
                             "threshold", "exact_at_edges": True,
                    "roc_auc_bound": "|exact - binned| <= sum over bins of positives x negatives / (2 P N)"},
        "models": models,
    }
    frame = pd.concat([_failure_rows(tally) for tally in tallies], ignore_index=True)
    frame = frame.sort_values(["objective", "failure_segs", "source_f05", "model_id"], kind="stable")
    thresholds = pd.concat(curves, ignore_index=True)
    return Evaluation(summary=summary, failures=frame.reset_index(drop=True), thresholds=thresholds,
                      headline=headline(models, run))


def headline(models: dict, run: DeployRun) -> dict:
    """A few values per model for `dvc metrics show`, under the score stage's short keys
    (a file per model, as the score stage's window_level/); an undefined one is null, as
    a lead time where nothing was warned (shown as "-")."""
    per_model = pd.DataFrame([model.identity() for model in run.models])
    tree = {}
    for row, model in zip(per_model.to_dict("records"), run.models):
        item = models[model.key]
        # three, as the score stage's files: `dvc metrics show` puts both in one table
        tree[headline_key(row, per_model)] = headline_values({
            "failure_recall": item["failure_recall"], "lead_time_p50_s": item["lead_time_s"]["p50"],
            "false_alarms_per_day": item["declared"]["false_alarms_per_day"]})
    return tree


def curve_file_name(key: str) -> str:
    """A model's key as a file name (the OIP's URL-safe name: '/' -> '__')."""
    return key.replace("/", "__")


def write_evaluation(evaluation: Evaluation, run: DeployRun) -> None:
    """failures.csv, failure_level/, evaluation.json, thresholds.csv, plots/curves/ and the
    figure, each replaced whole; everything is computed before the first is written."""
    from f07_validation.figures import thresholds_png  # matplotlib: only where drawn

    figure = thresholds_png(evaluation.thresholds, [{"label": key, **item}
                                                    for key, item in evaluation.summary["models"].items()])
    failures_csv = evaluation.failures.to_csv(index=False, lineterminator="\n")
    thresholds_csv = evaluation.thresholds.to_csv(index=False, lineterminator="\n", float_format="%.6g")
    with atomic_path(run.path(layout.CURVES_DIR)) as out:
        for kind, (x, y) in CURVES.items():
            (out / kind).mkdir(parents=True)
            for key, table in evaluation.thresholds.groupby("model", sort=False):
                name = posixpath.basename(layout.curve_file(kind, curve_file_name(key)))
                # no point where x or y is undefined (precision where nothing is predicted positive)
                table = table[["threshold", x, y]].dropna()
                table.to_csv(out / kind / name, index=False, lineterminator="\n", float_format="%.6g")
    with atomic_path(run.path(layout.EVALUATION_IMAGES)) as out:
        out.mkdir(parents=True)
        (out / posixpath.basename(layout.THRESHOLDS_FIGURE)).write_bytes(figure)
    write_text_atomic(run.path(layout.FAILURES), failures_csv)
    write_text_atomic(run.path(layout.THRESHOLDS), thresholds_csv)
    write_json_atomic(run.path(layout.EVALUATION), evaluation.summary)
    with atomic_path(run.path(layout.FAILURE_HEADLINES)) as out:
        write_headlines(out, evaluation.headline)


def write_latency(run: DeployRun) -> dict | None:
    """The replay's per-batch latency (wall clock, from the untracked logs/timing.json)
    as metrics/timing.json, untracked too; None when the run recorded none."""
    timing = run.read_optional_json(layout.RUN_TIMING)
    latency = (timing or {}).get("latency_ms")
    path = run.path(layout.LATENCY)
    if latency is None:
        path.unlink(missing_ok=True)
        return None
    write_json_atomic(path, {"latency_ms": latency, "note": timing.get("latency_note", "")})
    return latency


def read_evaluation(run: DeployRun) -> dict | None:
    """evaluation.json, for the report (None when the evaluate stage has not run)."""
    return run.read_optional_json(layout.EVALUATION)

