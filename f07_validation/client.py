"""The F07 client side: run the server as a child process, and replay a package through it.

``ServerProcess`` owns the server's whole life: it starts ``python -m runtime.server`` in
its own process group, learns the real port from the ``LISTENING`` line, waits for
``GET /ready`` against a deadline, and stops the server on every way out of the ``with``
block (normal end, exception, Ctrl-C, SIGTERM). The server also watches its parent, so
even a parent killed with SIGKILL does not leave it running.

``replay`` streams ``replay_events.parquet``, cuts each window's OW on the package's grid
with ``contract.windows`` and sends the windows, exactly as read, in batches to
``POST /infer_batch``. It yields batch by batch, so memory does not grow with the length
of the replay. Only HTTP here: the client never imports Flask or TensorFlow.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from contract.defaults import DEFAULT_HOST
from contract.errors import UserError
from contract.manifest import Manifest, ModelEntry
from contract.windows import EventRows, Regime, Windows, grid_starts, ow_windows

_REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerError(UserError):
    """The server misbehaved (would not start, refused a request, answered for another
    manifest); the message says what it answered."""


class ServerStartError(ServerError):
    """The server process did not come up; the message carries the tail of its stderr."""


class ReplayError(UserError):
    """The replay cannot be sent as configured (a replay out of time order, a batch
    larger than the server accepts); the message names the file or key."""


class BatchFailed(Exception):
    """A replay batch got no usable answer: the server went away, did not answer within
    the timeout, or answered an error or a malformed answer. Not a ``UserError``: it is a
    fault of the package under test, which the infer stage records as a verdict."""

    def __init__(self, batch: int, t0: int, windows: int, timeout: float, cause: Exception):
        super().__init__(f"batch {batch} (first t0 {t0}, {windows} windows): {cause}")
        self.batch, self.t0, self.windows, self.timeout, self.cause = batch, t0, windows, timeout, cause


class ServerProcess:
    """``with ServerProcess(manifest_path) as server: requests.post(server.url + ...)``.

    ``server_args`` are passed on to ``runtime.server`` (e.g. ``["--load-delay", "3"]``);
    with ``wait_ready=False`` the block starts as soon as the port is bound.
    """

    def __init__(self, manifest_path, *, host: str = DEFAULT_HOST, port: int = 0,
                 start_timeout: float = 180.0, wait_ready: bool = True, server_args=()):
        self.manifest_path = Path(manifest_path)
        self.host, self.port = host, port
        self.start_timeout = start_timeout
        self.wait_ready_on_enter = wait_ready
        self.server_args = [str(a) for a in server_args]
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._listening = threading.Event()
        self._readers: list[threading.Thread] = []
        self._previous_sigterm = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self) -> str:
        for reader in self._readers:  # let the readers catch up with a dead process
            if self.process.poll() is not None:
                reader.join(timeout=2)
        return "".join(self._stderr_tail).rstrip()

    def __enter__(self) -> "ServerProcess":
        self._trap_sigterm()
        try:
            self._start()
            if self.wait_ready_on_enter:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _trap_sigterm(self) -> None:
        """Turn SIGTERM into SystemExit while the server runs, so ``__exit__`` stops it
        (the default action would kill this process and skip every ``finally``). Only
        in the main thread, and only when nobody else handles SIGTERM already."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm = signal.signal(
                signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def _start(self) -> None:
        command = [sys.executable, "-m", "runtime.server", "--manifest", str(self.manifest_path),
                   "--host", self.host, "--port", str(self.port),
                   "--parent-pid", str(os.getpid()), *self.server_args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, env=env,
                                        process_group=0)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._listening.wait(0.05):
            if self.process.poll() is not None:
                raise ServerStartError(f"the server exited with code {self.process.returncode} "
                                       f"during start-up:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"the server did not bind a port within {self.start_timeout} s:"
                                       f"\n{self.stderr_tail()}")

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            if line.startswith("LISTENING ") and not self._listening.is_set():
                self.url = line.split(None, 1)[1].strip()
                self._listening.set()

    def _read_stderr(self) -> None:
        # Drained continuously: a full pipe would block the server on its next write.
        for line in self.process.stderr:
            self._stderr_tail.append(line)

    def wait_ready(self, timeout: float | None = None) -> dict:
        """Poll ``GET /ready`` until 200; raise if the server dies, a model fails to load,
        or the deadline passes. Returns the ready body."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        pause = 0.02
        with requests.Session() as session:
            session.trust_env = False  # a local server: no proxy applies
            while True:
                if self.process.poll() is not None:
                    raise ServerStartError(f"the server exited with code {self.process.returncode} "
                                           f"before it was ready:\n{self.stderr_tail()}")
                try:
                    response = session.get(f"{self.url}/ready", timeout=5)
                    body = response.json()
                except (requests.RequestException, ValueError):
                    body, response = None, None
                if response is not None and response.status_code == 200:
                    return body
                failed = {key: s.get("error") for key, s in (body or {}).get("models", {}).items()
                          if s.get("state") == "failed"}
                if failed:
                    raise ServerStartError("models failed to load: " + "; ".join(
                        f"{key}: {error}" for key, error in failed.items()))
                if time.monotonic() > deadline:
                    raise ServerStartError(f"the server was not ready within the deadline; last "
                                           f"/ready answer: {body}\n{self.stderr_tail()}")
                time.sleep(pause)
                pause = min(pause * 2, 0.25)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL to its group) and wait for it."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
        if self.process is not None:
            for reader in self._readers:  # the pipes reach EOF once the process is gone
                reader.join(timeout=5)
            self.process.stdout.close()
            self.process.stderr.close()
        return self.process.returncode if self.process else None


# --------------------------------------------------------------------------- HTTP calls

@dataclass(frozen=True)
class ModelAnswer:
    """One model's answers for a batch. ``answered`` is False where the server sent null
    (a non-finite output); there ``probabilities`` is NaN and ``y_pred`` means nothing."""

    entry: ModelEntry
    probabilities: np.ndarray  # float64
    y_pred: np.ndarray         # int8
    answered: np.ndarray       # bool
    errors: list


class InferenceClient:
    """Calls of one server through one ``requests.Session``, answers checked against the
    manifest (a server on the port may be serving another package)."""

    def __init__(self, url: str, manifest: Manifest, timeout: float = 300.0, token: str | None = None):
        self.url = url.rstrip("/")
        self.manifest = manifest
        self.timeout = timeout
        self.session = requests.Session()
        # The server is on this machine: no proxy or netrc applies, and looking them up
        # in the environment costs ~0.3 ms on every request.
        self.session.trust_env = False
        if token:  # a server run with runtime.token_env
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "InferenceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check(self, response: requests.Response, what: str) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else response.text[:500]
            raise ServerError(f"{what}: the server answered {response.status_code}: {error}")
        return body

    def ready(self) -> tuple[int, dict]:
        """``GET /ready`` as answered: its status code and body."""
        response = self.session.get(f"{self.url}/ready", timeout=self.timeout)
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:500]}
        return response.status_code, body if isinstance(body, dict) else {"answer": body}

    def models(self) -> dict:
        return self._check(self.session.get(f"{self.url}/models", timeout=self.timeout), "GET /models")

    def infer_batch(self, windows: list[list[int]]) -> list[ModelAnswer]:
        """Score a batch; answers come back in manifest order, checked against it."""
        body = json.dumps({"windows": windows}, separators=(",", ":"))
        response = self.session.post(f"{self.url}/infer_batch", data=body, timeout=self.timeout,
                                     headers={"Content-Type": "application/json"})
        answer = self._check(response, "POST /infer_batch")
        if answer.get("n") != len(windows) or len(answer["models"]) != len(self.manifest.models):
            raise ServerError(f"POST /infer_batch: answers for {answer.get('n')} windows x "
                               f"{len(answer['models'])} models, where {len(windows)} windows x "
                               f"{len(self.manifest.models)} models were expected; the server is "
                               f"not serving {self.manifest.path}")
        return [self._model_answer(entry, got, len(windows))
                for entry, got in zip(self.manifest.models, answer["models"])]

    @staticmethod
    def _model_answer(entry: ModelEntry, got: dict, n: int) -> ModelAnswer:
        identity = {key: got.get(key) for key in entry.identity()}
        if identity != entry.identity():
            raise ServerError(f"POST /infer_batch: answer for {identity} where the manifest has "
                               f"{entry.identity()}; the server serves another manifest")
        values, labels = got.get("probabilities"), got.get("y_pred")
        if not isinstance(values, list) or not isinstance(labels, list) or len(values) != n or len(labels) != n:
            count = len(values) if isinstance(values, list) else values
            raise ServerError(f"POST /infer_batch: model {entry.key} answered {count} probabilities for {n} windows")
        if any(v is not None and (type(v) not in (int, float) or not 0 <= v <= 1) for v in values):
            bad = next(v for v in values if v is not None and (type(v) not in (int, float) or not 0 <= v <= 1))
            raise ServerError(f"POST /infer_batch: model {entry.key} answered {bad!r}, not a probability or null")
        probabilities = np.array(values, dtype=np.float64)  # null -> NaN
        answered = np.isfinite(probabilities)
        y_pred = np.array(labels, dtype=np.float64)  # null -> NaN
        y_pred = np.where(answered, np.nan_to_num(y_pred), 0).astype(np.int8)
        return ModelAnswer(entry, probabilities, y_pred, answered, got.get("errors", []))


# --------------------------------------------------------------------------- replay

@dataclass(frozen=True)
class ReplayBatch:
    windows: Windows          # t0 and OW codes of each window, in time order
    answers: list[ModelAnswer]


def replay_windows(path: Path, regime: Regime, batch_size: int, *,
                   rows_per_read: int = 65536) -> Iterator[Windows]:
    """The replay's OW windows, ``batch_size`` at a time, in time order.

    Starts lie on the package grid; a window is emitted only when its whole OW lies in
    the replay (``grid_starts``). Rows are read ``rows_per_read`` at a time, and only
    the rows still needed by a pending window are carried over to the next read.
    """
    import pyarrow.parquet as pq

    next_start = None  # no window starting before this has been emitted yet
    pending = np.zeros(0, np.int64)  # starts whose OW is fully read, not yet emitted
    carry: EventRows | None = None
    # pre_buffer (on by default) would load the whole compressed file before the first
    # batch: memory would grow with the replay. Off, one row group is held at a time.
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows_per_read, columns=["segs", "events"]):
        rows = EventRows.from_arrow(batch)
        if len(rows) == 0:
            continue
        if np.any(np.diff(rows.segs) < 0) or (carry is not None and len(carry)
                                               and rows.segs[0] < carry.segs[-1]):
            raise ReplayError(f"{path}: 'segs' is not in ascending order; the replay must be in time order")
        if next_start is None:
            next_start = int(rows.segs[0])  # the replay's first instant: a cold start
        carry = rows if carry is None else carry.concat(rows)
        # Every row before the newest segs has been read, so an OW that ends by it is complete.
        ready = grid_starts(regime, next_start, int(carry.segs[-1]))
        if len(ready):
            pending = np.concatenate([pending, ready])
            next_start = int(ready[-1]) + regime.Tu
        while len(pending) >= batch_size:
            yield ow_windows(carry, regime, pending[:batch_size])
            pending = pending[batch_size:]
        keep_from = int(pending[0]) if len(pending) else next_start
        cut = int(np.searchsorted(carry.segs, keep_from, side="left"))
        carry = carry.slice(cut, len(carry))
    if len(pending):
        yield ow_windows(carry, regime, pending)


def replay(url: str, manifest: Manifest, *, batch_size: int | None = None, timeout: float = 300.0,
           token: str | None = None, progress=sys.stderr, progress_every: float = 10.0) -> Iterator[ReplayBatch]:
    """Replay the package through the server at ``url``, one ``ReplayBatch`` per request.

    ``batch_size`` defaults to the manifest's; ``timeout`` (s) bounds each request;
    ``token`` is the server's bearer token, if it requires one. A
    batch without a usable answer raises ``BatchFailed``. A progress line with
    windows/s goes to ``progress`` every ``progress_every`` seconds (long runs only).
    """
    batch_size = batch_size or manifest.batch_size
    path = manifest.replay_path()
    with InferenceClient(url, manifest, timeout=timeout, token=token) as client:
        limit = client.models()["limits"]["max_batch_items"]
        if batch_size > limit:
            raise ReplayError(f"batch_size {batch_size} exceeds the server's limit of {limit} windows "
                             f"per batch; lower deployrun.{manifest.variant}.batch_size")
        started = last_report = time.monotonic()
        sent = 0
        for number, windows in enumerate(replay_windows(path, manifest.regime(), batch_size), start=1):
            try:
                answers = client.infer_batch(windows.lists())
            except (requests.RequestException, ServerError) as error:
                raise BatchFailed(number, int(windows.t0[0]), len(windows), timeout, error) from error
            sent += len(windows)
            yield ReplayBatch(windows, answers)
            now = time.monotonic()
            if progress is not None and now - last_report >= progress_every:
                print(f"replay: {sent} windows, {sent / (now - started):.0f} windows/s, "
                      f"t0 {int(windows.t0[-1])}", file=progress, flush=True)
                last_report = now
