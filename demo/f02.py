"""Demo F02: simulate the site and write its event stream, as upstream F02 lays it out.

    python -m demo.f02 v201        # from the project root; reads params.yaml demo.f02.v201

Writes ``executions/02_prepareeventsds/<v>/``: the dataset (``segs`` int64, one row per
Tu, ``events`` list<int64>, often empty), the event catalog (name -> code), the metadata
(``Tu`` as a float, as upstream, plus the bands and the simulated faults, which are the
ground truth behind the labels) and ``params.yaml``. There is no F01 behind the demo, so
``parent_variant`` is null.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from contract import layout
from contract.files import dump_json
from demo.artifacts import PHASES, parquet_bytes, require, stage_main, yaml_text
from demo.discretize import discretize
from demo.simulate import SimulationConfig, simulate

PHASE = "f02"
SIMULATION_KEYS = ("seed", "start", "days", "Tu", "battery_faults_per_day",
                   "generator_faults_per_day", "dropouts_per_day")


def build(root: Path, variant: str, params: dict) -> dict:
    """The variant's files, ``{name: content}`` (``root`` is unused: no parent phase)."""
    where = f"params.yaml demo.{PHASE}.{variant}"
    config = SimulationConfig(**{key: require(params, key, where) for key in SIMULATION_KEYS})
    thresholds = list(require(params, "band_thresholds_pct", where))
    simulation = simulate(config)
    stream = discretize(simulation.signals, thresholds)
    name = PHASES[PHASE]

    events = pa.ListArray.from_arrays(pa.array(stream.offsets.astype(np.int32)),
                                      pa.array(stream.codes, type=pa.int64()))
    table = pa.table({"segs": pa.array(simulation.segs, type=pa.int64()), "events": events})
    metadata = {
        "phase": name,
        "variant": variant,
        "parent_variant": None,
        "Tu": float(config.Tu),
        "band_thresholds_pct": thresholds,
        "event_strategy": "transitions",
        "nan_handling": "keep",
        "n_rows": len(simulation.segs),
        "n_events": len(stream.codes),
        "n_event_types": len(stream.catalog),
        "first_segs": int(simulation.segs[0]),
        "last_segs": int(simulation.segs[-1]),
        "signals": list(simulation.signals),
        "bands": {signal: {"cuts": band.cuts.tolist(), "labels": list(band.labels)}
                  for signal, band in stream.bands.items()},
        "simulated_faults": [{"kind": f.kind, "precursor_start": f.precursor_start, "onset": f.onset}
                             for f in simulation.faults],
    }
    variant_params = {
        "parent_variant": None,
        "Tu": float(config.Tu),
        "band_thresholds_pct": thresholds,
        "event_strategy": "transitions",
        "nan_handling": "keep",
        "simulation": {key: params[key] for key in SIMULATION_KEYS if key != "Tu"},
    }
    return {
        layout.phase_file(name, layout.DATASET): parquet_bytes(table),
        layout.phase_file(name, layout.EVENT_CATALOG): dump_json(stream.catalog),
        layout.phase_file(name, layout.METADATA): dump_json(metadata),
        layout.PARAMS_FILE: yaml_text(variant_params),
    }


def main() -> None:
    stage_main(PHASE, build, "demo F02: simulate the site and write its event stream")


if __name__ == "__main__":
    main()
