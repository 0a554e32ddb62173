"""The Flask application factory, run the same way by werkzeug (one process) and by
gunicorn (N worker processes): ``create_app(settings)``.

The app is a thin shell around the protocol-neutral ``InferenceCore``: two front-ends
(the seeds' API and the Open Inference Protocol) as blueprints, and what every route
shares — the bearer token, the access log, the Prometheus metrics, ``/metrics``,
``/openapi.json``, and one error handler that turns the ``runtime.errors`` family (and
werkzeug's 404/405) into ``{"error": "..."}`` with its status. Anything else escaping a
route is a bug: logged with its traceback, answered 500.
"""
from __future__ import annotations

import hmac
import logging
import sys
import time

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from runtime import metrics, openapi
from runtime.core import InferenceCore
from runtime.deadlines import request_read, stop_reading
from runtime.errors import ServingError, Unauthorized
from runtime.http import json_response, response
from runtime.oip_api import oip_api
from runtime.seed_api import seed_api
from runtime.settings import ServingSettings

ACCESS_LOG = "runtime.access"


def _access_logger() -> logging.Logger:
    logger = logging.getLogger(ACCESS_LOG)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def create_app(settings, *, start_loading: bool = True) -> Flask:
    """The app serving ``settings.manifest`` (``ServingSettings``; a manifest path alone
    means default settings).

    The manifest is read, the seal verified and the model bytes read here (raising
    ``PackageRefused``); the models are loaded in a background thread, started here
    unless ``start_loading`` is False (a gunicorn master, which must not start
    TensorFlow before forking: each worker starts its own loading after the fork).
    """
    if not isinstance(settings, ServingSettings):
        settings = ServingSettings.from_mapping({"manifest": str(settings)})
    token = settings.token()
    serving = InferenceCore.open(settings)
    app = Flask("runtime.server")
    app.config["SERVING_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.extensions["inference_core"] = serving
    app.register_blueprint(seed_api)
    app.register_blueprint(oip_api)
    document = openapi.build(settings)
    access = _access_logger() if settings.access_log else None

    @app.before_request
    def start():
        g.started = time.perf_counter()
        if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
            request_read(request.environ)  # no body: read whole already (runtime.deadlines)
        if token is not None and request.path not in openapi.OPEN_ROUTES:
            sent = request.headers.get("Authorization", "")
            scheme, _, value = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
                raise Unauthorized("this server requires 'Authorization: Bearer <token>' (the "
                                   f"token is in the server's ${settings.token_env})")

    @app.after_request
    def account(answer):
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.REQUESTS.labels(route, metrics.method_label(request.method),
                                str(answer.status_code)).inc()
        metrics.LATENCY.labels(route).observe(seconds)
        if access is not None:
            access.info('%s "%s %s %s" %d %s %.1fms', request.remote_addr, request.method,
                        request.full_path.rstrip("?"), request.environ.get("SERVER_PROTOCOL"),
                        answer.status_code, answer.calculate_content_length() or "-",
                        seconds * 1000)
        if answer.status_code in (408, 413):
            answer.headers["Connection"] = "close"  # the rest of the body was not read...
            stop_reading(request.environ)  # ...and will not be
        return answer

    @app.errorhandler(ServingError)
    def serving_error(error: ServingError):
        answer = json_response(error.body(), error.status)
        if isinstance(error, Unauthorized):
            answer.headers["WWW-Authenticate"] = "Bearer"
        return answer

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        message = error.description
        if error.code == 413:
            message = (f"the body is larger than the server's limit of "
                       f"{settings.max_content_length} bytes; send fewer windows per batch "
                       "(GET /models gives the limits)")
        answer = json_response({"error": message}, error.code)
        for key, value in error.get_headers():
            if key.lower() == "allow":
                answer.headers[key] = value
        return answer

    @app.get("/metrics")
    def metrics_text():
        return response(metrics.exposition(), 200, metrics.CONTENT_TYPE)

    @app.get("/openapi.json")
    def openapi_json():
        return json_response(document)

    if start_loading:
        serving.start_loading()
    return app
