"""The F06 phase as steps, one per dvc.yaml stage, each writing exactly that stage's outs:
what the stage scripts (``python -m stages.<stage> <variant>``) and the phase notebook
(notebooks/06_packaging.py, `make nb6-run`) both call, so that the two cannot drift apart
and write the same bytes.

Each step reads the variant's ``packaging`` entry of params.yaml (``contract.params``),
resolves and checks the plan first (nothing is written when it is refused), and returns
what it resolved or wrote, for the stage to print and the notebook to show. A step is
named after its stage; ``lineage`` runs all of the variant's ``lineage@`` stages.
"""
from __future__ import annotations

from pathlib import Path

from contract import layout
from contract.params import variant_params
from f06_packaging.lineage import checked_plan, declared, write_digest
from f06_packaging.package import copy_models, write_package
from f06_packaging.plan import PackagePlan
from f06_packaging.replay import materialize_replay as write_replay

SECTION = "packaging"


def package_dir(variant: str) -> Path:
    return layout.variant_dir(layout.F06, variant)


def plan(variant: str) -> PackagePlan:
    """What every step starts with: the variant's parameters checked and resolved against
    the upstream (lineage, models, regime, replay), and dvc_deps.yaml checked to list
    exactly the upstream folders it reads."""
    return checked_plan(variant, variant_params(SECTION, variant))


def lineage(variant: str) -> list[Path]:
    """Every ``lineage@<variant>-<phase>-<upstream>`` stage of the variant: the digest of each
    upstream folder dvc_deps.yaml lists for it."""
    return [write_digest(variant, phase, upstream) for phase, upstream in declared(variant)]


def select_models(variant: str) -> PackagePlan:
    """``select_models@<variant>``: the chosen F05 model files, copied unchanged into models/."""
    resolved = plan(variant)
    copy_models(resolved, package_dir(variant) / layout.PACKAGE_MODELS)
    return resolved


def materialize_replay(variant: str) -> tuple[PackagePlan, int]:
    """``materialize_replay@<variant>``: the F02 rows in the time range; returns the plan and
    the number of rows written."""
    resolved = plan(variant)
    return resolved, write_replay(resolved.replay, package_dir(variant) / layout.REPLAY)


def seal_package(variant: str) -> dict:
    """``seal_package@<variant>``: every packaged model probed, the reference datasets, the
    effective params and the sealed metadata; returns the metadata."""
    # TensorFlow (seconds and ~0.5 GB to import) only here: the lineage, select_models and
    # materialize_replay stages share this module and never load a model
    from f06_packaging.probe import probe_models
    return write_package(plan(variant), package_dir(variant), probe_models)


def reference_joins(metadata: dict) -> list[str]:
    """One line per objective: how F07 will match predictions to its F04 reference, and
    why (when ``t0`` recovery was refused, its reason), so that the stage output says it
    and not only the metadata."""
    lines = []
    for objective, dataset in sorted(metadata["datasets"].items()):
        fallback = " (F07 will match predictions by OW content)" if dataset["join"] == "ow_content" else ""
        lines.append(f"reference {objective}: joined by {dataset['join']}: {dataset['join_note']}{fallback}")
    return lines
