"""Materialize the replay: the F02 rows inside the time range, in order, unchanged.

The filter runs inside Arrow (predicate pushdown over the row groups, batches streamed
to the writer), so a replay of months of events never passes through a Python loop or
sits whole in memory. The row groups whose statistics may hold rows in the range are
listed first, so the progress bar counts the rows still to scan.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from console.progress import progress
from contract.files import atomic_path
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
    row_groups = [group for fragment in dataset.get_fragments(filter=expression)
                  for group in fragment.split_by_row_group(filter=expression)]
    rows = 0
    with atomic_path(Path(out_path)) as scratch:
        with pq.ParquetWriter(scratch, dataset.schema) as writer, \
                progress(desc=f"replay of F02 {spec.source.variant.id}", unit="row", unit_scale=True,
                         total=sum(group.row_groups[0].num_rows for group in row_groups)) as bar:
            for group in row_groups:
                for batch in group.to_batches(filter=expression, batch_size=65_536, use_threads=False):
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
                bar.update(group.row_groups[0].num_rows)
        if rows == 0:
            raise PackagingError(f"the replay of F02 {spec.source.variant.id} in {spec.requested} holds no rows; "
                                 "widen the time range")
    return rows
