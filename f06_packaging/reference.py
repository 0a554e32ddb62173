"""How F07 will find each prediction's reference label in an objective's F04 dataset.

A demo F04 dataset carries each window's ``t0``; a real upstream one carries only the row
order. Because F03 is a pure function of its F02 and its parameters, recomputing the
windows gives every row its ``t0`` — accepted only when every recomputed OW equals the
row's, since otherwise the rows would be matched to the wrong windows. When neither
works, F07 falls back to matching by OW content. The mode is recorded so the report can
say which join it used.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from console.progress import progress
from contract import layout
from contract.files import atomic_path
from contract.parquet import WRITER_OPTIONS
from contract.row_stream import BATCH_ROWS, RowStream
from contract.windows import EventRows, Regime, Windows, f03_windows, list_arrays
from upstream.reader import Objective


def f03_window_chunks(rows: EventRows, regime: Regime, strategy: str = "synchro", nan_codes=(),
                      chunk: int = BATCH_ROWS) -> Iterator[tuple[Windows, Windows]]:
    """F03's (OW, PW) windows (``f03_windows``), ``chunk`` grid starts at a time, in order.

    A window depends only on the rows inside its own span, so each chunk is cut from the
    rows between its first start and its last start's horizon. ``f03_windows`` counts
    starts up to the last row it is given, so a chunk whose rows end early gets an empty
    row at its last horizon (an empty row changes no window); the data's own last row
    still decides where the windows end. Memory is that of one chunk, whatever the
    number of windows (each F02 event lies in OW/Tu windows)."""
    if len(rows) == 0:
        return
    count = (int(rows.segs[-1]) - regime.horizon_seconds - regime.origin) // regime.Tu + 1
    for first in range(0, max(count, 0), chunk):
        start = regime.origin + first * regime.Tu
        horizon = regime.origin + (min(first + chunk, count) - 1) * regime.Tu + regime.horizon_seconds
        part = rows.slice(int(np.searchsorted(rows.segs, start, side="left")),
                          int(np.searchsorted(rows.segs, horizon, side="right")))
        if len(part) == 0 or part.segs[-1] < horizon:
            part = part.concat(EventRows(np.array([horizon], np.int64), np.zeros(0, np.int64),
                                         np.zeros(2, np.int64)))
        yield f03_windows(part, replace(regime, origin=start), strategy, nan_codes)


def _first_difference(codes, offsets, ow: Windows) -> int | None:
    """Index of the first window whose codes differ between the two ragged lists."""
    if np.array_equal(offsets, ow.offsets) and np.array_equal(codes, ow.codes):
        return None
    n = min(len(offsets), len(ow.offsets)) - 1
    same_bounds = (offsets[1:n + 1] == ow.offsets[1:n + 1]) & (offsets[:n] == ow.offsets[:n])
    bad = np.flatnonzero(~same_bounds)
    first = int(bad[0]) if len(bad) else n
    # before the first differing length, the windows' codes line up one to one
    stop = int(offsets[first])
    differs = np.flatnonzero(codes[:stop] != ow.codes[:stop])
    if len(differs):
        first = int(np.searchsorted(offsets, differs[0], side="right")) - 1
    return first


def recover_t0(objective: Objective, chunk: int = BATCH_ROWS) -> tuple[np.ndarray | None, str]:
    """Recompute the F03 windows of the objective's lineage, ``chunk`` at a time, and
    compare each with the same rows of the F04 dataset as it streams; return their
    ``t0`` if they match one to one, else ``None`` and the reason."""
    windows = objective.windows
    regime = windows.regime()
    tu = regime["Tu"].value
    if not float(tu).is_integer():
        return None, f"Tu = {tu} s is not a whole number of seconds"
    events = windows.events
    # the F02 rows are small (an event lies in one row but in OW/Tu windows): read whole
    rows = EventRows.from_arrow(events.variant.parquet(events.dataset_path).read(columns=["segs", "events"]))
    nan_codes = events.nan_codes if windows.nan_strategy == "discard" else ()
    reference = RowStream(objective.variant.parquet(objective.dataset_path), ["OW_events"], chunk)
    total = reference.num_rows
    recomputed, first_difference, t0 = 0, None, []
    chunks = f03_window_chunks(rows, Regime(int(tu), regime["OW"].value, regime["LT"].value, regime["PW"].value,
                                            int(rows.segs[0])), windows.window_strategy, nan_codes, chunk)
    with progress(desc=f"recover t0 of F04 {objective.id}", total=total, unit="window", unit_scale=True) as bar:
        for ow, _ in chunks:
            if first_difference is None:
                codes, offsets = list_arrays(reference.take(len(ow)).column("OW_events"))
                where = _first_difference(codes, offsets, ow)
                if where is not None:
                    first_difference = recomputed + where
                t0.append(ow.t0)
            recomputed += len(ow)
            bar.update(len(ow))
    if recomputed != total:
        return None, (f"recomputing F03 {windows.variant.id} gives {recomputed} windows, the F04 dataset has "
                      f"{total} rows")
    if first_difference is not None:
        return None, f"recomputed OW events differ from the F04 rows (first difference at row {first_difference})"
    return (np.concatenate(t0) if t0 else np.zeros(0, np.int64),
            f"recomputed from F03 {windows.variant.id} and F02 {events.variant.id}; every OW matches")


def reference_join(objective: Objective, target_dir: Path) -> dict:
    """Describe the packaged reference dataset and settle its join mode, writing the
    recovered ``t0`` beside it when recovery succeeds."""
    table = objective.variant.parquet(objective.dataset_path).read(columns=["label"])
    labels = table.column("label").to_numpy()
    summary = {"rows": int(table.num_rows), "positives": int(np.sum(labels == 1)),
               "has_t0": "t0" in objective.dataset_columns}
    if summary["has_t0"]:
        return {**summary, "join": "t0", "join_note": "the F04 dataset carries t0"}
    t0, note = recover_t0(objective)
    if t0 is None:
        return {**summary, "join": "ow_content", "join_note": f"t0 not recoverable: {note}"}
    recovered = layout.package_recovered_t0(objective.id)  # target_dir is the objective's folder
    with atomic_path(target_dir / PurePosixPath(recovered).name) as scratch:
        # in row groups of the size every reader takes at a time: a reader decodes a whole
        # row group's column, so one group of every row made the F07 reference stage's peak
        # grow with the replay (+13% from N/4 to N at upstream size)
        pq.write_table(pa.table({"t0": pa.array(t0, pa.int64())}), scratch, row_group_size=BATCH_ROWS,
                       **WRITER_OPTIONS)
    return {**summary, "join": "t0_recovered", "join_note": note, "recovered_t0": recovered}
