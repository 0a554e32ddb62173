"""How F07 will find each prediction's reference label in an objective's F04 dataset.

A demo F04 dataset carries each window's ``t0``; a real upstream one carries only the row
order. Because F03 is a pure function of its F02 and its parameters, recomputing the
windows gives every row its ``t0`` — accepted only when every recomputed OW equals the
row's, since otherwise the rows would be matched to the wrong windows. When neither
works, F07 falls back to matching by OW content. The mode is recorded so the report can
say which join it used.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract import layout
from contract.files import atomic_path
from contract.windows import EventRows, Regime, f03_windows, list_arrays
from upstream.reader import Objective


def recover_t0(objective: Objective) -> tuple[np.ndarray | None, str]:
    """Recompute the F03 windows of the objective's lineage; return their ``t0`` if they
    match the F04 rows one to one, else ``None`` and the reason."""
    windows = objective.windows
    regime = windows.regime()
    tu = regime["Tu"].value
    if not float(tu).is_integer():
        return None, f"Tu = {tu} s is not a whole number of seconds"
    events = windows.events
    rows = EventRows.from_arrow(pq.read_table(events.dataset_path, columns=["segs", "events"]))
    nan_codes = events.nan_codes if windows.nan_strategy == "discard" else ()
    ow, _ = f03_windows(rows, Regime(int(tu), regime["OW"].value, regime["LT"].value, regime["PW"].value,
                                     int(rows.segs[0])), windows.window_strategy, nan_codes)
    codes, offsets = list_arrays(pq.read_table(objective.dataset_path, columns=["OW_events"]).column("OW_events"))
    if len(offsets) != len(ow.offsets):
        return None, (f"recomputing F03 {windows.variant.id} gives {len(ow)} windows, the F04 dataset has "
                      f"{len(offsets) - 1} rows")
    if not (np.array_equal(offsets, ow.offsets) and np.array_equal(codes, ow.codes)):
        first = int(np.flatnonzero((offsets[1:] != ow.offsets[1:]) | (offsets[:-1] != ow.offsets[:-1]))[0]) \
            if not np.array_equal(offsets, ow.offsets) else None
        where = f" (first difference at row {first})" if first is not None else ""
        return None, f"recomputed OW events differ from the F04 rows{where}"
    return ow.t0, f"recomputed from F03 {windows.variant.id} and F02 {events.variant.id}; every OW matches"


def reference_join(objective: Objective, target_dir: Path) -> dict:
    """Describe the packaged reference dataset and settle its join mode, writing the
    recovered ``t0`` beside it when recovery succeeds."""
    table = pq.read_table(objective.dataset_path, columns=["label"])
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
        pq.write_table(pa.table({"t0": pa.array(t0, pa.int64())}), scratch)
    return {**summary, "join": "t0_recovered", "join_note": note, "recovered_t0": recovered}
