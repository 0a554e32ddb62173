"""Overlap the replay with what is done with its answers: the infer stage's worker thread.

Serving is the replay's job (cutting windows, HTTP, the server); logging each answer
(parquet + CSV) and comparing it with the models in-process are not, and done in between
requests they left the server idle for about half of infer's time. ``Overlapped`` runs
them on a worker thread while the replay keeps sending; numpy, Arrow, the CSV writer and
TensorFlow release the GIL for their work, so the two proceed side by side.
"""
from __future__ import annotations

import queue
import threading
import time


class Overlapped:
    """``consume(item)`` on a worker thread, at most ``depth`` items waiting, so that the
    replay keeps the server busy while earlier answers are logged and compared
    in-process (numpy, Arrow and TensorFlow release the GIL for their work).

    Items are consumed in order. An exception in the worker stops the replay at its next
    ``put`` and is raised again from there (or on leaving the block); leaving the block
    early (an exception in the replay) stops the worker after the item it is on.
    ``blocked_seconds`` is how long ``put`` waited for the worker: the replay's own time
    is the wall time minus it. ``depth`` has no default: how many items may wait is the
    caller's trade of memory against stalls (the infer stage's: ``LOG_QUEUE_BATCHES``)."""

    _END = object()

    def __init__(self, consume, depth: int):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="prediction-log", daemon=True)
        self.blocked_seconds = 0.0

    def __enter__(self) -> "Overlapped":
        self._thread.start()
        return self

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as error:  # handed to the replay thread
                self._error = error
                self._stop.set()
                return

    def put(self, item) -> None:
        started = time.perf_counter()
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        self.blocked_seconds += time.perf_counter() - started

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put(self._END, timeout=0.1)
                break
            except queue.Full:
                if self._error is not None or self._stop.is_set():
                    break
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error
