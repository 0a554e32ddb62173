"""`07_deployrun_metadata.json`: the phase's traceability record (seed 001, step 8),
written last so that it can list every output of the run.

It is DVC-tracked, so it holds no time, host or absolute path: what was validated
(package, digest, lineage, regime, models), what came out (counts, matching, held-out,
equivalence, verdict) and which files the run consists of. Wall-clock sidecars
(`timing.json`, `runtime.js`) and DVC's `.gitignore` files are not part of the run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from contract import layout
from contract.files import write_json_atomic
from f07_validation.deployrun import DeployRun
from f07_validation.metric_names import METRICS, MODEL_COLUMNS
from f07_validation.scoring import undefined_reasons

NOT_OUTPUTS = {layout.RUN_TIMING, layout.LATENCY, layout.RUNTIME_JS, layout.RUN_METADATA}  # and DVC's .gitignore files


def run_outputs(run_root: Path) -> list[str]:
    """Files of the run, relative to its folder, sorted; hidden files (temporaries of an
    interrupted write) are skipped."""
    return sorted(
        path.relative_to(run_root).as_posix()
        for path in run_root.rglob("*")
        if path.is_file() and path.name != ".gitignore"
        and path.relative_to(run_root).as_posix() not in NOT_OUTPUTS
        and not any(part.startswith(".") for part in path.relative_to(run_root).parts)
    )


def phase_metadata(run: DeployRun, per_model: pd.DataFrame, scoring: dict) -> dict:
    package = run.package_metadata()
    equivalence = run.read_log_json(layout.EQUIVALENCE)
    verdict = run.read_optional_json(layout.VERDICT)
    return {
        "phase": layout.F07,
        "variant": run.variant,
        "parent_variant_f06": run.manifest.parent_variant_f06,
        "package_digest": run.manifest.package_digest,
        "lineage": package["lineage"],
        "temporal": run.manifest.temporal,
        "models": [
            {**{column: row[column] for column in MODEL_COLUMNS},
             # an undefined rate is null, with why beside it
             "metrics": {metric: None if pd.isna(row[metric]) else row[metric] for metric in METRICS},
             "undefined": undefined_reasons(row)}
            for row in per_model.to_dict("records")
        ],
        "run": run.read_log_json(layout.RUN_SUMMARY),
        "matching": scoring["objectives"],
        "held_out": {"value": scoring["held_out"], "reason": scoring["held_out_reason"]},
        "equivalence": {key: equivalence.get(key) for key in ("enabled", "passed", "tolerance", "windows_compared",
                                                               "sample_windows", "stride_batches")},
        "verdict_passed": None if verdict is None else verdict.get("passed"),
        "outputs": run_outputs(run.root),
    }


def write_phase_metadata(run: DeployRun, per_model: pd.DataFrame, scoring: dict) -> None:
    write_json_atomic(run.path(layout.RUN_METADATA), phase_metadata(run, per_model, scoring))
