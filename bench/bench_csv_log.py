"""The raw prediction log's CSV copy, plain beside gzip (``deployrun.<v>.log_csv_compression``).

    python -m bench.bench_csv_log [--predictions 1000000] [--repeats 2]

Writes the same predictions through ``f07_validation.infer.PredictionLog`` (the parquet
log and its CSV copy in one pass, batch by batch, as the infer stage writes them) once
per setting, the settings alternating over ``--repeats`` passes so that load from other
processes falls on both alike, and prints side by side the CSV's bytes, the parquet's,
the whole pass's best time, and gzip's ratios to plain.

The windows have upstream's shape (``bench.scale_upstream``: OW = 600 rows of Tu = 10 s,
~7% of rows holding 1 + Poisson(0.4) of 122 codes, ~59 codes a window), three models,
probabilities drawn at random (their digits are most of a row's bytes and do not
compress), replay batches of 256 windows.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.scale_upstream import LT, MODELS, OBJECTIVES, OW, PW, TU, f02_chunks
from contract import layout
from contract.defaults import DEFAULT_BATCH_SIZE
from contract.windows import Regime, f03_windows
from f07_validation.infer import GZIP_LEVEL, PredictionLog


def replay_batches(predictions: int, seed: int = 17) -> list[SimpleNamespace]:
    """Batches shaped as the replay hands them to the log (``windows``, and per model an
    answer with its entry's key columns, probabilities, y_pred and answered)."""
    windows_needed = -(-predictions // len(MODELS))
    chunks = f02_chunks(windows_needed + OW + LT + PW, seed)
    rows = next(chunks)
    for chunk in chunks:
        rows = rows.concat(chunk)
    ow, _ = f03_windows(rows, Regime(Tu=TU, OW=OW, LT=LT, PW=PW, origin=int(rows.segs[0])))
    rng = np.random.default_rng(seed)
    entries = [SimpleNamespace(objective=objective, prediction_name=OBJECTIVES[objective][0], source_f05=f05,
                               model_id=OBJECTIVES[objective][0]) for f05, objective, _, _ in MODELS]
    batches = []
    for first in range(0, min(windows_needed, len(ow)), DEFAULT_BATCH_SIZE):
        windows = ow.select(np.arange(first, min(first + DEFAULT_BATCH_SIZE, windows_needed, len(ow))))
        answers = []
        for entry in entries:
            probabilities = rng.beta(0.3, 3.0, len(windows))
            answers.append(SimpleNamespace(entry=entry, probabilities=probabilities,
                                           y_pred=(probabilities >= 0.5).astype(np.int8),
                                           answered=np.ones(len(windows), bool)))
        batches.append(SimpleNamespace(windows=windows, answers=answers))
    return batches


def write_log(batches: list, folder: Path, compression: str) -> tuple[float, int, int]:
    """Seconds of the pass, the CSV's bytes, the parquet's bytes."""
    parquet, csv = folder / layout.PREDICTIONS, folder / layout.PREDICTIONS_CSV[compression]
    started = time.perf_counter()
    with PredictionLog(parquet, csv, compression) as log:
        for batch in batches:
            log.add(batch)
    seconds = time.perf_counter() - started
    sizes = csv.stat().st_size, parquet.stat().st_size
    parquet.unlink()
    csv.unlink()
    return seconds, *sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    batches = replay_batches(args.predictions)
    rows = sum(len(b.windows) for b in batches) * len(MODELS)
    codes = np.mean([len(b.windows.codes) / len(b.windows) for b in batches])
    print(f"{rows:,} predictions ({rows // len(MODELS):,} windows x {len(MODELS)} models, ~{codes:.0f} codes a "
          f"window), best of {args.repeats} passes; gzip level {GZIP_LEVEL}")
    settings = layout.LOG_CSV_COMPRESSIONS
    best = {setting: (float("inf"), 0, 0) for setting in settings}
    with tempfile.TemporaryDirectory(prefix="bench-csv-log-") as scratch:
        for _ in range(args.repeats):
            for setting in settings:
                best[setting] = min(best[setting], write_log(batches, Path(scratch), setting))
    print(f"{'setting':<8} {'CSV file':<28} {'CSV MB':>9} {'B/row':>7} {'parquet MB':>11} {'pass s':>8}")
    for setting in settings:
        seconds, csv_bytes, parquet_bytes = best[setting]
        print(f"{setting:<8} {layout.PREDICTIONS_CSV[setting]:<28} {csv_bytes / 1e6:>9.1f} {csv_bytes / rows:>7.1f} "
              f"{parquet_bytes / 1e6:>11.1f} {seconds:>8.2f}")
    (plain_s, plain_bytes, _), (gzip_s, gzip_bytes, _) = best["none"], best["gzip"]
    print(f"gzip / none: CSV bytes x{gzip_bytes / plain_bytes:.3f} ({plain_bytes / gzip_bytes:.1f}x smaller), "
          f"pass time x{gzip_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
