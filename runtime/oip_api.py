"""Open Inference Protocol V2, REST (what KServe, MLServer and Triton clients speak).

Each packaged model is served under its URL-safe name (``<objective>__<source_f05>__
<model_id>``, listed by ``GET /v2/models`` and ``POST /v2/repository/index``); its one
version is the package digest. Input ``events``: INT64 ``[n, L]``, a row per window, the
window's event codes then ``-1`` padding. Outputs ``probability`` (FP32 ``[n]``) and
``y_pred`` (INT8 ``[n]``). A non-finite probability cannot be a JSON number: it is sent
as ``null`` in JSON data (numpy-based clients such as ``tritonclient`` read it as NaN),
as the IEEE value in binary data, with ``y_pred = -1`` and the count in the response's
``parameters.non_finite`` — never as a 0. Errors are ``{"error": "..."}`` with the same
status rules as the seeds' API.
"""
from __future__ import annotations

from flask import Blueprint, current_app, request

from runtime import codecs, metrics
from runtime.errors import NotFound
from runtime.http import core, json_response, media_type, read_body, response

oip_api = Blueprint("oip_api", __name__, url_prefix="/v2")
SERVER_NAME = "f07-runtime"
PLATFORM = "keras_hdf5"


def _version(name: str, version: str | None) -> str:
    digest = core().manifest.package_digest
    if version is not None and version != digest:
        raise NotFound(f"model {name!r} has only version {digest} (the package digest), "
                       f"not {version!r}")
    return digest


@oip_api.get("")
def server_metadata():
    return json_response({"name": SERVER_NAME, "version": "2",
                          "extensions": ["binary_tensor_data", "model_repository"]})


@oip_api.get("/health/live")
def live():
    return json_response({"live": True})


@oip_api.get("/health/ready")
def server_ready():
    _, is_ready = core().readiness()
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


def _index(ready_only: bool = False) -> list[dict]:
    digest = core().manifest.package_digest
    return [{"name": slot.name, "version": digest,
             "state": "READY" if slot.state == "ready" else "UNAVAILABLE",
             "reason": slot.error or ("" if slot.state == "ready" else slot.state)}
            for slot in core().slots if slot.state == "ready" or not ready_only]


@oip_api.get("/models")
def list_models():
    return json_response({"models": _index()})


@oip_api.post("/repository/index")
def repository_index():
    media_type(codecs.JSON)
    body = read_body()
    ready_only = False
    if body.strip():
        options = codecs.json_object(body, 'send {} or {"ready": true}')
        ready_only = options.get("ready") is True
    return json_response(_index(ready_only))


@oip_api.get("/models/<name>")
@oip_api.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    core().slot(name)  # 404 for an unknown name
    return json_response({"name": name, "versions": [_version(name, version)],
                          "platform": PLATFORM, "inputs": [codecs.OIP_INPUT],
                          "outputs": list(codecs.OIP_OUTPUTS)})


@oip_api.get("/models/<name>/ready")
@oip_api.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    slot = core().slot(name)
    _version(name, version)
    is_ready = slot.state == "ready"
    return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 503)


@oip_api.post("/models/<name>/infer")
@oip_api.post("/models/<name>/versions/<version>/infer")
def model_infer(name: str, version: str | None = None):
    serving = core()
    slot = serving.slot(name)
    digest = _version(name, version)
    serving.require_ready([slot])
    limit = current_app.config["SERVING_SETTINGS"].max_batch_items
    media_type(codecs.JSON, codecs.OCTET)  # binary tensors: the JSON header, then raw bytes
    windows, infer_request = codecs.windows_from_oip(
        read_body(), request.headers.get(codecs.OIP_HEADER_LENGTH), limit)
    codecs.oip_requested_outputs(infer_request)  # a bad request fails before scoring
    metrics.BATCH_SIZE.labels("oip").observe(len(windows))
    [scores] = serving.infer(windows, [slot])
    body, headers = codecs.oip_response(name, digest, infer_request, scores)
    return response(body, 200, codecs.OCTET if headers else codecs.JSON, headers)
