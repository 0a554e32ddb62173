"""The prediction log's files (``f07_validation.infer.PredictionLog``) on their own, no
server: a log closed by an error leaves nothing under either name, whatever the CSV
compression; the gzip copy repeats its bytes. (The server-backed checks of the CSV copy
are in test_runtime_faults.py.)"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from contract import layout
from contract.windows import Windows
from f07_validation.infer import PredictionLog


def batch(first_t0: int) -> SimpleNamespace:
    """Two windows answered by one model, shaped as the replay hands them to the log."""
    entry = SimpleNamespace(objective="v401", prediction_name="p", source_f05="v501", model_id="m")
    answer = SimpleNamespace(entry=entry, probabilities=np.array([0.25, 0.75]), y_pred=np.array([0, 1], np.int8),
                             answered=np.array([True, True]))
    windows = Windows(t0=np.array([first_t0, first_t0 + 10]), codes=np.array([3, 4, 5]), offsets=np.array([0, 2, 3]))
    return SimpleNamespace(windows=windows, answers=[answer])


@pytest.mark.parametrize("compression", layout.LOG_CSV_COMPRESSIONS)
def test_a_log_closed_by_an_error_leaves_the_earlier_files_as_they_were(tmp_path, compression):
    parquet, csv = tmp_path / layout.PREDICTIONS, tmp_path / layout.PREDICTIONS_CSV[compression]
    with PredictionLog(parquet, csv, compression) as log:
        log.add(batch(0))
    before = parquet.read_bytes(), csv.read_bytes()
    with pytest.raises(RuntimeError, match="replay broke"):
        with PredictionLog(parquet, csv, compression) as log:
            log.add(batch(100))
            raise RuntimeError("replay broke")
    assert (parquet.read_bytes(), csv.read_bytes()) == before
    assert sorted(path.name for path in parquet.parent.iterdir()) == sorted({parquet.name, csv.name})


def test_the_gzip_copy_is_byte_identical_on_a_rerun(tmp_path):
    """The same batches written again more than a second later (a gzip header stamped with
    the time would differ): the same bytes."""
    written = []
    for run in ("first", "again"):
        if written:
            time.sleep(1.1)
        csv = tmp_path / run / layout.PREDICTIONS_CSV["gzip"]
        with PredictionLog(tmp_path / run / layout.PREDICTIONS, csv, "gzip") as log:
            log.add(batch(0))
            log.add(batch(100))
        written.append(csv.read_bytes())
    assert written[0] == written[1]
