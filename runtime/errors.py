"""The server's one family of errors, each with its HTTP status.

Core, codecs and front-ends raise these; the application turns any of them into
``{"error": "<message>"}`` with its status, whatever the protocol (the seeds' API and
the Open Inference Protocol answer errors the same way). The message names the problem
and the fix. Anything else that escapes a request is a bug and answers 500.
"""
from __future__ import annotations


class ServingError(Exception):
    """A request the server will not answer as asked; ``status`` is the HTTP status."""

    status = 500

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.extra = extra or {}  # more keys for the JSON body (e.g. model states)

    def body(self) -> dict:
        return {"error": str(self), **self.extra}


class BadRequest(ServingError):
    status = 400


class Unauthorized(ServingError):
    status = 401


class NotFound(ServingError):
    status = 404


class RequestTimeout(ServingError):
    status = 408


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class NotReady(ServingError):
    status = 503


class PackageRefused(RuntimeError):
    """The package or manifest cannot be served as it is (at start-up, not a request);
    the message says why and what to do."""
