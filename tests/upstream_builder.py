"""Build small upstream trees (F02–F05) in a temporary folder, as the contract lays them out.

F05 ``v501`` is the real upstream fixture (a Keras-2 HDF5 dense_bow model) copied
unchanged; F05 ``v502`` is a small sequence model saved here with Keras. The tests then
break one thing at a time to check that each problem is named.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from contract.windows import EventRows, Regime, f03_windows

# The real upstream F05 variant, kept in the repository (see tests/fixtures/README.md).
FIXTURE_F05 = Path(__file__).resolve().parent / "fixtures" / "mlops4ofp-f05-v501"
FIXTURE_MODEL_ID = "battery_active_power_any-to-80_100"
ORIGIN = 1_700_000_000
TU = 10
N_CODES = 122


def write_yaml(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def list_column(lists, width=pa.int32()):
    return pa.array([list(map(int, x)) for x in lists], type=pa.list_(width))


def make_f02(root: Path, variant="v201", rows=400, seed=0) -> EventRows:
    rng = np.random.default_rng(seed)
    segs = ORIGIN + TU * np.arange(rows, dtype=np.int64)
    events = [sorted(rng.choice(np.arange(1, N_CODES + 1), size=rng.integers(0, 3), replace=False).tolist())
              if rng.random() < 0.5 else [] for _ in range(rows)]
    folder = root / "02_prepareeventsds" / variant
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"segs": pa.array(segs, pa.int64()), "events": list_column(events, pa.int64())}),
                   folder / "02_prepareeventsds_dataset.parquet")
    catalog = {f"signal_{c}": c for c in range(1, N_CODES + 1)}
    catalog["battery_active_power_any-to-80_100"] = catalog.pop("signal_7")
    write_json(folder / "02_prepareeventsds_event_catalog.json", catalog)
    write_json(folder / "02_prepareeventsds_metadata.json", {"Tu": float(TU)})
    write_yaml(folder / "params.yaml", {"parent_variant": "v101"})
    return EventRows.from_lists(segs, events)


def make_f03(root: Path, rows: EventRows, variant="v301", parent="v201", OW=6, LT=1, PW=4,
             with_t0=True, Tu=None):
    folder = root / "03_preparewindowsds" / variant
    ow, pw = f03_windows(rows, Regime(TU, OW, LT, PW, int(rows.segs[0])))
    columns = {"OW_events": list_column(ow.lists()), "PW_events": list_column(pw.lists())}
    if with_t0:
        columns = {"t0": pa.array(ow.t0, pa.int64()), **columns}
    folder.mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / "03_preparewindowsds_dataset.parquet")
    write_yaml(folder / "params.yaml", {"parent_variant": parent, "OW": OW, "LT": LT, "PW": PW, "Tu": Tu,
                                        "window_strategy": "synchro", "nan_strategy": "keep"})
    write_json(folder / "03_preparewindowsds_metadata.json", {"OW": OW, "LT": LT, "PW": PW, "windows": len(ow)})
    return ow, pw


def make_f04(root: Path, ow, pw, variant, prediction_name, target_code, parent="v301", with_t0=True):
    folder = root / "04_targetengineering" / variant
    labels = [int(target_code in window) for window in pw.lists()]
    columns = {"OW_events": list_column(ow.lists()), "label": pa.array(labels, pa.int8())}
    if with_t0:
        columns = {"t0": pa.array(ow.t0, pa.int64()), **columns}
    folder.mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / "04_targetengineering_dataset.parquet")
    event_name = "battery_active_power_any-to-80_100" if target_code == 7 else f"signal_{target_code}"
    write_yaml(folder / "params.yaml", {"parent_variant": parent, "prediction_name": prediction_name,
                                        "prediction_objective": {"operator": "OR", "events": [event_name]}})


def copy_fixture_f05(root: Path, variant="v501", parent="v401") -> None:
    folder = root / "05_modeling" / variant
    shutil.copytree(FIXTURE_F05, folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["parent_variant"] = parent
    write_yaml(folder / "params.yaml", params)


def save_sequence_model(folder: Path, prediction_name: str, vocab: list[int], max_len=12, nan_weights=False):
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((max_len,), dtype="int32"),
                              keras.layers.Embedding(len(vocab) + 1, 4),
                              keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    if nan_weights:
        weights = model.get_weights()
        weights[-1] = np.full_like(weights[-1], np.nan)
        model.set_weights(weights)
    model.save(folder / "model.h5")
    write_json(folder / "model_summary.json", {
        "prediction_name": prediction_name.lower(), "model_family": "sequence_embedding", "threshold": 0.5,
        "vectorization": {"vectorization": "sequence", "vocab": vocab, "vocab_size": len(vocab),
                          "max_len": max_len}})


def make_f05_sequence(root: Path, variant="v502", parent="v402", prediction_name="signal_9_ahead", **kwargs):
    folder = root / "05_modeling" / variant
    write_yaml(folder / "params.yaml", {"parent_variant": parent, "model_family": "sequence_embedding"})
    save_sequence_model(folder / "models" / prediction_name.lower(), prediction_name, list(range(1, 31)), **kwargs)


def make_upstream(root: Path, *, with_t0=True) -> Path:
    """F02 v201 → F03 v301 → F04 v401 (fixture's objective) and v402 → F05 v501 (the real
    upstream fixture model) and v502 (a sequence model)."""
    root = Path(root)
    rows = make_f02(root)
    ow, pw = make_f03(root, rows, with_t0=with_t0)
    make_f04(root, ow, pw, "v401", "Battery_Active_Power_any-to-80_100", 7, with_t0=with_t0)
    make_f04(root, ow, pw, "v402", "Signal_9_ahead", 9, with_t0=with_t0)
    copy_fixture_f05(root)
    make_f05_sequence(root)
    return root


def packaging_params(**overrides) -> dict:
    """A valid ``packaging.<variant>`` entry over ``make_upstream``."""
    params = {
        "parent_variants_f05": ["v501", "v502"],
        "temporal": {"Tu": None, "OW": None, "LT": None, "PW": None},
        "models": {"v401": [{"model_id": FIXTURE_MODEL_ID, "source_f05": "v501"}],
                   "v402": [{"model_id": "signal_9_ahead", "source_f05": "v502"}]},
        "replay": {"source": {"dataset_id": "v201"}, "time_range": {"start": None, "end": None}},
    }
    params.update(overrides)
    return params
