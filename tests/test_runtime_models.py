"""LoadedModel and the equivalence check on real Keras HDF5 files (small ones, and upstream's)."""
import json
import shutil

import numpy as np
import pytest

from builders.packages import ModelDef, build_served_package, synthetic_windows
from contract.manifest import load_manifest
from runtime.models import EquivalenceCheck, LoadedModel, ModelLoadError, load_models
from runtime.vectorize import Ragged
from tests.served_models import UPSTREAM_FIXTURE


@pytest.fixture(scope="module")
def models(manifest):
    return load_models(manifest)


def windows(n=70, seed=0):
    return Ragged.from_lists(synthetic_windows(n, mean_len=20, codes=(0, 130), seed=seed))


def test_predict_equals_the_keras_model_on_the_same_input(models):
    batch = windows()
    for key, model in models.items():
        expected = model.model.predict(model.inputs(batch), verbose=0).reshape(-1)
        got = model.predict(batch)
        assert got.dtype == np.float32 and got.shape == (len(batch),)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=key)
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=key)


def test_any_batch_size_goes_through_the_one_traced_graph(models):
    model = models["v401/v502/obj_a"]
    for n in (1, 7, 300):
        assert model.predict(windows(n, seed=n)).shape == (n,)
    assert model.predict(Ragged.from_lists([])).shape == (0,)


def test_the_real_upstream_keras2_model_serves(models):
    model = models["v401/v505/battery_active_power_any-to-80_100"]
    assert model.vectorizer.width == 122
    probabilities = model.predict(windows())
    assert np.isfinite(probabilities).all() and ((probabilities >= 0) & (probabilities <= 1)).all()


def test_non_finite_outputs_are_returned_as_nan_never_zero(models):
    probabilities = models["v402/v504/broken"].predict(windows(5))
    assert np.isnan(probabilities).all()


def test_a_model_whose_input_disagrees_with_its_summary_is_refused_by_name(tmp_path):
    summary = json.loads((UPSTREAM_FIXTURE / "model_summary.json").read_text())
    summary["vectorization"]["input_dim"] = 130
    summary["vectorization"]["vocab"] = list(range(1, 131))
    (tmp_path / "model_summary.json").write_text(json.dumps(summary))
    shutil.copyfile(UPSTREAM_FIXTURE / "model.h5", tmp_path / "model.h5")
    with pytest.raises(ModelLoadError, match=r"model v9/battery: input shape \(None, 122\) disagrees "
                                             r"with input_dim = 130"):
        LoadedModel.from_files(tmp_path / "model.h5", tmp_path / "model_summary.json", name="v9/battery")


def test_an_unreadable_model_file_is_refused_by_name(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"not an hdf5 file")
    shutil.copyfile(UPSTREAM_FIXTURE / "model_summary.json", tmp_path / "model_summary.json")
    with pytest.raises(ModelLoadError, match="model m1: cannot load"):
        LoadedModel.from_files(tmp_path / "model.h5", tmp_path / "model_summary.json", name="m1")


def test_equivalence_passes_on_identical_answers_and_measures_differences(models):
    batch = windows()
    served = {key: model.predict(batch).astype(np.float64) for key, model in models.items()}
    check = EquivalenceCheck(models)
    check.add(batch, served)
    summary = check.summary()
    assert summary["passed"] and summary["windows_compared"] == len(batch)
    assert all(m["max_abs_diff"] == 0.0 and m["non_finite_mismatch"] == 0 for m in summary["models"].values())

    off = dict(served)
    off["v401/v501/obj_a"] = served["v401/v501/obj_a"] + 1e-3
    off["v402/v503/obj_b"] = np.where(np.arange(len(batch)) == 3, np.nan, served["v402/v503/obj_b"])
    off["v402/v504/broken"] = np.zeros(len(batch))  # a server that turned NaN into 0
    check = EquivalenceCheck(models)
    check.add(batch, off)
    result = check.summary()["models"]
    assert not check.summary()["passed"]
    assert result["v401/v501/obj_a"]["max_abs_diff"] == pytest.approx(1e-3)
    assert not result["v401/v501/obj_a"]["passed"]
    assert result["v402/v503/obj_b"]["non_finite_mismatch"] == 1
    assert result["v402/v504/broken"]["non_finite_mismatch"] == len(batch)
    assert result["v401/v502/obj_a"]["passed"]


def test_the_manifest_copy_of_the_vectorization_must_match_the_summary(tmp_path):
    path = build_served_package(tmp_path, [ModelDef("m", vocab=[1, 2, 3])])
    data = json.loads(path.read_text())
    data["models"][0]["vectorization"]["vocab"] = [1, 2, 4]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="manifest's 'vectorization' differs"):
        load_models(load_manifest(path))


def test_a_model_built_from_bytes_answers_as_the_one_read_from_its_files(manifest, models):
    batch = windows(40, seed=2)
    for entry in manifest.models:
        built = LoadedModel.from_bytes(entry.model_path.read_bytes(), entry.summary_path.read_bytes(),
                                       name=entry.key)
        np.testing.assert_array_equal(built.predict(batch), models[entry.key].predict(batch), err_msg=entry.key)
