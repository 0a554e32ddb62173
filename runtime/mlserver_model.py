"""A sealed package's model as an MLServer runtime: what KServe runs, serving the same Open
Inference Protocol tensors as ``runtime.oip_api``.

Each ``model-settings.json`` of an exported model repository
(``f07_validation.mlserver_export``) names this class, the repository's ``manifest.json``
as its ``parameters.uri``, the package digest as its version and the model's key in
``parameters.extra.model``. ``load`` does what our server's core does, through the same
code: the package seal verified, the model's ``model.h5`` and ``model_summary.json`` read
once and checked against the hashes the seal records, the model built from those bytes
(never from the path again) and warmed up (``runtime.core``). ``predict`` decodes the
request with our OIP codec (input ``events`` INT64 ``[n, L]``, a row per window, -1
padding), scores it through the core and answers with our codec's outputs
(``probability`` FP32, ``y_pred`` INT8, a non-finite probability ``null`` with ``y_pred``
-1 and ``parameters.non_finite``), so an answer here equals one from our server. The
model's metadata adds the package digest, its key, identity and threshold, and the batch
limit in ``parameters``, which F07 checks against the package it validates.

Imported only by MLServer (``mlserver start <repository>``, with this project on
``PYTHONPATH``): mlserver is an optional extra (``requirements-mlserver.txt``).
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off MLServer's log)

from runtime import optional

optional.require("mlserver")

from mlserver import MLModel  # noqa: E402  (after the one-line refusal above)
from mlserver.errors import MLServerError  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, Parameters  # noqa: E402
from mlserver.utils import get_model_uri  # noqa: E402

from contract.manifest import ManifestError, load_manifest  # noqa: E402
from runtime import codecs  # noqa: E402
from runtime.core import InferenceCore, oip_name, read_sealed_models  # noqa: E402
from runtime.errors import PackageRefused, ServingError  # noqa: E402
from runtime.settings import ServingSettings  # noqa: E402

IMPLEMENTATION = f"{__name__}.SealedPackageModel"  # what model-settings.json names


class SealedPackageModel(MLModel):
    """One model of a sealed package, loaded from its verified bytes."""

    async def load(self) -> bool:
        manifest_path = await get_model_uri(self.settings)
        key = (self.settings.parameters.extra or {}).get("model")
        try:
            manifest = load_manifest(manifest_path)
            sealed = [model for model in read_sealed_models(manifest) if model.entry.key == key]
        except (ManifestError, PackageRefused) as error:
            raise MLServerError(f"model {self.name}: {error}", status_code=500) from None
        if not sealed:
            raise MLServerError(f"model {self.name}: parameters.extra.model {key!r} is not in "
                                f"{manifest.path} (it has {[m.key for m in manifest.models]}); "
                                "export the repository again", status_code=500)
        expected = (oip_name(sealed[0].entry), manifest.package_digest)
        if (self.name, self.version) != expected:
            raise MLServerError(f"model-settings.json names model {self.name!r} version "
                                f"{self.version!r}, but {key} of this package is {expected[0]!r} "
                                f"version {expected[1]!r}; export the repository again", status_code=500)
        self._core = InferenceCore(manifest, sealed, ServingSettings.from_mapping(
            {"manifest": str(manifest.path)}, where=f"model {self.name}"))
        self._core.load()  # here, not in a thread: MLServer calls load() where it serves
        [slot] = self._core.slots
        if slot.state != "ready":
            raise MLServerError(f"model {self.name}: {slot.error}", status_code=500)
        return True

    async def metadata(self) -> MetadataModelResponse:
        metadata = await super().metadata()
        [slot] = self._core.slots
        metadata.parameters = Parameters(
            package_digest=self._core.manifest.package_digest, key=slot.entry.key,
            threshold=slot.entry.threshold, max_batch_items=self._core.settings.max_batch_items,
            **slot.entry.identity())
        return metadata

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request = payload.model_dump(mode="json", exclude_none=True)
        try:
            windows, request = codecs.windows_from_oip(
                codecs.dumps(request), None, self._core.settings.max_batch_items)
            codecs.oip_requested_outputs(request)  # a bad request fails before scoring
            [scores] = self._core.infer(windows)
            body, binary = codecs.oip_response(self.name, self.version, request, scores)
        except ServingError as error:
            raise MLServerError(str(error), status_code=error.status) from None
        if binary:
            raise MLServerError("binary tensor outputs are not served through MLServer; ask for "
                                "the outputs as JSON data (binary_data: false)")
        return InferenceResponse.model_validate_json(body)
