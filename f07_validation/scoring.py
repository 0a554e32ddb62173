"""Per-model metrics of a deploy run against the F04 references (seed 001, section 5),
in one pass over the prediction log, batch by batch.

What is counted where (so that every logged prediction is in exactly one bucket):
- `non_finite`: the model gave no usable output (y_pred null or probability NaN). Never
  read as a 0: upstream F07 did that and scored a NaN-predicting model as "all negative".
- `ambiguous`: finite, but its OW content has both labels in the reference (ow_content
  matching only); no label can be assigned, so it is kept out of the matrix.
- referenced (`TP`, `TN`, `FP`, `FN`, `precision`, `recall`, `f1`): finite, with a label.
- `no_ref_pred_1`, `no_ref_pred_0`, `no_ref_total`: finite, window not in the reference.
`predictions` = referenced + ambiguous + no_ref_total + non_finite.

Memory does not grow with the log: counts are summed per batch, the references are
merged in `t0` order (`f07_validation.matching`), and the timeline keeps at most
`TIMELINE_BINS` time bins per model. Everything the later stages show comes out small:
`metrics_per_model.csv` (the full table), `scoring.json` (matching and held-out),
`timeline.csv` (the binned predictions), `window_level/<model>.json` (three headline
values per model for `dvc metrics show`) and, through dvclive, the confusion and timeline
figures (`plots/images/`, DVC image plots: DVC's confusion template counts one row per
window, which at upstream scale is millions of rows, so the matrices are drawn from the counts).
"""

from __future__ import annotations

import math
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contract import layout
from contract.files import atomic_path, dump_json
from console.progress import progress
from contract.predictions import PREDICTION_SCHEMA, model_keys
from contract.row_stream import BATCH_ROWS
from f07_validation.deployrun import DeployRun, DeployRunError, read_json
from f07_validation.heldout import held_out_statement
from f07_validation.matching import (AMBIGUOUS, NO_REFERENCE, REFERENCED, Reference, load_reference,
                                     match_windows, window_starts)
from f07_validation.metric_names import COUNT_METRICS, HEADLINE_METRICS, METRICS, MODEL_COLUMNS, RATES

HEADLINE_DECIMALS = 4
TIMELINE_BINS = 480  # bins per model over the replay, whatever its length
TIMELINE_COLUMNS = ["model", "bin_t0", "windows", "finite", "mean_probability", "min_probability",
                    "max_probability", "positive", "no_reference", "ambiguous", "non_finite"]


# Why a rate (``RATES``) is undefined (its denominator is 0). An undefined rate is None: an
# empty cell in metrics_per_model.csv, absent from the model's window_level/ file (DVC shows
# "-"), shown as "undefined" with this reason, refused by a gate; never a 0, which would read
# as a measured failure (or, under a max gate, a pass).
UNDEFINED_BECAUSE = {
    "precision": "no window predicted positive",                       # TP + FP = 0
    "recall": "no positive window in the reference",                   # TP + FN = 0
    "f1": "no window predicted positive and no positive window in the reference",  # 2 TP + FP + FN = 0
}
NOTHING_SCORED = "no prediction fell on a window with a reference label"


def ratios(tp: int, fp: int, fn: int) -> dict:
    """precision, recall and f1 of the positive class; None where the denominator is 0."""
    return {"precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None}


def undefined_reasons(counts: dict) -> dict[str, str]:
    """Rate -> why it is undefined, for each undefined rate of a row of counts (TP, FP,
    FN and referenced, as in metrics_per_model.csv)."""
    defined = ratios(int(counts["TP"]), int(counts["FP"]), int(counts["FN"]))
    return {rate: NOTHING_SCORED if not int(counts["referenced"]) else UNDEFINED_BECAUSE[rate]
            for rate in RATES if defined[rate] is None}


def shown_rate(value, digits: int = 4) -> str:
    """A rate as text, "undefined" where it is (None, or NaN once in a frame)."""
    return "undefined" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def confusion_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """TP/TN/FP/FN and precision/recall/f1 of label/prediction pairs (no pair: zero counts,
    undefined rates)."""
    y_true, y_pred = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    tp, fp, fn = int(np.sum(y_true & y_pred)), int(np.sum(~y_true & y_pred)), int(np.sum(y_true & ~y_pred))
    return {"TP": tp, "TN": int(len(y_true)) - tp - fp - fn, "FP": fp, "FN": fn, **ratios(tp, fp, fn)}


def load_references(run: DeployRun, contents: bool = True) -> dict[str, Reference]:
    """One reference per objective of the manifest (its models share the dataset);
    ``contents`` as ``load_reference``'s."""
    return {objective: load_reference(run.dataset_path(objective), objective,
                                      spec.input_column, spec.label_column,
                                      run.manifest.package_dir / spec.recovered_t0 if spec.recovered_t0 else None,
                                      contents, fix=run.package_fix)
            for objective, spec in run.references.items()}


# --------------------------------------------------------------------------- the log

def open_log(run: DeployRun) -> pq.ParquetFile:
    path = run.predictions_path
    if not path.exists():
        raise DeployRunError(f"{path} is missing: {run.stage_fix('infer')}")
    log = run.parquet(path, run.stage_fix("infer"))
    missing = sorted(set(PREDICTION_SCHEMA.names) - set(log.schema_arrow.names))
    if missing:
        raise DeployRunError(f"{path} lacks columns {missing}: {run.stage_fix('infer')}")
    return log


def time_span(run: DeployRun, log: pq.ParquetFile) -> tuple[int | None, int | None]:
    """First and last `t0` of the log, read alone; refuses a log out of time order (the
    reference join merges two `t0`-ordered streams)."""
    first = last = None
    for batch in log.iter_batches(batch_size=BATCH_ROWS, columns=["t0"]):
        t0 = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        if not len(t0):
            continue
        if np.any(np.diff(t0) < 0) or (last is not None and t0[0] < last):
            raise DeployRunError(f"{run.predictions_path} is not in time order (t0 goes back after {last}): "
                                 f"{run.stage_fix('infer')}")
        first = int(t0[0]) if first is None else first
        last = int(t0[-1])
    return first, last


def log_batches(run: DeployRun, log: pq.ParquetFile, events: bool = True):
    """The log a batch at a time, each column in the type the contract fixes (any integer
    width is accepted and widened); without its OW lists when ``events`` is off (they are
    ~90% of a batch's bytes)."""
    path = run.predictions_path
    schema = pa.schema([field for field in PREDICTION_SCHEMA if events or field.name != "OW_events"])
    for batch in log.iter_batches(batch_size=BATCH_ROWS, columns=schema.names):
        try:
            batch = pa.Table.from_batches([batch]).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DeployRunError(f"{path} has columns of unexpected types ({exc}); "
                                 f"{run.stage_fix('infer')}") from None
        if events and batch["OW_events"].null_count:
            raise DeployRunError(f"{path} has rows with a null OW_events (an empty window is an empty list): "
                                 f"{run.stage_fix('infer')}")
        yield batch


def model_index(run: DeployRun, batch: pa.Table) -> np.ndarray:
    """Each row's model, as its position in the manifest; refuses rows of a model the
    manifest does not list (a log from another serve)."""
    key = model_keys(batch)
    index = pc.index_in(key, value_set=pa.array([model.key for model in run.models], pa.string()))
    if index.null_count:
        stray = sorted(set(pc.filter(key, pc.is_null(index)).to_pylist()))
        raise DeployRunError(f"{run.predictions_path} has predictions of models not in manifest.json "
                             f"({', '.join(stray)}): {run.stage_fix('infer')}")
    return index.to_numpy(zero_copy_only=False).astype(np.int64)


# --------------------------------------------------------------------------- counting

class _Tally:
    """Sums over the log: per model the buckets, per objective the windows, per model and
    time bin the timeline."""

    def __init__(self, run: DeployRun, references: dict[str, Reference], first_t0: int | None,
                 last_t0: int | None):
        self.run, self.references = run, references
        self.models = len(run.models)
        self.objective_of = np.array([list(references).index(m.objective) for m in run.models], np.int64)
        self.counts = {name: np.zeros(self.models, np.int64) for name in
                       ["TP", "TN", "FP", "FN"] + COUNT_METRICS}
        self.windows = {objective: dict.fromkeys(("windows", "referenced_windows", "ambiguous_windows",
                                                  "no_reference_windows", "ow_mismatch_windows"), 0)
                        for objective in references}
        self.last_window = dict.fromkeys(references)  # per objective, t0 of its last counted window
        tu = run.manifest.regime().Tu
        span = 0 if first_t0 is None else last_t0 - first_t0 + tu
        self.first_t0 = first_t0
        self.bin_seconds = tu * max(1, math.ceil(span / tu / TIMELINE_BINS))
        self.bins = max(1, math.ceil(span / self.bin_seconds)) if span else 1
        cells = self.models * self.bins
        self.timeline = {name: np.zeros(cells, np.int64) for name in
                         ("windows", "finite", "positive", "no_reference", "ambiguous", "non_finite")}
        self.probability_sum = np.zeros(cells)
        self.probability_min = np.full(cells, np.inf)
        self.probability_max = np.full(cells, -np.inf)

    def add(self, batch: pa.Table) -> None:
        model = model_index(self.run, batch)
        t0 = batch["t0"].to_numpy().astype(np.int64)
        starts = window_starts(t0)
        first_row = np.zeros(len(t0), bool)
        first_row[starts] = True
        window_of = np.cumsum(first_row) - 1
        matched = match_windows(t0[starts], batch["OW_events"].combine_chunks().take(pa.array(starts)),
                                self.references)
        objective = self.objective_of[model]
        status = np.zeros(len(t0), np.int8)
        label = np.zeros(len(t0), np.int8)
        for position, (name, result) in enumerate(matched.items()):
            rows = objective == position
            status[rows] = result.status[window_of[rows]]
            label[rows] = result.label[window_of[rows]]
            self._count_windows(name, t0[starts], result, np.unique(window_of[rows]))
        probability = batch["probability"].to_numpy(zero_copy_only=False)
        y_pred = batch["y_pred"].fill_null(-1).to_numpy().astype(np.int8)
        finite = batch["y_pred"].is_valid().to_numpy(zero_copy_only=False) & np.isfinite(probability)
        referenced = finite & (status == REFERENCED)
        no_reference = finite & (status == NO_REFERENCE)
        buckets = {
            "TP": referenced & (label == 1) & (y_pred == 1), "FN": referenced & (label == 1) & (y_pred != 1),
            "FP": referenced & (label == 0) & (y_pred == 1), "TN": referenced & (label == 0) & (y_pred != 1),
            "predictions": np.ones(len(t0), bool), "non_finite": ~finite, "referenced": referenced,
            "ambiguous": finite & (status == AMBIGUOUS), "no_ref_total": no_reference,
            "no_ref_pred_1": no_reference & (y_pred == 1), "no_ref_pred_0": no_reference & (y_pred == 0),
        }
        for name, mask in buckets.items():
            self.counts[name] += np.bincount(model[mask], minlength=self.models)
        cell = model * self.bins + np.minimum((t0 - self.first_t0) // self.bin_seconds, self.bins - 1)
        for name, mask in (("windows", buckets["predictions"]), ("finite", finite),
                           ("positive", referenced & (label == 1)), ("no_reference", no_reference),
                           ("ambiguous", buckets["ambiguous"]), ("non_finite", ~finite)):
            self.timeline[name] += np.bincount(cell[mask], minlength=len(self.probability_sum))
        self.probability_sum += np.bincount(cell[finite], weights=probability[finite],
                                            minlength=len(self.probability_sum))
        np.minimum.at(self.probability_min, cell[finite], probability[finite])
        np.maximum.at(self.probability_max, cell[finite], probability[finite])

    def _count_windows(self, objective: str, t0: np.ndarray, result, windows: np.ndarray) -> None:
        """Window-level figures of an objective: each window once (its rows, one per model,
        may straddle two batches)."""
        if self.last_window[objective] is not None:
            windows = windows[t0[windows] != self.last_window[objective]]
        if not len(windows):
            return
        self.last_window[objective] = int(t0[windows[-1]])
        counts = self.windows[objective]
        counts["windows"] += len(windows)
        counts["referenced_windows"] += int(np.sum(result.status[windows] == REFERENCED))
        counts["ambiguous_windows"] += int(np.sum(result.status[windows] == AMBIGUOUS))
        counts["no_reference_windows"] += int(np.sum(result.status[windows] == NO_REFERENCE))
        counts["ow_mismatch_windows"] += int(np.sum(result.mismatch[windows]))

    def per_model(self) -> pd.DataFrame:
        rows = []
        for position, model in enumerate(self.run.models):
            counts = {name: int(values[position]) for name, values in self.counts.items()}
            rows.append({**model.identity(), "model_family": model.model_family, "threshold": model.threshold,
                         "join": self.references[model.objective].join,
                         **{name: counts[name] for name in ("TP", "TN", "FP", "FN")},
                         **ratios(counts["TP"], counts["FP"], counts["FN"]),
                         **{name: counts[name] for name in COUNT_METRICS}})
        return pd.DataFrame(rows, columns=MODEL_COLUMNS + METRICS)

    def timeline_frame(self) -> pd.DataFrame:
        """One row per model and time bin that holds a prediction."""
        cells = np.flatnonzero(self.timeline["windows"])
        finite = self.timeline["finite"][cells]
        has = finite > 0
        keys = [model.key for model in self.run.models]
        frame = pd.DataFrame({
            "model": [keys[c // self.bins] for c in cells],
            "bin_t0": self.first_t0 + (cells % self.bins) * self.bin_seconds if self.first_t0 is not None else cells,
            **{name: self.timeline[name][cells] for name in ("windows", "finite")},
            "mean_probability": np.where(has, self.probability_sum[cells] / np.maximum(finite, 1), np.nan),
            "min_probability": np.where(has, self.probability_min[cells], np.nan),
            "max_probability": np.where(has, self.probability_max[cells], np.nan),
            **{name: self.timeline[name][cells] for name in ("positive", "no_reference", "ambiguous", "non_finite")},
        }, columns=TIMELINE_COLUMNS)
        return frame.round({"mean_probability": 6, "min_probability": 6, "max_probability": 6})


@dataclass(frozen=True)
class Scoring:
    per_model: pd.DataFrame  # one row per manifest model: MODEL_COLUMNS + METRICS
    summary: dict  # the content of scoring.json
    timeline: pd.DataFrame  # TIMELINE_COLUMNS, at most TIMELINE_BINS rows per model


def f05_metadata(run: DeployRun) -> dict[str, dict | None]:
    """Each source F05's `<F05 variant>/05_modeling_metadata.json` (None
    when absent: F05 runs need not be on this machine to serve their package)."""
    found = {}
    for source in sorted({model.source_f05 for model in run.models}):
        path = layout.variant_dir(layout.F05, source, run.executions) / layout.phase_file(layout.F05, layout.METADATA)
        found[source] = read_json(path, f"fix or regenerate F05 {source}") if path.exists() else None
    return found


def score_deployrun(run: DeployRun) -> Scoring:
    """Read the log twice, streamed: its `t0` alone (order, time span), then every column."""
    log = open_log(run)
    first_t0, last_t0 = time_span(run, log)
    references = load_references(run)
    tally = _Tally(run, references, first_t0, last_t0)
    pool = pa.default_memory_pool()
    with progress(desc=f"score@{run.variant}", total=log.metadata.num_rows, unit="prediction",
                  unit_scale=True) as bar:
        for batch in log_batches(run, log):
            tally.add(batch)
            bar.update(batch.num_rows)
            # Arrow's allocator keeps freed pages for reuse; returned each batch, the
            # peak stays that of one batch (without: +19% from 0.75 M to 3 M log rows)
            pool.release_unused()
    regime = run.manifest.regime()
    held_out = held_out_statement(first_t0, regime.Tu * (regime.OW + regime.LT + regime.PW), f05_metadata(run))
    names = {model.objective: model.prediction_name for model in run.models}
    objectives = {objective: {
        "prediction_name": names[objective],
        "dataset": run.references[objective].dataset,
        "join": reference.join,
        "reference_rows": reference.rows,
        "reference_positives": reference.positives,
        "ambiguous_contents": reference.ambiguous_contents,
        **tally.windows[objective],
    } for objective, reference in references.items()}
    summary = {
        "variant": run.variant,
        "objectives": objectives,
        "first_t0": first_t0,
        "last_t0": last_t0,
        "held_out": held_out["held_out"],
        "held_out_reason": held_out["reason"],
        "held_out_by_f05": held_out["by_f05"],
        "timeline_bin_seconds": tally.bin_seconds,
    }
    return Scoring(per_model=tally.per_model(), summary=summary, timeline=tally.timeline_frame())


# --------------------------------------------------------------------------- outputs

def headline_key(row: dict, per_model: pd.DataFrame) -> str:
    """A model's short key, the name of its headline files (``layout.headline_file``): its
    source F05 (which fixes its objective), plus ``__<model_id>`` when the package holds
    several models of that F05; a '/' in a part becomes '_' (it is one file name)."""
    shared = int(np.sum(per_model["source_f05"] == row["source_f05"])) > 1
    parts = [row["source_f05"]] + ([row["model_id"]] if shared else [])
    return "__".join(part.replace("/", "_") for part in parts)


def headline_values(values: dict) -> dict:
    """A model's headline values as its metrics file holds them: floats rounded to
    HEADLINE_DECIMALS (a narrow column), counts and nulls as they are."""
    return {name: round(value, HEADLINE_DECIMALS) if isinstance(value, float) else value
            for name, value in values.items()}


def headline_metrics(per_model: pd.DataFrame) -> dict[str, dict]:
    """``{"<short key>": {"precision", "recall", "f1"}}``: a few values per model for
    `dvc metrics show`, an undefined rate left out (the table shows an absent value as
    "-"); the full table is metrics_per_model.csv."""
    tree: dict[str, dict] = {}
    for row in per_model.to_dict("records"):
        key = headline_key(row, per_model)
        if key in tree:
            raise DeployRunError(f"models {row['source_f05']}/{row['model_id']} and another one share the "
                                 f"metrics file name {key} once '/' is replaced by '_'")
        tree[key] = headline_values({metric: row[metric] for metric in HEADLINE_METRICS if not pd.isna(row[metric])})
    return tree


def write_headlines(folder: Path, headlines: dict[str, dict]) -> None:
    """One JSON file per model in ``folder`` (a staged WINDOW_HEADLINES or
    FAILURE_HEADLINES), which dvc.yaml declares as a metric. A file per model, not one
    file keyed by model (as dvclive's metrics.json would be): `dvc metrics show` makes a
    row per file and a column per key path, so one tree keyed by model widens the table
    by a column per model and value, past a terminal at three models; files per model add
    rows, and every column is a plain metric name, the same in every variant."""
    folder.mkdir(parents=True)
    for key, values in sorted(headlines.items()):
        name = posixpath.basename(layout.headline_file(folder.name, key))
        (folder / name).write_text(dump_json(values), encoding="utf-8")


def figures(scoring: Scoring) -> dict[str, bytes]:
    """Run-relative `layout.metrics_image(...)` path -> PNG bytes of bounded size: the
    confusion matrices (one figure per prediction_name, a panel per model) and the
    timeline."""
    # matplotlib (about a second to import) only here: every other F07 stage and the
    # lifecycle commands import this module (gates, report) and never draw
    from f07_validation.figures import confusion_png, timeline_png
    models = scoring.per_model.to_dict("records")
    drawn = {}
    for name in dict.fromkeys(row["prediction_name"] for row in models):
        drawn[layout.metrics_image(layout.confusion_figure(name))] = confusion_png(
            name, [row for row in models if row["prediction_name"] == name])
    drawn[layout.metrics_image(layout.TIMELINE_FIGURE)] = timeline_png(
        scoring.timeline, models, scoring.summary["timeline_bin_seconds"])
    return drawn


def log_images_with_dvclive(images: dict[str, bytes], out_dir: Path) -> None:
    """plots/images/ through dvclive (the headline values are not logged: they are files
    per model, ``write_headlines``). `dvcyaml=False` keeps it off dvc.yaml (the stage
    declares its outputs), and `Live.end()` is never called: it would also save an
    experiment and, inside `dvc exp run`, `git add` the folder. `Live()` opens the DVC repo
    of the working directory; `out_dir` is the staging folder, which `Live()` empties of
    dvclive files, never the final one. Bytes depend only on the images' pixels."""
    import io

    from dvclive import Live  # imported here: it loads dvc
    from PIL import Image

    live = Live(dir=str(out_dir), dvcyaml=False, save_dvc_exp=False)
    for path, png in sorted(images.items()):
        live.log_image(posixpath.basename(path), Image.open(io.BytesIO(png)))


# What the score stage writes in metrics/; the folder also holds the evaluate stage's files
# (dvc.yaml declares each stage's files apart), which a rescore keeps.
SCORE_FILES = (layout.METRICS_PER_MODEL, layout.METRICS_TIMELINE, layout.SCORING, layout.WINDOW_HEADLINES,
               layout.METRICS_IMAGES)


def keep_other_stages_files(run: DeployRun, staged_run: Path) -> None:
    """Copy into the staged metrics folder every file of the current one that the score
    stage does not write (``SCORE_FILES``)."""
    current = run.path(layout.METRICS_DIR)
    if not current.is_dir():
        return
    for path in sorted(current.rglob("*")):
        relative = path.relative_to(run.root).as_posix()
        if path.is_file() and not any(relative == own or relative.startswith(own + "/") for own in SCORE_FILES):
            (staged_run / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staged_run / relative)


def write_scoring(scoring: Scoring, run: DeployRun) -> None:
    """Replace the run's metrics folder with metrics_per_model.csv, scoring.json,
    timeline.csv, window_level/ and plots/images/ (and the other stages' files as they
    were), all or nothing. The staging folder has the metrics folder's name, so its
    parent stands for the run folder and the layout's paths apply to it."""
    headline = headline_metrics(scoring.per_model)
    images = figures(scoring)
    with atomic_path(run.path(layout.METRICS_DIR)) as out:
        staged = out.parent
        out.mkdir(parents=True)
        log_images_with_dvclive(images, out)
        keep_other_stages_files(run, staged)  # after dvclive, which empties its folder of what it writes
        write_headlines(staged / layout.WINDOW_HEADLINES, headline)
        scoring.per_model.to_csv(staged / layout.METRICS_PER_MODEL, index=False, lineterminator="\n")
        scoring.timeline.to_csv(staged / layout.METRICS_TIMELINE, index=False, lineterminator="\n")
        (staged / layout.SCORING).write_text(dump_json(scoring.summary), encoding="utf-8")
