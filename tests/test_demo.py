"""The embedded demo upstream, built directly (no DVC) on a three-day site.

What the rest of the project relies on: same seed, same bytes (so `dvc repro` stops early
and packages seal the same); the contract's files, columns and types; labels that are
exactly the objective over each window's PW; F05 models judged on a held-out time split.
The one end-to-end `dvc repro` of the demo lives in the integration tests.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from demo import f02, f03, f04, f05
from demo.artifacts import DemoError, demo_params, phase_file, variant_dir, write_variant
from demo.simulate import SURGE
from demo.targets import labels

PROJECT = Path(__file__).resolve().parents[1]
BUILDERS = {"f02": f02.build, "f03": f03.build, "f04": f04.build, "f05": f05.build}


def tiny_params(seed_shift: int = 0) -> dict:
    """The project's demo parameters at test size: three days, one short trial per F05."""
    params = copy.deepcopy(yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))["demo"])
    for entry in params["f02"].values():
        entry.update(days=3, dropouts_per_day=1.0, seed=entry["seed"] + seed_shift)
    for entry in params["f05"].values():
        entry.update(epochs=2, trials=entry["trials"][:1])
    return params


def build_all(root: Path, params: dict, phases=("f02", "f03", "f04", "f05")) -> None:
    for phase in phases:
        for variant, entry in params[phase].items():
            write_variant(root, phase, variant, BUILDERS[phase], entry)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "executions"
    params = tiny_params()
    build_all(root, params)
    return root, params


# ------------------------------------------------------------------ determinism

def on_disk(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("phase", ["f02", "f03", "f04", "f05"])
def test_a_rebuild_gives_the_same_bytes(upstream, phase):
    root, params = upstream
    for variant, entry in params[phase].items():
        rebuilt = {name: content.encode() if isinstance(content, str) else content
                   for name, content in BUILDERS[phase](root, variant, entry).items()}
        assert rebuilt == on_disk(variant_dir(root, phase, variant)), f"{phase} {variant} changed on a rebuild"


def test_another_seed_gives_other_data(upstream, tmp_path):
    root, _ = upstream
    other = tmp_path / "executions"
    build_all(other, tiny_params(seed_shift=1), phases=("f02", "f03", "f04"))
    for phase, variant in (("f02", "v201"), ("f03", "v301"), ("f04", "v401"), ("f04", "v402")):
        ours = phase_file(root, phase, variant, "dataset.parquet").read_bytes()
        theirs = phase_file(other, phase, variant, "dataset.parquet").read_bytes()
        assert ours != theirs, f"{phase} {variant}: a different seed gave the same dataset"


# ------------------------------------------------------------------ F02

def test_f02_follows_the_contract(upstream):
    root, params = upstream
    table = pq.read_table(phase_file(root, "f02", "v201", "dataset.parquet"))
    assert table.schema.field("segs").type == pa.int64()
    assert table.schema.field("events").type == pa.list_(pa.field("element", pa.int64()))
    tu = params["f02"]["v201"]["Tu"]
    segs = table.column("segs").to_numpy()
    assert len(segs) == 3 * 86400 // tu and segs[0] == params["f02"]["v201"]["start"]
    assert np.all(np.diff(segs) == tu)

    catalog = read_json(phase_file(root, "f02", "v201", "event_catalog.json"))
    assert sorted(catalog.values()) == list(range(1, len(catalog) + 1))
    assert "battery_active_power_20_40-to-40_60" in catalog
    nan_events = {code for name, code in catalog.items() if name.endswith("_NaN_NaN")}
    assert len(nan_events) == 4
    codes = np.concatenate([np.asarray(row) for row in table.column("events").to_pylist() if row])
    assert set(codes) <= set(catalog.values())
    assert np.isin(codes, list(nan_events)).any(), "sensor dropouts should show as *_NaN_NaN events"
    assert sum(1 for row in table.column("events").to_pylist() if not row) > len(segs) / 2

    metadata = read_json(phase_file(root, "f02", "v201", "metadata.json"))
    assert isinstance(metadata["Tu"], float) and metadata["Tu"] == tu
    assert read_yaml(variant_dir(root, "f02", "v201") / "params.yaml")["parent_variant"] is None


def test_objective_events_happen_only_at_simulated_faults(upstream):
    """The faults, not the noise, produce the objective events: the prerequisite for a
    model to learn them from their precursors."""
    root, params = upstream
    catalog = read_json(phase_file(root, "f02", "v201", "event_catalog.json"))
    table = pq.read_table(phase_file(root, "f02", "v201", "dataset.parquet"))
    faults = read_json(phase_file(root, "f02", "v201", "metadata.json"))["simulated_faults"]
    surges = [f["onset"] for f in faults if f["kind"] == "battery"]
    assert surges, "the tiny demo should hold a battery fault"
    objective = {catalog[name] for name in params["f04"]["v401"]["prediction_objective"]["events"]}
    times = [t for t, row in zip(table.column("segs").to_pylist(), table.column("events").to_pylist())
             if objective & set(row)]
    assert len(times) >= len(surges)
    for t in times:
        assert any(0 <= t - onset <= SURGE[1] for onset in surges), f"objective event at {t} with no surge"


# ------------------------------------------------------------------ F03

def test_f03_windows_follow_the_contract(upstream):
    root, params = upstream
    entry = params["f03"]["v301"]
    table = pq.read_table(phase_file(root, "f03", "v301", "dataset.parquet"))
    assert table.schema.field("OW_events").type.value_type == pa.int32()
    assert table.schema.field("PW_events").type.value_type == pa.int32()
    assert table.schema.field("t0").type == pa.int64()

    written = read_yaml(variant_dir(root, "f03", "v301") / "params.yaml")
    assert written == {"parent_variant": "v201", "OW": entry["OW"], "LT": entry["LT"], "PW": entry["PW"],
                       "Tu": None, "window_strategy": "synchro", "nan_strategy": entry["nan_strategy"]}
    metadata = read_json(phase_file(root, "f03", "v301", "metadata.json"))
    tu = params["f02"]["v201"]["Tu"]
    assert [metadata[k] for k in ("Tu", "OW", "LT", "PW")] == [tu, entry["OW"], entry["LT"], entry["PW"]]
    assert metadata["n_windows"] == table.num_rows

    # Every grid start whose OW or PW holds an event, and only those, recomputed naively.
    events = pq.read_table(phase_file(root, "f02", "v201", "dataset.parquet"))
    segs, rows = events.column("segs").to_pylist(), events.column("events").to_pylist()
    at = {s: row for s, row in zip(segs, rows)}

    def between(start, end):
        return [code for s in range(start, end, tu) for code in at.get(s, [])]

    expected = []
    t0 = segs[0]
    while t0 + (entry["OW"] + entry["LT"] + entry["PW"]) * tu <= segs[-1]:
        ow = between(t0, t0 + entry["OW"] * tu)
        pw = between(t0 + (entry["OW"] + entry["LT"]) * tu, t0 + (entry["OW"] + entry["LT"] + entry["PW"]) * tu)
        if ow or pw:
            expected.append((t0, ow, pw))
        t0 += tu
    got = list(zip(table.column("t0").to_pylist(), table.column("OW_events").to_pylist(),
                   table.column("PW_events").to_pylist()))
    assert got == expected


def test_f03_nan_discard_drops_windows_with_a_dropout(upstream):
    root, params = upstream
    catalog = read_json(phase_file(root, "f02", "v201", "event_catalog.json"))
    nan_codes = {code for name, code in catalog.items() if name.endswith("_NaN_NaN")}
    entry = dict(params["f03"]["v301"], nan_strategy="discard")
    files = f03.build(root, "v302", entry)
    discarded = pq.read_table(pa.BufferReader(files["03_preparewindowsds_dataset.parquet"]))
    preserved = pq.read_table(phase_file(root, "f03", "v301", "dataset.parquet"))
    assert 0 < discarded.num_rows < preserved.num_rows
    for column in ("OW_events", "PW_events"):
        assert not any(nan_codes & set(window) for window in discarded.column(column).to_pylist())


# ------------------------------------------------------------------ F04

def test_f04_labels_are_the_objective_over_each_pw(upstream):
    root, params = upstream
    catalog = read_json(phase_file(root, "f02", "v201", "event_catalog.json"))
    windows = pq.read_table(phase_file(root, "f03", "v301", "dataset.parquet"))
    for variant, entry in params["f04"].items():
        table = pq.read_table(phase_file(root, "f04", variant, "dataset.parquet"))
        assert table.schema.field("label").type == pa.int8()
        assert table.schema.field("OW_events").type.value_type == pa.int32()
        assert table.column("t0").equals(windows.column("t0"))
        assert table.column("OW_events").equals(windows.column("OW_events"))
        objective = {catalog[name] for name in entry["prediction_objective"]["events"]}
        expected = [int(bool(objective & set(pw))) for pw in windows.column("PW_events").to_pylist()]
        assert table.column("label").to_pylist() == expected
        assert read_yaml(variant_dir(root, "f04", variant) / "params.yaml") == {
            "parent_variant": "v301", "prediction_name": entry["prediction_name"],
            "prediction_objective": entry["prediction_objective"]}
    assert sum(pq.read_table(phase_file(root, "f04", "v401", "dataset.parquet")).column("label").to_pylist()) > 0


def test_labels_or_and():
    offsets = np.array([0, 0, 2, 3, 5])            # windows: [], [1, 2], [3], [2, 3]
    codes = np.array([1, 2, 3, 2, 3])
    assert labels(codes, offsets, np.array([2, 3]), "OR").tolist() == [0, 1, 1, 1]
    assert labels(codes, offsets, np.array([2, 3]), "AND").tolist() == [0, 0, 0, 1]


def test_f04_names_an_unknown_event(upstream, tmp_path):
    root, params = upstream
    entry = copy.deepcopy(params["f04"]["v401"])
    entry["prediction_objective"]["events"] = ["battery_active_power_0_20-to-99_100"]
    with pytest.raises(DemoError, match=r"battery_active_power_0_20-to-99_100.*not in the F02 event catalog"):
        f04.build(root, "v409", entry)


# ------------------------------------------------------------------ F05

@pytest.mark.parametrize("variant", ["v501", "v502", "v503"])
def test_f05_writes_models_and_held_out_metrics(upstream, variant):
    root, params = upstream
    entry = params["f05"][variant]
    folder = variant_dir(root, "f05", variant)
    written = read_yaml(folder / "params.yaml")
    assert (written["parent_variant"], written["model_family"]) == (entry["parent_variant"], entry["model_family"])
    model_id = params["f04"][entry["parent_variant"]]["prediction_name"].lower()
    summary = read_json(folder / "models" / model_id / "model_summary.json")
    assert summary["prediction_name"] == model_id and summary["model_family"] == entry["model_family"]
    assert summary["threshold"] == 0.5
    vec = summary["vectorization"]
    assert vec["vocab"] == sorted(set(vec["vocab"])) and 0 not in vec["vocab"]

    model = keras.models.load_model(folder / "models" / model_id / "model.h5", compile=False)
    if vec["vectorization"] == "dense_bow":
        assert model.input_shape == (None, vec["input_dim"]) and vec["input_dim"] == len(vec["vocab"])
    else:
        assert model.input_shape == (None, vec["max_len"]) and vec["vocab_size"] == len(vec["vocab"])
        assert model.get_layer("embedding").input_dim == vec["vocab_size"] + 1
    assert (folder / "models" / model_id / "model.h5").read_bytes() == \
        (folder / "experiments" / summary["selected_experiment"] / "model.h5").read_bytes()
    trial = read_json(folder / "experiments" / "exp_000" / "metrics.json")
    assert trial["val"].keys() >= {"precision", "recall", "f1"}

    metadata = read_json(phase_file(root, "f05", variant, "metadata.json"))
    test = metadata["test_metrics"]
    assert test.keys() >= {"precision", "recall", "f1", "tp", "fp", "fn", "tn"}
    assert all(0.0 <= test[k] <= 1.0 for k in ("precision", "recall", "f1"))
    splits = metadata["splits"]
    table = pq.read_table(phase_file(root, "f04", entry["parent_variant"], "dataset.parquet"))
    assert sum(s["rows"] for s in splits.values()) == table.num_rows and splits["test"]["rows"] == test["rows"]
    train, val, held_out = splits["train"], splits["val"], splits["test"]
    assert train["t0_last"] < val["t0_first"] <= val["t0_last"] < held_out["t0_first"] <= held_out["t0_last"]


def test_a_failed_stage_leaves_no_output(upstream, tmp_path):
    root, params = upstream
    entry = dict(params["f03"]["v301"], parent_variant="v299")
    with pytest.raises(DemoError, match=r"02_prepareeventsds/v299/\S+ does not exist; produce the parent"):
        write_variant(root, "f03", "v398", f03.build, entry)
    assert not variant_dir(root, "f03", "v398").exists()


def test_missing_params_entry_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("demo:\n  f02: {v201: {}}\n", encoding="utf-8")
    with pytest.raises(DemoError, match=r"no entry 'demo\.f05\.v509'.*known f05 variants: none"):
        demo_params("f05", "v509", tmp_path / "params.yaml")


def test_the_demo_builds_model_inputs_as_the_runtime_rebuilds_them():
    """Two implementations of the F05 contract, the demo's (its own, so that the runtime is
    judged against an upstream it did not build) and the runtime's: the same input for
    random windows, vocabularies in any order, codes outside them, short and long windows."""
    from demo.families import encode
    from runtime.vectorize import Ragged, from_spec

    rng = np.random.default_rng(23)
    for _ in range(40):
        offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 15, rng.integers(0, 40)))])
        codes = rng.integers(0, 30, offsets[-1])
        vocab = [int(code) for code in rng.permutation(40)[:rng.integers(1, 25)]]
        for spec in ({"vectorization": "dense_bow", "vocab": vocab, "input_dim": len(vocab) + int(rng.integers(0, 3))},
                     {"vectorization": "sequence", "vocab": vocab, "vocab_size": len(vocab),
                      "max_len": int(rng.integers(1, 12))}):
            demo = encode(spec, codes, offsets, "test")
            runtime = from_spec(spec, "test")(Ragged(codes=codes, offsets=offsets))
            assert demo.dtype == runtime.dtype and demo.shape == runtime.shape
            np.testing.assert_array_equal(demo, runtime)
