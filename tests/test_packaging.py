"""F06 packaging, stage by stage, on a small upstream tree holding the real upstream model."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract.errors import UserError
from contract.layout import REPLAY
from contract.seal import verify_seal
from f06_packaging.package import copy_models, write_package
from f06_packaging.plan import PackagingError, build_plan
from f06_packaging.probe import probe_models
from f06_packaging.replay import materialize_replay
from f06_packaging.steps import reference_joins
from tests.f07_synthetic import alter_a_value, damage_inside
from tests.upstream_builder import (FIXTURE_MODEL_ID, ORIGIN, TU, make_f05_sequence, make_upstream,
                                    packaging_params, write_yaml)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture
def root(upstream_root):
    return upstream_root


def select_and_replay(root, params, variant="v601"):
    """The first two F06 steps, as the stages run them; returns the plan and the package folder."""
    plan = build_plan(variant, params, root)
    out = root / "06_packaging" / variant
    copy_models(plan, out / "models")
    materialize_replay(plan.replay, out / REPLAY)
    return plan, out


def package(root, params, variant="v601"):
    """All three F06 steps; returns the package folder."""
    plan, out = select_and_replay(root, params, variant)
    write_package(plan, out, probe_models)
    return out


def test_happy_path_builds_every_artifact_of_the_seed(root):
    out = package(root, packaging_params())
    metadata = json.loads((out / "06_packaging_metadata.json").read_text())
    assert (out / f"models/v401/v501__{FIXTURE_MODEL_ID}/model.h5").read_bytes() == \
        (root / f"05_modeling/v501/models/{FIXTURE_MODEL_ID}/model.h5").read_bytes()
    assert (out / "models/v402/v502__signal_9_ahead/model_summary.json").is_file()
    assert (out / "datasets/v401/04_targetengineering_dataset.parquet").read_bytes() == \
        (root / "04_targetengineering/v401/04_targetengineering_dataset.parquet").read_bytes()
    assert (out / "params.yaml").is_file()
    assert metadata["lineage"] == {"f02": "v201", "f03": {"v301": "v201"}, "f04": {"v401": "v301", "v402": "v301"},
                                   "f05": {"v501": "v401", "v502": "v402"}}
    assert metadata["temporal"]["Tu"] == {"value": 10, "source": "F02 v201 02_prepareeventsds_metadata.json"}
    assert metadata["temporal"]["OW"] == {"value": 6, "source": "F03 v301 params.yaml"}
    assert metadata["temporal"]["origin_segs"] == ORIGIN
    assert [m["model_family"] for m in metadata["models"]] == ["dense_bow", "sequence_embedding"]
    assert metadata["models"][0]["prediction_name"] == "Battery_Active_Power_any-to-80_100"
    assert metadata["models"][0]["probe"]["weights_finite"] is True
    assert metadata["replay"]["rows"] == 400 and metadata["replay"]["first_segs"] == ORIGIN
    assert metadata["datasets"]["v401"]["join"] == "t0"
    assert verify_seal(out).ok


def test_user_values_win_and_are_recorded(root):
    out = package(root, packaging_params(temporal={"Tu": None, "OW": 9, "LT": None, "PW": None}))
    metadata = json.loads((out / "06_packaging_metadata.json").read_text())
    assert metadata["temporal"]["OW"] == {"value": 9, "source": "user (packaging.v601.temporal.OW)"}
    assert "OW: 9" in (out / "params.yaml").read_text()


def test_replay_is_the_rows_in_range_unchanged(root):
    start, end = ORIGIN + 50 * TU, ORIGIN + 120 * TU
    params = packaging_params(replay={"source": {"dataset_id": "v201"}, "time_range": {"start": start, "end": end}})
    plan = build_plan("v601", params, root)
    out = root / "replay.parquet"
    assert materialize_replay(plan.replay, out) == 70
    source = pq.read_table(root / "02_prepareeventsds/v201/02_prepareeventsds_dataset.parquet")
    assert pq.read_table(out).equals(source.slice(50, 70))


def test_iso_times_are_accepted(root):
    plan = build_plan("v601", packaging_params(replay={"source": {"dataset_id": "v201"},
                                                       "time_range": {"start": "2023-11-14T22:15:00Z", "end": None}}),
                      root)
    assert plan.replay.start == 1_700_000_100


def test_package_is_byte_identical_on_a_rebuild(root):
    first = json.loads((package(root, packaging_params()) / "06_packaging_metadata.json").read_text())
    shutil.rmtree(root / "06_packaging")
    second = json.loads((package(root, packaging_params()) / "06_packaging_metadata.json").read_text())
    assert first == second


def test_tampering_is_named_by_verify(root):
    out = package(root, packaging_params())
    model = out / f"models/v401/v501__{FIXTURE_MODEL_ID}/model.h5"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    (out / "datasets/v402/04_targetengineering_dataset.parquet").unlink()
    (out / "replay/notes.txt").write_text("extra")
    check = verify_seal(out)
    assert not check.ok
    assert check.changed == [f"models/v401/v501__{FIXTURE_MODEL_ID}/model.h5"]
    assert check.missing == ["datasets/v402/04_targetengineering_dataset.parquet"]
    assert check.extra == ["replay/notes.txt"]
    result = subprocess.run([sys.executable, "-m", "contract.seal", "verify", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"changed: models/v401/v501__{FIXTURE_MODEL_ID}/model.h5" in result.stderr
    assert "missing: datasets/v402/04_targetengineering_dataset.parquet" in result.stderr


def test_editing_the_metadata_breaks_the_seal(root):
    out = package(root, packaging_params())
    path = out / "06_packaging_metadata.json"
    metadata = json.loads(path.read_text())
    metadata["models"][0]["threshold"] = 0.1
    path.write_text(json.dumps(metadata))
    assert verify_seal(out).changed == ["06_packaging_metadata.json (its content, outside the seal)"]


def test_t0_is_recovered_when_the_reference_has_none(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    out = package(root, packaging_params())
    dataset = json.loads((out / "06_packaging_metadata.json").read_text())["datasets"]["v401"]
    assert dataset["join"] == "t0_recovered" and "every OW matches" in dataset["join_note"]
    recovered = pq.read_table(out / dataset["recovered_t0"]).column("t0").to_numpy()
    assert recovered[0] >= ORIGIN and np.all(np.diff(recovered) % TU == 0)


def test_t0_recovery_is_refused_when_a_row_differs(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    path = root / "04_targetengineering/v401/04_targetengineering_dataset.parquet"
    table = pq.read_table(path)
    lists = table.column("OW_events").to_pylist()
    lists[3] = lists[3] + [999]
    pq.write_table(table.set_column(0, "OW_events", pa.array(lists, pa.list_(pa.int32()))), path)
    out = package(root, packaging_params())
    dataset = json.loads((out / "06_packaging_metadata.json").read_text())["datasets"]["v401"]
    assert dataset["join"] == "ow_content" and "differ" in dataset["join_note"]
    # what seal_package prints: the refused recovery's reason, not only the metadata's
    metadata = json.loads((out / "06_packaging_metadata.json").read_text())
    [line] = [line for line in reference_joins(metadata) if line.startswith("reference v401:")]
    assert dataset["join_note"] in line and "by OW content" in line


# ------------------------------------------------------------------ validation errors

@pytest.mark.parametrize("override, message", [
    ({"parent_variants_f05": ["v501", "v599"]},
     r"F05 variant v599 not found.*Known F05 variants: v501, v502"),
    ({"models": {"v401": [{"model_id": "m07", "source_f05": "v501"}],
                 "v402": [{"model_id": "signal_9_ahead", "source_f05": "v502"}]}},
     r"packaging.v601.models.v401\[0\].model_id: .*model_id 'm07' not found"),
    ({"models": {"v402": [{"model_id": FIXTURE_MODEL_ID, "source_f05": "v501"},
                          {"model_id": "signal_9_ahead", "source_f05": "v502"}]}},
     r"packaging.v601.models.v402\[0\]: F05 v501 derives from F04 v401, not from the objective v402"),
    ({"models": {}}, r"packaging.v601.models selects no model"),
    ({"models": {"v401": []}}, r"packaging.v601.models.v401 selects no model"),
    ({"replay": {"source": {"dataset_id": "v202"}, "time_range": {}}},
     r"packaging.v601.replay.source.dataset_id is v202, but the lineage's F02 is v201"),
    ({"replay": {"source": {"dataset_id": "v201"}, "time_range": {"start": ORIGIN - 1000, "end": None}}},
     r"packaging.v601.replay.time_range.start = 1699999000 .* lies outside the data of F02 v201"),
    ({"replay": {"source": {"dataset_id": "v201"}, "time_range": {"start": ORIGIN + 500, "end": ORIGIN + 500}}},
     r"packaging.v601.replay.time_range: start 1700000500 .* must be before end 1700000500"),
    ({"replay": {"source": {"dataset_id": "v201"}, "time_range": {"start": "yesterday"}}},
     r"packaging.v601.replay.time_range.start must be epoch seconds or an ISO-8601 time"),
    ({"temporal": {"OW": -3}}, r"packaging.v601.temporal.OW must be a whole number of Tu units > 0"),
    ({"colour": "blue"}, r"packaging.v601: unknown keys \['colour'\]"),
])
def test_validation_errors_name_the_variant_and_key(root, override, message):
    with pytest.raises(PackagingError, match=message):
        build_plan("v601", packaging_params(**override), root)


def test_listed_f05_with_no_selected_model(root):
    params = packaging_params(models={"v401": [{"model_id": FIXTURE_MODEL_ID, "source_f05": "v501"}]})
    with pytest.raises(PackagingError, match=r"lists \['v502'\] but packaging.v601.models selects no model from"):
        build_plan("v601", params, root)


def test_disagreeing_f03_regimes_need_a_user_value(root):
    shutil.copytree(root / "03_preparewindowsds/v301", root / "03_preparewindowsds/v302")
    write_yaml(root / "03_preparewindowsds/v302/params.yaml",
               {"parent_variant": "v201", "OW": 8, "LT": 1, "PW": 4, "Tu": None, "window_strategy": "synchro"})
    params_path = root / "04_targetengineering/v402/params.yaml"
    params_path.write_text(params_path.read_text().replace("parent_variant: v301", "parent_variant: v302"))
    with pytest.raises(PackagingError, match=r"packaging.v601.temporal.OW is null, so it is inherited from F03, but "
                                             r"the lineage's F03 variants disagree \(F03 v301: 6 .*F03 v302: 8"):
        build_plan("v601", packaging_params(), root)
    plan = build_plan("v601", packaging_params(temporal={"OW": 7}), root)
    assert plan.regime["OW"].value == 7


# ------------------------------------------------------------------ infra checks (probe)

def test_model_with_nan_weights_is_refused_by_name(root):
    shutil.rmtree(root / "05_modeling/v502")
    make_f05_sequence(root, nan_weights=True)
    plan, out = select_and_replay(root, packaging_params())
    with pytest.raises(PackagingError, match=r"packaging variant v601: objective v402, source F05 v502, model "
                                             r"'signal_9_ahead' is refused: non-finite weights"):
        write_package(plan, out, probe_models)
    assert not (out / "06_packaging_metadata.json").exists() and not (out / "datasets").exists()


def test_model_whose_input_width_disagrees_with_its_summary_is_refused(root):
    path = root / "05_modeling/v502/models/signal_9_ahead/model_summary.json"
    summary = json.loads(path.read_text())
    summary["vectorization"]["max_len"] = 20
    path.write_text(json.dumps(summary))
    plan, out = select_and_replay(root, packaging_params())
    with pytest.raises(PackagingError, match=r"model 'signal_9_ahead' is refused: .*input shape \(None, 12\) "
                                             r"disagrees with max_len = 20"):
        write_package(plan, out, probe_models)


@pytest.mark.parametrize("dataset, damage, message", [
    ("02_prepareeventsds/v201/02_prepareeventsds_dataset.parquet", "truncate",
     r"F02 variant v201: .*02_prepareeventsds_dataset.parquet is not a readable parquet file .*truncated or not parquet"),
    ("04_targetengineering/v401/04_targetengineering_dataset.parquet", "truncate",
     r"F04 variant v401: .*04_targetengineering_dataset.parquet is not a readable parquet file"),
    ("02_prepareeventsds/v201/02_prepareeventsds_dataset.parquet", "damage_inside",
     r"F02 variant v201: .*02_prepareeventsds_dataset.parquet is not a readable parquet file .*damaged inside"),
    ("04_targetengineering/v401/04_targetengineering_dataset.parquet", "label",
     r"04_targetengineering_dataset.parquet: column 'label' is missing"),
    ("04_targetengineering/v402/04_targetengineering_dataset.parquet", "OW_events",
     r"04_targetengineering_dataset.parquet: column 'OW_events' is missing"),
])
def test_a_broken_upstream_dataset_is_named_when_the_plan_is_checked(root, dataset, damage, message):
    """These were pyarrow tracebacks, from a stage that had already written its outputs."""
    path = root / dataset
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "damage_inside":
        damage_inside(path)
    else:
        pq.write_table(pq.read_table(path).drop_columns([damage]), path)
    with pytest.raises(UserError, match=message):
        build_plan("v601", packaging_params(), root)


def test_a_truncated_or_damaged_replay_is_named_with_the_stage_to_rerun(root):
    """Cut short; a page header overwritten; one value's byte flipped, which still decodes
    and only the page CRCs the replay is written with (contract.parquet.WRITER_OPTIONS) tell."""
    plan, out = select_and_replay(root, packaging_params())
    replay = out / REPLAY
    whole = replay.read_bytes()
    for damage, what in ((lambda path: path.write_bytes(whole[:100]), "truncated or not parquet"),
                         (damage_inside, "damaged inside"), (alter_a_value, "CRC checksum verification failed")):
        replay.write_bytes(whole)
        damage(replay)
        with pytest.raises(UserError, match=rf"packaging variant v601: .*replay_events.parquet is not a readable "
                                            rf"parquet file .*{what}.*run `dvc repro -f -s materialize_replay@v601`"):
            write_package(plan, out, probe_models)
