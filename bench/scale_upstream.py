"""An upstream-shaped F02–F05 of any length, for the scale benchmark (``bench.bench_scale``).

    python -m bench.scale_upstream OUT_DIR [--rows 4000000] [--seed 17]

writes ``OUT_DIR/executions/`` (F02 v201, F03 v301, F04 v401 and v402, F05 v501–v503) and
``OUT_DIR/params.yaml`` (F06 v601 packaging the three models, F07 v701 validating it), a
project folder the stages run in as ``dvc repro`` runs them.

The shape is that of the real upstream run this project serves (3,887,242 F02 rows):
- F02: one row per Tu = 10 s, ~7% of them holding events (1 + Poisson(0.4) codes out of
  122, frequent codes far more common than rare ones); ``Tu`` a float in the metadata.
- F03: OW = 600, LT = 100, PW = 100 (units of Tu), ``synchro``, ``Tu: null`` in its
  params; **no ``t0`` column** (real upstream files carry only the row order). Its rows
  follow upstream's window count rule: a start every Tu from the first F02 row while
  ``t0 + (OW+LT+PW)·Tu`` is at most the last row, kept when its OW or PW holds an event
  (cut by the project's F03 implementation, ``f03_windows``, a chunk at a time).
- F04: two OR objectives over rare codes (a few % positive windows), rows one to one
  with F03.
- F05: real Keras models of the three families at upstream's input sizes (dense_bow 122
  inputs, sequence_embedding max_len 247, cnn1d max_len 334), upstream's largest
  hyperparameters, built by the demo's F05 networks and untrained (their weights are
  seeded; only their cost matters here).

Everything is generated and written a chunk at a time, so memory does not grow with
``--rows``; the same seed gives the same files.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow start-up noise off stderr)
import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from contract import layout
from contract.windows import EventRows, Regime, Windows
from demo.families import build
from demo.targets import labels
from f06_packaging.reference import f03_window_chunks

DEFAULT_ROWS = 4_000_000
ORIGIN = 1_600_000_000  # epoch s of the first F02 row
TU, OW, LT, PW = 10, 600, 100, 100
EVENT_ROW_SHARE = 0.07
EXTRA_CODES_MEAN = 0.4  # codes per event row: 1 + Poisson(this)
N_CODES = 122
ROWS_PER_CHUNK = 1_000_000  # F02 rows generated at a time
# windows cut and written at a time (one row group each): the row groups of the stand-in
# for upstream's F03/F04 files, upstream's choice, not the batch this project reads
# (contract.row_stream.BATCH_ROWS); kept apart so that tuning ours leaves the data alike
WINDOWS_PER_CHUNK = 65_536
# Two objectives over rare codes; three models as upstream's families (input sizes of
# upstream's real models).
OBJECTIVES = {"v401": ("scale_rare_a", [120, 121]), "v402": ("scale_rare_b", [118, 122])}
MODELS = [("v501", "v401", "dense_bow", N_CODES), ("v502", "v401", "sequence_embedding", 247),
          ("v503", "v402", "cnn1d", 334)]
F02_ID, F03_ID = "v201", "v301"
# The largest networks of upstream's F05 search space.
UPSTREAM_LARGEST_HP = {"n_layers": 2, "units": 64, "embed_dim": 16, "filters": 32, "kernel_size": 5}


def code_probabilities() -> np.ndarray:
    """Zipf-like: code k drawn with weight k^-0.8 (codes 1..N_CODES)."""
    weights = np.arange(1, N_CODES + 1, dtype=np.float64) ** -0.8
    return weights / weights.sum()


def f02_chunks(rows: int, seed: int):
    """``EventRows`` of ``ROWS_PER_CHUNK`` rows at a time, one row per Tu."""
    rng = np.random.default_rng(seed)
    probabilities = code_probabilities()
    for first in range(0, rows, ROWS_PER_CHUNK):
        n = min(ROWS_PER_CHUNK, rows - first)
        segs = ORIGIN + TU * np.arange(first, first + n, dtype=np.int64)
        lengths = np.where(rng.random(n) < EVENT_ROW_SHARE, 1 + rng.poisson(EXTRA_CODES_MEAN, n), 0)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = rng.choice(np.arange(1, N_CODES + 1), size=int(offsets[-1]), p=probabilities)
        yield EventRows(segs=segs, codes=codes.astype(np.int64), offsets=offsets)


def _list_array(codes: np.ndarray, offsets: np.ndarray, value_type) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(codes, value_type))


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_yaml(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def write_f02(executions: Path, rows: int, seed: int) -> EventRows:
    """The F02 variant; returns its rows (small: an event is in one row, but in OW/Tu windows)."""
    folder = layout.variant_dir(layout.F02, F02_ID, executions)
    folder.mkdir(parents=True)
    schema = pa.schema([("segs", pa.int64()), ("events", pa.list_(pa.int64()))])
    parts = []
    with pq.ParquetWriter(folder / layout.phase_file(layout.F02, layout.DATASET), schema) as writer:
        for chunk in f02_chunks(rows, seed):
            writer.write_table(pa.table([pa.array(chunk.segs), _list_array(chunk.codes, chunk.offsets, pa.int64())],
                                        schema=schema))
            parts.append(chunk)
    events = parts[0]
    for part in parts[1:]:
        events = events.concat(part)
    _write_json(folder / layout.phase_file(layout.F02, layout.EVENT_CATALOG),
                {f"event_{code:03d}": code for code in range(1, N_CODES + 1)})
    _write_json(folder / layout.phase_file(layout.F02, layout.METADATA),
                {"Tu": float(TU), "n_rows": rows, "n_events": int(len(events.codes))})
    _write_yaml(folder / layout.PARAMS_FILE, {"parent_variant": "v101", "Tu": float(TU)})
    return events


def write_f03_f04(executions: Path, events: EventRows) -> int:
    """F03 and both F04 datasets, one pass over the windows; returns the window count."""
    f03 = layout.variant_dir(layout.F03, F03_ID, executions)
    f04 = {objective: layout.variant_dir(layout.F04, objective, executions) for objective in OBJECTIVES}
    for folder in [f03, *f04.values()]:
        folder.mkdir(parents=True)
    lists = pa.list_(pa.int32())
    f03_schema = pa.schema([("OW_events", lists), ("PW_events", lists)])
    f04_schema = pa.schema([("OW_events", lists), ("label", pa.int8())])
    writers = {"f03": pq.ParquetWriter(f03 / layout.phase_file(layout.F03, layout.DATASET), f03_schema)}
    writers.update({objective: pq.ParquetWriter(folder / layout.phase_file(layout.F04, layout.DATASET), f04_schema)
                    for objective, folder in f04.items()})
    windows, positives = 0, dict.fromkeys(OBJECTIVES, 0)
    try:
        for ow, pw in f03_window_chunks(events, Regime(TU, OW, LT, PW, int(events.segs[0])),
                                        chunk=WINDOWS_PER_CHUNK):
            ow_column = _list_array(ow.codes, ow.offsets, pa.int32())
            writers["f03"].write_table(pa.table([ow_column, _list_array(pw.codes, pw.offsets, pa.int32())],
                                                schema=f03_schema))
            for objective, (_, codes) in OBJECTIVES.items():
                label = labels(pw.codes, pw.offsets, np.asarray(codes, np.int64), "OR")
                positives[objective] += int(label.sum())
                writers[objective].write_table(pa.table([ow_column, pa.array(label, pa.int8())], schema=f04_schema))
            windows += len(ow)
    finally:
        for writer in writers.values():
            writer.close()
    _write_json(f03 / layout.phase_file(layout.F03, layout.METADATA), {"Tu": float(TU), "OW": OW, "LT": LT, "PW": PW,
                                                            "n_windows": windows})
    _write_yaml(f03 / layout.PARAMS_FILE, {"parent_variant": F02_ID, "OW": OW, "LT": LT, "PW": PW, "Tu": None,
                                      "window_strategy": "synchro", "nan_strategy": "preserve"})
    for objective, (name, codes) in OBJECTIVES.items():
        _write_json(f04[objective] / layout.phase_file(layout.F04, layout.METADATA),
                    {"prediction_name": name, "n_windows": windows, "n_positive": positives[objective]})
        _write_yaml(f04[objective] / layout.PARAMS_FILE, {
            "parent_variant": F03_ID, "prediction_name": name,
            "prediction_objective": {"operator": "OR", "events": [f"event_{code:03d}" for code in codes]}})
    return windows


def write_f05(executions: Path) -> None:
    """One F05 run per model, built by the demo's F05 networks (upstream's), seeded."""
    import keras

    for number, (variant, objective, family, width) in enumerate(MODELS):
        name = OBJECTIVES[objective][0]
        folder = layout.variant_dir(layout.F05, variant, executions) / layout.F05_MODELS / name
        folder.mkdir(parents=True)
        _write_yaml(folder.parents[1] / layout.PARAMS_FILE, {"parent_variant": objective, "model_family": family})
        vocab = list(range(1, N_CODES + 1))
        spec = ({"vectorization": "dense_bow", "vocab": vocab, "input_dim": width} if family == "dense_bow" else
                {"vectorization": "sequence", "vocab": vocab, "vocab_size": len(vocab), "max_len": width})
        keras.utils.set_random_seed(number)
        build(family, spec, {**UPSTREAM_LARGEST_HP, "dropout": 0.0}, f"scale F05 {variant}").save(folder / layout.MODEL_FILE)
        _write_json(folder / layout.MODEL_SUMMARY, {"prediction_name": name, "model_family": family,
                                                    "threshold": 0.5, "vectorization": spec})


def project_params() -> dict:
    """F06 v601 packaging every model over the whole replay; F07 v701 on a free port."""
    models: dict[str, list] = {}
    for variant, objective, _, _ in MODELS:
        models.setdefault(objective, []).append({"model_id": OBJECTIVES[objective][0], "source_f05": variant})
    return {
        "packaging": {"v601": {
            "parent_variants_f05": [variant for variant, *_ in MODELS],
            "temporal": {"Tu": None, "OW": None, "LT": None, "PW": None},
            "models": models,
            "replay": {"source": {"dataset_id": F02_ID}, "time_range": {"start": None, "end": None}},
        }},
        "deployrun": {"v701": {"parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0},
                               "batch_size": 256, "check_equivalence": True}},
    }


def generate(out_dir: Path, rows: int = DEFAULT_ROWS, seed: int = 17) -> dict:
    """Write the upstream and the project's params.yaml under ``out_dir``; return the sizes."""
    executions = Path(out_dir) / layout.EXECUTIONS
    events = write_f02(executions, rows, seed)
    windows = write_f03_f04(executions, events)
    write_f05(executions)
    _write_yaml(Path(out_dir) / layout.PARAMS_FILE, project_params())
    return {"f02_rows": rows, "event_rows": int(np.count_nonzero(np.diff(events.offsets))),
            "windows": windows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="F02 rows (default %(default)s)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    if args.rows <= (OW + LT + PW):
        parser.error(f"--rows must exceed OW+LT+PW = {OW + LT + PW} to hold one window")
    print(json.dumps(generate(args.out_dir, args.rows, args.seed)))


if __name__ == "__main__":
    main()
