"""What every front-end does the same way over HTTP: find the core, read a body within
the limit, build a response."""
from __future__ import annotations

from flask import Response, current_app, request

from runtime import codecs
from runtime.deadlines import request_expired, request_read
from runtime.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

_CHUNK = 1 << 16


def core():
    """The application's ``InferenceCore``."""
    return current_app.extensions["inference_core"]


def response(body: bytes, status: int = 200, mimetype: str = codecs.JSON, headers=None) -> Response:
    return Response(body, status=status, mimetype=mimetype, headers=headers)


def json_response(body, status: int = 200) -> Response:
    return response(codecs.dumps(body), status, codecs.JSON)


def media_type(*accepted: str) -> str:
    """The request's Content-Type (none given: JSON) when it is one of ``accepted``, else a
    415 naming what the route reads: a body is never parsed as what it does not say it is."""
    kind = request.mimetype or codecs.JSON
    if kind not in accepted:
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not served here; send "
                                   f"{' or '.join(accepted)} ({codecs.JSON} when none is given)")
    return kind


def max_content_length() -> int:
    """The largest request body, in bytes, read or decoded."""
    return current_app.config["SERVING_SETTINGS"].max_content_length


def read_body() -> bytes:
    """The request body, at most ``max_content_length`` bytes, else a 413.

    A declared ``Content-Length`` over the limit is refused before reading; a chunked body
    (no length) is read up to the limit and refused as soon as it goes past it, so it is
    never cut at the limit and misread as a short, invalid body. Once read, the request's
    read deadline is lifted (``runtime.deadlines``); a body cut by it is a 408.
    """
    limit = max_content_length()
    too_large = PayloadTooLarge(f"the body is larger than the server's limit of {limit} bytes; "
                                "send fewer windows per batch (GET /models gives the limits)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return _read(request.environ["wsgi.input"], request.content_length, limit, too_large)
    except PayloadTooLarge:
        raise
    except Exception as error:  # noqa: BLE001  a malformed chunk, a client that stopped sending:
        # werkzeug raises OSError/ValueError, gunicorn its own ParseException family
        if request_expired(request.environ):
            raise RequestTimeout(f"the request did not arrive whole within the server's "
                                 f"{current_app.config['SERVING_SETTINGS'].read_timeout:g} s; send "
                                 "it at once (the connection is closed)") from None
        raise BadRequest(f"the body could not be read to its end ({error}); send it whole, "
                         "with a Content-Length or valid chunked encoding") from None


def _read(stream, length: int | None, limit: int, too_large: PayloadTooLarge) -> bytes:
    try:
        return _read_whole(stream, length, limit, too_large)
    finally:
        request_read(request.environ)


def _read_whole(stream, length: int | None, limit: int, too_large: PayloadTooLarge) -> bytes:
    if length is not None:
        body = stream.read(length)
        if len(body) != length:
            raise ValueError(f"{len(body)} of the {length} bytes announced arrived")
        return body
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # no length and no end marker: the WSGI server cannot tell where it ends
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large
