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
from pathlib import Path

from lifecycle.project import LifecycleError, Project


def _env() -> dict:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(project: Project, args: list[str], what: str, capture: bool,
         allowed: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=project.root, env=_env(), text=True, capture_output=capture)
    if result.returncode not in allowed:
        detail = f":\n{(result.stderr or result.stdout).strip()}" if capture else " (its output is above)"
        raise LifecycleError(f"{what} failed with exit code {result.returncode}{detail}")
    return result


def dvc(project: Project, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return _run(project, [sys.executable, "-m", "dvc", *args], f"`dvc {' '.join(args)}`", capture)


def git(project: Project, *args: str, allowed: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    return _run(project, ["git", *args], f"`git {' '.join(args)}`", True, allowed)


def git_ignored(project: Project, paths: list[str]) -> set[str]:
    """Those of ``paths`` that git ignores (DVC lists its cached outputs in .gitignore)."""
    return set(git(project, "check-ignore", "--", *paths, allowed=(0, 1)).stdout.splitlines())


def is_dvc_repo(project: Project) -> bool:
    return (project.root / ".dvc").is_dir()


def stale_stages(project: Project, targets: list[str]) -> dict:
    """``dvc status`` of ``targets`` as ``{stage: [changes]}``; empty when every output
    is what ``dvc.lock`` records for the current params, code and deps."""
    return json.loads(dvc(project, "status", "--json", *targets, capture=True).stdout or "{}")
