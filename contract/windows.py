"""Window geometry of the F03 regime, the one implementation the whole project uses.

F03 (the demo's, and the recovery of `t0` for real upstream files), the F07 replay client
and the tests all cut windows here, so that a window means the same thing everywhere: a
window starting at ``t0`` observes ``[t0, t0 + OW*Tu)`` and predicts over
``[t0 + (OW+LT)*Tu, t0 + (OW+LT+PW)*Tu)``; starts lie on the grid ``origin + k*Tu``.

Event rows and windows are kept as flat arrays plus offsets (the layout of an Arrow list
column), so cutting thousands of windows is a handful of ``searchsorted`` and gather calls
rather than a Python loop per window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW_STRATEGIES = ("synchro", "asynOW", "withinPW", "asynPW")


def list_arrays(column) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow list column (chunked or not, any integer width, nulls as empty lists) as
    flat int64 ``codes`` and ``offsets`` starting at 0."""
    if hasattr(column, "combine_chunks"):
        column = column.combine_chunks()
    if column.null_count:
        column = column.fill_null([])
    offsets = np.asarray(column.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = np.asarray(column.values.to_numpy(zero_copy_only=False), dtype=np.int64)
    return values[offsets[0]:offsets[-1]], offsets - offsets[0]


@dataclass(frozen=True)
class Regime:
    """The temporal regime: ``Tu`` in seconds, ``OW``/``LT``/``PW`` in units of ``Tu``,
    ``origin`` the first ``segs`` of the F02 dataset (the grid's zero)."""

    Tu: int
    OW: int
    LT: int
    PW: int
    origin: int

    def __post_init__(self):
        for name in ("Tu", "OW", "LT", "PW", "origin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"regime {name} must be an integer, got {value!r}")
        if self.Tu <= 0 or self.OW <= 0 or self.PW <= 0 or self.LT < 0:
            raise ValueError(f"regime needs Tu, OW, PW > 0 and LT >= 0, got {self}")

    @property
    def ow_seconds(self) -> int:
        return self.OW * self.Tu

    @property
    def pw_start_seconds(self) -> int:
        return (self.OW + self.LT) * self.Tu

    @property
    def horizon_seconds(self) -> int:
        return (self.OW + self.LT + self.PW) * self.Tu


@dataclass(frozen=True)
class EventRows:
    """F02 rows: ``segs`` ascending, row ``i``'s codes are ``codes[offsets[i]:offsets[i+1]]``."""

    segs: np.ndarray
    codes: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_arrow(cls, table) -> "EventRows":
        """From a pyarrow Table or RecordBatch with ``segs`` and a list column ``events``.

        Works on the Arrow buffers directly (no pyarrow import needed here): null lists
        count as empty, any integer width is accepted.
        """
        segs = np.asarray(table.column("segs").to_numpy(zero_copy_only=False), dtype=np.int64)
        codes, offsets = list_arrays(table.column("events"))
        return cls(segs=segs, codes=codes, offsets=offsets)

    @classmethod
    def from_lists(cls, segs, events) -> "EventRows":
        lengths = np.fromiter((len(e) for e in events), dtype=np.int64, count=len(events))
        offsets = np.zeros(len(events) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = np.fromiter((c for e in events for c in e), dtype=np.int64, count=int(offsets[-1]))
        return cls(segs=np.asarray(segs, dtype=np.int64), codes=codes, offsets=offsets)

    def __len__(self) -> int:
        return len(self.segs)

    def slice(self, start_row: int, stop_row: int) -> "EventRows":
        offsets = self.offsets[start_row:stop_row + 1]
        return EventRows(
            segs=self.segs[start_row:stop_row],
            codes=self.codes[offsets[0]:offsets[-1]],
            offsets=offsets - offsets[0],
        )

    def concat(self, other: "EventRows") -> "EventRows":
        return EventRows(
            segs=np.concatenate([self.segs, other.segs]),
            codes=np.concatenate([self.codes, other.codes]),
            offsets=np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]),
        )


@dataclass(frozen=True)
class Windows:
    """Windows as ragged flat lists: window ``i`` holds ``codes[offsets[i]:offsets[i+1]]``."""

    t0: np.ndarray
    codes: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.t0)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def lists(self) -> list[list[int]]:
        """Per-window Python lists, the shape JSON wants."""
        flat = self.codes.tolist()
        bounds = self.offsets.tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def select(self, mask_or_index) -> "Windows":
        index = np.flatnonzero(mask_or_index) if np.asarray(mask_or_index).dtype == bool \
            else np.asarray(mask_or_index, dtype=np.int64)
        codes, offsets = _gather(self.codes, self.offsets[index], self.offsets[index + 1])
        return Windows(t0=self.t0[index], codes=codes, offsets=offsets)


def _gather(codes: np.ndarray, starts: np.ndarray, stops: np.ndarray):
    """Concatenate ``codes[starts[i]:stops[i]]`` for every ``i`` without a Python loop."""
    lengths = (stops - starts).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return codes[:0].astype(np.int64), offsets
    # position j of the output comes from starts[w] + (j - offsets[w]) for its window w
    window_of = np.repeat(np.arange(len(lengths)), lengths)
    index = np.arange(total, dtype=np.int64) - offsets[window_of] + starts[window_of]
    return codes[index].astype(np.int64, copy=False), offsets


def grid_starts(regime: Regime, first: int, last: int) -> np.ndarray:
    """Grid starts ``t0`` whose whole OW lies in ``[first, last]``: ``first <= t0`` and
    ``t0 + OW*Tu <= last``. Used by a replay that may begin mid-stream (a cold start)."""
    k_first = -((regime.origin - first) // regime.Tu)  # ceil((first - origin) / Tu)
    k_last = (last - regime.ow_seconds - regime.origin) // regime.Tu
    if k_last < k_first:
        return np.zeros(0, dtype=np.int64)
    return regime.origin + regime.Tu * np.arange(k_first, k_last + 1, dtype=np.int64)


def events_between(rows: EventRows, t0: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Windows:
    """The codes of the rows with ``starts[i] <= segs < ends[i]``, in time order."""
    row_first = np.searchsorted(rows.segs, starts, side="left")
    row_stop = np.searchsorted(rows.segs, ends, side="left")
    codes, offsets = _gather(rows.codes, rows.offsets[row_first], rows.offsets[row_stop])
    return Windows(t0=np.asarray(t0, dtype=np.int64), codes=codes, offsets=offsets)


def ow_windows(rows: EventRows, regime: Regime, t0: np.ndarray) -> Windows:
    t0 = np.asarray(t0, dtype=np.int64)
    return events_between(rows, t0, t0, t0 + regime.ow_seconds)


def pw_windows(rows: EventRows, regime: Regime, t0: np.ndarray) -> Windows:
    t0 = np.asarray(t0, dtype=np.int64)
    return events_between(rows, t0, t0 + regime.pw_start_seconds, t0 + regime.horizon_seconds)


def f03_windows(rows: EventRows, regime: Regime, strategy: str = "synchro",
                nan_codes=()) -> tuple[Windows, Windows]:
    """The windows F03 writes, as (OW windows, PW windows) sharing ``t0``.

    Starts advance by ``Tu`` from the first row while ``t0 + (OW+LT+PW)*Tu`` is at most
    the last ``segs``; a window whose OW and PW are both empty is never written; the
    strategy keeps: synchro, either non-empty; asynOW, OW non-empty; withinPW, PW
    non-empty; asynPW, an event at the start of PW (the row at ``t0 + (OW+LT)*Tu``).
    ``nan_codes`` (the ``*_NaN_NaN`` events, for ``nan_strategy: discard``) drop windows
    whose OW or PW holds one.
    """
    if strategy not in WINDOW_STRATEGIES:
        raise ValueError(f"unknown window_strategy {strategy!r}; expected one of {WINDOW_STRATEGIES}")
    if len(rows) == 0:
        empty = Windows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
        return empty, empty
    last = int(rows.segs[-1])
    count = (last - regime.horizon_seconds - regime.origin) // regime.Tu + 1
    t0 = regime.origin + regime.Tu * np.arange(max(count, 0), dtype=np.int64)
    ow = ow_windows(rows, regime, t0)
    pw = pw_windows(rows, regime, t0)
    ow_full, pw_full = ow.lengths() > 0, pw.lengths() > 0
    keep = ow_full | pw_full
    if strategy == "asynOW":
        keep &= ow_full
    elif strategy == "withinPW":
        keep &= pw_full
    elif strategy == "asynPW":
        pw_start = t0 + regime.pw_start_seconds
        at = np.searchsorted(rows.segs, pw_start)
        at_clipped = np.minimum(at, len(rows) - 1)
        starts_with_event = (rows.segs[at_clipped] == pw_start) & (
            rows.offsets[at_clipped + 1] > rows.offsets[at_clipped])
        keep &= starts_with_event
    if len(nan_codes):
        nan_codes = np.asarray(list(nan_codes), dtype=np.int64)
        keep &= ~_any_code(ow, nan_codes) & ~_any_code(pw, nan_codes)
    return ow.select(keep), pw.select(keep)


def _any_code(windows: Windows, codes: np.ndarray) -> np.ndarray:
    """Per window: does it hold any of ``codes``?"""
    hit = np.isin(windows.codes, codes).astype(np.int64)
    cumulative = np.concatenate([[0], np.cumsum(hit)])
    return cumulative[windows.offsets[1:]] > cumulative[windows.offsets[:-1]]
