"""DVC's commands with ruamel.yaml's C parser (``ruamel.yaml.clib``, pinned in
requirements.txt) beside its pure-Python parser.

    python -m bench.bench_dvc_yaml [--repeats 3] [--variant v701]

DVC reads dvc.yaml and dvc.lock through ruamel.yaml, and again for each target a command
names: ``dvc status`` on one F07 variant's eight stages parses them about sixty times.
ruamel.yaml >= 0.19 no longer pulls in its C parser; without it, it parses in pure Python,
and that parsing was most of what a ``dvc`` command cost (as much as 3/4 of a ``dvc
repro`` of a variant whose stages were up to date). Runs ``dvc status --json`` on the
variant's stages in this project (read only: status changes no file DVC tracks), once as
installed and once with the C parser hidden from ruamel.yaml (which then falls back, as
on an install without it), the two alternating over ``--repeats`` passes so that load
from other processes falls on both alike; prints the best wall times and the ratio.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from lifecycle.project import F07, LifecycleError, Project
from lifecycle.tools import dvc

C_PARSER = "_ruamel_yaml"  # the extension module ruamel.yaml imports its CParser from


def dvc_status(project: Project, targets: list[str], env: dict) -> float:
    started = time.perf_counter()
    try:
        dvc(project, "status", "--json", *targets, capture=True, env=env)
    except LifecycleError as error:  # its message names the command, the exit code and DVC's words
        sys.exit(str(error))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", default="v701", help="the F07 variant whose stages dvc status checks")
    args = parser.parse_args()
    if importlib.util.find_spec(C_PARSER) is None:
        sys.exit(f"ruamel.yaml's C parser ({C_PARSER}) is not installed: pip install -r requirements.txt")
    project = Project(Path(__file__).resolve().parents[1])
    targets = project.targets(F07, args.variant)
    with tempfile.TemporaryDirectory() as hidden:
        # A module of the same name first on the path, failing to import as a missing one does.
        Path(hidden, f"{C_PARSER}.py").write_text("raise ImportError('hidden by bench_dvc_yaml')\n", encoding="utf-8")
        pure_path = os.pathsep.join(filter(None, (hidden, os.environ.get("PYTHONPATH"))))
        settings = {"c": {}, "pure": {"PYTHONPATH": pure_path}}  # on top of this process's environment
        times = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, env in settings.items():
                times[name].append(dvc_status(project, targets, env))
    best = {name: min(values) for name, values in times.items()}
    print(f"dvc status --json on the {len(targets)} stages of {args.variant}, best of {args.repeats}")
    for name, label in (("c", "C parser (ruamel.yaml.clib)"), ("pure", "pure-Python parser")):
        print(f"  {label:28} {best[name]:.2f} s")
    print(f"  pure / C: {best['pure'] / best['c']:.2f}x")


if __name__ == "__main__":
    main()
