"""The protocol-neutral core: what every front-end (the seeds' API, the Open Inference
Protocol) calls. It knows the package's models, their readiness, their metadata, and
scores windows given as arrays; it knows nothing about HTTP or wire formats.

Load what was verified (time of check = time of use). The seal is verified, then each
model's ``model.h5`` and ``model_summary.json`` are read **once** into memory and their
sha256 compared with the hashes the verified seal records; the model is then built from
those bytes (``LoadedModel.from_bytes``), never from the path again. A file changed after
the seal check is therefore either refused at start-up (its bytes no longer hash to the
seal) or never read (changed after it was read). ``/models`` reports the sha256 of the
bytes actually loaded. The bytes are read before the port is bound, so a gunicorn
master holds them when it forks, and every worker loads the same verified bytes.

TensorFlow is imported only in ``load()``: a gunicorn master must not start TensorFlow's
threads before forking (a forked TensorFlow runtime deadlocks), so each worker imports it
and loads the models itself, after the fork.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from contract.manifest import Manifest, ManifestError, ModelEntry, load_manifest
from contract.layout import MODEL_FILE, MODEL_SUMMARY, PACKAGE_METADATA
from contract.seal import verify_seal
from runtime import metrics
from runtime.errors import BadRequest, NotFound, NotReady, PackageRefused
from runtime.settings import ServingSettings
from runtime.vectorize import Ragged

@dataclass(frozen=True)
class SealedModel:
    """A model's files as read, once, and checked against the package seal."""

    entry: ModelEntry
    model_h5: bytes
    summary_json: bytes

    @property
    def sha256(self) -> dict:
        return {MODEL_FILE: hashlib.sha256(self.model_h5).hexdigest(),
                MODEL_SUMMARY: hashlib.sha256(self.summary_json).hexdigest()}


def read_sealed_models(manifest: Manifest) -> list[SealedModel]:
    """Verify the package seal, then read every model's files once and check their bytes
    against the hashes that seal records; raises ``PackageRefused`` naming the file."""
    package = manifest.package_dir
    metadata_path = package / PACKAGE_METADATA
    try:
        metadata_bytes = metadata_path.read_bytes()
    except OSError as error:
        raise PackageRefused(f"refusing to serve {package}: cannot read {PACKAGE_METADATA} "
                             f"({error.strerror}); it is not a sealed package") from None
    check = verify_seal(package)
    if not check.ok:
        raise PackageRefused(f"refusing to serve {package}: {check.describe()}")
    if check.digest != manifest.package_digest:
        raise PackageRefused(f"refusing to serve {package}: its seal digest is {check.digest} "
                             f"but {manifest.path} was made for {manifest.package_digest}; "
                             "rebuild the manifest (serve stage)")
    metadata = json.loads(metadata_bytes)
    recorded = metadata["seal"]["files"]
    check_against_seal(manifest, metadata)
    sealed = []
    for entry in manifest.models:
        files = []
        for path in (entry.model_path, entry.summary_path):
            relative = path.relative_to(package).as_posix()
            data = path.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
            if recorded.get(relative) != actual:
                raise PackageRefused(
                    f"refusing to serve {package}: {relative} changed after its seal was "
                    f"verified (sha256 {actual}, sealed {recorded.get(relative)}); something is "
                    "writing into the package: stop it and restore the package (dvc checkout)")
            files.append(data)
        sealed.append(SealedModel(entry, *files))
    if metadata_path.read_bytes() != metadata_bytes:
        raise PackageRefused(f"refusing to serve {package}: {PACKAGE_METADATA} changed during "
                             "start-up; stop whatever writes into the package and start again")
    return sealed


# What the server takes from a manifest entry that decides what it serves: each must be
# the sealed metadata's own value (the seal covers the metadata, not the manifest).
_SEALED_FIELDS = ("objective", "prediction_name", "source_f05", "model_id", "model_family",
                  "threshold", "vectorization", "input_shape")


def check_against_seal(manifest: Manifest, metadata: dict) -> None:
    """Every model the manifest asks for, with the identity, threshold and input the sealed
    package metadata records for the model folder it names; raises ``PackageRefused``
    naming the first key that differs. The manifest is not sealed: an edited threshold
    would otherwise be served under the package digest."""
    package = manifest.package_dir
    by_folder = {model["path"]: model for model in metadata["models"]}
    for i, entry in enumerate(manifest.models):
        folder = entry.model_path.parent.relative_to(package).as_posix()
        model = by_folder.get(folder)
        if model is None:
            raise PackageRefused(f"refusing to serve {package}: {manifest.path} models[{i}] names "
                                 f"{folder}, which the sealed package does not hold; rebuild the "
                                 "manifest (serve stage)")
        for key in _SEALED_FIELDS:
            if getattr(entry, key) != model[key]:
                raise PackageRefused(
                    f"refusing to serve {package}: {manifest.path} models[{i}].{key} is "
                    f"{getattr(entry, key)!r} but the sealed package says {model[key]!r}; rebuild "
                    "the manifest (serve stage): what is served comes from the seal")


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\"/:,;()\[\]]+/)*([^\s'\"/:,;()\[\]]*)")


def without_paths(message: str, package_dir) -> str:
    """``message`` as answers may show it (``/ready`` needs no token): paths inside the
    package relative to it, any other absolute path cut to its last part. The whole
    message goes to the server's stderr, for its operator."""
    message = message.replace(f"{package_dir}/", "")
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1) or "<path>", message)


def oip_name(entry: ModelEntry) -> str:
    """A model's URL-safe name in the Open Inference Protocol: its key with ``__`` for
    ``/`` and any other character outside ``[A-Za-z0-9._-]`` as ``_``."""
    return "__".join(re.sub(r"[^A-Za-z0-9._-]", "_", part)
                     for part in (entry.objective, entry.source_f05, entry.model_id))


@dataclass(frozen=True)
class ModelScores:
    """One model's answer for a batch: float64 probabilities (NaN/inf as the model gave
    them), ``y_pred`` (threshold applied in float64, as anyone re-applying it to the
    logged probability would) and the windows whose probability is not finite."""

    entry: ModelEntry
    probabilities: np.ndarray
    y_pred: np.ndarray
    non_finite: np.ndarray

    def errors(self) -> list[dict]:
        return [{"window": i, "error": f"non-finite probability ({self.probabilities[i]}) from "
                                       f"model {self.entry.key}"}
                for i in self.non_finite.tolist()]


class ModelSlot:
    """A model's serving state: pending -> loading -> ready | failed."""

    def __init__(self, sealed: SealedModel):
        self.sealed = sealed
        self.entry = sealed.entry
        self.name = oip_name(sealed.entry)
        self.sha256 = sealed.sha256
        self.state = "pending"
        self.error: str | None = None
        self.model = None  # runtime.models.LoadedModel once loaded

    def status(self) -> dict:
        status = {"state": self.state}
        if self.error:
            status["error"] = self.error
        return status

    def scores(self, windows: Ragged) -> ModelScores:
        probabilities = self.model.predict(windows).astype(np.float64)
        y_pred = (probabilities >= self.entry.threshold).astype(np.int8)
        non_finite = np.flatnonzero(~np.isfinite(probabilities))
        metrics.WINDOWS_SCORED.labels(self.entry.key).inc(len(probabilities))
        if len(non_finite):
            metrics.NON_FINITE.labels(self.entry.key).inc(len(non_finite))
        return ModelScores(self.entry, probabilities, y_pred, non_finite)


class InferenceCore:
    """The served package: ``ready``, ``metadata``, ``infer``."""

    def __init__(self, manifest: Manifest, sealed: list[SealedModel], settings: ServingSettings):
        self.manifest = manifest
        self.settings = settings
        self.slots = [ModelSlot(model) for model in sealed]
        self._by_name = {slot.name: slot for slot in self.slots}
        if len(self._by_name) != len(self.slots):
            raise PackageRefused(f"{manifest.path}: two models share the URL-safe name "
                                 f"{sorted(s.name for s in self.slots)}; rename one upstream")
        self.ready = False
        self._loader: threading.Thread | None = None

    @classmethod
    def open(cls, settings: ServingSettings) -> "InferenceCore":
        """Read the manifest, verify the seal and read the verified model bytes."""
        try:
            manifest = load_manifest(settings.manifest)
        except ManifestError as error:
            raise PackageRefused(str(error)) from None
        return cls(manifest, read_sealed_models(manifest), settings)

    # -------------------------------------------------------------- loading

    def start_loading(self) -> None:
        """Load the models in a background thread (once per process)."""
        if self._loader is None:
            self._loader = threading.Thread(target=self.load, name="model-loader", daemon=True)
            self._loader.start()

    def load(self) -> None:
        if self.settings.load_delay:
            time.sleep(self.settings.load_delay)
        from runtime.models import LoadedModel  # TensorFlow: seconds to import, and never before a fork

        started = time.perf_counter()
        for slot in self.slots:
            slot.state = "loading"
            model_started = time.perf_counter()
            sealed, slot.sealed = slot.sealed, None  # the bytes are needed once
            try:
                model = LoadedModel.from_entry(slot.entry, (sealed.model_h5, sealed.summary_json))
                model.warm_up()
            except Exception as error:  # a model that cannot serve is reported, not fatal to the others
                message = f"{type(error).__name__}: {error}"
                _say(f"model {slot.entry.key} failed to load: {message}")
                slot.state, slot.error = "failed", without_paths(message, self.manifest.package_dir)
                continue
            slot.model, slot.state = model, "ready"
            metrics.MODEL_LOAD_SECONDS.labels(slot.entry.key).set(time.perf_counter() - model_started)
        self.ready = all(slot.state == "ready" for slot in self.slots)
        if self.ready:
            metrics.WORKER_READY.set(1)
            _say(f"ready, {len(self.slots)} models loaded in {time.perf_counter() - started:.1f} s")

    # -------------------------------------------------------------- ready / metadata

    def readiness(self) -> tuple[dict, bool]:
        """(body, ready): ready when every model of this process is loaded and, with
        several worker processes, every worker is; ``workers.exited`` counts the worker
        processes that have exited since the server started."""
        expected = self.settings.workers_expected
        workers = metrics.workers_ready() if expected > 1 else int(self.ready)
        ready = self.ready and workers >= expected
        return {"ready": ready, "workers": {"ready": workers, "expected": expected,
                                            "exited": metrics.worker_exits()},
                "models": {slot.entry.key: slot.status() for slot in self.slots}}, ready

    def describe(self) -> dict:
        """The package and its models (``GET /models``)."""
        manifest = self.manifest
        return {
            "variant": manifest.variant,
            "parent_variant_f06": manifest.parent_variant_f06,
            "package_digest": manifest.package_digest,
            "limits": {"max_batch_items": self.settings.max_batch_items,
                       "max_content_length_bytes": self.settings.max_content_length},
            "models": [{
                **slot.entry.identity(),
                "key": slot.entry.key,
                "name": slot.name,
                "model_family": slot.entry.model_family,
                "threshold": slot.entry.threshold,
                "sha256": slot.sha256,
                "input": {
                    "vectorization": slot.entry.vectorization.get("vectorization"),
                    "input_shape": slot.entry.input_shape,
                    "vocab_length": len(slot.entry.vectorization.get("vocab", [])),
                },
            } for slot in self.slots],
        }

    def slot(self, name: str) -> ModelSlot:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no model named {name!r}; GET /v2/models lists them") from None

    # -------------------------------------------------------------- infer

    def require_ready(self, slots=None) -> None:
        slots = self.slots if slots is None else slots
        if not all(slot.state == "ready" for slot in slots):
            body, _ = self.readiness()
            raise NotReady("the models are not ready; poll GET /ready until it answers 200",
                           extra={k: v for k, v in body.items() if k != "ready"} | {"ready": False})

    def infer(self, windows: Ragged, slots=None) -> list[ModelScores]:
        """Score ``windows`` with ``slots`` (default: every model, in manifest order)."""
        slots = self.slots if slots is None else slots
        self.require_ready(slots)
        if len(windows) == 0:
            raise BadRequest("no windows to score; send at least one window")
        return [slot.scores(windows) for slot in slots]


def _say(message: str) -> None:
    """A status line on stderr; a reader that went away (a killed parent) is no reason to fail."""
    try:
        print(f"runtime.server: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
