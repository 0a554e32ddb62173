"""The F07 client of a deployment that speaks only the Open Inference Protocol V2: MLServer
serving an exported package (``runtime.mlserver_model``), as KServe runs it.

The same calls as ``InferenceClient`` (``ready``, ``models``, ``infer_batch``), so serve,
infer, the replay and ``runtime.url`` go on unchanged, over the protocol's routes:

- ``ready``: ``GET /v2/health/ready`` and each model's ``GET /v2/models/<name>/ready``;
- ``models``: each model's ``GET /v2/models/<name>`` metadata. The name is the package's
  (``runtime.core.oip_name``); the digest, identity, threshold and batch limit are what
  the deployment publishes in the metadata's ``parameters``, so a deployment of another
  package shows its own digest (and F07 refuses it naming both);
- ``infer_batch``: each model's ``POST /v2/models/<name>/infer``, the batch as input
  ``events`` INT64 ``[n, L]`` (a row per window, its codes then -1 padding) in JSON data;
  every answer must name the model and the package digest as its version, and its
  ``probability`` passes the checks every answer passes (``null``: not answered).
"""
from __future__ import annotations

import json

import numpy as np

from contract.manifest import Manifest, ModelEntry
from f07_validation.client import InferenceClient, ModelAnswer, ServerError, _Answered, _model_answer
from runtime import codecs
from runtime.core import oip_name

def padded_events(codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Windows as flat codes and offsets -> the OIP input: INT64 ``[n, L]``, each row a
    window's codes then ``codecs.PADDING``, ``L`` the longest window."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    width = int(lengths.max()) if len(lengths) else 0
    matrix = np.full((len(lengths), width), codecs.PADDING, dtype=np.int64)
    matrix[np.arange(width) < lengths[:, None]] = np.asarray(codes, dtype=np.int64)[offsets[0]:offsets[-1]]
    return matrix


class OipClient(InferenceClient):
    """``InferenceClient``'s calls over the Open Inference Protocol, one request per model."""

    def __init__(self, url: str, manifest: Manifest, timeout: float = 300.0, token: str | None = None):
        super().__init__(url, manifest, timeout=timeout, token=token, wire=codecs.JSON)
        self.names = {entry.key: oip_name(entry) for entry in manifest.models}

    def _model_url(self, entry: ModelEntry) -> str:
        return f"{self.url}/v2/models/{self.names[entry.key]}"

    def ready(self) -> tuple[int, dict]:
        """``GET /v2/health/ready``'s status, with each model's readiness as ``/ready`` has it."""
        server = self.session.get(f"{self.url}/v2/health/ready", timeout=self.timeout)
        models = {}
        for entry in self.manifest.models:
            answer = self.session.get(f"{self._model_url(entry)}/ready", timeout=self.timeout)
            models[entry.key] = {"state": "ready" if answer.status_code == 200 else
                                 f"not ready (GET /v2/models/{self.names[entry.key]}/ready answered "
                                 f"{answer.status_code})"}
        ready = server.status_code == 200 and all(m["state"] == "ready" for m in models.values())
        return server.status_code, {"ready": ready, "models": models}

    def models(self) -> dict:
        """The deployment as ``GET /models`` describes ours, from each model's metadata."""
        described, digests, limits = [], [], []
        for entry in self.manifest.models:
            name = self.names[entry.key]
            answer = self.session.get(self._model_url(entry), timeout=self.timeout)
            if answer.status_code == 404:
                raise ServerError(f"GET /v2/models/{name}: the deployment has no model {name} "
                                  f"({entry.key} of package {self.manifest.parent_variant_f06}); it "
                                  "serves another package")
            metadata = self._check(answer, f"GET /v2/models/{name}")
            published = metadata.get("parameters") or {}
            # our MLServer runtime publishes it; any OIP server names a version
            digests.append(published.get("package_digest") or next(iter(metadata.get("versions") or []), None))
            limits.append(published.get("max_batch_items"))
            described.append({key: published.get(key) for key in (*entry.identity(), "threshold")})
        served = next((d for d in digests if d != self.manifest.package_digest), digests[0])
        known = [limit for limit in limits if isinstance(limit, int)]
        return {"package_digest": served, "models": described,
                "limits": {"max_batch_items": min(known) if known else None}}

    def infer_batch(self, windows, request_id: str | None = None) -> list[ModelAnswer]:
        """Score a batch with every model of the manifest, in its order, answers checked."""
        matrix = padded_events(windows.codes, windows.offsets)
        request = {"inputs": [{**codecs.OIP_INPUT, "shape": list(matrix.shape),
                               "data": matrix.ravel().tolist()}]}
        if request_id is not None:
            request["id"] = request_id
        body = json.dumps(request, separators=(",", ":"))
        return [self._infer_one(entry, body, len(windows)) for entry in self.manifest.models]

    def _infer_one(self, entry: ModelEntry, body: str, n: int) -> ModelAnswer:
        name = self.names[entry.key]
        what = f"POST /v2/models/{name}/infer"
        answer = self._check(self.session.post(f"{self._model_url(entry)}/infer", data=body,
                                               headers={"Content-Type": codecs.JSON},
                                               timeout=self.timeout), what)
        if answer.get("model_name") != name or answer.get("model_version") != self.manifest.package_digest:
            raise ServerError(f"{what}: answered as model {answer.get('model_name')!r} version "
                              f"{answer.get('model_version')!r}, where package "
                              f"{self.manifest.parent_variant_f06} has {name!r} version "
                              f"{self.manifest.package_digest}; the deployment serves another package")
        outputs = {o.get("name"): o for o in answer.get("outputs") or () if isinstance(o, dict)}
        values, labels = (outputs.get(k, {}).get("data") for k in ("probability", "y_pred"))
        if not (isinstance(values, list) and isinstance(labels, list) and len(values) == len(labels)):
            return _model_answer(entry, _Answered(entry.identity(), None, None, None, [],
                                                  "no probability and y_pred of equal lengths"), n)
        bad = next((v for v in values if v is not None and type(v) not in (int, float)), None)
        if bad is not None:
            raise ServerError(f"{what}: answered {bad!r}, not a probability or null")
        probabilities = np.array(values, dtype=np.float64)  # null -> NaN
        null = np.isnan(probabilities)
        y_pred = np.array(labels, dtype=np.float64)
        return _model_answer(entry, _Answered(entry.identity(), probabilities, null, y_pred, []), n)

