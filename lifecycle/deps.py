"""Write ``dvc_deps.yaml`` (``contract.dvc_deps``) from params.yaml: the exact upstream
folders of every F06 variant and the baseline of every F07 verdict, which dvc.yaml cannot
compute itself. Every lifecycle command that adds or removes a variant rewrites it;
``python -m lifecycle deps`` (make deps) does after a hand edit of params.yaml."""
from __future__ import annotations

from contract import dvc_deps
from contract.files import write_text_atomic
from f06_packaging import lineage
from f07_validation.gates import verdict_deps
from lifecycle.project import F06, F07, LifecycleError, Project


def check_dvc_can_run(project: Project) -> None:
    """What DVC refuses before any stage can check it, with its own words: a parameter
    dvc.yaml tracks in params.yaml for a variant's stage that params.yaml leaves out (DVC
    needs every tracked key written out; the F07 stages track their optional keys in the
    run's params.yaml, which the settings stage writes whole), and an F07 variant on an
    F06 variant params.yaml does not define (its stages' deps name that folder)."""
    params = project.params()
    problems = []
    for phase in (F06, F07):
        for stage in project.stages(phase):
            tracked = project.pipeline[stage].get("do", {}).get("params") or []
            prefix = f"{phase.section}.${{key}}."
            for variant, entry in project.entries(phase).items():
                for key in (t[len(prefix):] for t in tracked if isinstance(t, str) and t.startswith(prefix)):
                    value = entry
                    for part in key.split("."):
                        value = value.get(part, KeyError) if isinstance(value, dict) else KeyError
                    if value is KeyError:
                        problems.append(f"{phase.section}.{variant}.{key} is missing: {stage}@{variant} tracks it, "
                                        "and DVC needs it written out even where it is optional")
    packages = project.entries(F06)
    for variant, entry in project.entries(F07).items():
        parent = entry.get("parent_variant_f06")
        if parent not in packages:
            problems.append(f"deployrun.{variant}.parent_variant_f06: {parent} is not an F06 variant of params.yaml "
                            f"(known: {', '.join(packages) or 'none'})")
    if problems:
        raise LifecycleError(f"{project.params_path}: " + "; ".join(dict.fromkeys(problems)) +
                             " (`make variant6`/`make variant7` write every key)")


def document(project: Project) -> str:
    check_dvc_can_run(project)
    demo = project.params().get("demo") or {}
    upstream = {}
    for variant, entry in project.entries(F06).items():
        upstream.update(lineage.entries(variant, entry, project.executions, demo))
    verdicts = {variant: verdict_deps(variant, entry if isinstance(entry, dict) else {})
                for variant, entry in project.entries(F07).items()}
    return dvc_deps.render(upstream, verdicts)


def write(project: Project) -> bool:
    """Rewrite the file; True when it changed."""
    path = project.root / dvc_deps.FILE
    text = document(project)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)
    return True
