"""The project as the lifecycle commands see it: two phases, each a section of
``params.yaml`` whose entries are variants, a set of ``foreach`` stages in ``dvc.yaml``,
and a folder of outputs per variant.

The stage names are read from ``dvc.yaml`` (every stage whose ``foreach`` is the phase's
section of params.yaml or of the generated dvc_deps.yaml) rather than listed here, so that
a stage added to the pipeline is run, pushed and cleaned out of ``dvc.lock`` without
touching this package.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from contract import dvc_deps, layout
from contract.config import validate_params
from contract.errors import UserError
from lifecycle.yamledit import load_yaml


class LifecycleError(UserError):
    """A lifecycle command cannot do what was asked; the message says why and how to fix it."""


@dataclass(frozen=True)
class Phase:
    number: str   # as in the make targets: variant6, check7…
    label: str    # F06, F07
    section: str  # its section of params.yaml
    deps_section: str  # its section of dvc_deps.yaml whose keys are its variants

    @property
    def folder(self) -> str:
        return layout.SECTIONS[self.section]

    @property
    def foreach(self) -> tuple[str, ...]:
        """The ``foreach`` values of its per-variant stages in dvc.yaml."""
        return (f"${{{self.section}}}", f"${{deps.{self.deps_section}}}")


F06 = Phase("6", "F06", "packaging", "packaging")
F07 = Phase("7", "F07", "deployrun", "verdict")
LINEAGE_FOREACH = "${deps.lineage}"  # per (F06 variant, upstream folder): keys start with the variant
PHASES = {phase.number: phase for phase in (F06, F07)}


def check_variant_id(variant: str, option: str = "VARIANT") -> None:
    if not layout.is_variant_id(variant):
        raise LifecycleError(f"{option}={variant!r} is not a variant id: use 'v' followed by digits, e.g. v602 "
                             f"(DVC's `exp run -S` and params paths need exactly that form)")


class Project:
    """A checkout of this project: ``params.yaml``, ``dvc.yaml`` and ``executions/``."""

    def __init__(self, root):
        self.root = Path(root)
        for name in (layout.PIPELINE_FILE, layout.PARAMS_FILE):
            if not (self.root / name).is_file():
                raise LifecycleError(f"{self.root / name} not found: run the lifecycle commands from the "
                                     f"project root (where `make` runs them)")

    @property
    def params_path(self) -> Path:
        return self.root / layout.PARAMS_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / "dvc.lock"

    @property
    def executions(self) -> Path:
        return self.root / layout.EXECUTIONS

    def params(self) -> dict:
        try:
            data = load_yaml(self.params_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise LifecycleError(f"{self.params_path} is not valid YAML ({error}); fix it first") from None
        if not isinstance(data, dict):
            raise LifecycleError(f"{self.params_path} must hold a mapping with sections packaging: and deployrun:")
        return validate_params(data, self.params_path)

    def entries(self, phase: Phase) -> dict:
        entries = self.params().get(phase.section) or {}
        if not isinstance(entries, dict):
            raise LifecycleError(f"{self.params_path}: section '{phase.section}' must map variant ids to "
                                 f"their parameters, got {type(entries).__name__}")
        return entries

    def entry(self, phase: Phase, variant: str) -> dict:
        """The variant's parameters; the error lists the known variants and how to add one."""
        check_variant_id(variant)
        entries = self.entries(phase)
        if variant not in entries:
            raise LifecycleError(f"{phase.label} variant {variant} is not defined: params.yaml has no "
                                 f"'{phase.section}.{variant}' (known: {', '.join(entries) or 'none'}); "
                                 f"create it with `make variant{phase.number} VARIANT={variant} ...`")
        return entries[variant]

    @functools.cached_property
    def pipeline(self) -> dict:
        """dvc.yaml's stages, as written: read once (no command changes dvc.yaml, and every
        dvc.lock entry asks which stage it belongs to)."""
        return (load_yaml((self.root / layout.PIPELINE_FILE).read_text(encoding="utf-8")) or {}).get("stages") or {}

    def _foreach_stages(self, foreach: tuple[str, ...]) -> list[str]:
        return [name for name, stage in self.pipeline.items()
                if isinstance(stage, dict) and stage.get("foreach") in foreach]

    def stages(self, phase: Phase) -> list[str]:
        """The dvc.yaml stages that run once per variant of ``phase``, in pipeline order."""
        names = self._foreach_stages(phase.foreach)
        if not names:
            raise LifecycleError(f"dvc.yaml has no stage with `foreach: ${{{phase.section}}}`: the "
                                 f"{phase.label} stages are missing from the pipeline")
        return names

    def lineage_targets(self, variant: str) -> list[str]:
        """The F06 variant's ``lineage@<variant>-<phase>-<upstream>`` stages (one per upstream
        folder it derives from), as dvc_deps.yaml lists them."""
        path = self.root / dvc_deps.FILE
        keys = dvc_deps.read(path)["lineage"] if path.is_file() else {}
        return [f"{stage}@{key}" for stage in self._foreach_stages((LINEAGE_FOREACH,))
                for key in keys if key.startswith(f"{variant}-")]

    def targets(self, phase: Phase, variant: str) -> list[str]:
        own = [f"{stage}@{variant}" for stage in self.stages(phase)]
        return (self.lineage_targets(variant) if phase is F06 else []) + own

    def variant_dir(self, phase: Phase, variant: str) -> Path:
        return layout.variant_dir(phase.section, variant, self.executions)

    def phase_dir(self, phase: Phase) -> Path:
        return self.executions / phase.folder

    def locked_outputs(self, phase: Phase, variant: str | None = None) -> list[Path]:
        """The outputs ``dvc.lock`` records for the phase's stages (of one variant, or of
        all): a stage may write outside its variant's folder."""
        if not self.lock_path.is_file():
            return []
        lock = load_yaml(self.lock_path.read_text(encoding="utf-8")) or {}
        return [self.root / out["path"]
                for name, entry in (lock.get("stages") or {}).items()
                if self.is_stage_of(name, phase, variant)
                for out in entry.get("outs") or []]

    def locked_stages(self, phase: Phase, variant: str) -> list[str]:
        """The variant's stage entries in dvc.lock (DVC keeps them after the params entry is gone)."""
        if not self.lock_path.is_file():
            return []
        lock = load_yaml(self.lock_path.read_text(encoding="utf-8")) or {}
        return [name for name in (lock.get("stages") or {}) if self.is_stage_of(name, phase, variant)]

    def is_stage_of(self, name: str, phase: Phase, variant: str | None = None) -> bool:
        """Is the stage ``name`` (``stage@key``, as dvc.lock and DVC name it) a stage of
        ``phase`` (of ``variant``, or of any)? An F06 variant's lineage stages are keyed
        ``<variant>-<phase>-<upstream>``."""
        stage, _, key = name.partition("@")
        if stage in self.stages(phase):
            return variant in (None, key)
        lineage = phase is F06 and stage in self._foreach_stages((LINEAGE_FOREACH,))
        return lineage and (variant is None or key.startswith(f"{variant}-"))

    def dependents(self, phase: Phase, variant: str) -> dict[str, str]:
        """The F07 variants that need ``variant``, each with the key that says so: a
        package's deploy runs, and the runs whose gates compare with a run (baseline)."""
        found = {}
        for other, entry in self.entries(F07).items():
            entry = entry if isinstance(entry, dict) else {}
            if phase is F06:
                key, value = "parent_variant_f06", entry.get("parent_variant_f06")
            else:
                gates = entry.get("gates")
                key, value = "gates.baseline", gates.get("baseline") if isinstance(gates, dict) else None
            if value == variant:
                found[other] = f"deployrun.{other}.{key}"
        return found
