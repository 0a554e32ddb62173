"""Production mode: the same ``create_app`` served by gunicorn with N worker processes.

Why it is built this way:

- **Readiness across workers, verified bytes before the fork.** The master runs
  ``create_app`` (``preload_app``): it reads the manifest, verifies the seal and reads the
  verified model bytes, but does not import TensorFlow (a TensorFlow runtime started
  before ``fork`` deadlocks in the children). Each worker then loads the models from
  those inherited bytes in a background thread; the package is loaded once per worker.
  ``/ready`` answers 200 only when every worker is ready: each worker sets the
  ``runtime_worker_ready`` live gauge, which every worker reads, aggregated, from the
  shared Prometheus folder (``runtime.metrics``). A worker that dies is marked dead and
  stops counting; its replacement counts once it has loaded.
- **A silent client never holds others up.** Workers are gunicorn's threaded workers
  (``gthread``: a pool of request threads, HTTP/1.1 keep-alive, idle connections parked
  on a poller rather than on a thread). gthread already waits for a new connection's
  first bytes without committing a thread for long; ``ReadTimeoutWorker`` adds a socket
  timeout (a silent client) and a deadline on each request (``runtime.deadlines``), so a
  client that trickles its headers or body is dropped ``read_timeout`` seconds after its
  connection was accepted (or, kept alive, sent its next request's first byte), however
  often it sends a byte. A request still waiting for a free thread by then is dropped too:
  give gunicorn at least as many threads as concurrent clients.
- **Graceful shutdown**: SIGTERM lets requests in flight finish for up to
  ``graceful_timeout`` seconds.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import socket

from gunicorn.app.base import BaseApplication
from gunicorn.workers import gthread

from runtime import metrics
from runtime.deadlines import DEADLINES
from runtime.settings import ServingSettings


class _TimedConnection(gthread.TConn):
    """A connection whose socket reads time out (set in the master, before the fork)."""

    read_timeout = 10.0

    def init(self):
        super().init()  # returns at once on a kept-alive connection...
        self.sock.settimeout(self.read_timeout)  # ...whose timeout gthread has just cleared


class ReadTimeoutWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker, with a read timeout on every connection and a deadline
    on reading each request (``runtime.deadlines``)."""

    def enqueue_req(self, conn):
        # From accepting a connection (or its next request's first byte on keep-alive), not
        # from a thread picking it up: connections queued behind trickling ones are cut by
        # the same deadline, so no number of them holds the request threads for longer.
        DEADLINES.arm(conn.sock, _TimedConnection.read_timeout)
        super().enqueue_req(conn)

    def handle(self, conn):  # on a request thread
        try:
            return super().handle(conn)
        finally:
            DEADLINES.lift(conn.sock)

    def accept(self, listener):  # gthread's accept, with a _TimedConnection
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            conn = _TimedConnection(self.cfg, client_sock, client_addr, listener.getsockname())
            self.enqueue_req(conn)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise


class _QuietReadTimeouts(logging.Filter):
    """A client dropped for its read timeout is policy working, not an error: gunicorn
    would log a traceback for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], TimeoutError))


class GunicornServer(BaseApplication):
    """gunicorn's arbiter in this process, serving ``app`` on an already bound socket."""

    def __init__(self, app, settings: ServingSettings, listener: socket.socket):
        self.application = app
        self.settings = settings
        self.fd = listener.detach()  # gunicorn takes the descriptor over
        super().__init__()

    def load_config(self):
        settings, app = self.settings, self.application
        _TimedConnection.read_timeout = settings.read_timeout

        def post_worker_init(worker):
            logging.getLogger("gunicorn.error").addFilter(_QuietReadTimeouts())
            app.extensions["inference_core"].start_loading()

        def child_exit(server, worker):
            metrics.mark_worker_dead(worker.pid)

        def worker_exit(server, worker):
            # Done serving: skip the interpreter's ~2 s teardown of TensorFlow, so that a
            # graceful stop is quick.
            logging.shutdown()
            os._exit(0)

        options = {
            "bind": [f"fd://{self.fd}"],
            "workers": settings.workers,
            "threads": settings.threads,
            "worker_class": f"{__name__}.ReadTimeoutWorker",
            "keepalive": math.ceil(settings.read_timeout),  # gunicorn takes whole seconds
            "graceful_timeout": math.ceil(settings.graceful_timeout),
            "timeout": 120,  # a worker silent this long (stuck) is replaced
            "preload_app": True,
            "accesslog": None,  # the app writes its own access log (runtime.access_log)
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "runtime.server",
            "post_worker_init": post_worker_init,
            "child_exit": child_exit,
            "worker_exit": worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        return _honour_connection_close(self.application)


def _honour_connection_close(app):
    """``app`` with its ``Connection: close`` obeyed: gunicorn drops the header as
    hop-by-hop and answers ``keep-alive``, then closes anyway when the body was left
    unread (a 413): the client is told the truth, and gunicorn closes at once."""

    def serve(environ, start_response):
        def start(status, headers, exc_info=None):
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                start_response.__self__.force_close()  # gunicorn's Response
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return serve


def serve(app, settings: ServingSettings, listener: socket.socket) -> None:
    """Run gunicorn until SIGTERM/SIGINT (graceful) in this process."""
    GunicornServer(app, settings, listener).run()


def stop_self() -> None:
    """Ask this process's gunicorn arbiter for a graceful stop."""
    os.kill(os.getpid(), 15)
