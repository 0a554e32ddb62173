"""Keep TensorFlow's and absl's start-up noise off stderr. Import this module first, before
anything that imports TensorFlow or Keras, in every entry point that loads them (the
stages, the demo's training, the server).

``TF_CPP_MIN_LOG_LEVEL`` alone no longer does it: TensorFlow 2.21's C++ code logs through
absl before anyone calls ``absl::InitializeLog``, and such messages go to file descriptor 2
whatever the level (``WARNING: All log messages before absl::InitializeLog() ...``,
``I0000 ... port.cc] oneDNN custom operations are on ...``, and ``E0000 ...
node_def_util.cc] NodeDef mentions attribute ...`` each time Keras builds a tf.data
pipeline). Python's logging cannot reach them, so fd 2 becomes a pipe that a thread reads,
dropping those lines and forwarding everything else. Python's own ``sys.stderr``
(tracebacks, progress bars, the stages' messages) and faulthandler's crash dumps write to
the real stderr directly, so nothing of ours waits on the thread or depends on it.

Kept: every other line, C++ errors and fatal messages included. ``TF_CPP_MIN_LOG_LEVEL=0``
in the environment turns the filter off (everything TensorFlow says, unfiltered).
"""
from __future__ import annotations

import atexit
import faulthandler
import io
import logging
import os
import re
import sys
import threading

# absl's C++ log line: severity + MMDD, time (before InitializeLog: `00:00:<epoch s>.<us>`),
# thread id, file:line]. INFO and WARNING are dropped; of the errors only the NodeDef
# attribute mismatch between TensorFlow's graph and op versions, which is harmless.
NOISE = re.compile(
    rb"(?:[IW]\d{4} [\d:.]+ +\d+ [\w.+-]+:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")
# The longest prefix NOISE needs to tell a line apart: a partial line shorter than this
# that could still become noise waits for its end, anything else is forwarded at once.
DECIDING_PREFIX = 96


def _is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def _could_become_noise(partial: bytes) -> bool:
    """A line still being written that may yet match NOISE (progress bars, which end in
    ``\\r`` and not ``\\n``, never do, so they are shown as they come)."""
    return _is_noise(partial) or (len(partial) < DECIDING_PREFIX and partial[:1] in (b"I", b"W", b"E"))


class _StderrFilter:
    """fd 2 -> pipe -> this thread -> the real stderr, minus NOISE lines."""

    def __init__(self):
        sys.stderr.flush()
        self.real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.pipe_identity = _identity(2)
        self.read_end = read_end
        self.thread = threading.Thread(target=self._forward, name="stderr-filter", daemon=True)
        self.thread.start()
        sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(self.real), "w"), encoding=sys.stderr.encoding,
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        atexit.register(self.close)

    def _forward(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self.read_end, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not _is_noise(line))
            if pending and not _could_become_noise(pending):
                out, pending = out + pending, b""
            if out:
                os.write(self.real, out)
        if pending and not _is_noise(pending):
            os.write(self.real, pending)
        os.close(self.read_end)

    def close(self) -> None:
        """Put the real stderr back on fd 2 (unless someone else has replaced it since,
        as pytest's capture does) and forward what is still in the pipe."""
        sys.stderr.flush()
        if _identity(2) == self.pipe_identity:
            os.dup2(self.real, 2)
        self.thread.join(timeout=2)  # a child process still holding the pipe keeps it open


def _identity(fd: int) -> tuple[int, int]:
    status = os.fstat(fd)
    return status.st_dev, status.st_ino


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow loads: too late after
logging.getLogger("absl").setLevel(logging.ERROR)  # Keras' "saving as HDF5 ... legacy" warnings
logging.getLogger("tensorflow").setLevel(logging.ERROR)
if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
    _StderrFilter()
