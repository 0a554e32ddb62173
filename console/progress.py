"""Progress of long work, one way everywhere: ``progress(...)`` is a tqdm bar with the
project's settings (percentage, count, elapsed, ETA and rate), on stderr.

On a terminal the bar redraws in place every half second. Elsewhere (DVC run from a
script, CI, a test capturing output) an in-place bar would pile its redraws into one
line, so the bar prints a plain line every ``LOG_INTERVAL_S`` seconds and a last one when
it closes: a log that shows progress at a sane rate. tqdm's own ``TQDM_*`` environment
variables (e.g. ``TQDM_DISABLE=1``) still apply.
"""
from __future__ import annotations

import sys

from tqdm import tqdm

TERMINAL_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


class _LogLines:
    """A file for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line and line != self.last:  # closing redraws the last state once more
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable=None, *, desc: str, total: float | None = None, unit: str = "it",
             unit_scale: bool = False, **options) -> tqdm:
    """A progress bar over ``iterable`` (or updated by hand with ``.update(n)``): ``desc``
    says what is counted, ``unit`` in what (``unit="B", unit_scale=True`` for bytes)."""
    stream = sys.stderr
    interactive = stream.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale,
                file=stream if interactive else _LogLines(stream),
                mininterval=TERMINAL_INTERVAL_S if interactive else LOG_INTERVAL_S,
                dynamic_ncols=interactive, ascii=not interactive, **options)
