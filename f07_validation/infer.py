"""The infer stage of F07: replay a sealed package through a server process over HTTP.

``infer`` starts the server as its own process, replays the package through it as a
black-box client, and writes every raw prediction as it arrives (``PredictionLog``), so
memory does not grow with the replay. Wall-clock figures stay out of the tracked outputs
(``timing.json``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contract import layout
from contract.files import atomic_path, write_json_atomic
from contract.predictions import PREDICTION_CSV_SCHEMA, PREDICTION_SCHEMA
from contract.seal import verify_seal
from f07_validation.client import replay
from f07_validation.deployrun import DeployRun, DeployRunError
from f07_validation.endpoint import open_endpoint

ROWS_PER_GROUP = 65_536


class PredictionLog:
    """The raw prediction log, written as it arrives: a row per window and model,
    windows in time order and models in manifest order within a window."""

    def __init__(self, parquet_path: Path, csv_path: Path):
        self._parquet = atomic_path(parquet_path)
        self._csv = atomic_path(csv_path)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def __enter__(self):
        parquet_path, csv_path = self._parquet.__enter__(), self._csv.__enter__()
        self._parquet_writer = pq.ParquetWriter(parquet_path, PREDICTION_SCHEMA)
        self._csv_writer = pacsv.CSVWriter(csv_path, PREDICTION_CSV_SCHEMA)
        return self

    def add(self, batch) -> None:
        windows, answers = batch.windows, batch.answers
        n, m = len(windows), len(answers)
        repeated = windows.select(np.repeat(np.arange(n), m))
        probabilities = np.stack([a.probabilities for a in answers], axis=1).reshape(-1)
        answered = np.stack([a.answered for a in answers], axis=1).reshape(-1)
        y_pred = np.stack([a.y_pred for a in answers], axis=1).reshape(-1)

        def per_model(values):
            return pa.array(np.tile(np.asarray(values, dtype=object), n), pa.string())

        table = pa.Table.from_arrays([
            pa.array(repeated.t0, pa.int64()),
            pa.ListArray.from_arrays(pa.array(repeated.offsets, pa.int64()).cast(pa.int32()),
                                     pa.array(repeated.codes, pa.int64())),
            per_model([a.entry.objective for a in answers]),
            per_model([a.entry.prediction_name for a in answers]),
            per_model([a.entry.source_f05 for a in answers]),
            per_model([a.entry.model_id for a in answers]),
            pa.array(probabilities, pa.float64()),
            pa.array(y_pred, pa.int8(), mask=~answered),
        ], schema=PREDICTION_SCHEMA)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        self._parquet_writer.write_table(table, row_group_size=ROWS_PER_GROUP)
        events = pc.binary_join(pc.cast(table.column("OW_events"), pa.list_(pa.string())), " ")
        self._csv_writer.write_table(table.set_column(1, "OW_events", events))

    def __exit__(self, *exc_info):
        try:
            if exc_info[0] is None:
                self._flush()
        finally:
            self._parquet_writer.close()
            self._csv_writer.close()
            self._csv.__exit__(*exc_info)
            self._parquet.__exit__(*exc_info)


def infer(run: DeployRun) -> dict:
    """Replay the package through a server process; write the raw prediction log, the
    run summary, the equivalence measurement and (untracked) the timing."""
    settings = run.settings
    manifest = run.manifest
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise DeployRunError(check.describe())
    equivalence = None
    if settings.check_equivalence:
        from runtime.models import EquivalenceCheck  # TensorFlow, only when asked for
        equivalence = EquivalenceCheck.from_manifest(manifest)
    summary = {"windows_sent": 0, "windows_answered": 0, "batches": 0, "batch_size": settings.batch_size,
               "models": {m.key: {"non_finite": 0} for m in manifest.models}, "first_t0": None, "last_t0": None}
    with open_endpoint(manifest, settings.runtime, f"deployrun.{run.variant}") as endpoint, \
            PredictionLog(run.predictions_path, run.path(layout.PREDICTIONS_CSV)) as log:
        started = time.perf_counter()
        local_seconds = 0.0  # logging and the in-process comparison, not serving
        for batch in replay(endpoint.url, manifest, batch_size=settings.batch_size, token=endpoint.token):
            local_started = time.perf_counter()
            log.add(batch)
            windows = batch.windows
            summary["windows_sent"] += len(windows)
            summary["windows_answered"] += len(windows)
            summary["batches"] += 1
            summary["first_t0"] = summary["first_t0"] if summary["first_t0"] is not None else int(windows.t0[0])
            summary["last_t0"] = int(windows.t0[-1])
            for answer in batch.answers:
                summary["models"][answer.entry.key]["non_finite"] += int((~answer.answered).sum())
            if equivalence is not None:
                equivalence.add(windows, {a.entry.key: a.probabilities for a in batch.answers})
            local_seconds += time.perf_counter() - local_started
        seconds = time.perf_counter() - started
    summary["rows_logged"] = log.rows
    write_json_atomic(run.path(layout.RUN_SUMMARY), summary)
    write_json_atomic(run.path(layout.EQUIVALENCE),
                      equivalence.summary() if equivalence else {"enabled": False, "passed": None})
    windows, serving_seconds = summary["windows_sent"], seconds - local_seconds
    write_json_atomic(run.path(layout.RUN_TIMING), {
        "seconds": round(seconds, 3),
        "serving_seconds": round(serving_seconds, 3),
        "windows_per_second": round(windows / serving_seconds, 1) if serving_seconds > 0 else None,
        "predictions_per_second": round(log.rows / serving_seconds, 1) if serving_seconds > 0 else None,
        "batch_size": settings.batch_size,
        "note": "serving = replay windowing + HTTP + server inference; excludes logging and the "
                "in-process equivalence check",
    })
    return summary
