"""From measured signals to an event stream, the way upstream F02 does it.

Each signal's range ``[min, max]`` (NaN ignored) is cut at percentages of its span
(``band_thresholds_pct``, e.g. 20/40/60/80 give bands ``0_20`` … ``80_100``). An event
is a band *transition* between two consecutive samples, named
``<signal>_<from>-to-<to>`` (``battery_active_power_60_80-to-80_100``); a missing sample
is the level event ``<signal>_NaN_NaN``, and no transition is emitted into or out of a
gap. The catalog numbers every possible event 1..N, signal by signal (all transitions,
then the NaN event), so code 0 is never used, as upstream.

Rows are kept as flat ``codes`` + ``offsets`` (Arrow's list layout), built with array
operations: a row holds at most one event per signal, in signal order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.artifacts import DemoError

NAN_SUFFIX = "_NaN_NaN"


@dataclass(frozen=True)
class Bands:
    cuts: np.ndarray       # len(labels) + 1 ascending values, from min to max
    labels: tuple[str, ...]

    def index(self, values: np.ndarray) -> np.ndarray:
        """Band index per value (NaN gives an arbitrary index: mask NaN separately)."""
        found = np.searchsorted(self.cuts, values, side="right") - 1
        return np.clip(found, 0, len(self.labels) - 1)


@dataclass(frozen=True)
class EventStream:
    codes: np.ndarray      # int64
    offsets: np.ndarray    # int64, one more than rows
    catalog: dict[str, int]
    bands: dict[str, Bands]


def bands_of(values: np.ndarray, thresholds_pct) -> Bands:
    """A constant signal gets the single band ``0_100`` (as upstream)."""
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high == low:
        return Bands(cuts=np.array([low, high]), labels=("0_100",))
    pct = [0.0, *(float(p) for p in thresholds_pct), 100.0]
    if any(b <= a for a, b in zip(pct, pct[1:])):
        raise DemoError(f"band_thresholds_pct must rise strictly between 0 and 100, got {list(thresholds_pct)}")
    cuts = np.array([low + p / 100.0 * (high - low) for p in pct])
    labels = tuple(f"{int(a)}_{int(b)}" for a, b in zip(pct, pct[1:]))
    return Bands(cuts=cuts, labels=labels)


def catalog_of(bands: dict[str, Bands]) -> dict[str, int]:
    names = []
    for signal, band in bands.items():
        names += [f"{signal}_{a}-to-{b}" for a in band.labels for b in band.labels if a != b]
        names.append(f"{signal}{NAN_SUFFIX}")
    return {name: code for code, name in enumerate(names, start=1)}


def discretize(signals: dict[str, np.ndarray], thresholds_pct) -> EventStream:
    """Signals (equal length, sampled every Tu, in the catalog's order) to events."""
    bands = {name: bands_of(values, thresholds_pct) for name, values in signals.items()}
    catalog = catalog_of(bands)
    per_signal = []
    for name, values in signals.items():
        band = bands[name]
        size = len(band.labels)
        transition = np.zeros((size, size), dtype=np.int64)
        for a, from_label in enumerate(band.labels):
            for b, to_label in enumerate(band.labels):
                if a != b:
                    transition[a, b] = catalog[f"{name}_{from_label}-to-{to_label}"]
        missing = np.isnan(values)
        index = band.index(np.where(missing, band.cuts[0], values))
        codes = np.zeros(len(values), dtype=np.int64)
        both_present = ~missing[1:] & ~missing[:-1]
        codes[1:] = np.where(both_present, transition[index[:-1], index[1:]], 0)
        codes[missing] = catalog[f"{name}{NAN_SUFFIX}"]
        per_signal.append(codes)
    table = np.stack(per_signal, axis=1)            # rows x signals, 0 = no event
    present = table != 0
    offsets = np.zeros(len(table) + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    return EventStream(codes=table[present], offsets=offsets, catalog=catalog, bands=bands)
