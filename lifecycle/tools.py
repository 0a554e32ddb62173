"""DVC and git, run as the user would run them, from the project root.

DVC runs under this interpreter (``python -m dvc``) with this interpreter's folder first
on PATH, because the stages' commands call ``python``: they then get the project's
environment whether or not it is activated.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from contract import layout
from lifecycle.project import LifecycleError, Project


def _env(extra: dict | None = None) -> dict:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **(extra or {})}


def _run(project: Project, args: list[str], what: str, capture: bool,
         allowed: tuple[int, ...] = (0,), env: dict | None = None, input: str | None = None
         ) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=project.root, env=_env(env), text=True, capture_output=capture, input=input)
    if result.returncode not in allowed:
        detail = f":\n{(result.stderr or result.stdout).strip()}" if capture else " (its output is above)"
        raise LifecycleError(f"{what} failed with exit code {result.returncode}{detail}")
    return result


def dvc(project: Project, *args: str, capture: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run(project, [sys.executable, "-m", "dvc", *args], f"`dvc {' '.join(args)}`", capture, env=env)


def git(project: Project, *args: str, allowed: tuple[int, ...] = (0,), env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    return _run(project, ["git", *args], f"`git {' '.join(args)}`", True, allowed, env, input)


def commit_only(project: Project, contents: dict[str, str], paths: list[str], message: str) -> bool:
    """One commit of ``contents`` (path -> the text to commit) and of the working tree's
    ``paths``, and of nothing else: it is made through a private index started from HEAD,
    so whatever else is modified or staged stays as it was. False when it would change
    nothing. The real index then holds those paths as the new HEAD has them."""
    with tempfile.TemporaryDirectory(prefix="publish-index-") as scratch:
        private = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git(project, "read-tree", "HEAD", env=private)
        for path, text in contents.items():
            blob = git(project, "hash-object", "-w", "--stdin", input=text).stdout.strip()
            git(project, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=private)
        if paths:
            git(project, "add", "--all", "--", *paths, env=private)
        if not git(project, "diff", "--cached", "--name-only", "HEAD", env=private).stdout.strip():
            return False
        git(project, "commit", "--quiet", "--no-verify", "--message", message, env=private)
    git(project, "reset", "--quiet", "--", *contents, *paths, allowed=(0, 1))
    return True


def committed_text(project: Project, path: str) -> str:
    """``path`` as HEAD holds it ("" when HEAD has no such file)."""
    shown = git(project, "show", f"HEAD:{path}", allowed=(0, 128))
    return shown.stdout if shown.returncode == 0 else ""


def git_ignored(project: Project, paths: list[str]) -> set[str]:
    """Those of ``paths`` that git ignores (DVC lists its cached outputs in .gitignore)."""
    return set(git(project, "check-ignore", "--", *paths, allowed=(0, 1)).stdout.splitlines())


def is_dvc_repo(project: Project) -> bool:
    return (project.root / ".dvc").is_dir()


def stale_stages(project: Project, targets: list[str]) -> dict:
    """``dvc status`` of ``targets`` as ``{stage: [changes]}``; empty when every output
    is what ``dvc.lock`` records for the current params, code and deps."""
    return json.loads(dvc(project, "status", "--json", *targets, capture=True).stdout or "{}")


@dataclass(frozen=True)
class StageOutput:
    path: Path
    cached: bool      # DVC keeps it in its cache (not `cache: false`)
    restorable: bool  # cached, present, byte for byte what dvc.lock records, and that version is in the cache


def stage_outputs(project: Project, of_stage: Callable[[str], bool]) -> list[StageOutput]:
    """The outputs of the root dvc.yaml's stages whose name (``stage@key``) ``of_stage``
    accepts, with what `dvc checkout` can do for each. Asked of DVC's own index rather than
    read from dvc.yaml: DVC resolves foreach and vars per variant, applies each output's
    `cache: false`, fills in the hashes dvc.lock records and knows whether its cache holds
    them, which are exactly what `dvc checkout` goes by; reading dvc.yaml here would copy
    its interpolation and still not know what the cache holds."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    pipeline = (project.root / layout.PIPELINE_FILE).resolve()
    try:
        with Repo(str(project.root)) as repo:
            return [StageOutput(Path(out.fs_path), out.use_cache,
                                out.use_cache and out.exists and not out.changed())
                    for stage in repo.index.stages
                    if Path(stage.path).resolve() == pipeline and of_stage(getattr(stage, "name", ""))
                    for out in stage.outs]
    except DvcException as error:
        raise LifecycleError(f"DVC cannot read the pipeline in {project.root}: {error}") from None
