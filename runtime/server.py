"""The F07 inference server: the models of one sealed F06 package behind HTTP.

    python -m runtime.server --manifest executions/07_deployrun/v701/manifest.json \
        --host 127.0.0.1 --port 5005          # port 0: the system picks a free one

Start-up order, and why:

1. The manifest is read and the package seal verified before anything else: a package
   whose bytes changed since packaging is refused, naming the files (F06's promise).
2. The socket is bound, and ``LISTENING http://HOST:PORT`` printed on stdout, within a
   fraction of a second, so a parent learns the real port (port 0) without sleeping and a
   port clash is reported at once.
3. TensorFlow is imported and the models loaded and warmed up in a background thread
   (seconds). Until every model has answered its warm-up batch, ``GET /ready`` and the
   inference endpoints answer 503 with each model's state, so readiness is observable.
   A model that fails to load stays ``failed`` in ``/ready`` (with the reason); the
   server stays up so that the reason can be read, and ``ServerProcess`` raises it.

Answers hold one array per model, not a dict per window: it is what the client writes,
and it keeps JSON encoding cheap (PERFORMANCE.md). A non-finite probability is sent as
``null`` with an entry in that model's ``errors``, never as 0.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from contract.defaults import DEFAULT_HOST, DEFAULT_PORT
from contract.defaults import MAX_BATCH_ITEMS as DEFAULT_MAX_BATCH_ITEMS
from contract.defaults import MAX_CONTENT_LENGTH as DEFAULT_MAX_CONTENT_LENGTH
from contract.manifest import Manifest, ManifestError, ModelEntry, load_manifest
from contract.seal import verify_seal
from runtime.vectorize import Ragged
_INT64 = np.iinfo(np.int64)


class PackageRefused(RuntimeError):
    """The package or manifest cannot be served as it is; the message says why and what to do."""


class BadRequest(Exception):
    """A request the server cannot answer; ``status`` is 400 or 413."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _say(message: str) -> None:
    """A status line on stderr; a reader that went away (a killed parent) is no reason to fail."""
    try:
        print(f"runtime.server: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _json_response(body, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), allow_nan=False),
                    status=status, mimetype="application/json")


class _ModelSlot:
    """A model's serving state: pending -> loading -> ready | failed."""

    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.state = "pending"
        self.error: str | None = None
        self.model = None  # runtime.models.LoadedModel once loaded

    def status(self) -> dict:
        status = {"state": self.state}
        if self.error:
            status["error"] = self.error
        return status


class ModelServer:
    """What the Flask routes serve: the manifest's models, their readiness and limits."""

    def __init__(self, manifest: Manifest, max_batch_items: int, max_content_length: int):
        self.manifest = manifest
        self.max_batch_items = max_batch_items
        self.max_content_length = max_content_length
        self.slots = [_ModelSlot(entry) for entry in manifest.models]
        self.ready = False
        self.load_seconds: float | None = None

    def load(self, delay: float = 0.0) -> None:
        """Import TensorFlow, load and warm up every model; runs in a background thread."""
        if delay:
            time.sleep(delay)
        started = time.perf_counter()
        from runtime.models import LoadedModel  # TensorFlow: seconds to import, so not before binding

        for slot in self.slots:
            slot.state = "loading"
            try:
                model = LoadedModel.from_entry(slot.entry)
                model.warm_up()
            except Exception as error:  # a model that cannot serve is reported, not fatal to the others
                slot.state, slot.error = "failed", f"{type(error).__name__}: {error}"
                _say(f"model {slot.entry.key} failed to load: {slot.error}")
                continue
            slot.model, slot.state = model, "ready"
        self.load_seconds = time.perf_counter() - started
        self.ready = all(slot.state == "ready" for slot in self.slots)
        if self.ready:
            _say(f"ready, {len(self.slots)} models loaded in {self.load_seconds:.1f} s")

    def readiness(self) -> tuple[dict, int]:
        body = {"ready": self.ready, "models": {s.entry.key: s.status() for s in self.slots}}
        return body, 200 if self.ready else 503

    def describe(self) -> dict:
        manifest = self.manifest
        return {
            "variant": manifest.variant,
            "parent_variant_f06": manifest.parent_variant_f06,
            "package_digest": manifest.package_digest,
            "limits": {"max_batch_items": self.max_batch_items,
                       "max_content_length_bytes": self.max_content_length},
            "models": [{
                **slot.entry.identity(),
                "key": slot.entry.key,
                "model_family": slot.entry.model_family,
                "threshold": slot.entry.threshold,
                "input": {
                    "vectorization": slot.entry.vectorization.get("vectorization"),
                    "input_shape": slot.entry.input_shape,
                    "vocab_codes": len(slot.entry.vectorization.get("vocab", [])),
                },
            } for slot in self.slots],
        }

    def score(self, windows: Ragged) -> list[tuple[ModelEntry, np.ndarray]]:
        return [(slot.entry, slot.model.predict(windows)) for slot in self.slots]


def _answer(entry: ModelEntry, probabilities: np.ndarray) -> dict:
    """One model's answer for a batch: arrays, with null and an error for non-finite values."""
    probabilities = probabilities.astype(np.float64)
    # In float64, so that y_pred is what anyone re-applying the threshold to the logged
    # (float64) probability gets.
    y_pred = (probabilities >= entry.threshold).astype(np.int8).tolist()
    values = probabilities.tolist()
    errors = []
    finite = np.isfinite(probabilities)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            errors.append({"window": i, "error": f"non-finite probability ({values[i]}) from "
                                                 f"model {entry.key}"})
            values[i] = y_pred[i] = None
    return {**entry.identity(), "threshold": entry.threshold,
            "probabilities": values, "y_pred": y_pred, "errors": errors}


def _first_bad_code(windows: list, where) -> str:
    """Describe the first element that is not an int64 event code (the slow path, errors only)."""
    for i, window in enumerate(windows):
        for j, code in enumerate(window):
            if type(code) is not int:
                return (f"{where(i, j)} is {json.dumps(code)} ({type(code).__name__}); "
                        "event codes must be integers")
            if not _INT64.min <= code <= _INT64.max:
                return f"{where(i, j)} = {code} is outside the int64 range of event codes"
    raise AssertionError("no bad code found")


def _windows_from(lists: list, where) -> Ragged:
    """Flatten JSON windows (lists); a code that is not an int64 is a 400 naming it, as
    ``where(i, j)`` spells element ``j`` of window ``i`` in the request."""
    try:
        return Ragged.from_lists(lists)
    except (TypeError, OverflowError):
        raise BadRequest(_first_bad_code(lists, where)) from None


def _json_body() -> dict:
    try:
        body = json.loads(request.get_data(cache=False))
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON ({error}); send a JSON object with "
                         "Content-Type: application/json") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def create_app(manifest_path, *, max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
               max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
               load_delay: float = 0.0) -> Flask:
    """The Flask app serving the manifest's models; raises ``PackageRefused`` when the
    manifest is unreadable or the package seal does not verify.

    Models load in a background thread started here; ``load_delay`` (seconds) holds that
    thread back, so that a test or an orchestrator can observe the not-ready state.
    """
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as error:
        raise PackageRefused(str(error)) from None
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise PackageRefused(f"refusing to serve {manifest.package_dir}: {check.describe()}")
    if check.digest != manifest.package_digest:
        raise PackageRefused(f"refusing to serve {manifest.package_dir}: its seal digest is "
                             f"{check.digest} but {manifest.path} was made for "
                             f"{manifest.package_digest}; rebuild the manifest (serve stage)")
    if max_batch_items <= 0 or max_content_length <= 0:
        raise ValueError("max_batch_items and max_content_length must be positive")

    server = ModelServer(manifest, max_batch_items, max_content_length)
    app = Flask("runtime.server")
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    app.extensions["model_server"] = server

    def require_ready():
        if not server.ready:
            body, _ = server.readiness()
            body["error"] = "the models are not ready; poll GET /ready until it answers 200"
            return _json_response(body, 503)
        return None

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest):
        return _json_response({"error": str(error)}, error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        message = error.description
        if error.code == 413:
            message = (f"the body is larger than the server's limit of {max_content_length} "
                       "bytes; send fewer windows per batch (GET /models gives the limits)")
        return _json_response({"error": message}, error.code)

    @app.get("/health")
    def health():
        return _json_response({"status": "alive"})

    @app.get("/ready")
    def ready():
        body, status = server.readiness()
        return _json_response(body, status)

    @app.get("/models")
    def models():
        return _json_response(server.describe())

    @app.post("/infer_batch")
    def infer_batch():
        not_ready = require_ready()
        if not_ready:
            return not_ready
        body = _json_body()
        if "windows" not in body:
            raise BadRequest("missing key 'windows': send {\"windows\": [[code, ...], ...]}")
        lists = body["windows"]
        if not isinstance(lists, list):
            raise BadRequest("'windows' must be a list of windows (lists of integer event codes), "
                             f"got {type(lists).__name__}")
        if len(lists) > max_batch_items:
            raise BadRequest(f"the batch has {len(lists)} windows, more than the server's limit "
                             f"of {max_batch_items}; send smaller batches", 413)
        if set(map(type, lists)) - {list}:
            i = next(i for i, window in enumerate(lists) if type(window) is not list)
            raise BadRequest(f"windows[{i}] must be a list of integer event codes, "
                             f"got {type(lists[i]).__name__}")
        windows = _windows_from(lists, lambda i, j: f"windows[{i}][{j}]")
        if len(windows) == 0:
            raise BadRequest("'windows' is empty; send at least one window")
        answers = [_answer(entry, p) for entry, p in server.score(windows)]
        return _json_response({"n": len(windows), "models": answers})

    @app.post("/infer")
    def infer():
        not_ready = require_ready()
        if not_ready:
            return not_ready
        body = _json_body()
        if "events" not in body:
            raise BadRequest("missing key 'events': send {\"events\": [code, ...]}")
        if not isinstance(body["events"], list):
            raise BadRequest("'events' must be a list of integer event codes, "
                             f"got {type(body['events']).__name__}")
        windows = _windows_from([body["events"]], lambda i, j: f"events[{j}]")
        answers = [_answer(entry, p) for entry, p in server.score(windows)]
        for answer in answers:  # the batch-of-one answer, with scalars
            answer["probability"] = answer.pop("probabilities")[0]
            answer["y_pred"] = answer["y_pred"][0]
        return _json_response({"models": answers})

    threading.Thread(target=server.load, args=(load_delay,), name="model-loader", daemon=True).start()
    return app


def _bind(host: str, port: int, manifest: Manifest) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise SystemExit(f"runtime.server: port {port} on {host} is already in use. Stop the "
                             f"program using it, or set {manifest.port_hint()} to a free port "
                             "(0 picks a free one)")
        raise SystemExit(f"runtime.server: cannot listen on {host}:{port}: {error.strerror}")


def _watch_parent(parent_pid: int, stop) -> None:
    """Stop when the process that started us is gone (re-parented), even if it was killed
    without a chance to stop us: the server never outlives its user."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    stop()
    _say(f"parent process {parent_pid} is gone, shutting down")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.server",
                                     description="Serve the models of a sealed F06 package.")
    parser.add_argument("--manifest", required=True, help="the F07 variant's manifest.json")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--max-batch-items", type=int, default=DEFAULT_MAX_BATCH_ITEMS)
    parser.add_argument("--max-content-length", type=int, default=DEFAULT_MAX_CONTENT_LENGTH,
                        help="largest request body, bytes")
    parser.add_argument("--load-delay", type=float, default=0.0,
                        help="seconds to wait before loading the models (readiness checks)")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="shut down when this process is no longer our parent")
    args = parser.parse_args(argv)

    try:
        app = create_app(args.manifest, max_batch_items=args.max_batch_items,
                         max_content_length=args.max_content_length, load_delay=args.load_delay)
    except (PackageRefused, ValueError) as error:
        print(f"runtime.server: {error}", file=sys.stderr)
        return 2
    manifest = app.extensions["model_server"].manifest
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request

    listener = _bind(args.host, args.port, manifest)
    # One request at a time, on this thread. Werkzeug closes every connection, so a
    # threaded server would start a thread per request, and TensorFlow spends ~2 ms
    # setting up each new thread (measured: 6.5 -> 8.8 ms per 256-window batch). The
    # replay client sends its batches one after the other anyway.
    http = make_server(args.host, args.port, app, threaded=False, fd=listener.fileno())
    listener.close()  # make_server holds its own duplicate of the descriptor

    def stop(*_):
        # shutdown() waits for serve_forever() to return, so never call it on its thread.
        threading.Thread(target=http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, stop), daemon=True).start()

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"LISTENING http://{host}:{http.port}", flush=True)
    try:
        http.serve_forever(poll_interval=0.1)  # how soon a shutdown request is noticed
    finally:
        http.server_close()
    _say("stopped")
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is closed and said; skip the interpreter's teardown of TensorFlow, which
    # takes ~2 s and would hold up every stop of the server.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
