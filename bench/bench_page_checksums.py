"""Page CRCs in the parquet files this project writes (``contract.parquet.WRITER_OPTIONS``),
written and verified on reading, beside none.

    python -m bench.bench_page_checksums [--rows 1048576] [--repeats 5]

Writes the same prediction-log-shaped table (``contract.predictions.PREDICTION_SCHEMA``:
~6 codes a window, random probabilities) in row groups of ``BATCH_ROWS``, as the infer
stage writes the log, once without and once with page CRCs, then streams each back in
batches (the CRC file with verification on), the settings alternating over ``--repeats``
passes so that load from other processes falls on both alike; prints the files' bytes,
the best times and the CRC's ratios to none.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.parquet import WRITER_OPTIONS
from contract.predictions import PREDICTION_SCHEMA
from contract.row_stream import BATCH_ROWS


def log_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(2026)
    lengths = rng.integers(0, 12, rows)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    models = np.arange(rows) % 4
    return pa.table({
        "t0": pa.array(1_700_000_000 + 10 * (np.arange(rows) // 4), pa.int64()),
        "OW_events": pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, 122, offsets[-1]))),
        "objective": pa.array(np.array(["v401", "v402"])[models % 2]),
        "prediction_name": pa.array(np.array(["rare_a", "rare_b"])[models % 2]),
        "source_f05": pa.array(np.array(["v501", "v502", "v503", "v504"])[models]),
        "model_id": pa.array(np.array(["a", "b"])[models % 2]),
        "probability": pa.array(rng.random(rows)),
        "y_pred": pa.array(rng.integers(0, 2, rows).astype(np.int8)),
    }, schema=PREDICTION_SCHEMA)


def write(table: pa.Table, path: Path, options: dict) -> float:
    started = time.perf_counter()
    with pq.ParquetWriter(path, PREDICTION_SCHEMA, **options) as writer:
        for first in range(0, table.num_rows, BATCH_ROWS):
            writer.write_table(table.slice(first, BATCH_ROWS), row_group_size=BATCH_ROWS)
    return time.perf_counter() - started


def read(path: Path, verify: bool) -> float:
    started = time.perf_counter()
    source = pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=verify)
    rows = sum(batch.num_rows for batch in source.iter_batches(batch_size=BATCH_ROWS))
    assert rows == source.metadata.num_rows
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_048_576)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = log_table(args.rows)
    settings = {"none": ({}, False), "crc": (WRITER_OPTIONS, True)}
    times = {name: {"write": [], "read": []} for name in settings}
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.parquet" for name in settings}
        for _ in range(args.repeats):
            for name, (options, verify) in settings.items():
                times[name]["write"].append(write(table, paths[name], options))
                times[name]["read"].append(read(paths[name], verify))
        sizes = {name: path.stat().st_size for name, path in paths.items()}
    best = {name: {step: min(values) for step, values in steps.items()} for name, steps in times.items()}
    print(f"{args.rows:,} rows, best of {args.repeats}")
    for name in settings:
        print(f"  {name:4}  {sizes[name]:>12,} B  write {best[name]['write']:.3f} s  read {best[name]['read']:.3f} s")
    print(f"  crc / none: bytes {sizes['crc'] / sizes['none']:.4f}  write {best['crc']['write'] / best['none']['write']:.2f}x"
          f"  read {best['crc']['read'] / best['none']['read']:.2f}x")


if __name__ == "__main__":
    main()
