"""Materialize the replay: the F02 rows inside the time range, in order, unchanged.

The row groups whose statistics may hold rows in the range are listed first (Arrow's
predicate pushdown; the progress bar counts the rows still to scan), then read batch by
batch and filtered inside Arrow, so a replay of months of events never passes through a
Python loop or sits whole in memory. They are read with ``pq.ParquetFile`` (the F02
variant's checked one: a damaged page is one error line) and ``pre_buffer`` off rather
than by the dataset scanner, which buffers a whole row group
(and reads ahead into the next one) before its first batch: at upstream size, with F02's
row groups of a million rows, that made the peak grow with the number of row groups
(bench/bench_scale.py).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from console.progress import progress
from contract.files import atomic_path
from contract.parquet import WRITER_OPTIONS
from contract.row_stream import BATCH_ROWS
from f06_packaging.plan import PackagingError, ReplaySpec


def _filter(spec: ReplaySpec):
    segs = ds.field("segs")
    expression = None
    if spec.start is not None:
        expression = segs >= spec.start
    if spec.end is not None:
        expression = (segs < spec.end) if expression is None else expression & (segs < spec.end)
    return expression


def materialize_replay(spec: ReplaySpec, out_path) -> int:
    """Write the rows with ``start <= segs < end`` (a missing bound is open) to ``out_path``;
    return how many rows were written."""
    source = spec.source.dataset_path
    dataset = ds.dataset(source, format="parquet")
    expression = _filter(spec)
    # per file, the row groups that may hold rows in the range
    files = [(spec.source.variant.parquet(Path(fragment.path)),
              [group.id for piece in fragment.split_by_row_group(filter=expression) for group in piece.row_groups])
             for fragment in dataset.get_fragments(filter=expression)]
    rows = 0
    with atomic_path(Path(out_path)) as scratch:
        with pq.ParquetWriter(scratch, dataset.schema, **WRITER_OPTIONS) as writer, \
                progress(desc=f"replay of F02 {spec.source.variant.id}", unit="row", unit_scale=True,
                         total=sum(file.metadata.row_group(group).num_rows
                                   for file, groups in files for group in groups)) as bar:
            for file, groups in files:
                for batch in file.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, use_threads=False):
                    bar.update(batch.num_rows)
                    if expression is not None:
                        batch = batch.filter(expression)
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
        if rows == 0:
            raise PackagingError(f"the replay of F02 {spec.source.variant.id} in {spec.requested} holds no rows; "
                                 "widen the time range")
    return rows
