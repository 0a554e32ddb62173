"""The serve and infer stages of F07: deploy a sealed package and replay it through HTTP.

``serve`` turns the package metadata into the variant's ``manifest.json`` and proves it
servable by booting the real server on it (seal verified, every model loaded and warmed
up, ``/models`` matching the manifest) before the manifest is put in place. ``infer``
starts the server as its own process, replays the package through it as a black-box
client, and writes every raw prediction as it arrives, so memory does not grow with the
replay. Both keep wall-clock figures out of their tracked outputs (``timing.json``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from f07_validation.gates import validate_gates
from runtime.client import InferenceClient, ServerProcess, replay
from runtime.files import atomic_path, dump_json, write_json_atomic, write_text_atomic
from runtime.manifest import load_manifest
from runtime.seal import METADATA_NAME, TIMING_NAME, verify_seal

PACKAGES = Path("executions") / "06_packaging"
RUNS = Path("executions") / "07_deployrun"
DEFAULT_BATCH_SIZE = 256
ENTRY_KEYS = {"parent_variant_f06", "runtime", "batch_size", "check_equivalence", "gates"}
PREDICTION_SCHEMA = pa.schema([
    ("t0", pa.int64()),
    ("OW_events", pa.list_(pa.int64())),
    ("objective", pa.string()),
    ("prediction_name", pa.string()),
    ("source_f05", pa.string()),
    ("model_id", pa.string()),
    ("probability", pa.float64()),
    ("y_pred", pa.int8()),
])
ROWS_PER_GROUP = 65_536


class DeployError(ValueError):
    """An F07 variant cannot be deployed as configured."""


def runtime_settings(variant: str, entry: dict) -> dict:
    """Validate ``deployrun.<variant>`` (everything but the gates) and apply defaults."""
    where = f"deployrun.{variant}"
    if not isinstance(entry, dict):
        raise DeployError(f"{where} must be a mapping with keys {sorted(ENTRY_KEYS)}")
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise DeployError(f"{where}: unknown keys {sorted(unknown)}; expected {sorted(ENTRY_KEYS)}")
    parent = entry.get("parent_variant_f06")
    if not isinstance(parent, str) or not (PACKAGES / parent / METADATA_NAME).is_file():
        raise DeployError(f"{where}.parent_variant_f06: {parent!r} is not a built F06 package "
                          f"(no {PACKAGES / str(parent) / METADATA_NAME}); name a packaging variant and "
                          f"run its seal_package stage")
    runtime = entry.get("runtime") or {}
    host, port = runtime.get("host", "127.0.0.1"), runtime.get("port", 5005)
    if not isinstance(host, str) or not host:
        raise DeployError(f"{where}.runtime.host must be a host name or address, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise DeployError(f"{where}.runtime.port must be a port number (0 picks a free one), got {port!r}")
    batch_size = entry.get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise DeployError(f"{where}.batch_size must be a positive integer, got {batch_size!r}")
    check = entry.get("check_equivalence", True)
    if not isinstance(check, bool):
        raise DeployError(f"{where}.check_equivalence must be true or false, got {check!r}")
    return {"parent_variant_f06": parent, "host": host, "port": port, "batch_size": batch_size,
            "check_equivalence": check}


def build_manifest(variant: str, package_dir: Path, run_dir: Path, batch_size: int) -> dict:
    """The manifest, from the sealed package metadata: paths relative to the manifest's
    folder (and the model files to the package), so the variant folder can move."""
    metadata = json.loads((Path(package_dir) / METADATA_NAME).read_text(encoding="utf-8"))
    datasets = metadata["datasets"]
    return {
        "variant": variant,
        "parent_variant_f06": metadata["variant"],
        "package_dir": os.path.relpath(package_dir, run_dir),
        "package_digest": metadata["seal"]["digest"],
        "temporal": metadata["temporal"],
        "batch_size": batch_size,
        "models": [
            {
                "objective": model["objective"],
                "prediction_name": model["prediction_name"],
                "source_f05": model["source_f05"],
                "model_id": model["model_id"],
                "model_family": model["model_family"],
                "threshold": model["threshold"],
                "model_path": f"{model['path']}/model.h5",
                "summary_path": f"{model['path']}/model_summary.json",
                "vectorization": model["vectorization"],
                "input_shape": model["input_shape"],
                "dataset": datasets[model["objective"]]["path"],
                "recovered_t0": datasets[model["objective"]].get("recovered_t0"),
                "input_column": "OW_events",
                "label_column": "label",
            }
            for model in metadata["models"]
        ],
    }


def _effective_params(variant: str, settings: dict) -> str:
    """The deployment as served (the gates that judge it are recorded in verdict.json)."""
    effective = {"variant": variant, "parent_variant_f06": settings["parent_variant_f06"],
                 "runtime": {"host": settings["host"], "port": settings["port"]},
                 "batch_size": settings["batch_size"], "check_equivalence": settings["check_equivalence"]}
    return yaml.safe_dump(effective, sort_keys=True, default_flow_style=False)


def serve(variant: str, deployrun_section: dict) -> dict:
    """Write ``manifest.json``, ``params.yaml`` and ``serve.json`` once a real server
    has come up ready on the manifest and its ``/models`` agrees with it.

    The variant's gates are checked first, against the other variants (a baseline) and
    the package's models, so a configuration error stops the run before any work."""
    entry = deployrun_section[variant]
    settings = runtime_settings(variant, entry)
    run_dir = RUNS / variant
    manifest = build_manifest(variant, PACKAGES / settings["parent_variant_f06"], run_dir,
                              settings["batch_size"])
    validate_gates(variant, entry, deployrun_section, manifest["models"])
    run_dir.mkdir(parents=True, exist_ok=True)
    # The pending manifest sits beside the final one, so its relative paths resolve alike.
    pending = run_dir / ".manifest.pending.json"
    write_text_atomic(pending, dump_json(manifest))
    try:
        with ServerProcess(pending, host=settings["host"], port=settings["port"]) as server:
            ready = server.wait_ready()
            with InferenceClient(server.url, load_manifest(pending)) as client:
                published = client.models()
        _check_published(variant, manifest, published)
        os.replace(pending, run_dir / "manifest.json")
    finally:
        pending.unlink(missing_ok=True)
    write_text_atomic(run_dir / "params.yaml", _effective_params(variant, settings))
    record = {
        "package_digest": manifest["package_digest"],
        "seal_verified": True,
        "ready": True,
        "models": {key: state.get("state") for key, state in sorted(ready.get("models", {}).items())},
    }
    write_json_atomic(run_dir / "serve.json", record)
    return record


def _check_published(variant: str, manifest: dict, published: dict) -> None:
    served = [(m["objective"], m["source_f05"], m["model_id"], m["threshold"]) for m in published["models"]]
    wanted = [(m["objective"], m["source_f05"], m["model_id"], m["threshold"]) for m in manifest["models"]]
    if served != wanted or published.get("package_digest") != manifest["package_digest"]:
        raise DeployError(f"deployrun.{variant}: the server's GET /models ({served}, digest "
                          f"{published.get('package_digest')}) does not match the manifest ({wanted}, digest "
                          f"{manifest['package_digest']})")


class PredictionLog:
    """The raw prediction log, written as it arrives: a row per window and model,
    windows in time order and models in manifest order within a window."""

    def __init__(self, logs_dir: Path):
        self.logs_dir = logs_dir
        self._parquet = atomic_path(logs_dir / "raw_predictions.parquet")
        self._csv = atomic_path(logs_dir / "raw_predictions.csv")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def __enter__(self):
        parquet_path, csv_path = self._parquet.__enter__(), self._csv.__enter__()
        self._parquet_writer = pq.ParquetWriter(parquet_path, PREDICTION_SCHEMA)
        self._csv_writer = pacsv.CSVWriter(csv_path, self._csv_schema())
        return self

    @staticmethod
    def _csv_schema() -> pa.Schema:
        return pa.schema([field if field.name != "OW_events" else pa.field("OW_events", pa.string())
                          for field in PREDICTION_SCHEMA])

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


def infer(variant: str, entry: dict) -> dict:
    """Replay the package through a server process; write the raw prediction log, the
    run summary, the equivalence measurement and (untracked) the timing."""
    settings = runtime_settings(variant, entry)
    run_dir = RUNS / variant
    manifest = load_manifest(run_dir / "manifest.json")
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise DeployError(check.describe())
    equivalence = None
    if settings["check_equivalence"]:
        from runtime.models import EquivalenceCheck  # TensorFlow, only when asked for
        equivalence = EquivalenceCheck.from_manifest(manifest)
    logs_dir = run_dir / "logs"
    summary = {"windows_sent": 0, "windows_answered": 0, "batches": 0, "batch_size": settings["batch_size"],
               "models": {m.key: {"non_finite": 0} for m in manifest.models}, "first_t0": None, "last_t0": None}
    with ServerProcess(manifest.path, host=settings["host"], port=settings["port"]) as server, \
            PredictionLog(logs_dir) as log:
        started = time.perf_counter()
        local_seconds = 0.0  # logging and the in-process comparison, not serving
        for batch in replay(server.url, manifest, batch_size=settings["batch_size"]):
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
    write_json_atomic(logs_dir / "run_summary.json", summary)
    write_json_atomic(logs_dir / "equivalence.json",
                      equivalence.summary() if equivalence else {"enabled": False, "passed": None})
    windows, serving_seconds = summary["windows_sent"], seconds - local_seconds
    write_json_atomic(logs_dir / TIMING_NAME, {
        "seconds": round(seconds, 3),
        "serving_seconds": round(serving_seconds, 3),
        "windows_per_second": round(windows / serving_seconds, 1) if serving_seconds > 0 else None,
        "predictions_per_second": round(log.rows / serving_seconds, 1) if serving_seconds > 0 else None,
        "batch_size": settings["batch_size"],
        "note": "serving = replay windowing + HTTP + server inference; excludes logging and the "
                "in-process equivalence check",
    })
    return summary
