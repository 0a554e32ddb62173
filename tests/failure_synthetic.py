"""A small F07 run with known failures and known alarms, for the failure-level
evaluation: an F02 event catalog, an F06 package (metadata with each objective's
prediction_objective, the replay, F04 datasets with t0) and an F07 run (manifest, log).

Regime: Tu = 10 s, OW = 2, LT = 1, PW = 3, so the window starting at t0 observes
[t0, t0 + 20) and predicts over [t0 + 30, t0 + 60). The replay has ROWS rows, one per
Tu; the windows whose OW lies in it start at k = 0 .. WINDOWS - 1 (t0 = ORIGIN + 10 k).
The F04 labels are written from the failures by brute force here (PW covers one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ORIGIN = 1_700_000_000
TU, OW, LT, PW = 10, 2, 1, 3
ROWS = 30
WINDOWS = ROWS - OW   # t0 + OW*Tu <= the last segs
CATALOG = {"noise": 1, "fail_a": 5, "fail_b": 6}
OBJECTIVES = {"v401": {"operator": "OR", "events": ["fail_a", "fail_b"]},
              "v402": {"operator": "AND", "events": ["fail_a", "noise"]}}
NAMES = {"v401": "unit_down", "v402": "unit_down_noisy"}


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def covers(t0: int, tf: int) -> bool:
    return t0 + (OW + LT) * TU <= tf < t0 + (OW + LT + PW) * TU


def build(root: Path, events: dict[int, list[int]], models: list[dict], rows: int = ROWS) -> Path:
    """``events``: replay row -> codes; ``models``: {objective, source_f05, probability:
    one per window (None: non-finite)}. Returns the run folder."""
    executions = root / "executions"
    _json(executions / "02_prepareeventsds" / "v201" / "02_prepareeventsds_event_catalog.json", CATALOG)
    package = executions / "06_packaging" / "v601"
    segs = [ORIGIN + TU * i for i in range(rows)]
    (package / "replay").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"segs": pa.array(segs, pa.int64()),
                             "events": pa.array([events.get(i, []) for i in range(rows)], pa.list_(pa.int32()))}),
                   package / "replay" / "replay_events.parquet")
    windows = rows - OW
    t0 = [ORIGIN + TU * k for k in range(windows)]
    ow = [[c for i in range(k, k + OW) for c in events.get(i, [])] for k in range(windows)]
    for objective, definition in OBJECTIVES.items():
        codes = {CATALOG[name] for name in definition["events"]}
        need = 1 if definition["operator"] == "OR" else len(codes)
        failures = [segs[i] for i, row in events.items() if len(codes & set(row)) >= need]
        labels = [int(any(covers(t, tf) for tf in failures)) for t in t0]
        path = package / "datasets" / objective / "04_targetengineering_dataset.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"OW_events": pa.array(ow, pa.list_(pa.int32())), "label": pa.array(labels, pa.int8()),
                                 "t0": pa.array(t0, pa.int64())}), path)
    temporal = {"Tu": {"value": TU, "source": "test"}, "OW": {"value": OW, "source": "test"},
                "LT": {"value": LT, "source": "test"}, "PW": {"value": PW, "source": "test"},
                "origin_segs": ORIGIN, "window_strategy": "synchro"}
    identities = [{"objective": m["objective"], "prediction_name": NAMES[m["objective"]], "source_f05": m["source_f05"],
                   "model_id": NAMES[m["objective"]], "model_family": "dense_bow"} for m in models]
    _json(package / "06_packaging_metadata.json", {
        "phase": "06_packaging", "variant": "v601",
        "lineage": {"f02": "v201", "f03": {"v301": "v201"}, "f04": {o: "v301" for o in OBJECTIVES},
                    "f05": {m["source_f05"]: m["objective"] for m in models}},
        "temporal": temporal,
        "datasets": {o: {"path": f"datasets/{o}/04_targetengineering_dataset.parquet", "prediction_name": NAMES[o],
                         "objective": d, "join": "t0"} for o, d in OBJECTIVES.items()},
        "replay": {"path": "replay/replay_events.parquet", "source_f02": "v201", "rows": rows,
                   "first_segs": segs[0], "last_segs": segs[-1]},
        "seal": {"algorithm": "sha256", "files": {}, "metadata_sha256": "e" * 64, "digest": "d" * 64},
    })
    run = executions / "07_deployrun" / "v701"
    (root / "params.yaml").write_text(yaml.safe_dump({"deployrun": {"v701": {
        "parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0}, "batch_size": 4}}}),
        encoding="utf-8")
    _json(run / "manifest.json", {
        "variant": "v701", "parent_variant_f06": "v601", "package_dir": "../../06_packaging/v601",
        "package_digest": "d" * 64, "temporal": temporal, "batch_size": 4,
        "models": [{**identity, "threshold": 0.5, "model_path": "m/model.h5", "summary_path": "m/model_summary.json",
                    "vectorization": {"vectorization": "dense_bow", "vocab": [1, 5, 6], "input_dim": 3},
                    "input_shape": [None, 3], "dataset": f"datasets/{identity['objective']}/04_targetengineering_dataset.parquet",
                    "input_column": "OW_events", "label_column": "label"} for identity in identities],
    })
    (run / "logs").mkdir(parents=True, exist_ok=True)
    log_rows = [(k, j) for k in range(windows) for j in range(len(models))]
    probability = [models[j]["probability"][k] for k, j in log_rows]
    pq.write_table(pa.table({
        "t0": pa.array([t0[k] for k, _ in log_rows], pa.int64()),
        "OW_events": pa.array([ow[k] for k, _ in log_rows], pa.list_(pa.int64())),
        **{column: pa.array([identities[j][column] for _, j in log_rows], pa.string())
           for column in ("objective", "prediction_name", "source_f05", "model_id")},
        "probability": pa.array([float("nan") if p is None else p for p in probability], pa.float64()),
        "y_pred": pa.array([None if p is None else int(p >= 0.5) for p in probability], pa.int8()),
    }), run / "logs" / "raw_predictions.parquet")
    return run


def probabilities(positive: set[int], windows: int = WINDOWS, seed: int = 0, non_finite=()) -> list:
    """One probability per window: in [0.55, 0.95) for ``positive`` windows, in [0.05,
    0.45) for the others, None for ``non_finite``."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.05, 0.45, windows) + np.isin(np.arange(windows), list(positive)) * 0.5
    return [None if k in non_finite else float(round(v, 4)) for k, v in enumerate(values)]
