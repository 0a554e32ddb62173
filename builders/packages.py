"""Builders of real, small F06 packages and F07 manifests, for the tests and the benchmarks.

Everything here is the real thing at a small size: Keras models built and saved as HDF5,
``model_summary.json`` files as F05 writes them, a replay parquet, the package metadata
sealed with ``contract.seal``, and a manifest as the serve stage writes it. Nothing is
mocked, so a test that serves one of these packages exercises the same code as
production.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import layout
from contract.defaults import DEFAULT_BATCH_SIZE
from contract.files import write_json_atomic
from contract.parquet import WRITER_OPTIONS
from contract.row_stream import BATCH_ROWS
from contract.seal import seal_package
from contract.windows import EventRows, Regime
from f07_validation.serve import build_manifest

FAMILY_VECTORIZATION = {"dense_bow": "dense_bow", "sequence_embedding": "sequence", "cnn1d": "sequence"}

SMALL_HP = {"n_layers": 1, "units": 16, "embed_dim": 8, "filters": 16, "kernel_size": 3}
# The largest networks of upstream's F05 search space (fixtures/.../params.yaml).
UPSTREAM_LARGEST_HP = {"n_layers": 2, "units": 64, "embed_dim": 16, "filters": 32, "kernel_size": 5}


@dataclass
class ModelDef:
    """A model to put in a test package.

    ``width`` is ``input_dim`` (dense_bow) or ``max_len`` (sequence families); ``hp`` the
    upstream hyperparameters of its family. With ``copy_from`` set, the ``model.h5`` and
    ``model_summary.json`` there are copied byte for byte instead of building a model
    (e.g. the real upstream fixture).
    """

    model_id: str
    family: str = "dense_bow"
    objective: str = "v401"
    source_f05: str = "v501"
    prediction_name: str | None = None
    vocab: list[int] = field(default_factory=lambda: list(range(1, 41)))
    width: int | None = None
    threshold: float = 0.5
    seed: int = 0
    hp: dict = field(default_factory=lambda: dict(SMALL_HP))
    nan_weights: bool = False
    copy_from: Path | None = None

    @property
    def name(self) -> str:
        return self.prediction_name or self.model_id

    def vectorization(self) -> dict:
        kind = FAMILY_VECTORIZATION[self.family]
        if kind == "dense_bow":
            return {"vectorization": "dense_bow", "vocab": self.vocab, "input_dim": self.width or len(self.vocab)}
        # As upstream writes it: vocab_size = len(vocab); the Embedding has one more row.
        return {"vectorization": "sequence", "vocab": self.vocab, "vocab_size": len(self.vocab),
                "max_len": self.width or 50}


def build_keras_model(spec: ModelDef):
    """An untrained network built the way upstream's F05 builds its family (float32 Input
    even for sequences, Embedding of vocab_size + 1 rows), with deterministic weights."""
    import keras

    keras.utils.set_random_seed(spec.seed)
    vec, hp, layers = spec.vectorization(), spec.hp, keras.layers
    model = keras.Sequential()  # as upstream: a functional model with a mask saves an h5 Keras 3 cannot read
    if spec.family == "dense_bow":
        model.add(keras.Input(shape=(vec["input_dim"],)))
    else:
        model.add(keras.Input(shape=(vec["max_len"],)))
        if spec.family == "sequence_embedding":
            model.add(layers.Embedding(vec["vocab_size"] + 1, hp["embed_dim"], mask_zero=True))
            model.add(layers.GlobalAveragePooling1D())
        else:
            model.add(layers.Embedding(vec["vocab_size"] + 1, hp["embed_dim"]))
            model.add(layers.Conv1D(hp["filters"], hp["kernel_size"], activation="relu", padding="same"))
            model.add(layers.GlobalMaxPooling1D())
    for _ in range(hp["n_layers"]):
        model.add(layers.Dense(hp["units"], activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    # Spread the outputs away from 0.5 so that thresholds matter in tests.
    weights = [w * 4.0 for w in model.get_weights()]
    if spec.nan_weights:
        weights = [np.full_like(w, np.nan) for w in weights]
    model.set_weights(weights)
    return model


def write_model(spec: ModelDef, folder: Path) -> None:
    """``model.h5`` + ``model_summary.json`` in ``folder``, as F05 writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.copy_from is not None:
        for name in layout.MODEL_FILES:
            shutil.copyfile(Path(spec.copy_from) / name, folder / name)
        return
    build_keras_model(spec).save(folder / layout.MODEL_FILE)
    summary = {"prediction_name": spec.name.lower(), "model_family": spec.family,
               "threshold": spec.threshold, "vectorization": spec.vectorization()}
    write_json_atomic(folder / layout.MODEL_SUMMARY, summary)


def synthetic_event_rows(n_rows: int, *, start: int = 1_700_000_000, step: int = 1,
                         codes: tuple[int, int] = (1, 45), mean_events: float = 0.5,
                         seed: int = 0) -> EventRows:
    """F02-like rows: one per ``step`` seconds, a Poisson number of codes each (often none)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(mean_events, size=n_rows)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return EventRows(segs=start + step * np.arange(n_rows, dtype=np.int64),
                     codes=rng.integers(codes[0], codes[1], size=int(offsets[-1]), dtype=np.int64),
                     offsets=offsets)


def synthetic_windows(n: int, *, mean_len: float = 57.0, codes: tuple[int, int] = (1, 130),
                      seed: int = 0) -> list[list[int]]:
    """Windows of event codes as JSON wants them; lengths vary around ``mean_len``."""
    rng = np.random.default_rng(seed)
    lengths = rng.poisson(mean_len, size=n)
    flat = rng.integers(codes[0], codes[1], size=int(lengths.sum())).tolist()
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def write_event_rows(rows: EventRows, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = pa.ListArray.from_arrays(pa.array(rows.offsets, pa.int32()), pa.array(rows.codes, pa.int64()))
    path.parent.mkdir(parents=True, exist_ok=True)
    # As F06's materialize_replay writes it (row groups of at most BATCH_ROWS rows, page CRCs).
    pq.write_table(pa.table({"segs": pa.array(rows.segs, pa.int64()), "events": events}), path,
                   row_group_size=BATCH_ROWS, **WRITER_OPTIONS)


def _temporal(regime: Regime) -> dict:
    source = "builders/packages.py"
    return {"Tu": {"value": float(regime.Tu), "source": source},
            "OW": {"value": regime.OW, "source": source},
            "LT": {"value": regime.LT, "source": source},
            "PW": {"value": regime.PW, "source": source},
            "origin_segs": regime.origin, "window_strategy": "synchro"}


DEFAULT_REGIME = Regime(Tu=10, OW=6, LT=1, PW=6, origin=1_700_000_000)


def build_package(package_dir, models: list[ModelDef], *, replay: EventRows | None = None,
                  regime: Regime = DEFAULT_REGIME, variant: str = "v601") -> dict:
    """Write and seal an F06 package in ``package_dir``; returns its sealed metadata.

    ``replay`` defaults to an hour of synthetic rows starting at the regime's origin.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    package_dir = Path(package_dir)
    replay = replay if replay is not None else synthetic_event_rows(3600, start=regime.origin)
    write_event_rows(replay, package_dir / layout.REPLAY)
    entries = []
    for spec in sorted(models, key=lambda m: (m.objective, m.source_f05, m.model_id)):
        rel = layout.package_model_dir(spec.objective, spec.source_f05, spec.model_id)
        write_model(spec, package_dir / rel)
        summary = json.loads((package_dir / rel / layout.MODEL_SUMMARY).read_text())
        vec = summary["vectorization"]
        width = vec["input_dim"] if vec["vectorization"] == "dense_bow" else vec["max_len"]
        entries.append({"objective": spec.objective, "prediction_name": summary["prediction_name"],
                        "source_f05": spec.source_f05, "model_id": spec.model_id,
                        "model_family": summary["model_family"], "threshold": summary["threshold"],
                        "path": rel, "vectorization": vec, "input_shape": [None, width]})
    datasets = {}
    for objective in sorted({m.objective for m in models}):
        rel = layout.package_dataset(objective)
        (package_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"OW_events": pa.array([[1, 2], [3]], pa.list_(pa.int32())),
                          "label": pa.array([0, 1], pa.int8()),
                          "t0": pa.array([regime.origin, regime.origin + regime.Tu], pa.int64())})
        pq.write_table(table, package_dir / rel)
        name = next(e["prediction_name"] for e in entries if e["objective"] == objective)
        datasets[objective] = {"path": rel, "prediction_name": name, "rows": 2, "positives": 1,
                               "has_t0": True, "objective": {"operator": "OR", "events": ["e1"]}}
    (package_dir / layout.PARAMS_FILE).write_text(f"variant: {variant}\n", encoding="utf-8")
    metadata = {
        "phase": layout.F06, "variant": variant,
        "lineage": {"f02": "v201", "f03": ["v301"], "f04": {m.objective: "v301" for m in models},
                    "f05": {m.source_f05: m.objective for m in models}},
        "temporal": _temporal(regime),
        "models": entries,
        "datasets": datasets,
        "replay": {"path": layout.REPLAY, "source_f02": "v201", "rows": len(replay),
                   "events": int(len(replay.codes)), "first_segs": int(replay.segs[0]),
                   "last_segs": int(replay.segs[-1]), "time_range": {"start": None, "end": None}},
    }
    return _seal(package_dir, metadata)


def _seal(package_dir: Path, metadata: dict) -> dict:
    sealed = seal_package(package_dir, metadata)
    write_json_atomic(package_dir / layout.PACKAGE_METADATA, sealed)
    return sealed


def reseal_package(package_dir) -> dict:
    """Seal ``package_dir`` again after a test changed a file on purpose (e.g. to serve a
    corrupt model through a valid seal); returns the new metadata."""
    package_dir = Path(package_dir)
    return _seal(package_dir, json.loads((package_dir / layout.PACKAGE_METADATA).read_text()))


def write_manifest(manifest_path, package_dir, *, variant: str = "v701",
                   batch_size: int = DEFAULT_BATCH_SIZE) -> Path:
    """The ``manifest.json`` the serve stage writes for a package."""
    manifest_path = Path(manifest_path)
    write_json_atomic(manifest_path, build_manifest(variant, Path(package_dir), manifest_path.parent, batch_size))
    return manifest_path


def build_served_package(root, models: list[ModelDef], **package_options) -> Path:
    """A sealed package ``v601`` under ``root`` (an executions folder) and its manifest
    for run ``v701`` (returned), laid out as in a real project."""
    package_dir = layout.variant_dir(layout.F06, "v601", root)
    build_package(package_dir, models, **package_options)
    return write_manifest(layout.variant_dir(layout.F07, "v701", root) / layout.MANIFEST, package_dir)
