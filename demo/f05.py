"""Demo F05: train one model family on one objective and write it as upstream does.

    python -m demo.f05 v501        # reads params.yaml demo.f05.v501

Every trial listed in the variant's ``trials`` is trained with the same seed on the
oldest windows and saved as ``experiments/exp_NNN/model.h5`` with its ``metrics.json``;
the trial with the best validation f1 becomes the official model
``models/<model_id>/model.h5`` (a byte copy of its experiment file) beside
``model_summary.json``. ``model_id`` is the lower-cased ``prediction_name`` of the F04
objective, as upstream. Upstream picks by validation recall, which favours a model that
flags everything; f1 keeps the demo's official models useful. ``05_modeling_metadata.json``
records the held-out test figures of the official model, next to those of a constant
always-positive predictor, and the ``t0`` span of every split (F07 uses it to tell
whether a replay range is held out).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf
import yaml

from contract import layout
from contract.files import dump_json
from contract.windows import list_arrays
from demo.artifacts import (DemoError, PHASES, existing, phase_file, require, stage_main, variant_dir,
                            yaml_text)
from demo.families import FAMILIES, encode, vectorization
from demo.train import binary_metrics, positive_weight, probabilities, time_split, train_trial

PHASE = "f05"
THRESHOLD = 0.5     # upstream's fixed decision threshold


def build(root: Path, variant: str, params: dict) -> dict:
    where = f"params.yaml demo.{PHASE}.{variant}"
    parent = require(params, "parent_variant", where)
    family = require(params, "model_family", where)
    if family not in FAMILIES:
        raise DemoError(f"{where}: key 'model_family' is {family!r}; expected one of {list(FAMILIES)}")
    trials = require(params, "trials", where)
    if not isinstance(trials, list) or not trials:
        raise DemoError(f"{where}: key 'trials' must be a non-empty list of hyperparameter mappings")
    seed = require(params, "seed", where)

    reader = f"demo F05 {variant}"
    f04_params = yaml.safe_load(existing(variant_dir(root, "f04", parent) / layout.PARAMS_FILE, reader).read_text())
    prediction_name = f04_params["prediction_name"]
    model_id = prediction_name.lower().replace(" ", "_")
    dataset = pq.read_table(existing(phase_file(root, "f04", parent, layout.DATASET), reader))
    codes, offsets = list_arrays(dataset.column("OW_events"))
    y = dataset.column("label").to_numpy().astype(np.int64)
    t0 = dataset.column("t0").to_numpy()

    split = time_split(len(y), require(params, "split", where), where)
    train_rows = split["train"]
    train_codes = codes[offsets[train_rows.start]:offsets[train_rows.stop]]
    train_offsets = offsets[train_rows.start:train_rows.stop + 1] - offsets[train_rows.start]
    spec = vectorization(family, train_codes, train_offsets, params.get("max_len_percentile", 95))
    x = encode(spec, codes, offsets, f"{reader} vectorization")
    parts = {name: (x[rows], y[rows]) for name, rows in split.items()}
    weight = positive_weight(parts["train"][1], require(params, "positive_weight", where), where)

    files, experiments, best = {}, [], None
    with tempfile.TemporaryDirectory(prefix="demo-f05-") as scratch:
        for number, hp in enumerate(trials):
            model = train_trial(family, spec, hp, *parts["train"], epochs=require(params, "epochs", where),
                                batch_size=require(params, "batch_size", where), weight=weight, seed=seed,
                                where=f"{where}.trials[{number}]")
            figures = {name: binary_metrics(parts[name][1], probabilities(model, parts[name][0]), THRESHOLD)
                       for name in ("val", "test")}
            experiment = f"exp_{number:03d}"
            saved = Path(scratch) / f"{experiment}.h5"
            model.save(saved)
            files[f"{layout.F05_EXPERIMENTS}/{experiment}/{layout.MODEL_FILE}"] = saved.read_bytes()
            record = {"experiment": experiment, "hyperparameters": hp, **figures}
            files[f"{layout.F05_EXPERIMENTS}/{experiment}/{layout.EXPERIMENT_METRICS}"] = dump_json(record)
            experiments.append(record)
            if best is None or figures["val"]["f1"] > best["val"]["f1"]:
                best = record

    files[f"{layout.F05_MODELS}/{model_id}/{layout.MODEL_FILE}"] = files[f"{layout.F05_EXPERIMENTS}/{best['experiment']}/{layout.MODEL_FILE}"]
    files[f"{layout.F05_MODELS}/{model_id}/{layout.MODEL_SUMMARY}"] = dump_json({
        "prediction_name": model_id,
        "model_family": family,
        "threshold": THRESHOLD,
        "vectorization": spec,
        "variant": variant,
        "parent_variant": parent,
        "selected_experiment": best["experiment"],
    })
    test_rate = parts["test"][1].mean() if len(parts["test"][1]) else 0.0
    files[layout.phase_file(PHASES[PHASE], layout.METADATA)] = dump_json({
        "phase": PHASES[PHASE],
        "variant": variant,
        "parent_variant": parent,
        "prediction_name": model_id,
        "model_id": model_id,
        "model_family": family,
        "threshold": THRESHOLD,
        "selection": {"rule": "max validation f1, first trial on ties", "selected_experiment": best["experiment"]},
        "positive_weight": round(weight, 6),
        "splits": {name: _span(rows, y, t0) for name, rows in split.items()},
        "test_metrics": best["test"],
        "test_baseline_always_positive": {"precision": round(float(test_rate), 6),
                                          "recall": 1.0 if test_rate else 0.0,
                                          "f1": round(float(2 * test_rate / (1 + test_rate)), 6)},
        "experiments": experiments,
    })
    files[layout.PARAMS_FILE] = yaml_text(params)
    return files


def _span(rows: slice, y: np.ndarray, t0: np.ndarray) -> dict:
    empty = rows.stop == rows.start
    return {"rows": rows.stop - rows.start, "positives": int(y[rows].sum()),
            "t0_first": None if empty else int(t0[rows.start]), "t0_last": None if empty else int(t0[rows.stop - 1])}


def main() -> None:
    """The stage pins TensorFlow to one thread before anything initialises it: with op
    determinism on, the oneDNN convolution of cnn1d still gives different weights for
    different thread counts, so a 1-core and a 2-core machine would not agree on the
    bytes. One thread makes them agree (and is no slower for models this small)."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    stage_main(PHASE, build, "demo F05: train a model family on one objective")


if __name__ == "__main__":
    main()
