"""The F07 inference server: the models of one sealed F06 package behind HTTP.

    python -m runtime.server --manifest executions/07_deployrun/v701/manifest.json \
        --host 127.0.0.1 --port 5005          # port 0: the system picks a free one
    python -m runtime.server --manifest ... --server gunicorn --workers 2

Two ways to run the same ``runtime.app.create_app``:

- ``werkzeug`` (default; tests and single-process use): one process, a thread per
  connection, HTTP/1.1 keep-alive, and a socket timeout on every connection, so a client
  that connects and stays silent holds only its own thread, and only for
  ``--read-timeout`` seconds.
- ``gunicorn`` (production): N worker processes (``runtime.production``).

Start-up order, and why:

1. Settings are checked (``runtime.settings``): a non-loopback host without
   ``--expose``, or a ``--token-env`` naming an unset variable, stops here.
2. The manifest is read, the package seal verified and every model's bytes read once and
   checked against the seal (``runtime.core``): a package whose bytes changed since
   packaging is refused, naming the files, and nothing read later can differ.
3. The socket is bound and ``LISTENING http://HOST:PORT`` printed on stdout within a
   fraction of a second, so a parent learns the real port (port 0) without sleeping and
   a port clash is reported at once.
4. TensorFlow is imported and the models built from the verified bytes and warmed up in
   a background thread (in each gunicorn worker). Until then ``/ready`` and the
   inference routes answer 503 with each model's state. A model that fails to load
   stays ``failed`` in ``/ready`` with the reason; the server stays up so the reason can
   be read.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off stderr)

import argparse
import errno
import os
import signal
import socket
import sys
import tempfile
import threading
import time

from runtime import optional
from runtime.errors import PackageRefused
from runtime.settings import SERVERS, ServingSettings, SettingsError

PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # runtime.metrics.MULTIPROC_ENV, before it is imported


def _say(message: str) -> None:
    try:
        print(f"runtime.server: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _bind(settings: ServingSettings, port_hint: str) -> socket.socket:
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, settings.port), family=family, backlog=128)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise SystemExit(f"runtime.server: port {settings.port} on {host} is already in use. "
                             f"Stop the program using it, or set {port_hint} to a free port "
                             "(0 picks a free one)")
        raise SystemExit(f"runtime.server: cannot listen on {host}:{settings.port}: "
                         f"{error.strerror}")


def _watch_parent(parent_pid: int, stop) -> None:
    """Stop when the process that started us is gone (re-parented), even if it was killed
    without a chance to stop us: the server never outlives its user."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    _say(f"parent process {parent_pid} is gone, shutting down")
    stop()


def _serve_werkzeug(app, settings: ServingSettings, listener: socket.socket) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    from runtime.deadlines import DEADLINES

    class TimedRequestHandler(WSGIRequestHandler):
        timeout = settings.read_timeout  # socketserver sets it on every connection (idle)

        def handle_one_request(self):
            """Wait for the next request's first byte (the socket timeout bounds an idle
            connection), then read the request under its deadline (``runtime.deadlines``)."""
            try:
                waiting = self.rfile.peek(1)
            except OSError:  # TimeoutError included: silent for read_timeout
                waiting = b""
            if not waiting:
                self.close_connection = True
                return
            DEADLINES.arm(self.connection, settings.read_timeout)
            try:
                super().handle_one_request()
            finally:
                DEADLINES.lift(self.connection)

        def run_wsgi(self):
            if DEADLINES.expired(self.connection):  # its headers were cut at the deadline
                self.close_connection = True
                return
            super().run_wsgi()

        def log_request(self, *args, **kwargs):  # the app writes the access log
            pass

        def log_error(self, format, *args):  # a client dropped for its read timeout is policy
            if not (args and isinstance(args[0], TimeoutError)):
                super().log_error(format, *args)

    http = make_server(settings.host.strip("[]"), settings.port, app, threaded=True,
                       request_handler=TimedRequestHandler, fd=listener.fileno())
    listener.close()  # make_server holds its own duplicate of the descriptor

    def stop(*_):
        # shutdown() waits for serve_forever() to return, so never call it on its thread.
        threading.Thread(target=http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if settings.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(settings.parent_pid, stop), daemon=True).start()
    try:
        http.serve_forever(poll_interval=0.1)  # how soon a shutdown request is noticed
    finally:
        http.server_close()


def _serve_gunicorn(app, settings: ServingSettings, listener: socket.socket) -> None:
    from runtime import production

    if settings.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(settings.parent_pid, production.stop_self),
                         daemon=True).start()
    production.serve(app, settings, listener)


def parse_settings(argv=None) -> ServingSettings:
    parser = argparse.ArgumentParser(prog="python -m runtime.server",
                                     description="Serve the models of a sealed F06 package.")
    parser.add_argument("--manifest", required=True, help="the F07 variant's manifest.json")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, help="0 picks a free port")
    parser.add_argument("--server", choices=SERVERS)
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, help="request threads per gunicorn worker")
    parser.add_argument("--expose", action="store_true", default=None,
                        help="allow a host other than loopback")
    parser.add_argument("--token-env", help="environment variable holding the bearer token")
    parser.add_argument("--access-log", action="store_true", default=None)
    parser.add_argument("--max-batch-items", type=int)
    parser.add_argument("--max-content-length", type=int, help="largest request body, bytes")
    parser.add_argument("--read-timeout", type=float)
    parser.add_argument("--graceful-timeout", type=float)
    parser.add_argument("--load-delay", type=float,
                        help="seconds to wait before loading the models (readiness checks)")
    parser.add_argument("--parent-pid", type=int,
                        help="shut down when this process is no longer our parent")
    given = {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}
    return ServingSettings.from_mapping(given, where="command line")


def main(argv=None) -> int:
    try:
        settings = parse_settings(argv)
        settings.token()  # an unset token variable stops the start, before any work
    except SettingsError as error:
        print(f"runtime.server: {error}", file=sys.stderr)
        return 2
    warning = settings.exposure_warning()
    if warning:
        _say(warning)
    metrics_dir = None
    if settings.server == "gunicorn":
        try:
            optional.require_installed("gunicorn", "prometheus_client")
        except optional.MissingPackage as error:
            print(f"runtime.server: {error}", file=sys.stderr)
            return 2
        # Before runtime.metrics (prometheus_client) is imported: workers share this folder.
        metrics_dir = tempfile.TemporaryDirectory(prefix="runtime-metrics-")
        os.environ[PROMETHEUS_DIR_ENV] = metrics_dir.name
    from runtime.app import create_app

    try:
        app = create_app(settings, start_loading=settings.server == "werkzeug")
    except PackageRefused as error:
        print(f"runtime.server: {error}", file=sys.stderr)
        return 2
    listener = _bind(settings, app.extensions["inference_core"].manifest.port_hint())
    host = f"[{settings.host.strip('[]')}]" if ":" in settings.host else settings.host
    print(f"LISTENING http://{host}:{listener.getsockname()[1]}", flush=True)
    try:
        if settings.server == "gunicorn":
            _serve_gunicorn(app, settings, listener)
        else:
            _serve_werkzeug(app, settings, listener)
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()
    _say("stopped")
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C before the stop handlers are set (imports, start-up)
        _say("interrupted during start-up; nothing is serving")
        code = 130
    # Everything is closed and said; skip the interpreter's teardown of TensorFlow, which
    # takes ~2 s and would hold up every stop of the server.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
