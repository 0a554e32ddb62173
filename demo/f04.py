"""Demo F04: label the F03 windows for one prediction objective.

    python -m demo.f04 v401        # reads params.yaml demo.f04.v401

Writes ``executions/04_targetengineering/<v>/``: the dataset (``OW_events`` list<int32>
copied from F03 unchanged, ``label`` int8, ``t0`` int64; rows one to one with F03, so
every objective of one F03 shares ``OW_events`` row by row), the metadata and
``params.yaml`` with ``prediction_name`` at the top level and ``prediction_objective:
{operator, events}``, as upstream.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from contract import layout
from contract.files import dump_json
from contract.windows import list_arrays
from demo.artifacts import (PHASES, existing, parquet_bytes, phase_file, require, stage_main, variant_dir,
                            yaml_text)
from demo.targets import labels, objective_codes

PHASE = "f04"


def build(root: Path, variant: str, params: dict) -> dict:
    where = f"params.yaml demo.{PHASE}.{variant}"
    parent = require(params, "parent_variant", where)
    prediction_name = require(params, "prediction_name", where)
    objective = require(params, "prediction_objective", where)
    operator = require(objective, "operator", f"{where}.prediction_objective")
    events = list(require(objective, "events", f"{where}.prediction_objective"))

    reader = f"demo F04 {variant}"
    f03_params = existing(variant_dir(root, "f03", parent) / layout.PARAMS_FILE, reader)
    f02 = yaml.safe_load(f03_params.read_text())["parent_variant"]
    catalog = json.loads(existing(phase_file(root, "f02", f02, layout.EVENT_CATALOG), reader).read_text())
    codes = objective_codes(events, catalog, f"{where}.prediction_objective")
    windows = pq.read_table(existing(phase_file(root, "f03", parent, layout.DATASET), reader))
    pw_codes, pw_offsets = list_arrays(windows.column("PW_events"))
    label = labels(pw_codes, pw_offsets, codes, operator)

    name = PHASES[PHASE]
    table = pa.table({"OW_events": windows.column("OW_events"), "label": pa.array(label, type=pa.int8()),
                      "t0": windows.column("t0")})
    definition = {"operator": operator, "events": events}
    metadata = {
        "phase": name,
        "variant": variant,
        "parent_variant": parent,
        "prediction_name": prediction_name,
        "prediction_objective": definition,
        "objective_codes": codes.tolist(),
        "n_windows": len(label),
        "n_positive": int(label.sum()),
        "positive_rate": round(float(label.mean()), 6) if len(label) else None,
    }
    variant_params = {"parent_variant": parent, "prediction_name": prediction_name,
                      "prediction_objective": definition}
    return {
        layout.phase_file(name, layout.DATASET): parquet_bytes(table),
        layout.phase_file(name, layout.METADATA): dump_json(metadata),
        layout.PARAMS_FILE: yaml_text(variant_params),
    }


def main() -> None:
    stage_main(PHASE, build, "demo F04: label the F03 windows for one objective")


if __name__ == "__main__":
    main()
