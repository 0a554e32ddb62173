"""Figures across decision thresholds from binned counts: what a model's logged
probabilities would have given at any threshold, without retraining or replaying.

Why bins: at upstream scale a model has ~3.9 M windows, and the curves must come out of
one streamed pass in memory that does not grow with the replay. So each quantity is a
histogram over fixed threshold edges (``EDGES`` steps of 1/1000, plus each model's
declared threshold, so that the declared operating point is one of them), and the count
of values ``>= edge`` is a suffix sum. Every figure is then **exact at every edge**; what
binning loses is only the order of values inside one bin (< 0.001 apart). For the ROC
AUC that loss is bounded exactly: two windows of opposite labels in the same bin are
counted as a tie (1/2) where the exact AUC counts 0 or 1, so
``|AUC_exact - AUC_binned| <= sum_b pos_b * neg_b / (2 * P * N)`` (``roc_auc_bound``).
The PR curve's average precision is computed on the same points (the scores rounded down
to their bin).

Alarm episodes at every threshold, in one pass, come from the superlevel sets of the
window sequence: in a path of windows (consecutive grid starts), the runs of windows
with ``p >= t`` number ``#{p_i >= t} - #{min(p_i, p_i+1) >= t}`` (vertices minus edges of
a forest). The runs that hold at least one *marked* window (one that warns a failure)
number ``#{marked p >= t} - #{min of p from one marked window to the next >= t}``. So four
histograms per model and kind of mark give episodes and false alarms at every edge.
"""

from __future__ import annotations

import numpy as np

STEPS = 1000
EDGES = np.round(np.linspace(0.0, 1.0, STEPS + 1), 6)  # k/1000 as written, no float noise
BELOW = -np.inf  # a non-finite output, or a broken path: below every threshold


def threshold_edges(declared: float) -> np.ndarray:
    """The grid's edges with the model's declared threshold among them."""
    return np.unique(np.r_[EDGES, float(declared)])


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """0 for a value below every edge (BELOW), else 1 + the last edge <= value."""
    return np.searchsorted(edges, values, side="right")


def at_least(histogram: np.ndarray) -> np.ndarray:
    """Per edge k: how many counted values are >= edges[k] (``histogram`` has
    len(edges) + 1 bins, bin 0 holding the values below every edge)."""
    return np.cumsum(histogram[::-1])[::-1][1:]


class Histogram:
    def __init__(self, edges: np.ndarray):
        self.edges = edges
        self.counts = np.zeros(len(edges) + 1, np.int64)

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.counts += np.bincount(bin_index(self.edges, values), minlength=len(self.counts))

    def at_least(self) -> np.ndarray:
        return at_least(self.counts)


class EpisodeTally:
    """One model's windows in time order (fed batch by batch): runs of windows at or above
    each edge (alarm episodes), and among them those holding a marked window, per kind of
    mark. Windows are consecutive when their starts are ``step`` seconds apart; any other
    gap ends an episode."""

    def __init__(self, edges: np.ndarray, step: int, kinds: tuple[str, ...]):
        self.edges, self.step = edges, step
        self.vertices, self.edges_min = Histogram(edges), Histogram(edges)
        self.marked = {kind: Histogram(edges) for kind in kinds}
        self.paths = {kind: Histogram(edges) for kind in kinds}
        self.pending = dict.fromkeys(kinds)  # min of the edge values since the last marked window
        self.last_t0 = self.last_value = None

    def add(self, t0: np.ndarray, values: np.ndarray, marks: dict[str, np.ndarray]) -> None:
        if not len(t0):
            return
        previous_t0 = np.r_[self.last_t0 if self.last_t0 is not None else t0[0] - 2 * self.step, t0[:-1]]
        previous_value = np.r_[self.last_value if self.last_value is not None else BELOW, values[:-1]]
        adjacent = t0 - previous_t0 == self.step
        # an edge's value is the lower of its two windows; no edge (a gap) is BELOW
        link = np.where(adjacent, np.minimum(previous_value, values), BELOW)
        self.vertices.add(values)
        self.edges_min.add(link[adjacent])
        for kind, mark in marks.items():
            at = np.flatnonzero(mark)
            if not len(at):
                if self.pending[kind] is not None:
                    self.pending[kind] = min(self.pending[kind], float(link.min()))
                continue
            self.marked[kind].add(values[at])
            # path minima: [0, at0], (at0, at1], ... over the link values
            minima = np.minimum.reduceat(link[:at[-1] + 1], np.r_[0, at[:-1] + 1])
            if self.pending[kind] is not None:
                minima[0] = min(minima[0], self.pending[kind])
                self.paths[kind].add(minima)
            else:
                self.paths[kind].add(minima[1:])
            tail = link[at[-1] + 1:]
            self.pending[kind] = float(tail.min()) if len(tail) else np.inf
        self.last_t0, self.last_value = int(t0[-1]), float(values[-1])

    def episodes(self) -> np.ndarray:
        return self.vertices.at_least() - self.edges_min.at_least()

    def marked_episodes(self, kind: str) -> np.ndarray:
        return self.marked[kind].at_least() - self.paths[kind].at_least()


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise, NaN (undefined) where the denominator is 0, never 0: as the
    window-level metrics (``scoring.ratios``)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.full_like(numerator, np.nan), where=denominator > 0)


def roc_auc(tpr: np.ndarray, fpr: np.ndarray) -> float:
    """Trapezoids under the ROC points (edges ascending: rates descending), closed at
    (0, 0) and (1, 1); NaN when the rates are (windows of one class only)."""
    return float(-np.trapezoid(np.r_[1.0, tpr, 0.0], np.r_[1.0, fpr, 0.0]))


def roc_auc_bound(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The most the binned AUC can differ from the exact one: half the share of
    (positive, negative) pairs that share a bin (NaN where there is no pair, as the AUC)."""
    total = positives.sum() * negatives.sum()
    return float((positives * negatives).sum() / (2 * total)) if total else float("nan")


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """sum over edges, from the highest, of (recall gained) x precision there. NaN when
    recall is (no positive window); an edge that gains no recall adds nothing, even where
    its precision is undefined (nothing predicted positive there)."""
    if np.isnan(recall).any():
        return float("nan")
    gained = recall - np.r_[recall[1:], 0.0]
    return float(np.sum(np.where(gained > 0, gained * np.nan_to_num(precision), 0.0)))
