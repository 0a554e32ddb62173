"""Read a parquet file ``take(n)`` rows at a time, in file order, in bounded memory.

Two files whose rows correspond one to one (an F04 dataset and the ``t0`` F06 recovered
for it) can be walked side by side whatever their row groups, and a reader can ask for
exactly as many rows as it has to compare. At most one record batch is held beyond the
rows returned. The file comes opened by the caller (``contract.parquet.parquet_file``:
``pre_buffer`` off, which would load the whole file first, and a damaged page one error
line naming the file and the fix).
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 65_536


class RowStream:
    def __init__(self, file: pq.ParquetFile, columns: list[str], batch_rows: int = BATCH_ROWS):
        self.columns = list(columns)
        self._file = file
        self._batches = self._file.iter_batches(batch_size=batch_rows, columns=columns)
        self._pending: pa.Table | None = None
        self.rows_read = 0

    @property
    def num_rows(self) -> int:
        return self._file.metadata.num_rows

    def take(self, n: int) -> pa.Table:
        """The next ``n`` rows (fewer at the end of the file, none after it)."""
        parts, wanted = [], n
        while wanted > 0:
            if self._pending is None or self._pending.num_rows == 0:
                batch = next(self._batches, None)
                if batch is None:
                    break
                self._pending = pa.Table.from_batches([batch])
            parts.append(self._pending.slice(0, wanted))
            self._pending = self._pending.slice(parts[-1].num_rows)
            wanted -= parts[-1].num_rows
        self.rows_read += n - wanted
        if not parts:
            return self._file.schema_arrow.empty_table().select(self.columns)
        return pa.concat_tables(parts)
