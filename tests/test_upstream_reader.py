"""The upstream readers on good and broken lineages, and on the real upstream fixture."""
import json
import shutil

import pytest
import yaml

from tests.upstream_builder import FIXTURE_MODEL_ID, write_yaml
from upstream.reader import UpstreamError, read_model_summary, resolve_lineage, resolve_modeling


@pytest.fixture
def root(upstream_root):
    return upstream_root


def test_resolves_f05_to_its_f04_f03_f02(root):
    modeling = resolve_modeling(root, "v501")
    assert modeling.objective.id == "v401"
    assert modeling.objective.windows.variant.id == "v301"
    assert modeling.objective.windows.events.variant.id == "v201"
    assert modeling.model_family == "dense_bow"


def test_lineage_of_several_f05(root):
    lineage = resolve_lineage(root, ["v501", "v502"])
    assert lineage.f02.variant.id == "v201"
    assert lineage.as_dict() == {"f02": ["v201"], "f03": {"v301": "v201"},
                                 "f04": {"v401": "v301", "v402": "v301"},
                                 "f05": {"v501": "v401", "v502": "v402"}}


def test_regime_takes_tu_from_f02_metadata_when_f03_has_none(root):
    regime = resolve_modeling(root, "v501").objective.windows.regime()
    assert {k: v.value for k, v in regime.items()} == {"OW": 6, "LT": 1, "PW": 4, "Tu": 10.0}
    assert regime["Tu"].source == "F02 v201 02_prepareeventsds_metadata.json"
    assert regime["OW"].source == "F03 v301 params.yaml"


def test_regime_prefers_f03_metadata_then_params(root):
    meta = root / "03_preparewindowsds/v301/03_preparewindowsds_metadata.json"
    meta.write_text(json.dumps({"Tu": 20.0}))
    regime = resolve_modeling(root, "v501").objective.windows.regime()
    assert (regime["Tu"].value, regime["Tu"].source) == (20.0, "F03 v301 03_preparewindowsds_metadata.json")
    params = yaml.safe_load((root / "03_preparewindowsds/v301/params.yaml").read_text())
    write_yaml(root / "03_preparewindowsds/v301/params.yaml", {**params, "Tu": 30})
    regime = resolve_modeling(root, "v501").objective.windows.regime()
    assert (regime["Tu"].value, regime["Tu"].source) == (30.0, "F03 v301 params.yaml")


def test_no_tu_anywhere_is_named(root):
    (root / "02_prepareeventsds/v201/02_prepareeventsds_metadata.json").write_text("{}")
    with pytest.raises(UpstreamError, match=r"F03 variant v301: Tu is null .* F02 v201"):
        resolve_modeling(root, "v501").objective.windows.regime()


def test_missing_parent_names_the_child_and_known_variants(root):
    shutil.rmtree(root / "04_targetengineering/v401")
    with pytest.raises(UpstreamError, match=r"F04 variant v401 \(the parent_variant of F05 variant v501\) not found"
                                            r".*Known F04 variants: v402"):
        resolve_modeling(root, "v501")


def test_unknown_f05_variant(root):
    with pytest.raises(UpstreamError, match=r"F05 variant v599 not found.*Known F05 variants: v501, v502"):
        resolve_modeling(root, "v599")


def test_missing_parent_variant_key(root):
    write_yaml(root / "05_modeling/v502/params.yaml", {"model_family": "sequence_embedding"})
    with pytest.raises(UpstreamError, match=r"F05 variant v502, file params.yaml: key 'parent_variant' is missing"):
        resolve_modeling(root, "v502")


def test_missing_summary_is_named(root):
    (root / f"05_modeling/v501/models/{FIXTURE_MODEL_ID}/model_summary.json").unlink()
    with pytest.raises(UpstreamError, match=r"F05 variant v501, model 'battery_active_power_any-to-80_100'.*"
                                            r"model_summary.json is missing"):
        resolve_modeling(root, "v501").model(FIXTURE_MODEL_ID)


def test_unknown_model_id_lists_the_available_ones(root):
    with pytest.raises(UpstreamError, match=rf"model_id 'm07' not found; available: {FIXTURE_MODEL_ID}"):
        resolve_modeling(root, "v501").model("m07")


def test_two_f02_in_the_lineage(root):
    shutil.copytree(root / "02_prepareeventsds/v201", root / "02_prepareeventsds/v202")
    shutil.copytree(root / "03_preparewindowsds/v301", root / "03_preparewindowsds/v302")
    params = yaml.safe_load((root / "03_preparewindowsds/v302/params.yaml").read_text())
    write_yaml(root / "03_preparewindowsds/v302/params.yaml", {**params, "parent_variant": "v202"})
    params = yaml.safe_load((root / "04_targetengineering/v402/params.yaml").read_text())
    write_yaml(root / "04_targetengineering/v402/params.yaml", {**params, "parent_variant": "v302"})
    with pytest.raises(UpstreamError, match=r"2 F02 variants \(v201, v202\).*F05 v502 → F04 v402 → F03 v302 → F02 v202"):
        resolve_lineage(root, ["v501", "v502"]).f02


def test_unknown_vectorization_kind(root):
    path = root / "05_modeling/v502/models/signal_9_ahead/model_summary.json"
    summary = json.loads(path.read_text())
    summary["vectorization"]["vectorization"] = "tfidf"
    path.write_text(json.dumps(summary))
    with pytest.raises(UpstreamError, match=r"model_summary.json: 'vectorization.vectorization' is 'tfidf'; this "
                                            r"runtime builds inputs only for \['dense_bow', 'sequence'\]"):
        resolve_modeling(root, "v502").model("signal_9_ahead")


def test_dense_bow_input_dim_must_match_vocab(root):
    path = root / f"05_modeling/v501/models/{FIXTURE_MODEL_ID}/model_summary.json"
    summary = json.loads(path.read_text())
    summary["vectorization"]["input_dim"] = 99
    path.write_text(json.dumps(summary))
    with pytest.raises(UpstreamError, match=r"'vocab' has 122 codes but 'input_dim' is 99"):
        read_model_summary(path, "F05 v501")


def test_prediction_names_compare_case_insensitively(root):
    files = resolve_modeling(root, "v501").model(FIXTURE_MODEL_ID)
    assert files.summary.prediction_name == FIXTURE_MODEL_ID
    assert resolve_modeling(root, "v501").objective.prediction_name == "Battery_Active_Power_any-to-80_100"


def test_a_model_of_another_objective_is_refused(root):
    params = yaml.safe_load((root / "05_modeling/v502/params.yaml").read_text())
    write_yaml(root / "05_modeling/v502/params.yaml", {**params, "parent_variant": "v401"})
    with pytest.raises(UpstreamError, match=r"prediction_name 'signal_9_ahead' in model_summary.json is not the one"):
        resolve_modeling(root, "v502").model("signal_9_ahead")


def test_trial_shares_the_official_summary(root):
    trial = root / "05_modeling/v501/experiments/exp_001"
    trial.mkdir(parents=True)
    shutil.copyfile(root / f"05_modeling/v501/models/{FIXTURE_MODEL_ID}/model.h5", trial / "model.h5")
    files = resolve_modeling(root, "v501").model("exp_001")
    assert files.trial and files.h5_path == trial / "model.h5"
    assert files.summary.path.parent.name == FIXTURE_MODEL_ID


def test_real_upstream_fixture_model_loads_and_predicts(root):
    from runtime.models import LoadedModel
    from contract.windows import Windows
    import numpy as np

    files = resolve_modeling(root, "v501").model(FIXTURE_MODEL_ID)
    model = LoadedModel.from_files(files.h5_path, files.summary.path)
    assert tuple(model.model.input_shape) == (None, 122)
    windows = Windows(np.zeros(2, np.int64), np.array([1, 2, 2, 500], np.int64), np.array([0, 0, 4], np.int64))
    probabilities = model.predict(windows)
    assert probabilities.shape == (2,) and np.all((probabilities >= 0) & (probabilities <= 1))
