"""A small, hand-checkable F07 run on disk (params.yaml, an F06 package's metadata and
F04 datasets, the F07 manifest and logs, F05 metadata), for the scoring and report tests.

Eight windows on a 10 s grid, two objectives:
- v401 "power_high": F04 dataset WITH `t0` (windows 0..5 referenced, 6..7 not), scored
  by two models that share a model_id (v501 and v502); v502 emits two non-finite outputs.
- v402 "temp.alarm" (a '.' on purpose: metrics keys must not keep it): F04 dataset
  WITHOUT `t0`, so matched by OW content; content [4, 5] has both labels (ambiguous),
  content [9] is not in it.
The expected figures are worked out by hand in the tests, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from contract import layout

REPO = Path(__file__).resolve().parents[1]
ORIGIN = 1_700_000_000
TU = 10
T0 = [ORIGIN + TU * k for k in range(8)]
OW = [[1, 2], [3], [], [4, 5], [9], [2, 1], [4, 5], [3]]

V401_LABELS = [0, 1, 1, 0, 0, 1]  # windows 0..5
V402_ROWS = [([1, 2], 1), ([3], 0), ([], 0), ([4, 5], 1), ([4, 5], 0), ([2, 1], 0), ([3], 0), ([7], 1)]

MODELS = [  # manifest order: sorted by (objective, source_f05, model_id)
    {"objective": "v401", "prediction_name": "power_high", "source_f05": "v501",
     "model_id": "power_high", "model_family": "dense_bow"},
    {"objective": "v401", "prediction_name": "power_high", "source_f05": "v502",
     "model_id": "power_high", "model_family": "sequence_embedding"},
    {"objective": "v402", "prediction_name": "temp.alarm", "source_f05": "v503",
     "model_id": "temp.alarm", "model_family": "cnn1d"},
]
Y_PRED = [  # per model, per window; None = non-finite output
    [0, 1, 0, 1, 0, 1, 1, 0],
    [0, 0, None, 0, 0, 0, None, 0],
    [1, 0, 0, 1, 1, 0, 0, 1],
]

TEMPORAL = {
    "Tu": {"value": float(TU), "source": "inherited from F03 v301 (03_preparewindowsds_metadata.json)"},
    "OW": {"value": 2, "source": "inherited from F03 v301 (params.yaml)"},
    "LT": {"value": 0, "source": "inherited from F03 v301 (params.yaml)"},
    "PW": {"value": 2, "source": "set in params.yaml packaging.v601.temporal"},
    "origin_segs": ORIGIN,
    "window_strategy": "synchro",
}
DIGEST = "d" * 64


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _dataset(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def write_package(root: Path) -> Path:
    package = root / "executions" / "06_packaging" / "v601"
    _dataset(package / "datasets" / "v401" / "04_targetengineering_dataset.parquet", {
        "OW_events": pa.array(OW[:6], type=pa.list_(pa.int32())),
        "label": pa.array(V401_LABELS, type=pa.int8()),
        "t0": pa.array(T0[:6], type=pa.int64()),
    })
    _dataset(package / "datasets" / "v402" / "04_targetengineering_dataset.parquet", {
        "OW_events": pa.array([ow for ow, _ in V402_ROWS], type=pa.list_(pa.int32())),
        "label": pa.array([label for _, label in V402_ROWS], type=pa.int8()),
    })
    _json(package / "06_packaging_metadata.json", {
        "phase": "06_packaging",
        "variant": "v601",
        "lineage": {"f02": "v201", "f03": ["v301"], "f04": {"v401": "v301", "v402": "v301"},
                    "f05": {"v501": "v401", "v502": "v401", "v503": "v402"}},
        "temporal": TEMPORAL,
        "models": [{**m, "threshold": 0.5,
                    "path": f"models/{m['objective']}/{m['source_f05']}__{m['model_id']}"}
                   for m in MODELS],
        "replay": {"path": "replay/replay_events.parquet", "source_f02": "v201", "rows": 90,
                   "events": 120, "first_segs": ORIGIN, "last_segs": ORIGIN + 90,
                   "time_range": {"start": None, "end": None}},
        "seal": {"algorithm": "sha256", "files": {}, "metadata_sha256": "e" * 64, "digest": DIGEST},
    })
    return package


def write_f05_metadata(root: Path) -> None:
    """v501 records its split times as demo/f05.py does (its fitted windows end exactly
    at the first replayed window: held out); v502 has no metadata; v503's is
    upstream-like, without times."""
    f05 = root / "executions" / "05_modeling"
    span = TU * (2 + 0 + 2)
    _json(f05 / "v501" / "05_modeling_metadata.json", {"splits": {
        "train": {"rows": 90, "positives": 9, "t0_first": ORIGIN - 1000, "t0_last": ORIGIN - 100},
        "val": {"rows": 5, "positives": 1, "t0_first": ORIGIN - 90, "t0_last": ORIGIN - span},
        "test": {"rows": 3, "positives": 1, "t0_first": ORIGIN - 30, "t0_last": ORIGIN - 10}}})
    _json(f05 / "v503" / "05_modeling_metadata.json", {"split_sizes": {"train": 7, "val": 1, "test": 2}})


def write_run(root: Path, *, timing: dict | None = None, verdict: dict | None = None) -> Path:
    """The F07 variant v701 as serve and infer leave it; returns its folder."""
    run = root / "executions" / "07_deployrun" / "v701"
    (root / "params.yaml").write_text(yaml.safe_dump({"deployrun": {"v701": {
        "parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0},
        "batch_size": 4, "check_equivalence": True,
        # v402's content [4, 5] has both labels: 5 of its 7 predictions on F04 windows get one
        "min_scored_share": 0.7}}}), encoding="utf-8")
    _json(run / "manifest.json", {
        "variant": "v701", "parent_variant_f06": "v601",
        "package_dir": "../../06_packaging/v601", "package_digest": DIGEST,
        "temporal": TEMPORAL, "batch_size": 4,
        "models": [{**m, "threshold": 0.5,
                    "model_path": f"models/{m['objective']}/{m['source_f05']}__{m['model_id']}/model.h5",
                    "summary_path": f"models/{m['objective']}/{m['source_f05']}__{m['model_id']}/model_summary.json",
                    "vectorization": {"vectorization": "dense_bow", "vocab": [1, 2, 3, 4, 5], "input_dim": 5},
                    "input_shape": [None, 5],
                    "dataset": f"datasets/{m['objective']}/04_targetengineering_dataset.parquet",
                    "input_column": "OW_events", "label_column": "label"} for m in MODELS],
    })
    rows = [(k, i) for k in range(len(T0)) for i in range(len(MODELS))]
    y_pred = [Y_PRED[i][k] for k, i in rows]
    _dataset(run / "logs" / "raw_predictions.parquet", {
        "t0": pa.array([T0[k] for k, _ in rows], type=pa.int64()),
        "OW_events": pa.array([OW[k] for k, _ in rows], type=pa.list_(pa.int64())),
        **{column: pa.array([MODELS[i][column] for _, i in rows], type=pa.string())
           for column in ("objective", "prediction_name", "source_f05", "model_id")},
        "probability": pa.array([float("nan") if y is None else 0.2 + 0.6 * y for y in y_pred],
                                type=pa.float64()),
        "y_pred": pa.array(y_pred, type=pa.int8()),
    })
    keys = [f"{m['objective']}/{m['source_f05']}/{m['model_id']}" for m in MODELS]
    _json(run / "logs" / "run_summary.json", {
        "windows_sent": 8, "windows_answered": 8, "windows_with_events": sum(1 for events in OW if events),
        "rows_logged": 24, "batches": 2,
        "batch_size": 4, "first_t0": T0[0], "last_t0": T0[-1], "fault": None, "log": "logs/raw_predictions.parquet",
        "models": {key: {"non_finite": sum(y is None for y in Y_PRED[i])} for i, key in enumerate(keys)},
    })
    _json(run / "logs" / "equivalence.json", {
        "enabled": True, "tolerance": 1e-6, "windows_compared": 8, "passed": True,
        "models": {key: {"max_abs_diff": 0.0, "decision_mismatch": 0, "passed": True} for key in keys},
    })
    _json(run / layout.REFERENCE, reference_record(keys))
    if timing is not None:
        _json(run / "logs" / "timing.json", timing)
    if verdict is not None:
        _json(run / "verdict.json", verdict)
    return run


def reference_record(keys: list[str]) -> dict:
    """reference.json as the reference stage writes it for this run (its models are not
    real Keras models here): v401 joined by t0, its 6 windows compared and covered;
    v402 joined by content, coverage not measurable."""
    objectives = {
        "v401": {"join": "t0", "join_note": "the F04 dataset carries t0", "rows": 6, "distinct_contents": None,
                 "matched": 6, "compared": 6, "sampled": False, "stride": 1, "in_replay": 6},
        "v402": {"join": "ow_content", "join_note": "t0 not recoverable: no F02 here", "rows": 8,
                 "distinct_contents": 6, "matched": 5, "compared": 5, "sampled": False, "stride": 1,
                 "in_replay": None},
    }
    models = {}
    for key in keys:
        objective = key.split("/")[0]
        coverage = ({"measured": True, "in_replay": 6, "missing": 0, "first_missing_t0": [], "reason": ""}
                    if objective == "v401" else
                    {"measured": False, "in_replay": None, "missing": None, "first_missing_t0": [],
                     "reason": "the F04 dataset of v402 has no t0 (t0 not recoverable: no F02 here)"})
        compared = objectives[objective]["compared"]
        models[key] = {"objective": objective, "logged": 8, "matched": compared, "sample": compared,
                       "compared": compared, "max_abs_diff": 0.0, "mismatches": 0, "first_mismatches": [],
                       "reference_non_finite": 0, "threshold": 0.5, "threshold_source": "model_summary.json",
                       "decision_mismatches": 0, "decision_borderline": 0, "first_decision_mismatches": [],
                       "decisions": {"rows": 8, "inconsistent": 0, "first_inconsistent": []},
                       "coverage": coverage, "join_diagnosis": None}
    return {"tolerance": 1e-5, "sample_windows": 20000, "replay_span": {"first": ORIGIN, "last": ORIGIN + 90,
            "ow_seconds": 20, "origin": ORIGIN, "tu": 10}, "objectives": objectives, "models": models}


def write_everything(root: Path, **run_options) -> Path:
    write_package(root)
    write_f05_metadata(root)
    return write_run(root, **run_options)


def truncate(path: Path) -> None:
    """Keep the first half of a file, as an interrupted write or copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def damage_inside(path: Path, columns: tuple[str, ...] | None = None) -> None:
    """Overwrite the first page header of each column chunk (of ``columns``, default all) of
    the middle row group (a bad sector, a faulty copy): the footer is intact, so the file
    opens, and that data does not read."""
    metadata = pq.ParquetFile(path).metadata
    group = metadata.row_group(metadata.num_row_groups // 2)
    data = bytearray(path.read_bytes())
    for c in range(group.num_columns):
        chunk = group.column(c)
        if columns is not None and chunk.path_in_schema.split(".")[0] not in columns:
            continue
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def alter_a_value(path: Path) -> None:
    """Flip one byte near the end of the last column chunk of the middle row group, inside a
    page's values: the bytes still decode, to another value (bit rot, a faulty copy); only the
    page's CRC tells."""
    metadata = pq.ParquetFile(path).metadata
    chunk = metadata.row_group(metadata.num_row_groups // 2).column(metadata.num_columns - 1)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + chunk.total_compressed_size - 2] ^= 0x01
    path.write_bytes(bytes(data))


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The stage's stderr, which must be one `error:` line (no traceback), and exit 1."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def run_f07_stage(stage: str, root: Path, variant: str = "v701") -> subprocess.CompletedProcess:
    """A stage script as DVC runs it, from the project root (here the tmp tree `root`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"stages.{stage}", variant], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
