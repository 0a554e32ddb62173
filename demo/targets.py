"""Labels of a prediction objective, as upstream F04 defines them.

A window is positive when its prediction window (PW) holds any (``OR``) or all
(``AND``) of the objective's events. Upstream implements only OR; AND costs one line
more here and lets the demo exercise readers that accept both.
"""
from __future__ import annotations

import numpy as np

from demo.artifacts import DemoError

OPERATORS = ("OR", "AND")


def objective_codes(events: list, catalog: dict, where: str) -> np.ndarray:
    """The codes of the objective's event names; unknown names are an error naming them."""
    unknown = [name for name in events if name not in catalog]
    if unknown:
        raise DemoError(f"{where}: events {unknown} are not in the F02 event catalog "
                        f"(names look like 'battery_active_power_60_80-to-80_100')")
    return np.array(sorted({catalog[name] for name in events}), dtype=np.int64)


def labels(pw_codes: np.ndarray, pw_offsets: np.ndarray, codes: np.ndarray, operator: str) -> np.ndarray:
    """int8 label per window from its PW codes (flat ``codes`` + ``offsets``)."""
    if operator not in OPERATORS:
        raise DemoError(f"operator must be one of {list(OPERATORS)}, got {operator!r}")
    windows = len(pw_offsets) - 1
    window_of = np.repeat(np.arange(windows), np.diff(pw_offsets))
    hit = np.isin(pw_codes, codes)
    # distinct objective codes present in each window
    pairs = np.unique(np.stack([window_of[hit], pw_codes[hit]]), axis=1)
    present = np.bincount(pairs[0], minlength=windows)
    needed = 1 if operator == "OR" else len(codes)
    return (present >= needed).astype(np.int8)
