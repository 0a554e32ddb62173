"""The serve stage of F07: turn a sealed package into the variant's ``manifest.json`` and
prove it servable.

The manifest is built from the package metadata and put in place only once a real server
has come up ready on it (seal verified, every model loaded and warmed up) and its
``GET /models`` agrees with it. The gates are checked first, against the other variants
(a baseline) and the package's models, so a configuration error stops the run before
any work.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from contract import layout
from contract.files import dump_json, write_json_atomic, write_text_atomic
from contract.manifest import load_manifest
from contract.seal import verify_seal
from f07_validation.client import open_client
from f07_validation.deployrun import DeployRun, DeployRunError
from f07_validation.endpoint import open_endpoint
from f07_validation.gates import validate_gates


def build_manifest(variant: str, package_dir: Path, run_dir: Path, batch_size: int) -> dict:
    """The manifest, from the sealed package metadata: paths relative to the manifest's
    folder (and the model files to the package), so the variant folder can move."""
    metadata = json.loads((Path(package_dir) / layout.PACKAGE_METADATA).read_text(encoding="utf-8"))
    datasets = metadata["datasets"]
    return {
        "variant": variant,
        "parent_variant_f06": metadata["variant"],
        "package_dir": os.path.relpath(package_dir, run_dir),
        "package_digest": metadata["seal"]["digest"],
        "temporal": metadata["temporal"],
        "batch_size": batch_size,
        "models": [
            {
                "objective": model["objective"],
                "prediction_name": model["prediction_name"],
                "source_f05": model["source_f05"],
                "model_id": model["model_id"],
                "model_family": model["model_family"],
                "threshold": model["threshold"],
                "model_path": f"{model['path']}/{layout.MODEL_FILE}",
                "summary_path": f"{model['path']}/{layout.MODEL_SUMMARY}",
                "vectorization": model["vectorization"],
                "input_shape": model["input_shape"],
                "dataset": datasets[model["objective"]]["path"],
                "recovered_t0": datasets[model["objective"]].get("recovered_t0"),
                "input_column": "OW_events",
                "label_column": "label",
            }
            for model in metadata["models"]
        ],
    }


@dataclass(frozen=True)
class Served:
    """What the serve stage wrote (``serve.json``'s record) and what the server answered on
    ``GET /ready`` and ``GET /models``, for the stage to print and the notebook to show."""

    record: dict
    ready: dict
    models: dict


def serve(run: DeployRun, deployrun_section: dict) -> Served:
    """Write ``manifest.json`` and ``serve.json`` once a real server
    has come up ready on the manifest and its ``/models`` agrees with it."""
    settings = run.settings
    manifest = build_manifest(run.variant, run.package_root, run.root, settings.batch_size)
    validate_gates(run.variant, run.params, deployrun_section, manifest["models"])
    run.root.mkdir(parents=True, exist_ok=True)
    # The pending manifest sits beside the final one, so its relative paths resolve alike.
    pending = run.root / f".{layout.MANIFEST}.pending"
    write_text_atomic(pending, dump_json(manifest))
    seal = verify_seal(run.package_root)  # measured here, before the server verifies it too
    try:
        pending_manifest = load_manifest(pending)
        with open_endpoint(pending_manifest, settings.runtime, f"deployrun.{run.variant}") as endpoint:
            with open_client(endpoint.url, pending_manifest, token=endpoint.token, wire=endpoint.wire) as client:
                ready_status, ready = client.ready()
                published = client.models()
        _check_published(run.variant, manifest, published)
        os.replace(pending, run.manifest_path)
    finally:
        pending.unlink(missing_ok=True)
    # What was observed, never constants: the seal as verified here, the digest the
    # server reports having loaded, and its GET /ready answer (model states only: the
    # rest may hold wall-clock figures, and serve.json must be the same on a rerun).
    record = {
        "package_digest": manifest["package_digest"],
        "seal": {"verified": seal.ok, "digest": seal.digest,
                 "problems": seal.problems + [f"changed: {p}" for p in seal.changed]
                 + [f"missing: {p}" for p in seal.missing] + [f"extra: {p}" for p in seal.extra]},
        "served_digest": published.get("package_digest"),
        "ready": {"status": ready_status, "body": {
            "ready": ready.get("ready"),
            "models": {key: {"state": state.get("state")} for key, state in sorted(ready.get("models", {}).items())}}},
    }
    write_json_atomic(run.path(layout.SERVE_RECORD), record)
    return Served(record, ready, published)


def _check_published(variant: str, manifest: dict, published: dict) -> None:
    served = [(m["objective"], m["source_f05"], m["model_id"], m["threshold"]) for m in published["models"]]
    wanted = [(m["objective"], m["source_f05"], m["model_id"], m["threshold"]) for m in manifest["models"]]
    if served != wanted or published.get("package_digest") != manifest["package_digest"]:
        raise DeployRunError(f"deployrun.{variant}: the server's GET /models ({served}, digest "
                             f"{published.get('package_digest')}) does not match the manifest ({wanted}, digest "
                             f"{manifest['package_digest']})")
