"""Infra checks at packaging time: every packaged model must load, take the input its
summary describes, and answer with finite probabilities, before the package is sealed.

Real upstream models can be broken in ways that only running them shows (a
sequence_embedding model with NaN weights predicts NaN for every input, and upstream's
F07 silently turned that into 0). Catching that here means a sealed package is one that
can be served. The checks run the packaged copies through the same loading and
vectorizing code the server uses (``runtime.models``), on an empty window and on windows
of the model's own reference dataset.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from contract import layout
from contract.files import write_json_atomic
from contract.row_stream import BATCH_ROWS
from contract.windows import Windows, list_arrays
from f06_packaging.plan import PackagePlan, PackagingError, SelectedModel
from runtime.models import LoadedModel

PROBE_WINDOWS = 256


def probe_windows(model: SelectedModel) -> Windows:
    """An empty window, then up to ``PROBE_WINDOWS`` rows spread evenly over the reference,
    read batch by batch (only the chosen rows are kept, whatever the dataset's length)."""
    source = model.objective.variant.parquet(model.objective.dataset_path)
    rows = source.metadata.num_rows
    chosen = np.unique(np.linspace(0, rows - 1, num=min(rows, PROBE_WINDOWS)).astype(np.int64)) \
        if rows else np.zeros(0, np.int64)
    picked, first = [], 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=["OW_events"]):
        local = chosen[(chosen >= first) & (chosen < first + batch.num_rows)] - first
        picked.append(batch.column(0).take(local))
        first += batch.num_rows
    codes, offsets = list_arrays(pa.chunked_array(picked)) if picked else \
        (np.zeros(0, np.int64), np.zeros(1, np.int64))
    return Windows(
        t0=np.zeros(len(offsets), dtype=np.int64),
        codes=codes,
        offsets=np.concatenate([[0], offsets]),
    )


def _describe(plan: PackagePlan, model: SelectedModel) -> str:
    return (f"packaging variant {plan.variant}: objective {model.objective.id}, source F05 "
            f"{model.files.source_f05}, model '{model.files.model_id}'")


def probe_model(plan: PackagePlan, model: SelectedModel, package_dir: Path) -> tuple[dict, float]:
    folder = package_dir / model.package_dir
    started = time.perf_counter()
    try:
        loaded = LoadedModel.from_files(folder / layout.MODEL_FILE, folder / layout.MODEL_SUMMARY)
    except (OSError, ValueError) as error:
        raise PackagingError(f"{_describe(plan, model)} is refused: {error}") from None
    load_seconds = time.perf_counter() - started
    bad_weights = [w.path for w in loaded.model.weights if not np.all(np.isfinite(w.numpy()))]
    if bad_weights:
        raise PackagingError(f"{_describe(plan, model)} is refused: non-finite weights in "
                             f"{', '.join(bad_weights)}")
    windows = probe_windows(model)
    probabilities = loaded.predict(windows)
    finite = np.isfinite(probabilities)
    if not finite.all():
        raise PackagingError(f"{_describe(plan, model)} is refused: {int((~finite).sum())} of {len(windows)} "
                             "probe windows give a non-finite output")
    probe = {
        "windows": len(windows),
        "output_min": round(float(probabilities.min()), 6),
        "output_max": round(float(probabilities.max()), 6),
        "empty_window_output": round(float(probabilities[0]), 6),
        "weights_finite": True,
        "input_shape_matches_summary": True,
    }
    return probe, load_seconds


def probe_models(plan: PackagePlan, package_dir) -> dict:
    """Probe every model; the load times go to the untracked ``timing.json``."""
    package_dir = Path(package_dir)
    probes, load_seconds = {}, {}
    for model in plan.models:
        probes[model.key], seconds = probe_model(plan, model, package_dir)
        load_seconds["/".join(model.key)] = round(seconds, 4)
    write_json_atomic(package_dir / layout.TIMING, {"model_load_seconds": load_seconds})
    return probes
