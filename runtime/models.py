"""A packaged Keras model as one callable: event windows in, float32 probabilities out.

The server, the in-process equivalence check and packaging's probe all score through
``LoadedModel``, so "the same model in-process" means literally the same code path, and
a difference measured between the server and in-process can only come from the HTTP hop.

Why not ``model.predict``: it builds a ``tf.data`` pipeline on every call (~60 ms per
batch whatever the model). The model is instead wrapped once in a ``tf.function`` whose
input signature fixes everything but the batch dimension, so it is traced once and every
later batch size reuses the graph (PERFORMANCE.md: 0.6-3.7 ms per 256 windows).

Non-finite outputs are returned as they are: turning NaN into 0 is how upstream hid a
broken model; callers report them.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from contract import layout
from contract.manifest import Manifest, ModelEntry
from runtime.vectorize import Ragged, from_spec


class ModelLoadError(ValueError):
    """A model file or summary that cannot be served; the message names the model."""


class LoadedModel:
    """A Keras model plus the vectorizer its ``model_summary.json`` describes."""

    def __init__(self, name: str, model, vectorization: dict):
        self.name = name
        self.vectorization = vectorization
        self.vectorizer = from_spec(vectorization, where=f"model {name}, model_summary.json vectorization")
        self._check_shapes(model)
        self.model = model
        model_dtype = tf.as_dtype(model.inputs[0].dtype)
        spec = tf.TensorSpec([None, self.vectorizer.width], tf.as_dtype(self.vectorizer.dtype))

        @tf.function(input_signature=[spec])
        def call(x):
            # Inputs keep the contract's dtype (int32 ids, float32 counts); a model whose
            # Input layer was declared otherwise gets them cast inside the graph.
            y = model(tf.cast(x, model_dtype), training=False)
            return tf.reshape(tf.cast(y, tf.float32), [-1])

        # Traced here, once. Calling the concrete graph skips tf.function's per-call
        # argument matching: ~0.08 ms of a ~0.24 ms dense_bow call (measured).
        self._call = call.get_concrete_function()

    def _check_shapes(self, model) -> None:
        fix = "the model and its model_summary.json do not belong together; re-export them from F05"
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelLoadError(f"model {self.name}: has {len(model.inputs)} inputs and "
                                 f"{len(model.outputs)} outputs; expected one of each")
        input_shape = tuple(model.inputs[0].shape)
        expected = (None, self.vectorizer.width)
        if len(input_shape) != 2 or input_shape[1] not in (None, self.vectorizer.width):
            key = "input_dim" if self.vectorizer.kind == "dense_bow" else "max_len"
            raise ModelLoadError(f"model {self.name}: input shape {input_shape} disagrees with "
                                 f"{key} = {self.vectorizer.width} in its summary (expected "
                                 f"{expected}); {fix}")
        output_shape = tuple(model.outputs[0].shape)
        if output_shape not in ((None, 1), (None,)):
            raise ModelLoadError(f"model {self.name}: output shape {output_shape}, expected one "
                                 "sigmoid probability per window (None, 1)")

    @classmethod
    def from_files(cls, model_h5, summary_json, *, name: str | None = None) -> "LoadedModel":
        """Load ``model.h5`` (Keras 3 or legacy Keras 2 HDF5) with its summary."""
        model_h5, summary_json = Path(model_h5), Path(summary_json)
        name = name or model_h5.parent.name
        try:
            summary_bytes, model_bytes = summary_json.read_bytes(), model_h5.read_bytes()
        except OSError as error:
            raise ModelLoadError(f"model {name}: cannot read {error.filename}: "
                                 f"{error.strerror}") from None
        return cls.from_bytes(model_bytes, summary_bytes, name=name,
                              where=(str(model_h5), str(summary_json)))

    @classmethod
    def from_bytes(cls, model_h5: bytes, summary_json: bytes, *, name: str,
                   where: tuple[str, str] = layout.MODEL_FILES) -> "LoadedModel":
        """Load a model from bytes already in memory (``where`` names their files in errors).

        The server hashes these very bytes against the package seal before calling this,
        so what is loaded is what was verified, whatever happens to the files meanwhile.
        Keras reads HDF5 only from a path, so the bytes go to a private copy (a fresh
        folder only this process can write), which is removed once loaded.
        """
        try:
            vectorization = json.loads(summary_json.decode("utf-8"))["vectorization"]
        except (ValueError, KeyError, TypeError) as error:
            raise ModelLoadError(f"model {name}: cannot read 'vectorization' from {where[1]} "
                                 f"({error!r})") from None
        with tempfile.TemporaryDirectory(prefix="runtime-model-") as private:
            copy = Path(private) / layout.MODEL_FILE
            copy.write_bytes(model_h5)
            try:
                model = keras.models.load_model(copy, compile=False)
            except Exception as error:  # h5py, Keras and TF raise many types for a bad file
                raise ModelLoadError(f"model {name}: cannot load {where[0]}: {error}") from error
        return cls(name, model, vectorization)

    @classmethod
    def from_entry(cls, entry: ModelEntry, files: tuple[bytes, bytes] | None = None) -> "LoadedModel":
        """Load a manifest model, checking that the manifest's copy of the vectorization
        is the summary's (the summary is the sealed source of truth). ``files`` holds the
        bytes of ``model.h5`` and ``model_summary.json`` when the caller has read (and
        verified) them; otherwise they are read from the package."""
        if files is None:
            loaded = cls.from_files(entry.model_path, entry.summary_path, name=entry.key)
        else:
            loaded = cls.from_bytes(*files, name=entry.key,
                                    where=(str(entry.model_path), str(entry.summary_path)))
        if loaded.vectorization != entry.vectorization:
            raise ModelLoadError(f"model {entry.key}: the manifest's 'vectorization' differs from "
                                 f"{entry.summary_path}; rebuild the manifest (serve stage)")
        return loaded

    def inputs(self, windows) -> np.ndarray:
        """The model input for ``windows`` (anything with flat ``codes`` and ``offsets``)."""
        return self.vectorizer(windows)

    def predict(self, windows) -> np.ndarray:
        """Probabilities, float32 ``[n]``, NaN/inf left as the model produced them."""
        x = self.inputs(windows)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        return self._call(x).numpy()

    def warm_up(self) -> np.ndarray:
        """Trace the graph once on an empty window and a short one, so the
        first real request does not pay for it; returns those two probabilities."""
        return self.predict(Ragged.from_lists([[], [0, 1, 2, 3]]))


def load_models(manifest: Manifest) -> dict[str, LoadedModel]:
    """Every model of the manifest, in manifest order, keyed by ``ModelEntry.key``."""
    return {entry.key: LoadedModel.from_entry(entry) for entry in manifest.models}


class EquivalenceCheck:
    """Functional equivalence, measured: the server's probabilities, and its decisions,
    against the same models in-process on the same windows (CONTRACT.md, F07).

    Fed batch by batch (``add``) so that a long replay is compared without being held in
    memory. Both sides non-finite at the same window counts as equal; one side only is a
    mismatch, counted apart because no finite difference describes it. A decision is
    ``probability >= threshold`` (the manifest's), none where the probability is not
    finite; the server's differs when it is another one, except where the in-process
    probability lies within the tolerance of the threshold (either decision is right there).
    """

    def __init__(self, models: Mapping[str, LoadedModel], tolerance: float = 1e-6,
                 thresholds: Mapping[str, float] | None = None):
        self.models = dict(models)
        self.tolerance = tolerance
        self.thresholds = dict(thresholds or {})
        self.windows_compared = 0
        self._max_diff = {key: 0.0 for key in self.models}
        self._mismatch = {key: 0 for key in self.models}
        self._decision_mismatch = {key: 0 for key in self.models}

    @classmethod
    def from_manifest(cls, manifest: Manifest, tolerance: float = 1e-6) -> "EquivalenceCheck":
        return cls(load_models(manifest), tolerance, {entry.key: entry.threshold for entry in manifest.models})

    def add(self, windows, served: Mapping[str, np.ndarray],
            decisions: Mapping[str, np.ndarray] | None = None) -> None:
        """Compare one batch; ``served[key]`` holds the server's probabilities (NaN where
        it answered null), one per window, and ``decisions[key]`` (when given, for the
        models with a threshold) its ``y_pred``, -1 where it answered null."""
        for key, model in self.models.items():
            server = np.asarray(served[key], dtype=np.float64)
            local = model.predict(windows).astype(np.float64)
            if server.shape != local.shape:
                raise ValueError(f"model {key}: the server answered {server.shape[0]} "
                                 f"probabilities for {local.shape[0]} windows")
            finite_server, finite_local = np.isfinite(server), np.isfinite(local)
            self._mismatch[key] += int(np.count_nonzero(finite_server != finite_local))
            both = finite_server & finite_local
            if both.any():
                diff = float(np.max(np.abs(server[both] - local[both])))
                self._max_diff[key] = max(self._max_diff[key], diff)
            if decisions is not None and key in self.thresholds:
                threshold = self.thresholds[key]
                wanted = np.where(finite_local, local >= threshold, -1)
                got = np.asarray(decisions[key], dtype=np.int64)
                either = finite_local & (got >= 0) & (np.abs(local - threshold) <= self.tolerance)
                self._decision_mismatch[key] += int(np.count_nonzero((got != wanted) & ~either))
        self.windows_compared += len(windows.offsets) - 1

    def summary(self) -> dict:
        """The content of ``logs/equivalence.json``."""
        models = {}
        for key in self.models:
            models[key] = {"max_abs_diff": self._max_diff[key], "non_finite_mismatch": self._mismatch[key]}
            if key in self.thresholds:
                models[key]["decision_mismatch"] = self._decision_mismatch[key]
            models[key]["passed"] = (self._max_diff[key] <= self.tolerance and self._mismatch[key] == 0
                                     and self._decision_mismatch[key] == 0)
        return {"enabled": True, "tolerance": self.tolerance,
                "windows_compared": self.windows_compared, "models": models,
                "passed": all(m["passed"] for m in models.values())}
