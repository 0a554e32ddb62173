"""The project as the lifecycle commands see it: two phases, each a section of
``params.yaml`` whose entries are variants, a set of ``foreach`` stages in ``dvc.yaml``,
and a folder of outputs per variant.

The stage names are read from ``dvc.yaml`` (every stage whose ``foreach`` is the phase's
section) rather than listed here, so that a stage added to the pipeline is run, pushed
and cleaned out of ``dvc.lock`` without touching this package.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.common import EXECUTIONS, SECTIONS, variant_dir
from upstream.reader import VARIANT_ID


class LifecycleError(ValueError):
    """A lifecycle command cannot do what was asked; the message says why and how to fix it."""


@dataclass(frozen=True)
class Phase:
    number: str   # as in the make targets: variant6, check7…
    label: str    # F06, F07
    section: str  # its section of params.yaml

    @property
    def folder(self) -> str:
        return SECTIONS[self.section]


F06 = Phase("6", "F06", "packaging")
F07 = Phase("7", "F07", "deployrun")
PHASES = {phase.number: phase for phase in (F06, F07)}


def check_variant_id(variant: str, option: str = "VARIANT") -> None:
    if not VARIANT_ID.match(variant or ""):
        raise LifecycleError(f"{option}={variant!r} is not a variant id: use 'v' followed by digits, e.g. v602 "
                             f"(DVC's `exp run -S` and params paths need exactly that form)")


class Project:
    """A checkout of this project: ``params.yaml``, ``dvc.yaml`` and ``executions/``."""

    def __init__(self, root):
        self.root = Path(root)
        for name in ("dvc.yaml", "params.yaml"):
            if not (self.root / name).is_file():
                raise LifecycleError(f"{self.root / name} not found: run the lifecycle commands from the "
                                     f"project root (where `make` runs them)")

    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    @property
    def lock_path(self) -> Path:
        return self.root / "dvc.lock"

    @property
    def executions(self) -> Path:
        return self.root / EXECUTIONS

    def params(self) -> dict:
        try:
            data = yaml.safe_load(self.params_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise LifecycleError(f"{self.params_path} is not valid YAML ({error}); fix it first") from None
        if not isinstance(data, dict):
            raise LifecycleError(f"{self.params_path} must hold a mapping with sections packaging: and deployrun:")
        return data

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

    def stages(self, phase: Phase) -> list[str]:
        """The dvc.yaml stages that run once per variant of ``phase``, in pipeline order."""
        stages = (yaml.safe_load((self.root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
        names = [name for name, stage in stages.items()
                 if isinstance(stage, dict) and stage.get("foreach") == f"${{{phase.section}}}"]
        if not names:
            raise LifecycleError(f"dvc.yaml has no stage with `foreach: ${{{phase.section}}}`: the "
                                 f"{phase.label} stages are missing from the pipeline")
        return names

    def targets(self, phase: Phase, variant: str) -> list[str]:
        return [f"{stage}@{variant}" for stage in self.stages(phase)]

    def variant_dir(self, phase: Phase, variant: str) -> Path:
        return self.root / variant_dir(phase.section, variant)

    def phase_dir(self, phase: Phase) -> Path:
        return self.executions / phase.folder

    def locked_outputs(self, phase: Phase, variant: str | None = None) -> list[Path]:
        """The outputs ``dvc.lock`` records for the phase's stages (of one variant, or of
        all): a stage may write outside its variant's folder."""
        if not self.lock_path.is_file():
            return []
        stages = set(self.stages(phase))
        lock = yaml.safe_load(self.lock_path.read_text(encoding="utf-8")) or {}
        return [self.root / out["path"]
                for name, entry in (lock.get("stages") or {}).items()
                if name.partition("@")[0] in stages and variant in (None, name.partition("@")[2])
                for out in entry.get("outs") or []]

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
