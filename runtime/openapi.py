"""The OpenAPI 3 description of every route, served at ``GET /openapi.json``.

Built from the running server's settings and environment, so the limits it states
(windows per batch, body bytes) are the ones enforced, the bearer-token requirement
appears only when a token is configured, and a 501 only where a feature's optional
package is not installed (the operations ``runtime.optional.EXTRAS`` names for it, the
description the refusal's own message). Every status a route can answer is listed with
its body schema; the tests run schemathesis against a real server process with this
document.
"""
from __future__ import annotations

from runtime import optional
from runtime.codecs import ARROW, JSON, OCTET
from runtime.settings import ServingSettings

OPEN_ROUTES = ("/health", "/ready", "/v2/health/live", "/v2/health/ready", "/openapi.json")

_INT64 = {"type": "integer", "format": "int64", "minimum": -(2 ** 63), "maximum": 2 ** 63 - 1}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_STATE = {"type": "object", "required": ["state"],
          "properties": {"state": {"enum": ["pending", "loading", "ready", "failed"]},
                         "error": {"type": "string"}}}
_READINESS = {"type": "object", "required": ["ready", "workers", "models"], "properties": {
    "ready": {"type": "boolean"},
    "workers": {"type": "object", "required": ["ready", "expected"],
                "properties": {"ready": {"type": "integer"}, "expected": {"type": "integer"},
                               "exited": {"type": "integer"}}},
    "models": {"type": "object", "additionalProperties": _STATE},
    "error": {"type": "string"}}}
_IDENTITY = {"objective": {"type": "string"}, "prediction_name": {"type": "string"},
             "source_f05": {"type": "string"}, "model_id": {"type": "string"}}
_WINDOW_ERRORS = {"type": "array", "items": {
    "type": "object", "required": ["window", "error"],
    "properties": {"window": {"type": "integer"}, "error": {"type": "string"}}}}
_PROBABILITY = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_Y_PRED = {"type": ["integer", "null"], "enum": [0, 1, None]}
_DESCRIPTION = {"type": "object", "required": ["variant", "package_digest", "limits", "models"],
                "properties": {
    "variant": {"type": "string"}, "parent_variant_f06": {"type": "string"},
    "package_digest": {"type": "string"},
    "limits": {"type": "object", "properties": {"max_batch_items": {"type": "integer"},
                                                 "max_content_length_bytes": {"type": "integer"}}},
    "models": {"type": "array", "items": {"type": "object", "properties": {
        **_IDENTITY, "key": {"type": "string"}, "name": {"type": "string"},
        "model_family": {"type": "string"}, "threshold": {"type": "number"},
        "sha256": {"type": "object", "additionalProperties": {"type": "string"}},
        "input": {"type": "object"}}}}}}
_BATCH_ANSWER = {"type": "object", "required": ["n", "models"], "properties": {
    "n": {"type": "integer", "minimum": 1},
    "models": {"type": "array", "items": {
        "type": "object",
        "required": ["probabilities", "y_pred", "errors", "threshold", *_IDENTITY],
        "properties": {**_IDENTITY, "threshold": {"type": "number"},
                       "probabilities": {"type": "array", "items": _PROBABILITY},
                       "y_pred": {"type": "array", "items": _Y_PRED},
                       "errors": _WINDOW_ERRORS}}}}}
_SINGLE_ANSWER = {"type": "object", "required": ["models"], "properties": {
    "models": {"type": "array", "items": {
        "type": "object", "required": ["probability", "y_pred", "errors", *_IDENTITY],
        "properties": {**_IDENTITY, "threshold": {"type": "number"}, "probability": _PROBABILITY,
                       "y_pred": _Y_PRED, "errors": _WINDOW_ERRORS}}}}}
_TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
_PARAMETERS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
_OIP_OUTPUT = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"enum": ["probability", "y_pred"]}, "datatype": {"enum": ["FP32", "INT8"]},
    "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1},
    "parameters": _PARAMETERS,
    "data": {"type": "array", "items": {"type": ["number", "null"]}}}}
_OIP_ANSWER = {"type": "object", "required": ["model_name", "model_version", "outputs"],
               "properties": {"model_name": {"type": "string"},
                              "model_version": {"type": "string"}, "id": {"type": "string"},
                              "parameters": _PARAMETERS,
                              "outputs": {"type": "array", "items": _OIP_OUTPUT}}}
_INDEX_ENTRY = {"type": "object", "required": ["name", "version", "state"], "properties": {
    "name": {"type": "string"}, "version": {"type": "string"},
    "state": {"enum": ["READY", "UNAVAILABLE"]}, "reason": {"type": "string"}}}


def _json(schema: dict) -> dict:
    return {JSON: {"schema": schema}}


def _answer(description: str, schema: dict) -> dict:
    return {"description": description, "content": _json(schema)}


def _errors(*statuses: int) -> dict:
    reasons = {400: "bad request: the message names the problem and the fix",
               401: "missing or wrong bearer token", 404: "unknown model or version",
               413: "body or batch over the server's limits", 415: "unsupported Content-Type",
               503: "the models are not ready yet"}
    return {str(status): _answer(reasons[status], _ERROR) for status in statuses}


def build(settings: ServingSettings) -> dict:
    """The OpenAPI 3.1 document for a server running with ``settings``."""
    items, body_bytes = settings.max_batch_items, settings.max_content_length
    limits = f" At most {items} windows per request and {body_bytes} bytes of body."
    auth = (401,) if settings.token_env else ()
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the model's URL-safe name (GET /v2/models)"}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "the package digest"}
    windows_json = {"type": "object", "required": ["windows"], "properties": {
        "windows": {"type": "array", "minItems": 1, "maxItems": items,
                    "items": {"type": "array", "items": _INT64}}}}
    events_json = {"type": "object", "required": ["events"], "properties": {
        "events": {"type": "array", "items": _INT64}}}
    oip_request = {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": _PARAMETERS,
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
                "name": {"const": "events"}, "datatype": {"const": "INT64"},
                "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                          "items": {"type": "integer", "minimum": 0}},
                "parameters": _PARAMETERS,
                "data": {"type": "array", "items": _INT64}}}},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"], "properties": {
                "name": {"enum": ["probability", "y_pred"]}, "parameters": _PARAMETERS}}}}}

    def get(summary, answers, *, params=(), extra=()):
        return {"get": {"summary": summary, "parameters": list(params),
                        "responses": {**answers, **_errors(*auth, *extra)}}}

    def post(summary, content, answers, *, params=(), extra=(400, 413, 415, 503), required=True):
        return {"post": {"summary": summary, "parameters": list(params),
                         "requestBody": {"required": required, "content": content},
                         "responses": {**answers, **_errors(*auth, *extra)}}}

    def model_routes(prefix, params):
        return {
            f"{prefix}": get("Model metadata: input events INT64 [n, L], outputs probability "
                             "FP32 [n] and y_pred INT8 [n]",
                             {"200": _answer("metadata", {"type": "object", "required": [
                                 "name", "versions", "platform", "inputs", "outputs"],
                                 "properties": {"name": {"type": "string"},
                                                "versions": {"type": "array",
                                                             "items": {"type": "string"}},
                                                "platform": {"type": "string"},
                                                "inputs": {"type": "array", "items": _TENSOR_META},
                                                "outputs": {"type": "array",
                                                            "items": _TENSOR_META}}})},
                             params=params, extra=(404,)),
            f"{prefix}/ready": get("Whether the model is loaded", {
                "200": _answer("ready", {"type": "object", "required": ["name", "ready"],
                                         "properties": {"name": {"type": "string"},
                                                        "ready": {"type": "boolean"}}})},
                params=params, extra=(404, 503)),
            f"{prefix}/infer": post(
                "Score windows (rows of events, -1 padding after the last code). A non-finite "
                "probability is null in JSON data (NaN in binary data), y_pred -1, counted in "
                "parameters.non_finite. The binary tensor extension (header "
                "Inference-Header-Content-Length) is accepted." + limits,
                {JSON: {"schema": oip_request}},
                {"200": {"description": "outputs", "content": {
                    JSON: {"schema": _OIP_ANSWER},
                    OCTET: {"schema": {"type": "string", "format": "binary"}}}}},
                params=params, extra=(400, 404, 413, 415, 503)),
        }

    paths = {
        "/health": get("Liveness (no token needed)", {"200": _answer("alive", {
            "type": "object", "properties": {"status": {"const": "alive"}}})}),
        "/ready": get("Readiness: every model of every worker loaded (no token needed)", {
            "200": _answer("ready", _READINESS), "503": _answer("not ready yet", _READINESS)}),
        "/models": get("The package and its models, with the sha256 of the bytes loaded",
                       {"200": _answer("description", _DESCRIPTION)}),
        "/infer_batch": post(
            "Score a batch: one array per model. JSON by default; an Arrow IPC stream with a "
            "'windows' list<int64> column when Content-Type says so. The answer follows Accept, "
            "else the request's format." + limits,
            {JSON: {"schema": windows_json}, ARROW: {"schema": {"type": "string",
                                                                "format": "binary"}}},
            {"200": {"description": "answers", "content": {
                JSON: {"schema": _BATCH_ANSWER},
                ARROW: {"schema": {"type": "string", "format": "binary"}}}}}),
        "/infer": post("Score one window." + limits, _json(events_json),
                       {"200": _answer("answers", _SINGLE_ANSWER)}, extra=(400, 413, 415, 503)),
        "/metrics": {"get": {"summary": "Prometheus metrics of every worker",
                             "responses": {"200": {"description": "text format", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}},
                                 **_errors(*auth)}}},
        "/openapi.json": get("This document (no token needed)", {
            "200": _answer("OpenAPI 3.1", {"type": "object"})}),
        "/v2": get("OIP server metadata", {"200": _answer("metadata", {
            "type": "object", "required": ["name", "version", "extensions"]})}),
        "/v2/health/live": get("OIP liveness", {"200": _answer("live", {"type": "object"})}),
        "/v2/health/ready": get("OIP readiness", {
            "200": _answer("ready", {"type": "object"}), "503": _answer("not ready", {"type": "object"})}),
        "/v2/models": get("Every model's URL-safe name, version and state", {
            "200": _answer("models", {"type": "object", "required": ["models"], "properties": {
                "models": {"type": "array", "items": _INDEX_ENTRY}}})}),
        "/v2/repository/index": post("OIP model repository index ({} or {\"ready\": true})",
                                     _json({"type": "object", "properties": {
                                         "ready": {"type": "boolean"}}}),
                                     {"200": _answer("index", {"type": "array",
                                                               "items": _INDEX_ENTRY})},
                                     extra=(400, 413, 415), required=False),
        **model_routes("/v2/models/{name}", [name]),
        **model_routes("/v2/models/{name}/versions/{version}", [name, version]),
    }
    for module, extra in optional.EXTRAS.items():
        if not optional.installed(module):  # the operations that refuse it, in MissingPackage's words
            for method, path in extra.operations:
                answers = paths[path][method]["responses"]
                refusals = [answers["501"]["description"]] if "501" in answers else []
                answers["501"] = _answer("; ".join([*refusals, optional.missing_message(module)]), _ERROR)
    for route in OPEN_ROUTES:
        for operation in paths[route].values():
            operation["responses"].pop("401", None)
            operation["security"] = []
    document = {
        "openapi": "3.1.0",
        "info": {"title": "F07 runtime: the models of a sealed F06 package", "version": "1"},
        "paths": paths,
    }
    if settings.token_env:
        document["components"] = {"securitySchemes": {"bearer": {"type": "http",
                                                                  "scheme": "bearer"}}}
        document["security"] = [{"bearer": []}]
    return document
