"""Demo F03: cut the F02 event stream into windows with the project's one window
implementation (``contract.windows.f03_windows``), so the demo, the ``t0`` recovery and
the F07 client cannot disagree about what a window is.

    python -m demo.f03 v301        # reads params.yaml demo.f03.v301

Writes ``executions/03_preparewindowsds/<v>/``: the dataset (``OW_events`` and
``PW_events`` list<int32> as upstream, plus ``t0`` int64, which real upstream files
lack), the metadata (``Tu``, ``OW``, ``LT``, ``PW`` and counts) and ``params.yaml``,
where ``Tu`` is null on purpose: readers must then take it from the metadata, as they
must for real upstream variants.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contract import layout
from contract.files import dump_json
from contract.windows import WINDOW_STRATEGIES, EventRows, Regime, Windows, f03_windows
from demo.artifacts import DemoError, PHASES, existing, parquet_bytes, phase_file, require, stage_main, yaml_text
from demo.discretize import NAN_SUFFIX

PHASE = "f03"
NAN_STRATEGIES = ("preserve", "discard")


def list_column(windows: Windows) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(windows.offsets.astype(np.int32)),
                                    pa.array(windows.codes.astype(np.int32)))


def build(root: Path, variant: str, params: dict) -> dict:
    where = f"params.yaml demo.{PHASE}.{variant}"
    parent = require(params, "parent_variant", where)
    strategy = require(params, "window_strategy", where)
    nan_strategy = require(params, "nan_strategy", where)
    if strategy not in WINDOW_STRATEGIES:
        raise DemoError(f"{where}: key 'window_strategy' is {strategy!r}; "
                        f"expected one of {list(WINDOW_STRATEGIES)}")
    if nan_strategy not in NAN_STRATEGIES:
        raise DemoError(f"{where}: key 'nan_strategy' is {nan_strategy!r}; "
                        f"expected one of {list(NAN_STRATEGIES)}")

    reader = f"demo F03 {variant}"
    f02_meta = json.loads(existing(phase_file(root, "f02", parent, layout.METADATA), reader).read_text())
    catalog_bytes = existing(phase_file(root, "f02", parent, layout.EVENT_CATALOG), reader).read_bytes()
    catalog = json.loads(catalog_bytes)
    dataset = existing(phase_file(root, "f02", parent, layout.DATASET), reader)
    rows = EventRows.from_arrow(pq.read_table(dataset))
    tu = float(f02_meta["Tu"])
    if not tu.is_integer():
        raise DemoError(f"F02 {parent}: Tu = {tu} s is not a whole number of seconds; windows need one")
    regime = Regime(Tu=int(tu), OW=require(params, "OW", where), LT=require(params, "LT", where),
                    PW=require(params, "PW", where), origin=int(rows.segs[0]))
    nan_codes = ()
    if nan_strategy == "discard":      # drop the windows that hold a sensor dropout
        nan_codes = sorted(code for name, code in catalog.items() if name.endswith(NAN_SUFFIX))
    ow, pw = f03_windows(rows, regime, strategy, nan_codes)

    name = PHASES[PHASE]
    table = pa.table({"OW_events": list_column(ow), "PW_events": list_column(pw),
                      "t0": pa.array(ow.t0, type=pa.int64())})
    metadata = {
        "phase": name,
        "variant": variant,
        "parent_variant": parent,
        "Tu": tu,
        "OW": regime.OW,
        "LT": regime.LT,
        "PW": regime.PW,
        "n_windows": len(ow),
        "n_windows_empty_OW": int(np.sum(ow.lengths() == 0)),
        "n_windows_empty_PW": int(np.sum(pw.lengths() == 0)),
        "n_OW_events": len(ow.codes),
        "n_PW_events": len(pw.codes),
        "first_t0": int(ow.t0[0]) if len(ow) else None,
        "last_t0": int(ow.t0[-1]) if len(ow) else None,
        # F04 resolves its event names through this catalog but can only name F03 as a
        # dependency in demo/dvc.yaml; the digest carries a catalog change down to it.
        "event_catalog_sha256": hashlib.sha256(catalog_bytes).hexdigest(),
    }
    variant_params = {
        "parent_variant": parent,
        "OW": regime.OW,
        "LT": regime.LT,
        "PW": regime.PW,
        "Tu": None,
        "window_strategy": strategy,
        "nan_strategy": nan_strategy,
    }
    return {
        layout.phase_file(name, layout.DATASET): parquet_bytes(table),
        layout.phase_file(name, layout.METADATA): dump_json(metadata),
        layout.PARAMS_FILE: yaml_text(variant_params),
    }


def main() -> None:
    stage_main(PHASE, build, "demo F03: windows of an F02 event stream")


if __name__ == "__main__":
    main()
