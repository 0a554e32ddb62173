"""Model inputs rebuilt from event windows, exactly as each model's ``model_summary.json`` says.

F05 trained every model on inputs built from its saved vocabulary; serving gives the same
answers only if the input is rebuilt bit for bit the same way (CONTRACT.md, F05):

- ``dense_bow``: float32 ``[n, input_dim]``; column ``i`` counts the occurrences of
  ``vocab[i]`` in the window; other codes are ignored.
- ``sequence``: int32 ``[n, max_len]``; a code becomes ``1 + its position in vocab``,
  unknown codes are dropped first, the **last** ``max_len`` codes are kept and the row is
  padded with 0 on the **left**.

Windows arrive as one flat code array plus offsets (the layout of ``windows.Windows`` and
of an Arrow list column), so a whole batch is built with a few array operations: one
table lookup maps codes to vocabulary positions, ``bincount`` counts them, one scatter
places the sequences. A Python loop per window would cost more than the model call
(PERFORMANCE.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

KINDS = ("dense_bow", "sequence")

# A vocabulary is turned into a dense code -> position table; upstream codes run 1..N, so
# anything this large is a corrupt summary rather than a real catalog.
_MAX_CODE = 1 << 24


class VectorizationError(ValueError):
    """A ``vectorization`` block that cannot rebuild a model input."""


@dataclass(frozen=True)
class Ragged:
    """Windows without their times: window ``i`` holds ``codes[offsets[i]:offsets[i+1]]``.

    ``windows.Windows`` has the same two fields, so either can be vectorized.
    """

    codes: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> "Ragged":
        """From per-window lists of Python ints (e.g. a JSON request).

        Raises ``TypeError`` if an element is not an ``int`` (``bool`` included: JSON
        ``true`` is not an event code) and ``OverflowError`` if one exceeds int64.
        """
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=offsets[1:])
        flat = list(chain.from_iterable(lists))
        if set(map(type, flat)) - {int}:
            raise TypeError("window codes must be integers")
        return cls(codes=np.array(flat, dtype=np.int64), offsets=offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


class _CodeIndex:
    """Event code -> position in the vocabulary (-1 when the code is not in it)."""

    def __init__(self, vocab, where: str):
        if not isinstance(vocab, list) or not all(type(c) is int for c in vocab):
            raise VectorizationError(f"{where}: 'vocab' must be a list of integer event codes")
        if len(set(vocab)) != len(vocab):
            raise VectorizationError(f"{where}: 'vocab' repeats a code, so a code would have two "
                                     "positions; the summary is corrupt (re-export it from F05)")
        if vocab and not 0 <= min(vocab) <= max(vocab) < _MAX_CODE:
            raise VectorizationError(f"{where}: 'vocab' codes must lie in [0, {_MAX_CODE}), "
                                     f"got [{min(vocab)}, {max(vocab)}]")
        self.size = len(vocab)
        self._table = np.full(max(vocab, default=-1) + 1, -1, dtype=np.int64)
        self._table[np.asarray(vocab, dtype=np.int64)] = np.arange(len(vocab), dtype=np.int64)

    def positions(self, codes: np.ndarray) -> np.ndarray:
        inside = (codes >= 0) & (codes < len(self._table))
        positions = np.full(codes.shape, -1, dtype=np.int64)
        positions[inside] = self._table[codes[inside]]
        return positions


def _window_of_each_code(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def _positive_int(spec: dict, key: str, where: str) -> int:
    value = spec.get(key)
    if type(value) is not int or value <= 0:
        raise VectorizationError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


class DenseBow:
    """Counts of each vocabulary code per window, float32 ``[n, input_dim]``."""

    kind = "dense_bow"
    dtype = np.dtype(np.float32)

    def __init__(self, spec: dict, where: str):
        self.width = _positive_int(spec, "input_dim", where)
        self._index = _CodeIndex(spec.get("vocab"), where)
        if self._index.size > self.width:
            raise VectorizationError(f"{where}: 'vocab' has {self._index.size} codes but 'input_dim' "
                                     f"is {self.width}; each code needs its own column")

    def __call__(self, windows) -> np.ndarray:
        n = len(windows.offsets) - 1
        positions = self._index.positions(windows.codes)
        known = positions >= 0
        cells = _window_of_each_code(windows.offsets)[known] * self.width + positions[known]
        counts = np.bincount(cells, minlength=n * self.width)
        return counts.reshape(n, self.width).astype(self.dtype)


class Sequence:
    """The last ``max_len`` known codes as ``1 + vocab position``, left-padded with 0, int32."""

    kind = "sequence"
    dtype = np.dtype(np.int32)

    def __init__(self, spec: dict, where: str):
        self.width = _positive_int(spec, "max_len", where)
        vocab_size = _positive_int(spec, "vocab_size", where)
        self._index = _CodeIndex(spec.get("vocab"), where)
        # Upstream writes vocab_size = len(vocab) and sizes its Embedding vocab_size + 1
        # (ids 1..len(vocab), 0 for padding): a smaller vocab_size cannot hold the ids.
        if self._index.size > vocab_size:
            raise VectorizationError(f"{where}: 'vocab' has {self._index.size} codes but "
                                     f"'vocab_size' is {vocab_size}; ids 1..{self._index.size} "
                                     "would overflow the model's embedding")

    def __call__(self, windows) -> np.ndarray:
        n = len(windows.offsets) - 1
        positions = self._index.positions(windows.codes)
        known = positions >= 0
        window = _window_of_each_code(windows.offsets)[known]
        ids = positions[known] + 1
        # Rank of each kept code counted from the end of its window: 0 is the last one.
        window_end = np.cumsum(np.bincount(window, minlength=n))
        from_end = window_end[window] - np.arange(len(ids)) - 1
        keep = from_end < self.width
        out = np.zeros((n, self.width), dtype=self.dtype)
        out[window[keep], self.width - 1 - from_end[keep]] = ids[keep]
        return out


def from_spec(spec, where: str) -> DenseBow | Sequence:
    """The vectorizer for a ``model_summary.json`` ``vectorization`` block.

    ``where`` names the summary in error messages (which model, which file).
    """
    kind = spec.get("vectorization") if isinstance(spec, dict) else None
    if kind == "dense_bow":
        return DenseBow(spec, where)
    if kind == "sequence":
        return Sequence(spec, where)
    raise VectorizationError(f"{where}: 'vectorization.vectorization' is {kind!r}; this runtime "
                             f"builds inputs only for {list(KINDS)}")
