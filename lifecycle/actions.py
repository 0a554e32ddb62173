"""Run, publish, remove and clean variants, through DVC and git.

Publishing is the one way a variant becomes shared: its data goes to the DVC remote and
``dvc.lock``, ``params.yaml`` and the small git-tracked outputs (metrics, verdict,
report: the ``cache: false`` outputs, which `dvc push` does not carry) go into one git
commit naming the variant. A variant is published only when its check passes; `--force`
overrides a failed F07 verdict (and says so in the commit), nothing else.
"""
from __future__ import annotations

import shutil

from contract import dvc_deps, layout
from contract.files import write_text_atomic
from lifecycle import deps
from lifecycle.checks import CHECKS
from lifecycle.project import F06, F07, LifecycleError, Phase, Project, check_variant_id
from lifecycle.tools import commit_only, committed_text, dvc, git_ignored, is_dvc_repo, stage_outputs
from lifecycle.yamledit import copy_entries, remove_entries


def prepare_run(project: Project, phase: Phase, variant: str) -> None:
    """What a run of the variant needs before any stage starts, by script (`make script6-run`)
    or by notebook (`make nb6-run`): a defined variant, an F07 parent that is an F06
    variant, and dvc_deps.yaml rewritten (params.yaml may have been edited by hand)."""
    entry = project.entry(phase, variant)
    if phase is F07 and entry.get("parent_variant_f06") not in project.entries(F06):
        raise LifecycleError(f"deployrun.{variant}.parent_variant_f06 = {entry.get('parent_variant_f06')!r} is "
                             f"not an F06 variant of params.yaml; set it to one of "
                             f"{', '.join(project.entries(F06)) or 'none (create one with make variant6)'}")
    deps.write(project)


def run(project: Project, phase: Phase, variant: str) -> None:
    """`dvc repro` of the variant's stages; DVC brings their upstream stages up to date too."""
    prepare_run(project, phase, variant)
    dvc(project, "repro", *project.targets(phase, variant))
    print(f"{phase.label} variant {variant} is built; next: make check{phase.number} VARIANT={variant}")


def _git_outputs(project: Project, phase: Phase, variant: str) -> list[str]:
    """What of the variant's outputs goes to git: its folder (for DVC's .gitignore files
    and the cache: false outputs in it) and every other output dvc.lock records for it
    that git does not ignore (a cache: false output may live outside the folder)."""
    paths = sorted({str(path.relative_to(project.root)) for path in
                    [project.variant_dir(phase, variant), *project.locked_outputs(phase, variant)]})
    ignored = git_ignored(project, paths)
    return [path for path in paths if path not in ignored]


def _own_entries(project: Project, phase: Phase, variant: str) -> dict[str, str]:
    """params.yaml, dvc.lock and dvc_deps.yaml as HEAD has them, with this variant's
    entries as the working tree has them: another variant's edits are not published."""
    params, lock = project.params_path.name, project.lock_path.name
    contents = {
        params: copy_entries(committed_text(project, params), project.params_path.read_text(encoding="utf-8"),
                             phase.section, [variant], params),
        lock: copy_entries(committed_text(project, lock) or "schema: '2.0'\n",
                           project.lock_path.read_text(encoding="utf-8"), "stages",
                           list(dict.fromkeys(project.targets(phase, variant) + project.locked_stages(phase, variant))),
                           lock),
    }
    deps_path = project.root / dvc_deps.FILE
    if deps_path.is_file():
        contents[dvc_deps.FILE] = dvc_deps.with_variant(dvc_deps.parse(committed_text(project, dvc_deps.FILE)),
                                                         dvc_deps.read(deps_path), variant)
    return contents


def publish(project: Project, phase: Phase, variant: str, force: bool = False) -> None:
    """Check, push the variant's stages (with their upstream, so that a clone can `dvc
    pull` all it needs), commit the variant and nothing else: its params.yaml entry, its
    dvc.lock and dvc_deps.yaml entries, its git-tracked outputs."""
    if not is_dvc_repo(project):
        raise LifecycleError(f"{project.root} is not a DVC repository (no .dvc/): publishing needs DVC and git")
    result = CHECKS[phase.number](project, variant)
    if result.problems or (result.failed_checks and not force):
        fix = ("fix the problems above" if result.problems else
               f"fix what the verdict measures, or publish anyway with `make publish7 VARIANT={variant} FORCE=1`")
        raise LifecycleError(f"{result.describe()}\n{variant} was not published: {fix}")
    message = [f"publish{phase.number} {variant}", "", *result.verified]
    if result.failed_checks:
        message += ["", "FORCED: published although the verdict did not pass; failed checks:",
                    *[f"- {check}" for check in result.failed_checks]]
    dvc(project, "push", "--with-deps", *project.targets(phase, variant))
    text = "\n".join(message) + "\n"
    if not commit_only(project, _own_entries(project, phase, variant), _git_outputs(project, phase, variant), text):
        print(f"{phase.label} variant {variant}: data pushed; git already holds this version, nothing to commit")
        return
    print(f"published {phase.label} variant {variant}:\n{text}")


def _delete(paths) -> list[str]:
    """Delete each existing path (file or folder); returns those deleted."""
    deleted = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        deleted.append(str(path))
    return deleted


def remove(project: Project, phase: Phase, variant: str) -> None:
    """Remove the variant's params entry, its ``stage@variant`` entries in dvc.lock (which
    DVC keeps after the params entry is gone), its outputs folder and any other output
    dvc.lock records for it, and for an F07 variant the comparisons naming it. The DVC
    cache keeps the data until `dvc gc`."""
    check_variant_id(variant)
    outputs = [project.variant_dir(phase, variant), *project.locked_outputs(phase, variant)]
    params_text = project.params_path.read_text(encoding="utf-8")
    lock_text = project.lock_path.read_text(encoding="utf-8") if project.lock_path.is_file() else ""
    new_params = remove_entries(params_text, phase.section, [variant], str(project.params_path))
    stages = list(dict.fromkeys(project.targets(phase, variant) + project.locked_stages(phase, variant)))
    new_lock = remove_entries(lock_text, "stages", stages, str(project.lock_path))
    if new_params == params_text and new_lock == lock_text and not any(path.exists() for path in outputs):
        raise LifecycleError(f"{phase.label} variant {variant} does not exist: no '{phase.section}.{variant}' in "
                             f"params.yaml, no dvc.lock entry, no {outputs[0]}; nothing to remove")
    dependents = project.dependents(phase, variant)
    if dependents:
        listing = ", ".join(f"{other} ({key} = {variant})" for other, key in dependents.items())
        raise LifecycleError(f"{phase.label} variant {variant} is needed by F07 variant(s) {listing}: remove "
                             f"them first (e.g. `make remove7 VARIANT={next(iter(dependents))}`) or change "
                             f"that key")
    removed = []
    if new_params != params_text:
        write_text_atomic(project.params_path, new_params)
        removed.append(f"params.yaml {phase.section}.{variant}")
    if new_lock != lock_text:
        write_text_atomic(project.lock_path, new_lock)
        removed.append("its dvc.lock entries")
    removed += _delete(outputs)
    if phase is F07:
        removed += _delete(layout.comparisons_of(variant, project.root / layout.EXECUTIONS))
    if deps.write(project):
        removed.append("its dvc_deps.yaml entries")
    print(f"removed {phase.label} variant {variant}: {', '.join(removed)}; commit the change with git "
          f"(the DVC cache keeps the data until `dvc gc`)")


def clean(project: Project, phase: Phase) -> None:
    """Delete what `dvc checkout` brings back, and nothing else: the outputs of the phase's
    stages that DVC caches, each only while it is byte for byte the version dvc.lock
    records and the cache holds. The `cache: false` outputs (lineage digests, metrics,
    verdict, report...: in git at best, never in the cache), an output that differs from
    dvc.lock or whose version the cache lacks, and every other file of the phase folder
    are kept: deleted, they could not come back (a command loses nothing)."""
    if not is_dvc_repo(project):
        raise LifecycleError(f"{project.root} is not a DVC repository (no .dvc/): clean{phase.number} deletes only "
                             f"what `dvc checkout` brings back from the DVC cache; nothing was deleted")
    outputs = stage_outputs(project, lambda name: project.is_stage_of(name, phase))
    removed = _delete(output.path for output in outputs if output.restorable)
    uncached = sum(not output.cached and output.path.exists() for output in outputs)
    differing = sum(output.cached and output.path.exists() for output in outputs)  # the restorable are gone
    kept = f"kept its {uncached} `cache: false` output(s) and the rest of {project.phase_dir(phase)}"
    if differing:
        kept += (f"; kept {differing} cached output(s) that differ from dvc.lock or whose version the DVC cache "
                 f"lacks (`dvc status` lists them)")
    if not removed:
        print(f"{phase.label}: nothing to clean (no output of its stages is in the DVC cache as dvc.lock records it); "
              f"{kept}")
        return
    print(f"{phase.label}: removed the {len(removed)} DVC-cached output(s) of its stages; {kept}; "
          f"`dvc checkout` brings them back")
