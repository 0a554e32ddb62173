"""The tests' own served models: ``builders.packages`` builds packages; this adds the real
upstream Keras-2 model the tests keep under ``tests/fixtures`` and the mix of models the
runtime tests serve."""
from __future__ import annotations

import json

from builders.packages import ModelDef, build_served_package, reseal_package, write_manifest
from tests.upstream_builder import FIXTURE_F05, FIXTURE_MODEL_ID

UPSTREAM_FIXTURE = FIXTURE_F05 / "models" / FIXTURE_MODEL_ID


def upstream_fixture_def(objective: str = "v401", source_f05: str = "v501") -> ModelDef:
    """The real upstream Keras-2 HDF5 dense_bow model (input 122), as a package model."""
    summary = json.loads((UPSTREAM_FIXTURE / "model_summary.json").read_text())
    return ModelDef(model_id=UPSTREAM_FIXTURE.name, family="dense_bow", objective=objective,
                    source_f05=source_f05, prediction_name=summary["prediction_name"],
                    vocab=summary["vectorization"]["vocab"], copy_from=UPSTREAM_FIXTURE)


def serving_models() -> list[ModelDef]:
    """A package to serve in tests: one small model of each family (two objectives, two
    F05 runs sharing a model_id), a model with NaN weights, and the real upstream model."""
    vocab = list(range(1, 41))
    return [
        ModelDef("obj_a", "dense_bow", "v401", "v501", vocab=vocab, seed=1),
        ModelDef("obj_a", "sequence_embedding", "v401", "v502", vocab=vocab, width=50, seed=2),
        ModelDef("obj_b", "cnn1d", "v402", "v503", vocab=vocab, width=60, seed=3, threshold=0.4),
        ModelDef("broken", "dense_bow", "v402", "v504", vocab=vocab, seed=4, nan_weights=True),
        upstream_fixture_def(objective="v401", source_f05="v505"),
    ]


def package_with_a_corrupt_model(root):
    """A sealed package whose one model (``v401/v501/m``) is not HDF5: it verifies, and
    fails to load; returns its manifest path."""
    manifest_path = build_served_package(root, [ModelDef("m", vocab=[1, 2, 3])])
    package = root / "06_packaging" / "v601"
    (package / "models/v401/v501__m/model.h5").write_bytes(b"corrupt")
    reseal_package(package)
    write_manifest(manifest_path, package)
    return manifest_path
