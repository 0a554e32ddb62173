"""A small sealed package whose F04 datasets are cut from the replay's own events, and a
real server process to replay it through, with or without an injected fault.

Three real Keras models (one per family, two objectives). The replay is 1,800 s of
synthetic F02 rows (~170 windows of the regime below); the F04 datasets are the F03
windows of those rows, labelled at random, so every replayed window has a reference.
Faults are injected through ``tests/server_faults/sitecustomize.py``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.packages import ModelDef, build_served_package, reseal_package, synthetic_event_rows, write_manifest
from contract.defaults import DEFAULT_LOG_CSV_COMPRESSION
from contract.layout import PACKAGE_METADATA, PREDICTIONS, PREDICTIONS_CSV, package_dataset
from contract.manifest import load_manifest
from contract.windows import Regime, f03_windows
from f07_validation.client import ServerProcess, replay
from f07_validation.infer import PredictionLog

FAULTS = Path(__file__).resolve().parent / "server_faults"
ORIGIN = 1_700_000_000
REGIME = Regime(Tu=10, OW=6, LT=1, PW=6, origin=ORIGIN)
VOCAB = list(range(1, 41))  # replay codes run 1..44: 41-44 are unknown to every model
MODELS = [
    ModelDef("obj_a", "dense_bow", "v401", "v501", vocab=VOCAB, seed=1),
    ModelDef("obj_a", "sequence_embedding", "v401", "v502", vocab=VOCAB, width=20, seed=2),
    ModelDef("obj_b", "cnn1d", "v402", "v503", vocab=VOCAB, width=24, seed=3),
]
DENSE, EMBEDDING, CNN = "v401/v501/obj_a", "v401/v502/obj_a", "v402/v503/obj_b"


def build_validated_package(root: Path, *, with_t0: bool = True, replay_rows: int | None = None,
                            contradicting_labels: bool = False, mean_events: float = 0.6,
                            threshold: float | None = None) -> Path:
    """A sealed package (replay of 1,800 s, ~170 windows) whose F04 datasets are the F03
    windows of the replay's events, labelled at random; returns the manifest path.
    ``replay_rows`` cuts the replay file short while the package still declares the
    whole span (a replay that misses F04 windows of its range). ``contradicting_labels``
    writes every window twice, once with each label (every content ambiguous).
    ``mean_events`` 0: F02 rows that hold no event (every window empty). ``threshold``: the
    decision threshold every model's summary declares (default 0.5)."""
    rows = synthetic_event_rows(1800, start=ORIGIN, mean_events=mean_events, seed=7)
    models = MODELS if threshold is None else [dataclasses.replace(m, threshold=threshold) for m in MODELS]
    manifest = build_served_package(root, models, replay=rows, regime=REGIME)
    package = manifest.parents[2] / "06_packaging" / "v601"
    ow, _ = f03_windows(rows, REGIME)
    rng = np.random.default_rng(0)
    metadata = json.loads((package / PACKAGE_METADATA).read_text())
    for objective in ("v401", "v402"):
        labels = rng.integers(0, 2, len(ow)).astype(np.int8)
        events = ow.lists()
        if contradicting_labels:
            events, labels = events + events, np.concatenate([labels, 1 - labels])
        columns = {"OW_events": pa.array(events, pa.list_(pa.int32())), "label": pa.array(labels)}
        if with_t0:
            columns["t0"] = pa.array(ow.t0, pa.int64())
        pq.write_table(pa.table(columns), package / package_dataset(objective))
        metadata["datasets"][objective].update(
            rows=len(labels), positives=int(labels.sum()), has_t0=with_t0,
            join="t0" if with_t0 else "ow_content",
            join_note="the F04 dataset carries t0" if with_t0 else "t0 not recoverable: test package")
    if replay_rows is not None:
        replay_path = package / metadata["replay"]["path"]
        pq.write_table(pq.read_table(replay_path).slice(0, replay_rows), replay_path)
    (package / PACKAGE_METADATA).write_text(json.dumps(metadata))
    reseal_package(package)
    return write_manifest(manifest, package)


def serve_and_log(manifest_path: Path, monkeypatch, fault: dict | None = None, batch_size: int = 32,
                  csv_compression: str = DEFAULT_LOG_CSV_COMPRESSION) -> Path:
    """Replay the package through a real server process (with ``fault`` injected) into a
    real prediction log (its CSV copy as ``csv_compression`` says); returns the log's path."""
    if fault is not None:
        monkeypatch.setenv("PYTHONPATH", str(FAULTS))
        monkeypatch.setenv("F07_TEST_FAULT", json.dumps(fault))
    log_path = manifest_path.parent / PREDICTIONS
    manifest = load_manifest(manifest_path)
    with ServerProcess(manifest_path) as server, \
            PredictionLog(log_path, manifest_path.parent / PREDICTIONS_CSV[csv_compression], csv_compression) as log:
        for batch in replay(server.url, manifest, batch_size=batch_size, progress=None):
            log.add(batch)
    monkeypatch.delenv("F07_TEST_FAULT", raising=False)
    return log_path


