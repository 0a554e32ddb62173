"""Write ``dvc_deps.yaml`` (``contract.dvc_deps``) from params.yaml: the exact upstream
folders of every F06 variant and the baseline of every F07 verdict, which dvc.yaml cannot
compute itself. Every lifecycle command that adds or removes a variant rewrites it;
``python -m lifecycle deps`` (make deps) does after a hand edit of params.yaml."""
from __future__ import annotations

from contract import dvc_deps
from contract.files import write_text_atomic
from f06_packaging import lineage
from f07_validation.gates import verdict_deps
from lifecycle.project import F06, F07, Project


def document(project: Project) -> str:
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
