"""The replay client (windows on the package grid, streamed) and the server's lifetime
under ServerProcess: it never outlives the process that started it."""
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from builders.packages import DEFAULT_REGIME, ModelDef, build_served_package
from contract.manifest import load_manifest
from contract.windows import EventRows, grid_starts, ow_windows
from f07_validation.client import ReplayError, ServerProcess, replay, replay_windows
from runtime.models import EquivalenceCheck, load_models

REPO = Path(__file__).resolve().parent.parent


def irregular_rows(seed: int = 0) -> EventRows:
    """Rows at irregular instants (gaps longer than Tu too), starting off the grid."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([1, 2, 3, 25, 61], size=1500, p=[0.5, 0.2, 0.2, 0.07, 0.03])
    segs = DEFAULT_REGIME.origin + 7 + np.concatenate([[0], np.cumsum(gaps)[:-1]])
    counts = rng.poisson(1.0, size=len(segs))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    codes = rng.integers(1, 45, size=int(offsets[-1]), dtype=np.int64)
    return EventRows(segs=segs.astype(np.int64), codes=codes, offsets=offsets)


@pytest.fixture(scope="module")
def replay_manifest(tmp_path_factory):
    models = [ModelDef("obj_a", "dense_bow", vocab=list(range(1, 41)), seed=1),
              ModelDef("obj_a", "sequence_embedding", source_f05="v502", vocab=list(range(1, 41)),
                       width=30, seed=2)]
    return build_served_package(tmp_path_factory.mktemp("client"), models, replay=irregular_rows())


def reference_windows():
    rows = irregular_rows()
    t0 = grid_starts(DEFAULT_REGIME, int(rows.segs[0]), int(rows.segs[-1]))
    return ow_windows(rows, DEFAULT_REGIME, t0)


@pytest.mark.parametrize("rows_per_read, batch_size", [(1, 1), (7, 50), (100, 256), (10 ** 6, 256)])
def test_replay_windows_stream_the_whole_grid_in_batches(replay_manifest, rows_per_read, batch_size):
    manifest = load_manifest(replay_manifest)
    batches = list(replay_windows(manifest.replay_path(), manifest.regime(), batch_size,
                                 rows_per_read=rows_per_read))
    expected = reference_windows()
    assert all(len(b) == batch_size for b in batches[:-1]) and 0 < len(batches[-1]) <= batch_size
    np.testing.assert_array_equal(np.concatenate([b.t0 for b in batches]), expected.t0)
    assert [w for b in batches for w in b.lists()] == expected.lists()


def test_replay_starts_on_the_package_grid_after_a_cold_start(replay_manifest):
    manifest = load_manifest(replay_manifest)
    first = next(replay_windows(manifest.replay_path(), manifest.regime(), 10))
    regime = manifest.regime()
    # The replay starts 7 s after the origin: the first window is the next grid point.
    assert first.t0[0] == regime.origin + regime.Tu
    assert ((first.t0 - regime.origin) % regime.Tu == 0).all()


def test_replay_through_the_server_answers_every_window_like_in_process(replay_manifest):
    manifest = load_manifest(replay_manifest)
    check = EquivalenceCheck(load_models(manifest))
    progress = io.StringIO()
    with ServerProcess(replay_manifest) as server:
        batches = list(replay(server.url, manifest, batch_size=64, progress=progress, progress_every=0))
    for batch in batches:
        assert [a.entry.key for a in batch.answers] == [e.key for e in manifest.models]
        assert all(len(a.probabilities) == len(batch.windows) and a.answered.all() for a in batch.answers)
        check.add(batch.windows, {a.entry.key: a.probabilities for a in batch.answers})
    assert sum(len(b.windows) for b in batches) == len(reference_windows())
    assert check.summary()["passed"], check.summary()
    assert "windows/s" in progress.getvalue()


def test_a_batch_larger_than_the_server_allows_is_refused_before_sending(replay_manifest):
    manifest = load_manifest(replay_manifest)
    with ServerProcess(replay_manifest, wait_ready=False, server_args=["--max-batch-items", "8"]) as server:
        with pytest.raises(ReplayError, match="batch_size 16 exceeds the server's limit of 8"):
            next(replay(server.url, manifest, batch_size=16))


# --------------------------------------------------------------------------- lifetime

def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not yet reaped by its new parent
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def start_user(manifest_path, then: str) -> tuple[subprocess.Popen, int]:
    """A Python process using ServerProcess; prints the server pid, then runs ``then``."""
    script = textwrap.dedent(f"""
        import sys, time
        from f07_validation.client import ServerProcess
        with ServerProcess({str(manifest_path)!r}, wait_ready=False) as server:
            print("SERVER", server.pid, flush=True)
            {then}
    """)
    user = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = user.stdout.readline()
    assert line.startswith("SERVER"), user.stderr.read()
    return user, int(line.split()[1])


def test_the_server_stops_when_its_user_fails(replay_manifest):
    user, server_pid = start_user(replay_manifest, "raise RuntimeError('client failed')")
    assert user.wait(30) == 1 and "client failed" in user.stderr.read()
    assert wait_dead(server_pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_server_stops_when_its_user_is_terminated(replay_manifest, sig):
    user, server_pid = start_user(replay_manifest, "time.sleep(60)")
    user.send_signal(sig)
    user.wait(30)
    assert wait_dead(server_pid)


def test_the_server_stops_when_its_user_is_killed_outright(replay_manifest):
    user, server_pid = start_user(replay_manifest, "time.sleep(60)")
    user.kill()  # no chance to clean up: the server notices its parent is gone
    user.wait(30)
    assert wait_dead(server_pid)
