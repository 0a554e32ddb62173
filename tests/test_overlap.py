"""The infer stage's worker thread (``Overlapped``): the replay keeps sending while earlier
answers are logged and compared, and nothing is lost, reordered or swallowed."""
import threading

import pytest

from f07_validation.overlap import Overlapped


def test_every_item_is_consumed_in_order_before_the_block_ends():
    seen = []
    with Overlapped(seen.append, depth=2) as worker:
        for item in range(50):
            worker.put(item)
    assert seen == list(range(50))


def test_a_consumer_error_stops_the_replay_and_is_raised():
    seen = []

    def consume(item):
        if item == 3:
            raise OSError("disk full")
        seen.append(item)

    with pytest.raises(OSError, match="disk full"):
        with Overlapped(consume, depth=1) as worker:
            for item in range(1_000):
                worker.put(item)
    assert seen == [0, 1, 2]


def test_a_replay_error_stops_the_worker_and_propagates():
    release, seen = threading.Event(), []

    def consume(item):
        release.wait(5)
        seen.append(item)

    with pytest.raises(KeyError):
        with Overlapped(consume, depth=2) as worker:
            worker.put(0)
            worker.put(1)
            release.set()
            raise KeyError("replay failed")
    assert len(seen) <= 2  # what was queued may be consumed; nothing hangs


def test_time_waiting_for_a_slow_consumer_is_counted_apart():
    """The replay's own time is the wall time minus the waits on the worker."""
    release = threading.Event()
    with Overlapped(lambda item: release.wait(5), depth=1) as worker:
        worker.put(0)  # taken by the worker, which then waits
        worker.put(1)  # fills the queue
        threading.Timer(0.2, release.set).start()
        worker.put(2)  # waits until the worker takes item 1
    assert worker.blocked_seconds > 0.1
