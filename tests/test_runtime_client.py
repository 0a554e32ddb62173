"""The replay client (windows on the package grid, streamed; Arrow or JSON on the wire;
requests pipelined, batches in order) and the server's lifetime under ServerProcess: it
never outlives the process that started it."""
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from builders.packages import DEFAULT_REGIME, ModelDef, build_served_package
from contract.manifest import load_manifest
from contract.windows import EventRows, grid_starts, ow_windows
from f07_validation.client import (BatchFailed, InferenceClient, ReplayError, ServerError, ServerProcess,
                                   replay, replay_windows)
from runtime import codecs
from runtime.core import ModelScores
from runtime.models import EquivalenceCheck, load_models
from tests.conftest import as_from_a_terminal
from tests.validated_package import FAULTS

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


@pytest.fixture(scope="module")
def server(replay_manifest):
    with ServerProcess(replay_manifest) as server:
        yield server


@pytest.mark.parametrize("wire, in_flight", [(codecs.ARROW, 2), (codecs.JSON, 2), (codecs.ARROW, 1)])
def test_replay_through_the_server_answers_every_window_like_in_process(replay_manifest, server, wire, in_flight):
    """Either wire, pipelined or not: every window answered once, in time order, equal to
    the models in-process; a null (the sequence model on an empty window) is a window not
    answered, with the server's error for it."""
    manifest = load_manifest(replay_manifest)
    check = EquivalenceCheck(load_models(manifest))
    progress = io.StringIO()
    batches = list(replay(server.url, manifest, batch_size=64, progress=progress, progress_every=0,
                          wire=wire, in_flight=in_flight))
    expected = reference_windows()
    np.testing.assert_array_equal(np.concatenate([b.windows.t0 for b in batches]), expected.t0)
    for batch in batches:
        assert [a.entry.key for a in batch.answers] == [e.key for e in manifest.models]
        for answer in batch.answers:
            assert len(answer.probabilities) == len(answer.y_pred) == len(batch.windows)
            assert [e["window"] for e in answer.errors] == np.flatnonzero(~answer.answered).tolist()
            assert np.isnan(answer.probabilities[~answer.answered]).all()
        check.add(batch.windows, {a.entry.key: a.probabilities for a in batch.answers})
    assert check.summary()["passed"], check.summary()
    assert "windows/s" in progress.getvalue()


# --------------------------------------------------------------------------- answer checks

def encoded_answer(wire: str, manifest, n: int, probabilities: dict, entries=None) -> bytes:
    """An /infer_batch answer built by the server's own codec from ``ModelScores``."""
    results = []
    for entry in entries or manifest.models:
        p = np.asarray(probabilities.get(entry.key, np.full(n, 0.5)), dtype=np.float64)
        results.append(ModelScores(entry, p, (p >= entry.threshold).astype(np.int8),
                                   np.flatnonzero(~np.isfinite(p))))
    encode = codecs.batch_answer_arrow if wire == codecs.ARROW else codecs.batch_answer_json
    return encode(n, results)


@pytest.mark.parametrize("wire", [codecs.ARROW, codecs.JSON])
def test_answers_are_read_into_arrays_with_nulls_as_not_answered(replay_manifest, wire):
    manifest = load_manifest(replay_manifest)
    key = manifest.models[1].key
    client = InferenceClient("http://127.0.0.1:1", manifest, wire=wire)
    answers = client.answers(encoded_answer(wire, manifest, 4, {key: [0.25, np.nan, 1.0, 0.0]}), 4)
    np.testing.assert_array_equal(answers[1].answered, [True, False, True, True])
    np.testing.assert_array_equal(answers[1].probabilities[[0, 2, 3]], [0.25, 1.0, 0.0])
    assert answers[1].y_pred.dtype == np.int8 and answers[1].y_pred[1] == 0
    assert [e["window"] for e in answers[1].errors] == [1] and answers[0].answered.all()


@pytest.mark.parametrize("wire", [codecs.ARROW, codecs.JSON])
def test_an_answer_for_fewer_windows_than_sent_is_refused(replay_manifest, wire):
    manifest = load_manifest(replay_manifest)
    key = manifest.models[0].key
    body = encoded_answer(wire, manifest, 5, {e.key: np.full(4, 0.5) for e in manifest.models})
    with pytest.raises(ServerError, match=f"model {key} answered 4 probabilities for 5 windows"):
        InferenceClient("http://127.0.0.1:1", manifest, wire=wire).answers(body, 5)
    with pytest.raises(ServerError, match="answers for 5 windows x 2 models, where 6 windows x 2 models"):
        InferenceClient("http://127.0.0.1:1", manifest, wire=wire).answers(body, 6)


@pytest.mark.parametrize("wire", [codecs.ARROW, codecs.JSON])
def test_an_answer_from_another_model_is_refused(replay_manifest, wire):
    manifest = load_manifest(replay_manifest)
    other = [manifest.models[0], dataclasses.replace(manifest.models[1], model_id="someone_else")]
    body = encoded_answer(wire, manifest, 3, {}, entries=other)
    with pytest.raises(ServerError, match="'model_id': 'someone_else'.* the server serves another manifest"):
        InferenceClient("http://127.0.0.1:1", manifest, wire=wire).answers(body, 3)


@pytest.mark.parametrize("wire", [codecs.ARROW, codecs.JSON])
@pytest.mark.parametrize("value", [1.5, -0.25])
def test_an_answer_outside_zero_one_is_refused(replay_manifest, wire, value):
    manifest = load_manifest(replay_manifest)
    key = manifest.models[1].key
    body = encoded_answer(wire, manifest, 3, {key: [0.5, 0.5, value]})
    with pytest.raises(ServerError, match=f"model {key} answered {value} for window 2, not a probability or null"):
        InferenceClient("http://127.0.0.1:1", manifest, wire=wire).answers(body, 3)


def test_a_nan_that_is_not_null_is_refused(replay_manifest):
    """Arrow can carry NaN itself; only null means "no answer"."""
    import pyarrow as pa

    manifest = load_manifest(replay_manifest)
    key = manifest.models[0].key
    body = encoded_answer(codecs.ARROW, manifest, 2, {})
    table = pa.ipc.open_stream(body).read_all()
    column = table.column_names.index(f"{key}/probability")
    table = table.set_column(column, f"{key}/probability", pa.array([0.5, np.nan]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(ServerError, match=f"model {key} answered nan for window 1, not a probability"):
        InferenceClient("http://127.0.0.1:1", manifest).answers(sink.getvalue().to_pybytes(), 2)


# --------------------------------------------------------------------------- pipelining and faults

def replay_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("replay-request")]


@pytest.fixture
def faulty(replay_manifest, monkeypatch):
    """``faulty(fault)``: a server process with ``fault`` injected (tests/server_faults)."""
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))

    def start(fault: dict) -> ServerProcess:
        monkeypatch.setenv("F07_TEST_FAULT", json.dumps(fault))
        return ServerProcess(replay_manifest)

    return start


@pytest.mark.parametrize("wire", [codecs.ARROW, codecs.JSON])
@pytest.mark.parametrize("fault, cause", [({"kind": "kill_after", "batches": 3}, "Connection"),
                                          ({"kind": "fail_after", "batches": 3}, "answered 500")])
def test_a_pipelined_replay_yields_in_order_up_to_the_failing_batch(replay_manifest, faulty, fault, cause, wire):
    manifest = load_manifest(replay_manifest)
    expected = reference_windows()
    got = []
    with faulty(fault) as server:
        with pytest.raises(BatchFailed) as failed:
            for batch in replay(server.url, manifest, batch_size=16, in_flight=2, wire=wire, progress=None):
                got.append(batch.windows.t0)
        assert not replay_threads()  # the request in flight beside the failed one is over
    np.testing.assert_array_equal(np.concatenate(got), expected.t0[:32])
    assert failed.value.batch == 3 and failed.value.t0 == expected.t0[32] and failed.value.windows == 16
    assert cause in str(failed.value.cause)


def test_leaving_a_pipelined_replay_early_stops_its_requests(replay_manifest, faulty):
    """Batches 3 and 4 are in flight on a server that never answers them: closing the
    generator cuts both connections at once, rather than after the requests' timeout.
    (The server stalls from the third batch it receives: batch 3 is sent only once batch
    1 is answered, so the first two it receives are batches 1 and 2, in either order.)"""
    manifest = load_manifest(replay_manifest)
    with faulty({"kind": "hang_after", "batches": 3}) as server:
        batches = replay(server.url, manifest, batch_size=16, in_flight=2, timeout=120, progress=None)
        next(batches), next(batches)
        time.sleep(0.5)  # batches 3 and 4 sent, and hanging
        assert len(replay_threads()) == 2
        started = time.monotonic()
        batches.close()
        assert time.monotonic() - started < 10 and not replay_threads()


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
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
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
