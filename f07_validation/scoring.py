"""Per-model metrics of a deploy run against the F04 references (seed 001, section 5).

What is counted where (so that every logged prediction is in exactly one bucket):
- `non_finite`: the model gave no usable output (y_pred null or probability NaN). Never
  read as a 0: upstream F07 did that and scored a NaN-predicting model as "all negative".
- `ambiguous`: finite, but its OW content has both labels in the reference (ow_content
  matching only); no label can be assigned, so it is kept out of the matrix.
- referenced (`TP`, `TN`, `FP`, `FN`, `precision`, `recall`, `f1`): finite, with a label.
- `no_ref_pred_1`, `no_ref_pred_0`, `no_ref_total`: finite, window not in the reference.
`predictions` = referenced + ambiguous + no_ref_total + non_finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from contract import layout
from contract.files import atomic_path, dump_json
from contract.manifest import ModelEntry
from contract.model_key import KEY_COLUMNS
from f07_validation.deployrun import DeployRun, DeployRunError, read_json
from f07_validation.heldout import held_out_statement
from f07_validation.matching import (AMBIGUOUS, NO_REFERENCE, REFERENCED, Reference,
                                     load_reference, match_references)

def confusion_file_name(model: ModelEntry) -> str:
    """The model's confusion pairs, relative to the run folder."""
    return layout.confusion_csv(model.prediction_name, model.source_f05, model.model_id)


MODEL_COLUMNS = ["objective", "prediction_name", "source_f05", "model_id", "model_family",
                 "threshold", "join"]
CONFUSION_METRICS = ["TP", "TN", "FP", "FN", "precision", "recall", "f1"]
COUNT_METRICS = ["no_ref_pred_1", "no_ref_pred_0", "no_ref_total", "ambiguous", "non_finite",
                 "referenced", "predictions"]
METRICS = CONFUSION_METRICS + COUNT_METRICS


def confusion_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """TP/TN/FP/FN and precision/recall/f1 of the positive class; a ratio whose
    denominator is 0 is 0 (no positive predicted, or none in the reference), and no
    referenced window at all gives all zeros."""
    if len(y_true) == 0:
        return {"TP": 0, "TN": 0, "FP": 0, "FN": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0
    )
    return {"TP": int(tp), "TN": int(tn), "FP": int(fp), "FN": int(fn),
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


def load_references(run: DeployRun) -> dict[str, Reference]:
    """One reference per objective of the manifest (its models share the dataset)."""
    return {objective: load_reference(run.dataset_path(objective), objective,
                                      spec.input_column, spec.label_column,
                                      run.manifest.package_dir / spec.recovered_t0 if spec.recovered_t0 else None)
            for objective, spec in run.references.items()}


def match_deployrun(run: DeployRun) -> tuple[pd.DataFrame, dict[str, Reference]]:
    """The run's prediction log matched to its references, with `finite` added; refuses
    log rows of a model the manifest does not list (a log from another serve)."""
    predictions = run.read_predictions()
    logged = predictions.select(KEY_COLUMNS).group_by(KEY_COLUMNS).aggregate([]).to_pylist()
    stray = sorted({tuple(row[c] for c in KEY_COLUMNS) for row in logged}
                   - {model.key_values for model in run.models})
    if stray:
        raise DeployRunError(
            f"{run.predictions_path} has predictions of models not in manifest.json "
            f"({', '.join('/'.join(key) for key in stray)}): {run.stage_fix('infer')}"
        )
    references = load_references(run)
    frame = match_references(predictions, references)
    frame["finite"] = frame["y_pred"].notna().to_numpy() & np.isfinite(frame["probability"].to_numpy())
    return frame, references


@dataclass(frozen=True)
class Scoring:
    per_model: pd.DataFrame  # one row per manifest model: MODEL_COLUMNS + METRICS
    confusion: dict[str, pd.DataFrame]  # path in the run folder -> actual,predicted rows
    summary: dict  # the content of scoring.json


def score_models(frame: pd.DataFrame, models: tuple[ModelEntry, ...],
                 references: dict[str, Reference]) -> tuple[pd.DataFrame, dict]:
    """Per-model metrics (in manifest order, zeros for a model with no prediction) and
    each model's `actual,predicted` rows, in log order."""
    finite = frame["finite"].to_numpy()
    status = frame["ref_status"].to_numpy()
    y_pred = frame["y_pred"].fillna(-1).to_numpy(dtype=np.int8)
    buckets = pd.DataFrame({
        "predictions": True,
        "non_finite": ~finite,
        "ambiguous": finite & (status == AMBIGUOUS),
        "referenced": finite & (status == REFERENCED),
        "no_ref_total": finite & (status == NO_REFERENCE),
        "no_ref_pred_1": finite & (status == NO_REFERENCE) & (y_pred == 1),
        "no_ref_pred_0": finite & (status == NO_REFERENCE) & (y_pred == 0),
    }, index=frame.index)
    counts = pd.concat([frame[KEY_COLUMNS], buckets], axis=1).groupby(KEY_COLUMNS).sum()

    referenced = frame.loc[buckets["referenced"], KEY_COLUMNS + ["label", "y_pred"]]
    groups = dict(tuple(referenced.groupby(KEY_COLUMNS, sort=False)))
    empty = pd.DataFrame({"actual": np.array([], np.int8), "predicted": np.array([], np.int8)})
    rows, confusion = [], {}
    for model in models:
        key = model.key_values
        group = groups.get(key)
        pairs = empty if group is None else pd.DataFrame({
            "actual": group["label"].to_numpy(dtype=np.int8),
            "predicted": group["y_pred"].to_numpy(dtype=np.int8),
        })
        confusion[confusion_file_name(model)] = pairs
        model_counts = counts.loc[key] if key in counts.index else pd.Series(0, index=counts.columns)
        rows.append({
            **model.identity(),
            "model_family": model.model_family,
            "threshold": model.threshold,
            "join": references[model.objective].join,
            **confusion_metrics(pairs["actual"].to_numpy(), pairs["predicted"].to_numpy()),
            **{name: int(model_counts[name]) for name in COUNT_METRICS},
        })
    return pd.DataFrame(rows, columns=MODEL_COLUMNS + METRICS), confusion


def objective_summary(frame: pd.DataFrame, run: DeployRun,
                      references: dict[str, Reference]) -> dict:
    """How each objective was matched, counted in windows (all models of an objective
    see the same windows, so its window-level figures do not depend on the model)."""
    windows = frame.drop_duplicates(["objective", "t0"])
    names = {model.objective: model.prediction_name for model in run.models}
    summary = {}
    for objective, reference in references.items():
        mine = windows[windows["objective"] == objective]
        summary[objective] = {
            "prediction_name": names[objective],
            "dataset": run.references[objective].dataset,
            "join": reference.join,
            "reference_rows": reference.rows,
            "reference_positives": reference.positives,
            "ambiguous_contents": reference.ambiguous_contents,
            "windows": int(len(mine)),
            "referenced_windows": int((mine["ref_status"] == REFERENCED).sum()),
            "ambiguous_windows": int((mine["ref_status"] == AMBIGUOUS).sum()),
            "no_reference_windows": int((mine["ref_status"] == NO_REFERENCE).sum()),
            "ow_mismatch_windows": int(mine["ow_mismatch"].sum()),
        }
    return summary


def f05_metadata(run: DeployRun) -> dict[str, dict | None]:
    """Each source F05's `<F05 variant>/05_modeling_metadata.json` (None
    when absent: F05 runs need not be on this machine to serve their package)."""
    found = {}
    for source in sorted({model.source_f05 for model in run.models}):
        path = layout.variant_dir(layout.F05, source, run.executions) / layout.phase_file(layout.F05, layout.METADATA)
        found[source] = read_json(path, f"fix or regenerate F05 {source}") if path.exists() else None
    return found


def score_deployrun(run: DeployRun) -> Scoring:
    frame, references = match_deployrun(run)
    per_model, confusion = score_models(frame, run.models, references)
    first_t0 = int(frame["t0"].min()) if len(frame) else None
    regime = run.manifest.regime()
    span = regime.Tu * (regime.OW + regime.LT + regime.PW)
    held_out = held_out_statement(first_t0, span, f05_metadata(run))
    summary = {
        "variant": run.variant,
        "objectives": objective_summary(frame, run, references),
        "first_t0": first_t0,
        "last_t0": int(frame["t0"].max()) if len(frame) else None,
        "held_out": held_out["held_out"],
        "held_out_reason": held_out["reason"],
        "held_out_by_f05": held_out["by_f05"],
    }
    return Scoring(per_model=per_model, confusion=confusion, summary=summary)


def metrics_tree(per_model: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """`{prediction_name: {"<source_f05>__<model_id>": {metric: value}}}`. `dvc metrics
    show` reads '.' in a key as nesting, so a '.' in a name becomes '_' here (the CSV
    keeps the real names); two names that then collide are refused."""
    tree: dict[str, dict[str, dict]] = {}
    for row in per_model.to_dict("records"):
        name = row["prediction_name"].replace(".", "_")
        model = f"{row['source_f05']}__{row['model_id']}".replace(".", "_")
        if model in tree.setdefault(name, {}):
            raise DeployRunError(
                f"models {row['prediction_name']}/{row['source_f05']}__{row['model_id']} and "
                f"another one share the metrics key {name}.{model} once '.' is replaced by '_'"
            )
        tree[name][model] = {metric: row[metric] for metric in METRICS}
    return tree


def write_dvclive_metrics(tree: dict[str, dict[str, dict]], out_dir: Path) -> None:
    """`metrics.json` through dvclive, as `dvc metrics show` expects it. Only the
    summary is written: `Live.end()` would also try to save an experiment and, inside
    `dvc exp run`, `git add` the folder; `dvcyaml=False` keeps it off dvc.yaml. The
    bytes depend only on the values and the (sorted) logging order (json, indent 4).
    `Live()` opens the DVC repo of the working directory (and would `dvc init` a git
    repo that has none); `out_dir` is the staging folder, which `Live()` empties of
    dvclive files, never the final one."""
    from dvclive import Live  # imported here: it loads dvc, which the report stage never needs

    live = Live(dir=str(out_dir), dvcyaml=False, save_dvc_exp=False)
    for name in sorted(tree):
        for model in sorted(tree[name]):
            for metric, value in tree[name][model].items():
                live.log_metric(f"{name}/{model}/{metric}", value, plot=False)
    live.make_summary()


def write_scoring(scoring: Scoring, run: DeployRun) -> None:
    """Replace the run's metrics folder with metrics_per_model.csv, metrics.json,
    scoring.json and confusion/<prediction_name>__<source_f05>__<model_id>.csv, all or
    nothing. The staging folder has the metrics folder's name, so its parent stands for
    the run folder and the layout's paths apply to it."""
    tree = metrics_tree(scoring.per_model)
    with atomic_path(run.path(layout.METRICS_DIR)) as out:
        staged = out.parent
        (staged / layout.CONFUSION_DIR).mkdir(parents=True)
        scoring.per_model.to_csv(staged / layout.METRICS_PER_MODEL, index=False, lineterminator="\n")
        write_dvclive_metrics(tree, out)
        (staged / layout.SCORING).write_text(dump_json(scoring.summary), encoding="utf-8")
        for name, pairs in scoring.confusion.items():
            pairs.to_csv(staged / name, index=False, lineterminator="\n")
