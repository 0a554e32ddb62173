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

The wire is an Arrow IPC stream both ways (``runtime.codecs.ARROW``, negotiated by
``Content-Type`` and ``Accept``): the windows go as their flat code and offset arrays, and
the answers are read column by column into numpy, with no Python object per window on
either side. JSON, the server's default, stays available (``wire=codecs.JSON``); both
answers pass the same checks (a count per model, the model's identity against the
manifest, a probability in [0, 1] or null, null as "not answered" with the server's
error kept). ``REPLAY_IN_FLIGHT`` requests are kept in flight (``infer_in_order``), each on
its own keep-alive connection, and the batches still come back strictly in order. A
deployment that speaks only the Open Inference Protocol (MLServer) is replayed through the
same calls on the ``OIP`` wire (``open_client``, ``f07_validation.oip_client``).
"""
from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool

from contract.defaults import DEFAULT_HOST, REPLAY_IN_FLIGHT
from contract.errors import UserError
from contract.manifest import Manifest, ModelEntry
from contract.windows import EventRows, Regime, Windows, grid_starts, ow_windows
from runtime import codecs

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
    with ``wait_ready=False`` the block starts as soon as the port is bound. ``python``
    is the interpreter that runs it (another environment's, e.g. the minimal runtime's).
    """

    def __init__(self, manifest_path, *, host: str = DEFAULT_HOST, port: int = 0,
                 start_timeout: float = 180.0, wait_ready: bool = True, server_args=(),
                 python: str = sys.executable):
        self.python = str(python)
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

    before_exec = None  # run in the child before the server's command (None: nothing)

    def command(self) -> list[str]:
        """The server's command line."""
        return [self.python, "-m", "runtime.server", "--manifest", str(self.manifest_path),
                "--host", self.host, "--port", str(self.port),
                "--parent-pid", str(os.getpid()), *self.server_args]

    def environment(self) -> dict:
        """The server's environment: this project importable, TensorFlow quiet."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def listening_url(self, line: str) -> str | None:
        """The URL a line of the server's output says it listens on (``runtime.server``
        prints ``LISTENING <url>`` on stdout once its port is bound), else None."""
        return line.split(None, 1)[1].strip() if line.startswith("LISTENING ") else None

    def _start(self) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, env=self.environment(),
                                        process_group=0, preexec_fn=self.before_exec)
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

    def _notice(self, line: str) -> None:
        url = None if self._listening.is_set() else self.listening_url(line)
        if url:
            self.url = url
            self._listening.set()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self._notice(line)

    def _read_stderr(self) -> None:
        # Drained continuously: a full pipe would block the server on its next write.
        for line in self.process.stderr:
            self._stderr_tail.append(line)
            self._notice(line)

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
        """Stop the server (SIGTERM, then SIGKILL to its group) and wait for it; then kill
        whatever of its group is left, so that nothing it started outlives it."""
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
            try:  # whatever of its process group outlived it (a killed gunicorn master's workers)
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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


class _AbortableAdapter(HTTPAdapter):
    """requests' adapter, with ``abort()``: shut down the sockets of every connection it
    opened, so that a request blocked on its answer in another thread fails at once.
    requests has no way to cancel a request in flight; a pipelined replay that stops
    (a failed batch, a consumer that leaves early) must not leave one running."""

    def __init__(self):
        self._connections: weakref.WeakSet = weakref.WeakSet()
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        connections = self._connections

        class Pool(HTTPConnectionPool):
            def _new_conn(self):
                connection = super()._new_conn()
                connections.add(connection)
                return connection

        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme, "http": Pool}

    def abort(self) -> None:
        for connection in list(self._connections):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed
                    pass


class InferenceClient:
    """Calls of one server through one ``requests.Session`` (one keep-alive connection),
    answers checked against the manifest (a server on the port may be serving another
    package).

    ``wire`` is the body of ``POST /infer_batch`` both ways: ``codecs.ARROW`` (an Arrow
    IPC stream, the replay's: no Python object per window on either side) or
    ``codecs.JSON`` (the server's default). Both answers pass the same checks.
    """

    def __init__(self, url: str, manifest: Manifest, timeout: float = 300.0, token: str | None = None,
                 wire: str = codecs.ARROW):
        if wire not in (codecs.ARROW, codecs.JSON):
            raise ValueError(f"wire {wire!r}: the client speaks {codecs.ARROW} or {codecs.JSON}")
        self.url = url.rstrip("/")
        self.manifest = manifest
        self.timeout = timeout
        self.wire = wire
        self.session = requests.Session()
        # The server is on this machine: no proxy or netrc applies, and looking them up
        # in the environment costs ~0.3 ms on every request.
        self.session.trust_env = False
        self._adapter = _AbortableAdapter()
        self.session.mount("http://", self._adapter)
        if token:  # a server run with runtime.token_env
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def abort(self) -> None:
        """Cut the connection under a request in flight in another thread (it fails with
        ``requests.ConnectionError``); the session stays usable for new requests."""
        self._adapter.abort()

    def __enter__(self) -> "InferenceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @staticmethod
    def _refuse(response: requests.Response, what: str) -> None:
        """A ``ServerError`` for any status but 200, with the server's own error."""
        if response.status_code == 200:
            return
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else response.text[:500]
        raise ServerError(f"{what}: the server answered {response.status_code}: {error}")

    def _check(self, response: requests.Response, what: str) -> dict:
        self._refuse(response, what)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{what}: the answer is not JSON: {response.text[:200]!r}") from None

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

    def infer_batch(self, windows: Windows, request_id: str | None = None) -> list[ModelAnswer]:
        """Score a batch; answers come back in manifest order, checked against it.
        ``request_id`` goes as ``X-Request-ID``: with several requests in flight they
        reach the server in any order, and the id says which batch each one is."""
        n = len(windows)
        if self.wire == codecs.ARROW:
            body = codecs.windows_to_arrow(windows.codes, windows.offsets)
        else:
            body = json.dumps({"windows": windows.lists()}, separators=(",", ":"))
        headers = {"Content-Type": self.wire, "Accept": self.wire}
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
        response = self.session.post(f"{self.url}/infer_batch", data=body, timeout=self.timeout,
                                     headers=headers)
        self._refuse(response, _INFER_BATCH)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        if kind != self.wire:
            raise ServerError(f"{_INFER_BATCH}: the answer is {kind!r} where {self.wire} was asked for "
                              "(Accept); the server does not speak this client's wire")
        return self.answers(response.content, n)

    def answers(self, body: bytes, n: int) -> list[ModelAnswer]:
        """The answers in an ``/infer_batch`` answer ``body`` (this client's wire) for
        ``n`` windows, checked against the manifest."""
        if self.wire == codecs.ARROW:
            claimed, models = _arrow_answers(body)
        else:
            try:
                claimed, models = _json_answers(json.loads(body))
            except ValueError:
                raise ServerError(f"{_INFER_BATCH}: the answer is not JSON: {body[:200]!r}") from None
        if claimed != n or len(models) != len(self.manifest.models):
            raise ServerError(f"{_INFER_BATCH}: answers for {claimed} windows x {len(models)} models, "
                              f"where {n} windows x {len(self.manifest.models)} models were expected; "
                              f"the server is not serving {self.manifest.path}")
        return [_model_answer(entry, got, n) for entry, got in zip(self.manifest.models, models)]


_INFER_BATCH = "POST /infer_batch"
REQUEST_ID_HEADER = "X-Request-ID"
OIP = "oip"  # the wire of a deployment speaking only the Open Inference Protocol (MLServer)


def open_client(url: str, manifest: Manifest, *, wire: str = codecs.ARROW, **options) -> InferenceClient:
    """A client of the server at ``url`` on ``wire``: ``codecs.ARROW`` or ``codecs.JSON``
    through ``POST /infer_batch``, or ``OIP`` (``f07_validation.oip_client``: each model
    through ``POST /v2/models/<name>/infer``); ``options`` as ``InferenceClient`` takes them."""
    if wire == OIP:
        from f07_validation.oip_client import OipClient

        return OipClient(url, manifest, **options)
    return InferenceClient(url, manifest, wire=wire, **options)


_REPLAY_REQUEST_PREFIX = "replay-batch-"


def replay_request_id(batch: int) -> str:
    """The ``X-Request-ID`` of the replay's ``batch``-th request (1-based)."""
    return f"{_REPLAY_REQUEST_PREFIX}{batch}"


def replay_batch_number(request_id: str) -> int | None:
    """The batch number ``replay_request_id`` put in ``request_id``; None for any other id."""
    number = request_id.removeprefix(_REPLAY_REQUEST_PREFIX)
    return int(number) if number != request_id and number.isdigit() else None


@dataclass(frozen=True)
class _Answered:
    """One model's answer as decoded from either wire, before it is checked: its
    identity fields, probabilities (NaN where null), whether each was null, y_pred."""

    identity: dict
    probabilities: np.ndarray | None  # None: not one number or null per window
    null: np.ndarray | None
    y_pred: np.ndarray | None
    errors: list
    count: object = None  # what was answered instead, when ``probabilities`` is None


def _json_answers(answer) -> tuple[object, list[_Answered]]:
    """``{"n": N, "models": [...]}`` -> (N, decoded answers)."""
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise ServerError(f"{_INFER_BATCH}: the answer has no list 'models'")
    decoded = []
    for got in models:
        values, labels = got.get("probabilities"), got.get("y_pred")
        if not (isinstance(values, list) and isinstance(labels, list) and len(values) == len(labels)):
            count = (f"{len(values) if isinstance(values, list) else values!r} probabilities and "
                     f"{len(labels) if isinstance(labels, list) else labels!r} y_pred")
            decoded.append(_Answered(got, None, None, None, [], count))
            continue
        # The one per-element loop of the JSON wire: json gives Python objects, and True
        # or "0.5" must not pass for a number.
        bad = next((v for v in values if v is not None and type(v) not in (int, float)), None)
        if bad is not None:
            raise ServerError(f"{_INFER_BATCH}: model {got.get('model_id')} answered {bad!r}, "
                              "not a probability or null")
        probabilities = np.array(values, dtype=np.float64)  # null -> NaN
        null = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        y_pred = np.nan_to_num(np.array(labels, dtype=np.float64))  # null -> NaN -> 0
        decoded.append(_Answered(got, probabilities, null, y_pred, got.get("errors", [])))
    return answer.get("n"), decoded


def _arrow_answers(body: bytes) -> tuple[object, list[_Answered]]:
    """An Arrow answer -> (n from its metadata, decoded answers), column by column into
    numpy: ``<key>/probability`` float64 and ``<key>/y_pred`` int8, null where the
    model's output was not finite; identities and errors in the schema metadata."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        metadata = table.schema.metadata or {}
        claimed = int(metadata[b"n"])
        models = json.loads(metadata[b"models"])
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        raise ServerError(f"{_INFER_BATCH}: the answer is not an Arrow IPC stream with 'n' and "
                          f"'models' in its schema metadata ({error!r})") from None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise ServerError(f"{_INFER_BATCH}: the Arrow answer's metadata 'models' is not a list of models")
    columns = dict(zip(table.column_names, table.columns))
    decoded = []
    for got in models:
        key = got.get("key")
        probability, y_pred = codecs.arrow_answer_columns(key)
        if probability not in columns or y_pred not in columns:
            raise ServerError(f"{_INFER_BATCH}: the Arrow answer has no columns '{probability}' and "
                              f"'{y_pred}' (it has {list(columns)})")
        values, labels = _one_array(columns[probability]), _one_array(columns[y_pred])
        if not pa.types.is_floating(values.type) or not pa.types.is_integer(labels.type):
            raise ServerError(f"{_INFER_BATCH}: model {key} answered {values.type} probabilities and "
                              f"{labels.type} y_pred; expected floating point and integers")
        probabilities, null = _numpy(values)
        probabilities = probabilities.astype(np.float64)  # a copy: the buffer is read-only
        probabilities[null] = np.nan
        decoded.append(_Answered(got, probabilities, null, _numpy(labels)[0], got.get("errors", [])))
    return claimed, decoded


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    if column.num_chunks == 1:  # the server sends one record batch
        return column.chunk(0)
    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)


def _numpy(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A primitive Arrow array's values (anything under a null) and null mask, read
    straight from its buffers: Arrow's compute kernels (``is_null``, ``fill_null``) cost
    ~0.1 ms a call, more than 256 values do."""
    n, start = len(array), array.offset
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype=array.type.to_pandas_dtype())[start:start + n]
    if array.null_count == 0:
        return values, np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return values, bits[start:start + n] == 0


def _model_answer(entry: ModelEntry, got: _Answered, n: int) -> ModelAnswer:
    """The checks every answer passes, whatever its wire: the model the manifest has at
    this place, one probability in [0, 1] or null per window."""
    identity = {key: got.identity.get(key) for key in entry.identity()}
    expected = entry.identity()
    if "key" in got.identity:  # an Arrow answer: the key names the model's columns
        identity["key"], expected["key"] = got.identity["key"], entry.key
    if identity != expected:
        raise ServerError(f"{_INFER_BATCH}: answer for {identity} where the manifest has "
                          f"{expected}; the server serves another manifest")
    if got.probabilities is None or len(got.probabilities) != n:
        count = got.count if got.probabilities is None else f"{len(got.probabilities)} probabilities"
        raise ServerError(f"{_INFER_BATCH}: model {entry.key} answered {count} for {n} windows")
    probabilities = got.probabilities
    bad = ~(got.null | ((probabilities >= 0) & (probabilities <= 1)))  # NaN is not a probability
    if bad.any():
        window = int(np.argmax(bad))
        raise ServerError(f"{_INFER_BATCH}: model {entry.key} answered {float(probabilities[window])!r} "
                          f"for window {window}, not a probability or null")
    answered = ~got.null
    y_pred = np.where(answered, got.y_pred, 0).astype(np.int8)
    return ModelAnswer(entry, probabilities, y_pred, answered, got.errors)


# --------------------------------------------------------------------------- replay

@dataclass(frozen=True)
class ReplayBatch:
    windows: Windows          # t0 and OW codes of each window, in time order
    answers: list[ModelAnswer]
    latency_seconds: float    # the request, sent to answer decoded and checked (wall clock)


def _timed_infer(client: InferenceClient, windows: Windows, request_id: str) -> tuple[list[ModelAnswer], float]:
    """``client.infer_batch`` and how long it took, measured on the thread that sent it."""
    started = time.perf_counter()
    answers = client.infer_batch(windows, request_id)
    return answers, time.perf_counter() - started


def replay_windows(path: Path, regime: Regime, batch_size: int, *,
                   rows_per_read: int | None = None, package_dir: Path | None = None) -> Iterator[Windows]:
    """The replay's OW windows, ``batch_size`` at a time, in time order.

    Starts lie on the package grid; a window is emitted only when its whole OW lies in
    the replay (``grid_starts``). Rows are read ``rows_per_read`` at a time (by default
    ``contract.row_stream.BATCH_ROWS``, as every reader of the project), and only
    the rows still needed by a pending window are carried over to the next read. An
    unreadable replay is a ReplayError naming the package to verify (``package_dir``).
    """
    from contract.parquet import damaged_package_fix, parquet_file  # pyarrow: only where a replay is read
    from contract.row_stream import BATCH_ROWS

    replay = parquet_file(path, "the replay", damaged_package_fix(package_dir or "<package_dir>"), ReplayError)
    next_start = None  # no window starting before this has been emitted yet
    pending = np.zeros(0, np.int64)  # starts whose OW is fully read, not yet emitted
    carry: EventRows | None = None
    # pre_buffer (on by default) would load the whole compressed file before the first
    # batch: memory would grow with the replay. Off, one row group is held at a time.
    for batch in replay.iter_batches(batch_size=rows_per_read or BATCH_ROWS, columns=["segs", "events"]):
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
           token: str | None = None, progress=sys.stderr, progress_every: float = 10.0,
           in_flight: int = REPLAY_IN_FLIGHT, wire: str = codecs.ARROW) -> Iterator[ReplayBatch]:
    """Replay the package through the server at ``url``, one ``ReplayBatch`` per request,
    in order (``infer_in_order``: ``in_flight`` requests at once, ``wire`` both ways).

    ``batch_size`` defaults to the manifest's; ``timeout`` (s) bounds each request;
    ``token`` is the server's bearer token, if it requires one. The first batch, in
    order, without a usable answer raises ``BatchFailed``. A progress line with
    windows/s goes to ``progress`` every ``progress_every`` seconds (long runs only).
    """
    batch_size = batch_size or manifest.batch_size
    with open_client(url, manifest, timeout=timeout, token=token, wire=wire) as client:
        limit = client.models()["limits"]["max_batch_items"]
    if limit is not None and batch_size > limit:  # None: a deployment that does not say
        raise ReplayError(f"batch_size {batch_size} exceeds the server's limit of {limit} windows "
                         f"per batch; lower deployrun.{manifest.variant}.batch_size")
    started = last_report = time.monotonic()
    sent = 0
    windows = replay_windows(manifest.replay_path(), manifest.regime(), batch_size, package_dir=manifest.package_dir)
    for batch in infer_in_order(url, manifest, windows,
                                timeout=timeout, token=token, in_flight=in_flight, wire=wire):
        sent += len(batch.windows)
        yield batch
        now = time.monotonic()
        if progress is not None and now - last_report >= progress_every:
            print(f"replay: {sent} windows, {sent / (now - started):.0f} windows/s, "
                  f"t0 {int(batch.windows.t0[-1])}", file=progress, flush=True)
            last_report = now


def infer_in_order(url: str, manifest: Manifest, batches: Iterable[Windows], *, timeout: float = 300.0,
                   token: str | None = None, in_flight: int = REPLAY_IN_FLIGHT,
                   wire: str = codecs.ARROW) -> Iterator[ReplayBatch]:
    """``POST /infer_batch`` each of ``batches``, ``in_flight`` requests at once, each on
    its own keep-alive connection (the server works on the next batch while this one
    travels, is decoded and consumed); answers yielded strictly in order. At most
    ``in_flight`` batches are held, whatever the number of batches.

    The first batch, in order, without a usable answer raises ``BatchFailed`` (``timeout``
    bounds each request); no request is left running after it, nor when the consumer
    leaves early: the connections under them are cut.
    """
    clients = [open_client(url, manifest, timeout=timeout, token=token, wire=wire)
               for _ in range(in_flight)]
    numbered = enumerate(batches, start=1)
    pending: collections.deque = collections.deque()  # (number, windows, future), oldest first
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="replay-request")

    def send_more() -> None:
        """Fill the pipeline: batch k goes on client k mod in_flight, whose previous
        request (batch k - in_flight) has been answered and taken off ``pending``."""
        while len(pending) < in_flight:
            item = next(numbered, None)
            if item is None:
                return
            number, windows = item
            client = clients[number % in_flight]
            pending.append((number, windows, pool.submit(_timed_infer, client, windows, replay_request_id(number))))

    try:
        send_more()
        while pending:
            number, windows, answer = pending.popleft()
            try:
                answers, seconds = answer.result()
            except (requests.RequestException, ServerError) as error:
                raise BatchFailed(number, int(windows.t0[0]), len(windows), timeout, error) from error
            send_more()  # before handing this batch on: the server is never left idle
            yield ReplayBatch(windows, answers, seconds)
    finally:
        _stop(pool, clients, [future for _, _, future in pending])


def _stop(pool: ThreadPoolExecutor, clients: list[InferenceClient], futures: list) -> None:
    """End every request still in flight (cut its connection until it has returned) and
    the threads that sent them, then close the connections."""
    while True:
        unfinished = [future for future in futures if not future.done()]
        if not unfinished:
            break
        for client in clients:
            client.abort()
        wait(unfinished, timeout=0.2)  # a request caught before its socket existed: cut again
    pool.shutdown(wait=True)
    for client in clients:
        client.close()
