"""The DVC graph cannot drift from the code: every stage of dvc.yaml and demo/dvc.yaml
depends on every project module its command runs, and on its own variant's data only.

The modules a command runs are computed here from the source, independently of dvc.yaml:
the module of ``python -m <module>``, then every project module any of them imports
(at the top or inside a function: a lazy import runs too), every package ``__init__``
on the way, and every module started as ``python -m <module>`` in a subprocess (the F07
server). The stages and their deps come from DVC itself, with the project's params.
"""
from __future__ import annotations

import ast
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT, edit_params, run

PACKAGES = sorted(p.parent.name for p in PROJECT.glob("*/__init__.py"))


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a module or a package's __init__)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = PROJECT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_inits(name: str) -> list[Path]:
    parts = name.split(".")
    return [f for f in (module_file(".".join(parts[:i])) for i in range(1, len(parts))) if f]


def _started_modules(tree: ast.AST) -> list[str]:
    """``[..., "-m", "runtime.server", ...]`` in a list or tuple literal: a module run in a
    subprocess, which is code the stage runs too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            found += [values[i + 1] for i, v in enumerate(values[:-1])
                      if v == "-m" and isinstance(values[i + 1], str)]
    return found


@cache
def direct_imports(path: Path) -> frozenset[Path]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]  # submodules imported by name
    names += _started_modules(tree)
    files = set()
    for name in names:
        target = module_file(name)
        if target:
            files.add(target)
            files.update(_package_inits(name))
    return frozenset(files)


def closure(module: str) -> set[Path]:
    """Every project file that ``python -m <module>`` may run."""
    start = module_file(module)
    assert start is not None, f"{module} is not a project module"
    seen, todo = set(), [start, *_package_inits(module)]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(direct_imports(path) - seen)
    return seen


def pipeline_stages(root: Path = PROJECT) -> dict[str, tuple[str, list[str]]]:
    """``{stage: (module its cmd runs, [dep paths relative to the root])}`` for every
    stage of dvc.yaml and demo/dvc.yaml, as DVC resolves them."""
    script = ("import json, os, shlex\nfrom dvc.repo import Repo\nrepo = Repo('.')\nout = {}\n"
              "for s in repo.index.stages:\n"
              "    out[s.addressing] = (s.cmd, [os.path.relpath(d.fs_path, repo.root_dir) for d in s.deps])\n"
              "print(json.dumps(out))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    stages = {}
    for name, (cmd, deps) in yaml.safe_load(result.stdout).items():
        words = shlex.split(cmd)
        assert words[:2] == ["python", "-m"], f"{name}: the command {cmd!r} is not `python -m <module> ...`"
        stages[name] = (words[2], deps)
    return stages


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(PROJECT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def test_every_stage_depends_on_every_module_its_command_runs():
    stages = pipeline_stages()
    assert any(name.startswith("demo/dvc.yaml:") for name in stages) and "verdict@v701" in stages
    missing = {name: sorted(str(p.relative_to(PROJECT)) for p in closure(module) if not covered(p, deps))
               for name, (module, deps) in stages.items()}
    assert {name: files for name, files in missing.items() if files} == {}


def test_the_import_walk_finds_lazy_imports_and_the_server_subprocess():
    """The walk is what the coverage above rests on: it must see an import inside a
    function and a module started with `python -m` as code the stage runs."""
    infer = closure("stages.infer")
    assert PROJECT / "runtime/models.py" in infer  # imported inside infer() only
    assert PROJECT / "runtime/server.py" in infer  # started by ServerProcess as python -m runtime.server
    assert PROJECT / "contract/__init__.py" in infer
    assert PROJECT / "stages/infer.py" in closure("stages.infer")
    assert not any(p.is_relative_to(PROJECT / "f06_packaging") for p in closure("stages.score"))


def test_coverage_check_fails_naming_an_uncovered_module():
    """A dep list that misses a module is reported with that module's path."""
    module, deps = pipeline_stages()["serve@v701"]
    narrowed = [dep for dep in deps if dep != "f07_validation"] + ["f07_validation/serve.py"]
    uncovered = sorted(str(p.relative_to(PROJECT)) for p in closure(module) if not covered(p, narrowed))
    assert "f07_validation/gates.py" in uncovered  # the drift the issue found: serve runs gates.py


# --------------------------------------------------------------------------- real DVC

def dvc_status(root: Path, *targets: str) -> dict:
    result = run([sys.executable, "-m", "dvc", "status", "--json", *targets], root)
    return yaml.safe_load(result.stdout or "{}") or {}


@pytest.mark.parametrize("module", ["f07_validation/gates.py", "f06_packaging/probe.py", "contract/layout.py",
                                    "demo/train.py"])
def test_touching_a_module_makes_dvc_report_every_stage_that_runs_it(project_copy, module):
    stages = pipeline_stages(project_copy)
    runs_it = {name for name, (command, _) in stages.items() if PROJECT / module in closure(command)}
    assert runs_it, f"no stage runs {module}"
    with open(project_copy / module, "a", encoding="utf-8") as handle:
        handle.write("\n# touched\n")
    changed = set(dvc_status(project_copy))
    assert runs_it <= changed, f"dvc status misses {sorted(runs_it - changed)} after {module} changed"


def test_an_unrelated_upstream_variant_leaves_every_f06_and_f07_stage_up_to_date(project_copy):
    """A new F05 run nobody packages (a copy of v503 as v509), and a change inside it,
    change no F06 or F07 stage; a change in a packaged F05 run changes its lineage stage."""
    root = project_copy
    shutil.copytree(root / "executions/05_modeling/v503", root / "executions/05_modeling/v509")
    edit_params(root, lambda p: {**p, "demo": {**p["demo"], "f05": {**p["demo"]["f05"],
                                                                    "v509": p["demo"]["f05"]["v503"]}}})
    run([sys.executable, "-m", "lifecycle", "deps"], root)
    changed = dvc_status(root)
    assert not [name for name in changed if not name.startswith("demo/dvc.yaml:")], changed
    (root / "executions/05_modeling/v509/05_modeling_metadata.json").write_text("{}\n")
    assert not [name for name in dvc_status(root) if not name.startswith("demo/dvc.yaml:")]
    with open(root / "executions/05_modeling/v501/05_modeling_metadata.json", "a", encoding="utf-8") as handle:
        handle.write("\n")
    changed = set(dvc_status(root))
    assert "lineage@v601-05_modeling-v501" in changed
    assert not changed & {"lineage@v601-05_modeling-v502", "serve@v701", "verdict@v701"}


def test_a_change_to_the_runtime_leaves_every_demo_stage_up_to_date(project_copy):
    """The demo is the upstream the runtime is judged against, so it is not built by the
    runtime: an edit to the runtime's vectorizer changes the F06/F07 stages that run it
    and no demo stage (whose F05 has its own implementation of the contract)."""
    assert any(name.startswith("demo/dvc.yaml:f05_models@") for name in pipeline_stages(project_copy))
    with open(project_copy / "runtime/vectorize.py", "a", encoding="utf-8") as handle:
        handle.write("\n# touched\n")
    changed = set(dvc_status(project_copy))
    assert {"infer@v701", "reference@v701"} <= changed
    assert not [name for name in changed if name.startswith("demo/dvc.yaml:")], changed


def test_no_f06_or_f07_output_is_deleted_before_its_stage_runs():
    """DVC removes a stage's outputs before running it unless they are `persist`: a stage
    that then refuses its parameters would have lost them (test_pipeline.py shows it for
    real). Every output of dvc.yaml must be persist, as DVC resolves it."""
    script = ("import json\nfrom dvc.repo import Repo\nrepo = Repo('.')\n"
              "print(json.dumps({s.addressing: [str(o) for o in s.outs if not o.persist]\n"
              "                  for s in repo.index.stages if s.path_in_repo == 'dvc.yaml'}))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, check=True)
    deleted = yaml.safe_load(result.stdout)
    assert "verdict@v701" in deleted and "select_models@v601" in deleted
    assert {stage: outs for stage, outs in deleted.items() if outs} == {}
