"""The F07 ``manifest.json``: which models of which sealed package to serve, and how.

The server, the replay client and the in-process equivalence check all start from the
manifest, so it is read and checked once, here, with paths resolved (they are written
relative to the manifest's folder, and the model files relative to the package, so that
a variant folder can move). Standard library and the contract only: the client reads it
without loading TensorFlow.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from contract.defaults import DEFAULT_BATCH_SIZE
from contract.errors import UserError
from contract.layout import PACKAGE_METADATA
from contract.model_key import KEY_COLUMNS, model_key
from contract.windows import Regime

_MODEL_KEYS = ("objective", "prediction_name", "source_f05", "model_id", "model_family",
               "threshold", "model_path", "summary_path", "vectorization", "input_shape")


class ManifestError(UserError):
    """A manifest that cannot be served; the message names the file and the key."""


@dataclass(frozen=True)
class ModelEntry:
    """One model to serve, with its files resolved inside the package."""

    objective: str
    prediction_name: str
    source_f05: str
    model_id: str
    model_family: str
    threshold: float
    model_path: Path
    summary_path: Path
    vectorization: dict
    input_shape: list

    @property
    def key(self) -> str:
        """The identity of a model in logs and summaries (``contract.predictions``)."""
        return model_key(self.objective, self.source_f05, self.model_id)

    @property
    def key_values(self) -> tuple[str, str, str]:
        """The key columns' values, as a row key of the prediction log and the metrics."""
        return tuple(getattr(self, column) for column in KEY_COLUMNS)

    def identity(self) -> dict:
        return {"objective": self.objective, "prediction_name": self.prediction_name,
                "source_f05": self.source_f05, "model_id": self.model_id}


@dataclass(frozen=True)
class Manifest:
    path: Path
    variant: str
    parent_variant_f06: str
    package_dir: Path
    package_digest: str
    temporal: dict
    batch_size: int
    models: tuple[ModelEntry, ...]

    def port_hint(self) -> str:
        """Where a user changes the port this variant is served on."""
        return f"deployrun.{self.variant}.runtime.port in params.yaml"

    def regime(self) -> Regime:
        """The package's window regime (``Tu`` must be a whole number of seconds)."""
        t = self.temporal
        try:
            tu = float(t["Tu"]["value"])
            values = {"OW": t["OW"]["value"], "LT": t["LT"]["value"], "PW": t["PW"]["value"],
                      "origin": t["origin_segs"]}
        except (KeyError, TypeError) as error:
            raise ManifestError(f"{self.path}: key 'temporal' lacks {error}; "
                                f"rebuild the manifest from the package metadata") from None
        if not math.isfinite(tu) or tu != int(tu):
            raise ManifestError(f"{self.path}: temporal Tu = {tu} is not a whole number of seconds; "
                                "the window grid needs an integer Tu")
        try:
            return Regime(Tu=int(tu), **values)
        except ValueError as error:
            raise ManifestError(f"{self.path}: key 'temporal': {error}") from None

    def replay_path(self) -> Path:
        """The replay parquet, as the sealed package metadata names it."""
        metadata = self.package_dir / PACKAGE_METADATA
        try:
            relative = json.loads(metadata.read_text(encoding="utf-8"))["replay"]["path"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ManifestError(f"{metadata}: cannot read key 'replay.path' ({error!r})") from None
        return self.package_dir / relative


def _require(data: dict, key: str, kind, where: str):
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"{where}: key '{key}' is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _model_entry(data, package_dir: Path, where: str) -> ModelEntry:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: must be an object")
    missing = [key for key in _MODEL_KEYS if key not in data]
    if missing:
        raise ManifestError(f"{where}: keys {missing} are missing")
    threshold = data["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ManifestError(f"{where}: key 'threshold' must be a number in [0, 1], got {threshold!r}")
    for key in ("objective", "prediction_name", "source_f05", "model_id", "model_family",
                "model_path", "summary_path"):
        _require(data, key, str, where)
    return ModelEntry(
        objective=data["objective"], prediction_name=data["prediction_name"],
        source_f05=data["source_f05"], model_id=data["model_id"],
        model_family=data["model_family"], threshold=float(threshold),
        model_path=package_dir / data["model_path"], summary_path=package_dir / data["summary_path"],
        vectorization=_require(data, "vectorization", dict, where),
        input_shape=_require(data, "input_shape", list, where),
    )


def load_manifest(path) -> Manifest:
    path = Path(path).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror}; "
                            "run the serve stage of this variant to write it") from None
    except ValueError as error:
        raise ManifestError(f"manifest {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {path} must hold a JSON object")
    package_dir = (path.parent / _require(data, "package_dir", str, str(path))).resolve()
    raw_models = _require(data, "models", list, str(path))
    if not raw_models:
        raise ManifestError(f"{path}: key 'models' is empty; the package has nothing to serve")
    models = tuple(_model_entry(entry, package_dir, f"{path}, models[{i}]")
                   for i, entry in enumerate(raw_models))
    keys = [model.key for model in models]
    if len(set(keys)) != len(keys):
        raise ManifestError(f"{path}: key 'models' lists a model twice: {sorted(keys)}")
    batch_size = data.get("batch_size", DEFAULT_BATCH_SIZE)
    if type(batch_size) is not int or batch_size <= 0:
        raise ManifestError(f"{path}: key 'batch_size' must be a positive integer, got {batch_size!r}")
    return Manifest(
        path=path,
        variant=_require(data, "variant", str, str(path)),
        parent_variant_f06=_require(data, "parent_variant_f06", str, str(path)),
        package_dir=package_dir,
        package_digest=_require(data, "package_digest", str, str(path)),
        temporal=_require(data, "temporal", dict, str(path)),
        batch_size=batch_size,
        models=models,
    )
