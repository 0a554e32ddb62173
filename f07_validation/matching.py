"""Give each replayed window its reference label from its objective's F04 dataset, a
batch of windows at a time, in memory that does not grow with the replay.

CONTRACT: a prediction has a reference when its window is in the F04 dataset, matched by
`t0` when the dataset has that column (or F06 recovered it), otherwise by OW content.
Real upstream F04 files carry no `t0`, and the same OW content can occur in several
windows with different labels; such a content cannot give a label, so those windows are
ambiguous and kept out of the confusion matrix rather than guessed.

How it stays flat: the prediction log and an F04 dataset are both in `t0` order, so a
`t0` join is a merge of two sorted streams. The reference is read a batch at a time just
ahead of the log, and rows the log has passed are dropped. Only the OW content join needs
an index of the whole dataset: its distinct contents, as sorted 64-bit hashes
(`content_hashes`) with one label each (or none when both occur).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract.parquet import damaged_package_fix, parquet_file
from contract.row_stream import BATCH_ROWS, RowStream
from f07_validation.deployrun import DeployRunError
from f07_validation.reference import content_hashes, index_in

JOIN_T0 = "t0"
JOIN_T0_RECOVERED = "t0_recovered"  # F06 recomputed F03 and every row's OW matched
JOIN_OW_CONTENT = "ow_content"
BY_T0 = (JOIN_T0, JOIN_T0_RECOVERED)

# a window's reference status, as int8 codes
NO_REFERENCE, REFERENCED, AMBIGUOUS = 0, 1, 2
NO_LABEL = -1


@dataclass(frozen=True)
class Matched:
    """Per window: `status` (NO_REFERENCE / REFERENCED / AMBIGUOUS), `label` (0/1, NO_LABEL
    unless referenced) and `mismatch` (t0 joins only: the F04 row at that t0 holds other OW
    events, i.e. the package's regime does not reproduce F03's windows)."""

    status: np.ndarray
    label: np.ndarray
    mismatch: np.ndarray


class Reference:
    """An objective's F04 labels, read for matching. ``match`` takes windows in `t0` order,
    each call starting no earlier than the previous one ended."""

    def __init__(self, path: Path, objective: str, join: str, rows: int, positives: int,
                 ambiguous_contents: int = 0):
        self.path, self.objective, self.join = path, objective, join
        self.rows, self.positives, self.ambiguous_contents = rows, positives, ambiguous_contents

    def match(self, t0: np.ndarray, ow_hash: np.ndarray) -> Matched:
        raise NotImplementedError


class T0Reference(Reference):
    """A merge join on `t0`: the dataset's rows are read just ahead of the windows asked for.
    With ``contents`` off, its OW column is never read and no mismatch is reported (labels
    only: the OW lists are ~90% of an F04 batch's bytes)."""

    def __init__(self, dataset: pq.ParquetFile, t0_file: pq.ParquetFile, path, objective, join, rows, positives,
                 input_column, label_column, contents: bool = True):
        """``dataset`` and ``t0_file``: the files ``load_reference`` opened and checked
        (``contract.parquet.parquet_file``), each streamed afresh here."""
        super().__init__(path, objective, join, rows, positives)
        self._rows = RowStream(dataset, [input_column, label_column] if contents else [label_column])
        self._t0 = RowStream(t0_file, ["t0"])
        self._input, self._label, self._contents = input_column, label_column, contents
        self._buffer_t0 = np.zeros(0, np.int64)
        self._buffer_label = np.zeros(0, np.int8)
        self._buffer_ow = None
        self._exhausted = False

    def _read(self) -> None:
        table = self._rows.take(BATCH_ROWS)
        if table.num_rows == 0:
            self._exhausted = True
            return
        t0 = self._t0.take(table.num_rows).column("t0").to_numpy().astype(np.int64)
        self._buffer_t0 = np.concatenate([self._buffer_t0, t0])
        self._buffer_label = np.concatenate([self._buffer_label,
                                             table.column(self._label).to_numpy().astype(np.int8)])
        if self._contents:
            ow = table.column(self._input).combine_chunks()
            self._buffer_ow = ow if self._buffer_ow is None else pa.concat_arrays([self._buffer_ow, ow])

    def match(self, t0: np.ndarray, ow_hash: np.ndarray) -> Matched:
        n = len(t0)
        status, label, mismatch = np.zeros(n, np.int8), np.full(n, NO_LABEL, np.int8), np.zeros(n, bool)
        if n == 0:
            return Matched(status, label, mismatch)
        high = int(t0[-1])
        while not self._exhausted and (len(self._buffer_t0) == 0 or self._buffer_t0[-1] < high):
            self._read()
        at = index_in(self._buffer_t0, t0)
        found = at >= 0
        status[found] = REFERENCED
        label[found] = self._buffer_label[at[found]]
        if self._contents and found.any():
            mismatch[found] = content_hashes(self._buffer_ow.take(pa.array(at[found]))) != ow_hash[found]
        keep = int(np.searchsorted(self._buffer_t0, high, side="left"))  # later windows start at `high` or later
        self._buffer_t0, self._buffer_label = self._buffer_t0[keep:], self._buffer_label[keep:]
        self._buffer_ow = self._buffer_ow.slice(keep) if self._buffer_ow is not None else None
        return Matched(status, label, mismatch)


class ContentReference(Reference):
    """The dataset's distinct OW contents (sorted hashes) and each one's label, NO_LABEL
    when it occurs with both."""

    def __init__(self, path, objective, rows, positives, hashes: np.ndarray, labels: np.ndarray):
        order = np.lexsort((labels, hashes))
        hashes, labels = hashes[order], labels[order]
        first = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
        last = np.r_[first[1:], len(hashes)] - 1
        self.unique = hashes[first]
        self.labels = np.where(labels[first] == labels[last], labels[first], NO_LABEL).astype(np.int8)
        super().__init__(path, objective, JOIN_OW_CONTENT, rows, positives,
                         int(np.sum(self.labels == NO_LABEL)))

    def match(self, t0: np.ndarray, ow_hash: np.ndarray) -> Matched:
        at = index_in(self.unique, ow_hash)
        label = np.where(at >= 0, self.labels[np.maximum(at, 0)], NO_LABEL).astype(np.int8)
        status = np.where(at < 0, NO_REFERENCE, np.where(label == NO_LABEL, AMBIGUOUS, REFERENCED)).astype(np.int8)
        return Matched(status, label, np.zeros(len(t0), bool))


def _check_t0_order(path: Path, t0_file: pq.ParquetFile) -> None:
    """The t0 of a dataset ascend strictly (one row per window, in window order): the
    merge join relies on it."""
    previous, row = None, 0
    for batch in t0_file.iter_batches(batch_size=BATCH_ROWS, columns=["t0"]):
        t0 = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        if previous is not None:
            t0 = np.concatenate([[previous], t0])
        step = np.diff(t0)
        if (step <= 0).any():
            at = int(np.flatnonzero(step <= 0)[0])
            what = "repeated t0 values" if step[at] == 0 else "t0 values out of order"
            raise DeployRunError(f"{path} has {what} (first: {int(t0[at + 1])}, row {row + at + (previous is None)}); "
                                 "an F04 dataset has one row per window, in window order")
        row += batch.num_rows
        previous = int(t0[-1]) if len(t0) else previous


def load_reference(path: Path, objective: str, input_column: str, label_column: str,
                   recovered_t0: Path | None = None, contents: bool = True,
                   fix: str = damaged_package_fix("<package_dir>")) -> Reference:
    """Check an F04 dataset (columns, labels 0/1, `t0` unique and ascending) and open it
    for matching. A dataset without `t0` takes the one F06 recovered for it
    (`recovered_t0`), when F06 could prove it row by row; else it is matched by content.
    ``contents`` off: a `t0` join reads labels only and reports no OW mismatch. ``fix``:
    what to do about a package file missing or unreadable."""
    if not path.exists():
        raise DeployRunError(f"{path} (reference of objective {objective}) is missing: the package is "
                             f"incomplete; {fix}")
    where = f"reference of objective {objective}"
    dataset = parquet_file(path, where, fix, DeployRunError)
    schema = dataset.schema_arrow
    missing = sorted({input_column, label_column} - set(schema.names))
    if missing:
        raise DeployRunError(
            f"{path} (reference of objective {objective}) lacks columns {missing}; the "
            f"manifest names input_column={input_column!r}, label_column={label_column!r}"
        )
    rows, positives, hashes, labels = 0, 0, [], []
    by_content = "t0" not in schema.names and recovered_t0 is None
    columns = [label_column] + ([input_column] if by_content else [])
    for batch in dataset.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        label = batch.column(label_column)
        if label.null_count or (by_content and batch.column(input_column).null_count):
            raise DeployRunError(f"{path} has null {input_column} or {label_column} values")
        label = label.to_numpy(zero_copy_only=False)
        if not np.isin(label, (0, 1)).all():
            raise DeployRunError(f"{path} column {label_column} holds values other than 0/1: "
                                 f"{sorted(set(np.unique(label).tolist()) - {0, 1})[:5]}")
        rows, positives = rows + len(label), positives + int(label.sum())
        if by_content:
            hashes.append(content_hashes(batch.column(input_column)))
            labels.append(label.astype(np.int8))
    if by_content:
        return ContentReference(path, objective, rows, positives,
                                np.concatenate(hashes) if hashes else np.zeros(0, np.int64),
                                np.concatenate(labels) if labels else np.zeros(0, np.int8))
    t0_path, join = (path, JOIN_T0) if "t0" in schema.names else (recovered_t0, JOIN_T0_RECOVERED)
    # a file object of its own even when t0 is the dataset's column: the two streams walk side by
    # side, and a pyarrow reader's batch size is its own state, set by each scan it starts
    t0_file = parquet_file(t0_path, where, fix, DeployRunError)
    if t0_file.metadata.num_rows != rows:
        raise DeployRunError(f"{t0_path} holds {t0_file.metadata.num_rows} t0 values for the "
                             f"{rows} rows of {path}; rebuild the package (seal_package stage)")
    _check_t0_order(path, t0_file)
    return T0Reference(dataset, t0_file, path, objective, join, rows, positives, input_column, label_column, contents)


def window_starts(t0: np.ndarray) -> np.ndarray:
    """Row positions where a new window starts in a log batch (a window's rows, one per
    model, are consecutive: same t0)."""
    return np.flatnonzero(np.r_[True, t0[1:] != t0[:-1]]) if len(t0) else np.zeros(0, np.int64)


def joins_by_content(references: dict[str, Reference]) -> bool:
    """Whether any reference needs the windows' OW lists to give a label."""
    return any(reference.join == JOIN_OW_CONTENT for reference in references.values())


def match_windows(t0: np.ndarray, ow: pa.Array | None, references: dict[str, Reference]) -> dict[str, Matched]:
    """Per objective, the reference status of each window (`t0` ascending, `ow` their OW
    event lists; None when no reference joins by content and none reports mismatches)."""
    hashes = content_hashes(ow) if ow is not None else None
    return {objective: reference.match(t0, hashes) for objective, reference in references.items()}
