"""Check a built variant (`make check6` / `make check7`) before it is published: every
artifact the seed lists is there, the package seal verifies, the metadata is complete,
the outputs are what ``dvc.lock`` records for the current parameters, and (F07) the
verdict passed.

A check collects everything that is wrong instead of stopping at the first problem, so
one run tells the user all there is to fix. A failed verdict is kept apart from the
other problems: `publish7 --force` may override it, never a missing file or a broken seal.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from contract import layout
from contract.defaults import DEFAULT_LOG_CSV_COMPRESSION
from contract.seal import verify_seal
from lifecycle.project import F06, F07, Phase, Project
from lifecycle.tools import is_dvc_repo, stale_stages

F06_FILES = (layout.REPLAY, layout.PARAMS_FILE, layout.PACKAGE_METADATA)
F06_FOLDERS = {layout.PACKAGE_MODELS: layout.MODEL_FILE, layout.PACKAGE_DATASETS: "*.parquet"}  # must hold
F06_METADATA_KEYS = ("phase", "variant", "lineage", "temporal", "models", "datasets", "replay", "seal")
F06_TEMPORAL_KEYS = ("Tu", "OW", "LT", "PW", "origin_segs", "window_strategy")
F06_MODEL_KEYS = ("objective", "prediction_name", "source_f05", "model_id", "model_family", "threshold",
                  "path", "vectorization", "input_shape", "probe")

F07_FILES = (layout.MANIFEST, layout.PREDICTIONS, layout.METRICS_PER_MODEL, layout.REPORT_HTML, layout.RUN_METADATA,
             layout.VERDICT, layout.VERDICT_METRICS)
F07_METADATA_KEYS = ("phase", "variant", "parent_variant_f06", "package_digest", "lineage", "temporal", "models",
                     "run", "matching", "held_out", "equivalence", "verdict_passed", "outputs")


def f07_files(entry: dict) -> tuple[str, ...]:
    """The seed's files of an F07 variant: ``F07_FILES`` and the log's CSV copy under the
    name its ``log_csv_compression`` gives (a copy of the other setting does not count)."""
    compression = entry.get("log_csv_compression", DEFAULT_LOG_CSV_COMPRESSION)
    return (*F07_FILES, layout.PREDICTIONS_CSV[compression])


@dataclass
class CheckResult:
    phase: Phase
    variant: str
    problems: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)  # F07: the verdict's checks that did not pass
    verified: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed_checks

    def describe(self) -> str:
        head = f"check{self.phase.number} {self.variant}"
        if self.ok:
            return "\n".join([f"{head}: OK"] + [f"  {line}" for line in self.verified])
        lines = [f"{head}: NOT OK"]
        if self.problems:
            lines.append(f"  {len(self.problems)} problem(s):")
            lines += [f"  - {problem}" for problem in self.problems]
        if self.failed_checks:
            lines.append("  the verdict did not pass; failed checks:")
            lines += [f"  - {check}" for check in self.failed_checks]
        return "\n".join(lines)


def _read_json(path: Path, result: CheckResult, fix: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # already reported as a missing artifact
    except ValueError as error:
        result.problems.append(f"{path} is not valid JSON ({error}); {fix}")
        return None


def _missing_keys(data, keys) -> list[str]:
    return [key for key in keys if not isinstance(data, dict) or key not in data]


def _check_files(folder: Path, files, result: CheckResult, fix: str) -> None:
    """Each missing file is one problem, however many lists name it."""
    for relative in files:
        path = folder / relative
        if not path.is_file() and not any(p.startswith(f"{path} is missing") for p in result.problems):
            result.problems.append(f"{path} is missing; {fix}")


def _start_check(project: Project, phase: Phase, variant: str, files, fix: str):
    """A check of the variant's folder and the seed's files in it; the folder is None
    when it does not exist (then that is the one problem)."""
    result = CheckResult(phase, variant)
    folder = project.variant_dir(phase, variant)
    if not folder.is_dir():
        result.problems.append(f"{folder} does not exist; {fix}")
        return result, None
    _check_files(folder, files, result, fix)
    return result, folder


def _check_up_to_date(project: Project, phase: Phase, variant: str, result: CheckResult) -> None:
    """Outputs that exist but were built from other parameters or code would publish a
    dvc.lock that does not describe them."""
    if not is_dvc_repo(project):
        return
    stale = stale_stages(project, project.targets(phase, variant))
    if stale:
        result.problems.append(f"the outputs are not what dvc.lock records for the current params.yaml and code "
                               f"(dvc status: {', '.join(sorted(stale))} changed); run "
                               f"`make script{phase.number}-run VARIANT={variant}`")
    else:
        result.verified.append("up to date with params.yaml and dvc.lock (dvc status)")


def check_package(project: Project, variant: str) -> CheckResult:
    """F06: the seed's artifacts, the seal, the metadata."""
    project.entry(F06, variant)
    fix = f"build it with `make script6-run VARIANT={variant}`"
    result, folder = _start_check(project, F06, variant, F06_FILES, fix)
    if folder is None:
        return result
    for name, pattern in F06_FOLDERS.items():
        if not any((folder / name).rglob(pattern)):
            result.problems.append(f"{folder / name}/ is missing or holds no {pattern}; {fix}")
    metadata = _read_json(folder / layout.PACKAGE_METADATA, result, fix)
    if metadata is not None:
        _check_package_metadata(metadata, variant, folder / layout.PACKAGE_METADATA, result, fix)
    seal = verify_seal(folder)
    if seal.ok:
        result.verified.append(f"seal verified (digest {seal.digest})")
    elif (folder / layout.PACKAGE_METADATA).is_file():
        result.problems.append(seal.describe())
    if not result.problems:
        _check_up_to_date(project, F06, variant, result)
    return result


def _check_identity(metadata, phase: Phase, variant: str, keys, path: Path, result: CheckResult,
                    fix: str) -> bool:
    """The phase metadata has its keys and is about this variant; False when keys are
    missing (nothing more in it can be checked)."""
    missing = _missing_keys(metadata, keys)
    if missing:
        result.problems.append(f"{path} lacks keys {missing}; {fix}")
        return False
    if metadata["phase"] != phase.folder or metadata["variant"] != variant:
        result.problems.append(f"{path} describes {metadata['phase']} variant {metadata['variant']}, not "
                               f"{phase.folder} {variant}; {fix}")
    return True


def _check_package_metadata(metadata, variant: str, path: Path, result: CheckResult, fix: str) -> None:
    if not _check_identity(metadata, F06, variant, F06_METADATA_KEYS, path, result, fix):
        return
    missing = _missing_keys(metadata["temporal"], F06_TEMPORAL_KEYS)
    if missing:
        result.problems.append(f"{path}: key 'temporal' lacks {missing}; {fix}")
    models = metadata["models"]
    if not isinstance(models, list) or not models:
        result.problems.append(f"{path}: key 'models' lists no model; {fix}")
        return
    for index, model in enumerate(models):
        missing = _missing_keys(model, F06_MODEL_KEYS)
        if missing:
            result.problems.append(f"{path}: models[{index}] lacks keys {missing}; {fix}")


def _check_run_metadata(metadata, variant: str, folder: Path, result: CheckResult, fix: str) -> None:
    """Complete, about this variant, and every output it lists still there."""
    path = folder / layout.RUN_METADATA
    if not _check_identity(metadata, F07, variant, F07_METADATA_KEYS, path, result, fix):
        return
    _check_files(folder, metadata["outputs"], result, f"{path} lists it as an output of the run; {fix}")


def _describe_check(check: dict) -> str:
    """One failed check of verdict.json (``{name, passed, measured, expected, detail}``)."""
    detail = f"; {check['detail']}" if check.get("detail") else ""
    return f"{check.get('name')}: measured {check.get('measured')}, expected {check.get('expected')}{detail}"


def _check_verdict(verdict, path: Path, result: CheckResult, fix: str) -> None:
    if not isinstance(verdict, dict) or not isinstance(verdict.get("passed"), bool):
        result.problems.append(f"{path} has no boolean 'passed'; {fix}")
    elif verdict["passed"]:
        result.verified.append(f"verdict passed ({len(verdict.get('checks') or [])} checks)")
    else:
        # `passed: null` is a check that was not measured (e.g. equivalence switched off): not a failure
        failed = [c for c in verdict.get("checks") or [] if isinstance(c, dict) and c.get("passed") is False]
        result.failed_checks = [_describe_check(c) for c in failed] or [f"({path} lists no failed check)"]


def _check_parent_package(project: Project, variant: str, parent, manifest, result: CheckResult, fix: str) -> None:
    """The package must still verify, and be the very one the run served."""
    if parent not in project.entries(F06):
        result.problems.append(f"deployrun.{variant}.parent_variant_f06 = {parent!r} is not an F06 variant of "
                               f"params.yaml; set it to a packaging variant")
        return
    seal = verify_seal(project.variant_dir(F06, parent))
    if not seal.ok:
        result.problems.append(f"the parent package {parent} does not verify: {seal.describe()}")
    elif manifest is not None and manifest.get("package_digest") != seal.digest:
        result.problems.append(f"manifest.json was made for package digest {manifest.get('package_digest')}, "
                               f"but package {parent} now has {seal.digest}; {fix}")
    else:
        result.verified.append(f"parent package {parent}: seal verified (digest {seal.digest})")


def check_deployrun(project: Project, variant: str) -> CheckResult:
    """F07: the seed's artifacts (a confusion figure per prediction_name), the parent
    package's seal and that the run served that very package, the metadata, the verdict."""
    entry = project.entry(F07, variant)
    fix = f"run `make script7-run VARIANT={variant}`"
    result, folder = _start_check(project, F07, variant, f07_files(entry), fix)
    if folder is None:
        return result
    manifest = _read_json(folder / layout.MANIFEST, result, fix)
    if manifest is not None:
        names = sorted({model["prediction_name"] for model in manifest.get("models") or []})
        _check_files(folder, [layout.confusion_figure(name) for name in names], result, fix)
    _check_parent_package(project, variant, entry.get("parent_variant_f06"), manifest, result, fix)
    metadata = _read_json(folder / layout.RUN_METADATA, result, fix)
    if metadata is not None:
        _check_run_metadata(metadata, variant, folder, result, fix)
    verdict = _read_json(folder / layout.VERDICT, result, fix)
    if verdict is not None:
        _check_verdict(verdict, folder / layout.VERDICT, result, fix)
    if not result.problems:
        _check_up_to_date(project, F07, variant, result)
    return result


CHECKS = {F06.number: check_package, F07.number: check_deployrun}
