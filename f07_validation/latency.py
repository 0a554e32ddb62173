"""Per-batch request latency of a replay, as served: p50, p90 and p99 per batch size, in
memory that does not grow with the replay.

A replay at upstream scale sends ~15,000 batches of 256 windows (3.9 M at one window a
batch), so latencies are counted in log-spaced bins (``RATIO`` wide, from ``LOWEST`` s)
rather than kept: a percentile is the upper edge of the bin holding its rank (nearest
rank), at most ``RATIO - 1`` (1%) above the latency that holds it. Wall clock: written
only to untracked files (``timing.json``).
"""

from __future__ import annotations

import math

import numpy as np

LOWEST = 1e-5    # s: faster answers count in the first bin
RATIO = 1.01     # each bin's upper edge over its lower one
BINS = int(math.ceil(math.log(1e4 / LOWEST) / math.log(RATIO)))  # up to 10,000 s; slower: last bin
PERCENTILES = (50, 90, 99)
NOTE = ("per request of the replay, from sending it to its answer decoded and checked, with the replay's "
        "requests in flight (the server's queueing included); percentiles by nearest rank over bins 1% wide "
        "(at most 1% high); keyed by the batch's window count")


class LatencyHistogram:
    def __init__(self):
        self.counts: dict[int, np.ndarray] = {}

    def add(self, windows: int, seconds: float) -> None:
        position = 0 if seconds <= LOWEST else min(BINS - 1, int(math.log(seconds / LOWEST) / math.log(RATIO)) + 1)
        self.counts.setdefault(windows, np.zeros(BINS, np.int64))[position] += 1

    def summary(self) -> dict[str, dict]:
        """``{"<windows>": {"batches", "p50", "p90", "p99"}}``, milliseconds."""
        found = {}
        for windows, counts in sorted(self.counts.items()):
            cumulative = np.cumsum(counts)
            total = int(cumulative[-1])
            item = {"batches": total}
            for percentile in PERCENTILES:
                rank = max(1, math.ceil(percentile / 100 * total))
                position = int(np.searchsorted(cumulative, rank))
                item[f"p{percentile}"] = round(1000 * LOWEST * RATIO ** position, 3)
            found[str(windows)] = item
        return found
