"""The start-up of this project's entry points, with their bytecode cached beside the
sources and without it.

    python -m bench.bench_startup [--repeats 5] [--modules stages.settings lifecycle.cli ...]

`make run` and the test suite start hundreds of short Python processes on this project's
modules: every DVC stage, every `make` lifecycle command, every server. Python compiles each
module it imports unless `__pycache__` holds its bytecode, and with PYTHONDONTWRITEBYTECODE
set (as some images set it) it never writes that cache, so each process compiles again what
it imports (the suite's conftest.py lets the suite's processes write it). This copies the
project's Python sources into a temporary folder, then starts ``python -c "import
<module>"`` there for each module, without bytecode and after ``compileall``, the two
alternating over ``--repeats`` passes so that load from other processes falls on both
alike; PYTHONDONTWRITEBYTECODE is set for both, so the uncached runs stay uncached. It
prints the best CPU time (user + system) of each, and the ratio.
"""
from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The entry points that start most often: a DVC stage of each phase, the lifecycle CLI
# (every `make` variant target), the server.
MODULES = ("stages.settings", "stages.score", "stages.seal_package", "lifecycle.cli", "runtime.server")


def copy_sources(into: Path) -> None:
    """This project's git-listed Python files (no `__pycache__`), as they are checked out."""
    listed = subprocess.run(["git", "ls-files", "-z", "*.py"], cwd=PROJECT, capture_output=True, text=True,
                            check=True).stdout
    for relative in filter(None, listed.split("\0")):
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / relative, target)


def import_cpu(module: str, cwd: Path) -> float:
    """CPU seconds (user + system) of a fresh interpreter importing ``module`` in ``cwd``."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(cwd)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=cwd, env=env, capture_output=True,
                          text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"python -c 'import {module}' failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def remove_bytecode(root: Path) -> None:
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modules", nargs="+", default=list(MODULES))
    args = parser.parse_args()
    times = {(module, cached): [] for module in args.modules for cached in (False, True)}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        copy_sources(root)
        for _ in range(args.repeats):
            for cached in (False, True):
                remove_bytecode(root)
                if cached:
                    compileall.compile_dir(root, quiet=1)
                for module in args.modules:
                    times[(module, cached)].append(import_cpu(module, root))
    best = {key: min(values) for key, values in times.items()}
    print(f"CPU to start (import) each entry point, best of {args.repeats}")
    print(f"  {'module':24} {'no bytecode':>12} {'bytecode':>10} {'ratio':>7}")
    for module in args.modules:
        cold, warm = best[(module, False)], best[(module, True)]
        print(f"  {module:24} {cold:11.2f}s {warm:9.2f}s {cold / warm:6.2f}x")
    cold, warm = (sum(best[(module, cached)] for module in args.modules) for cached in (False, True))
    print(f"  all: no bytecode / bytecode: {cold / warm:.2f}x")


if __name__ == "__main__":
    main()
