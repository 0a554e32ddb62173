"""The seeds' HTTP API (the one the F07 pipeline uses): ``/health``, ``/ready``,
``/models``, ``/infer`` (one window) and ``/infer_batch`` (a batch, one array per model).

``/infer_batch`` reads JSON by default and an Arrow IPC stream when the request says
``Content-Type: application/vnd.apache.arrow.stream``; the answer's format follows the
``Accept`` header, and without a preference, the request's own format.
"""
from __future__ import annotations

from flask import Blueprint, current_app, request

from runtime import codecs, metrics
from runtime.http import core, json_response, max_content_length, media_type, read_body, response

seed_api = Blueprint("seed_api", __name__)


@seed_api.get("/health")
def health():
    return json_response({"status": "alive"})


@seed_api.get("/ready")
def ready():
    body, is_ready = core().readiness()
    return json_response(body, 200 if is_ready else 503)


@seed_api.get("/models")
def models():
    return json_response(core().describe())


@seed_api.post("/infer_batch")
def infer_batch():
    serving = core()
    serving.require_ready()
    limit = current_app.config["SERVING_SETTINGS"].max_batch_items
    kind = media_type(codecs.JSON, codecs.ARROW)
    if kind == codecs.ARROW:
        windows = codecs.windows_from_arrow(read_body(), limit, max_content_length())
    else:
        windows = codecs.windows_from_json(read_body(), limit)
    metrics.BATCH_SIZE.labels("seed").observe(len(windows))
    results = serving.infer(windows)
    preferred = [kind] + [t for t in (codecs.JSON, codecs.ARROW) if t != kind]
    if request.accept_mimetypes.best_match(preferred, default=kind) == codecs.ARROW:
        return response(codecs.batch_answer_arrow(len(windows), results), 200, codecs.ARROW)
    return response(codecs.batch_answer_json(len(windows), results), 200, codecs.JSON)


@seed_api.post("/infer")
def infer():
    serving = core()
    serving.require_ready()
    media_type(codecs.JSON)
    windows = codecs.events_from_json(read_body())
    metrics.BATCH_SIZE.labels("seed").observe(1)
    return response(codecs.single_answer_json(serving.infer(windows)), 200, codecs.JSON)
