"""Assemble and seal an F06 package from a validated plan.

The package holds byte-identical copies of what upstream wrote (models, summaries,
reference datasets) next to what F06 decides (the effective parameters, the regime, the
replay), and a metadata file that records where every value came from. Nothing here
depends on the clock or on absolute paths, so a rebuild gives the same bytes and the
same seal.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from contract import layout
from contract.files import atomic_path, write_json_atomic, write_text_atomic
from contract.parquet import parquet_file
from contract.row_stream import BATCH_ROWS
from contract.seal import seal_package
from f06_packaging.lineage import recorded_sources
from f06_packaging.plan import PackagePlan, PackagingError
from f06_packaging.reference import reference_join


def copy_models(plan: PackagePlan, models_dir) -> None:
    """``models/<objective>/<source_f05>__<model_id>/`` with the upstream files unchanged."""
    with atomic_path(Path(models_dir)) as scratch:
        for model in plan.models:
            target = scratch / Path(model.package_dir).relative_to(layout.PACKAGE_MODELS)
            target.mkdir(parents=True)
            shutil.copyfile(model.files.h5_path, target / layout.MODEL_FILE)
            shutil.copyfile(model.files.summary.path, target / layout.MODEL_SUMMARY)


def _effective_params(plan: PackagePlan) -> dict:
    """The system manifest: what was asked, with the regime as it is in force."""
    regime = {key: value.value for key, value in plan.regime.items()}
    regime["Tu"] = int(regime["Tu"])
    return {
        "variant": plan.variant,
        "parent_variants_f05": list(plan.params["parent_variants_f05"]),
        "temporal": regime,
        "models": plan.params["models"],
        "replay": {"source": {"dataset_id": plan.replay.source.variant.id},
                   "time_range": plan.replay.requested},
    }


def _replay_summary(plan: PackagePlan, package_dir: Path) -> dict:
    path = package_dir / layout.REPLAY
    if not path.is_file():
        raise PackagingError(f"packaging variant {plan.variant}: {path} is missing; run the "
                             f"materialize_replay@{plan.variant} stage first")
    replay = parquet_file(path, f"packaging variant {plan.variant}",  # batch by batch: it can be long
                          f"run `dvc repro -f -s materialize_replay@{plan.variant}`", PackagingError)
    events, first_segs, last_segs = 0, None, None
    for batch in replay.iter_batches(batch_size=BATCH_ROWS, columns=["segs", "events"]):
        if batch.num_rows:
            segs = batch.column("segs")
            first_segs = int(segs[0].as_py()) if first_segs is None else first_segs
            last_segs = int(segs[-1].as_py())
            events += len(batch.column("events").flatten())
    return {
        "path": layout.REPLAY,
        "source_f02": plan.replay.source.variant.id,
        "rows": replay.metadata.num_rows,
        "events": events,
        "first_segs": first_segs,
        "last_segs": last_segs,
        "time_range": plan.replay.requested,
    }


def _check_models_dir(plan: PackagePlan, package_dir: Path) -> None:
    expected = {f"{m.package_dir}/{name}" for m in plan.models for name in layout.MODEL_FILES}
    models_dir = package_dir / layout.PACKAGE_MODELS
    present = {p.relative_to(package_dir).as_posix() for p in models_dir.rglob("*") if p.is_file()}
    if present != expected:
        raise PackagingError(f"packaging variant {plan.variant}: {models_dir} does not hold the "
                             f"selected models (missing {sorted(expected - present)}, unexpected "
                             f"{sorted(present - expected)}); run the select_models@{plan.variant} stage first")


def build_metadata(plan: PackagePlan, package_dir: Path, datasets: dict, probes: dict) -> dict:
    lineage = plan.lineage.as_dict()
    return {
        "phase": layout.F06,
        "variant": plan.variant,
        "lineage": {**lineage, "f02": plan.lineage.f02.variant.id},
        "temporal": {
            **{key: {"value": int(v.value) if key == "Tu" else v.value, "source": v.source}
               for key, v in plan.regime.items()},
            "origin_segs": plan.origin,
            "window_strategy": ", ".join(f"{ws.window_strategy} (F03 {ws_id})"
                                         for ws_id, ws in sorted(plan.lineage.window_sets.items())),
        },
        "models": [
            {
                "objective": m.objective.id,
                "prediction_name": m.objective.prediction_name,
                "source_f05": m.files.source_f05,
                "model_id": m.files.model_id,
                "trial": m.files.trial,
                "model_family": plan.lineage.modeling[m.files.source_f05].model_family,
                "threshold": m.files.summary.threshold,
                "path": m.package_dir,
                "vectorization": m.files.summary.vectorization,
                "input_shape": list(m.files.summary.expected_input_shape),
                "probe": probes[m.key],
            }
            for m in plan.models
        ],
        "datasets": datasets,
        "replay": _replay_summary(plan, package_dir),
        "upstream_sources": recorded_sources(package_dir),
    }


def write_package(plan: PackagePlan, package_dir, probe) -> dict:
    """Copy the reference datasets, write the effective params and the sealed metadata.

    ``probe(plan, package_dir)`` runs every packaged model once and returns its findings
    per model key; it raises before anything is written when a model is unusable.
    """
    package_dir = Path(package_dir)
    _check_models_dir(plan, package_dir)
    probes = probe(plan, package_dir)
    datasets = {}
    with atomic_path(package_dir / layout.PACKAGE_DATASETS) as scratch:
        for objective_id, objective in sorted(plan.objectives.items()):
            target = scratch / objective_id
            target.mkdir(parents=True)
            dataset = layout.package_dataset(objective_id)
            shutil.copyfile(objective.dataset_path, scratch.parent / dataset)
            datasets[objective_id] = {
                "path": dataset,
                "prediction_name": objective.prediction_name,
                "objective": objective.definition,
                **reference_join(objective, target),
            }
    write_text_atomic(package_dir / layout.PARAMS_FILE,
                      yaml.safe_dump(_effective_params(plan), sort_keys=True, default_flow_style=False))
    metadata = seal_package(package_dir, build_metadata(plan, package_dir, datasets, probes))
    write_json_atomic(package_dir / layout.PACKAGE_METADATA, metadata)
    return metadata
