"""A deadline on reading each request, the same in both server modes.

A socket timeout bounds one read, not a request: a client trickling its headers or its
body a byte at a time never lets a read time out, and holds its connection (a werkzeug
thread, one of a gunicorn worker's few request threads) for as long as it likes. So
every request must arrive whole, headers and body, within ``read_timeout`` seconds of
the server starting to read it; past that the server stops reading the connection
(``shutdown(SHUT_RD)``: a blocked read returns end-of-file at once, whichever thread is
in it) and closes it. Answers are never cut: the deadline is lifted as soon as the
request has been read (``request_read``), before the application works on it.

One watcher thread per process (started on first use, so each gunicorn worker starts
its own after the fork) sleeps until the earliest deadline; arming and lifting one is a
dictionary update.
"""
from __future__ import annotations

import os
import socket
import threading
import time

# Where each server puts the connection's socket in the WSGI environ.
_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


class ReadDeadlines:
    def __init__(self):
        self._due: dict[socket.socket, float] = {}
        self._expired: set[int] = set()  # file descriptors whose request ran out of time
        self._wake = threading.Condition()
        self._pid = None

    def arm(self, sock: socket.socket, seconds: float) -> None:
        """Start ``sock``'s deadline: its request must be read within ``seconds``."""
        with self._wake:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                self._due.clear()
                threading.Thread(target=self._watch, name="read-deadlines", daemon=True).start()
            self._expired.discard(sock.fileno())
            self._due[sock] = time.monotonic() + seconds
            self._wake.notify()

    def lift(self, sock: socket.socket) -> None:
        """``sock``'s request has been read (or the connection is done with)."""
        with self._wake:
            self._due.pop(sock, None)

    def expired(self, sock: socket.socket) -> bool:
        """Whether ``sock``'s last request ran out of time (its reads then end early)."""
        with self._wake:
            return sock.fileno() in self._expired

    def _watch(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for sock, due in list(self._due.items()):
                    if due <= now:
                        del self._due[sock]
                        self._expired.add(sock.fileno())
                        try:
                            sock.shutdown(socket.SHUT_RD)
                        except OSError:  # already closed
                            pass
                self._wake.wait(min(self._due.values(), default=now + 3600) - now)


DEADLINES = ReadDeadlines()


def request_socket(environ) -> socket.socket | None:
    return next((environ[key] for key in _SOCKET_KEYS if key in environ), None)


def request_read(environ) -> None:
    """The application has read the request whole: lift its deadline."""
    sock = request_socket(environ)
    if sock is not None:
        DEADLINES.lift(sock)


def request_expired(environ) -> bool:
    """Whether this request's deadline passed while it was being read."""
    sock = request_socket(environ)
    return sock is not None and DEADLINES.expired(sock)


def stop_reading(environ) -> None:
    """Read no more of this request's connection (a body refused unread: 408, 413). A
    server must not drain it (werkzeug reads on for up to 10 GB) nor keep the connection:
    its reads end at once, and it closes after the answer."""
    sock = request_socket(environ)
    if sock is not None:
        DEADLINES.lift(sock)
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:  # already closed by the client
            pass
