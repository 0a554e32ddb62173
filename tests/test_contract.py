"""One owner per fact: the artifact contract's folder and file names are spelled in
contract/layout.py only, the defaults and the variant-id pattern in contract/ only, and
no project module imports stages/ or tests/ from outside them."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from contract import layout
from contract.errors import UserError
from tests.conftest import PROJECT, as_from_a_terminal

# The contract's names, written out here from the contract (docs/contract.md), not taken
# from contract/layout.py: the test must notice a name that layout.py lacks.
FILE_NAMES = {
    "executions", "02_prepareeventsds", "03_preparewindowsds", "04_targetengineering", "05_modeling",
    "06_packaging", "07_deployrun", "07_scoreboard", "dataset.parquet", "metadata.json", "event_catalog.json",
    "model.h5", "model_summary.json", "replay_events.parquet", "06_packaging_metadata.json", "timing.json",
    "recovered_t0.parquet", "manifest.json", "serve.json", "raw_predictions.parquet", "raw_predictions.csv",
    "raw_predictions.csv.gz", "run_summary.json", "equivalence.json", "metrics_per_model.csv", "metrics.json",
    "scoring.json",
    "verdict.json", "verdict_metrics.json", "reference.json", "report.html", "runtime.js", "timeline.png",
    "07_deployrun_metadata.json", "dvc_deps.yaml",
    "failures.csv", "evaluation.json", "thresholds.csv", "thresholds.png", "07_comparison",
}
# Folder names that are also ordinary words (a JSON key "models"): counted only as a path part.
FOLDER_NAMES = {"models", "experiments", "datasets", "replay", "lineage", "logs", "metrics", "confusion",
                "report", "figures", "window_level", "failure_level"}
OWNER = PROJECT / "contract" / "layout.py"


def project_modules() -> list[Path]:
    return sorted(p for p in PROJECT.rglob("*.py")
                  if p.relative_to(PROJECT).parts[0] not in ("tests", ".venv", ".git") and p != OWNER)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _path_parts(text: str) -> list[str]:
    """The parts of a path-like literal (no spaces); prose (a message) is not a path."""
    if not text or any(c.isspace() for c in text):
        return []
    return [part for part in re.split(r"[/\\]", text) if part]


def _spells_a_file(part: str) -> bool:
    """A contract file name, alone or as the tail of an upstream phase file
    (``02_prepareeventsds_metadata.json``, or ``_metadata.json`` after a phase variable)."""
    return any(part == name or part.endswith("_" + name) for name in FILE_NAMES)


def contract_literals(path: Path, root: Path = PROJECT) -> list[str]:
    """``file:line: 'literal'`` (``file`` relative to ``root``) for each literal in ``path``
    that spells a contract name: a file or phase folder name anywhere in a path-like
    string, or a folder name used as a path part (``x / "logs"``, ``"logs/..."``). Routes
    (``"/models"``) are URLs, not files."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    divided = {id(side) for node in ast.walk(tree)
               if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) for side in (node.left, node.right)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        if node.value.startswith("/") and id(node) not in in_fstring:
            continue  # an HTTP route
        parts = _path_parts(node.value)
        as_path = id(node) in divided or (len(parts) > 1 and id(node) not in in_fstring)
        if any(_spells_a_file(part) or (as_path and part in FOLDER_NAMES) for part in parts):
            found.append((node.lineno, node.col_offset, f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"))
    return [hit for *_, hit in sorted(found)]


def test_contract_names_are_literals_in_contract_layout_only():
    found = [hit for path in project_modules() for hit in contract_literals(path)]
    assert found == []


def test_the_literal_check_finds_a_file_name_and_a_folder_used_as_a_path(tmp_path):
    sample = tmp_path / "contract" / "_sample_for_test.py"  # beside the project, never in it
    sample.parent.mkdir()
    sample.write_text('"""Mentions manifest.json in prose: fine."""\n'
                      'from pathlib import Path\n'
                      'MESSAGE = "run the serve stage to write manifest.json"\n'
                      'KEY = {"models": 1}\n'
                      'ROUTE = "/models"\n'
                      'a = Path("x") / "logs" / "run_summary.json"\n'
                      'b = f"{a}/metrics/{KEY}_metadata.json"\n'
                      'c = "models/v401"\n', encoding="utf-8")
    found = contract_literals(sample, tmp_path)
    assert [hit.split(": ", 1)[1] for hit in found] == ["'logs'", "'run_summary.json'", "'_metadata.json'",
                                                        "'models/v401'"]


def test_the_owner_holds_every_name():
    text = OWNER.read_text(encoding="utf-8")
    missing = sorted(name for name in FILE_NAMES | FOLDER_NAMES if name not in text and name != "07_scoreboard")
    assert missing == []


DEFAULT_NAMES = re.compile(r"(HOST|PORT|BATCH_SIZE|MAX_BATCH|MAX_BATCH_ITEMS|MAX_CONTENT_LENGTH|VARIANT_ID)$")
DEFAULTED_PARAMETERS = {"host", "port", "batch_size", "max_batch_items", "max_content_length"}


def defaults_defined(path: Path) -> list[str]:
    """Names of the defaults or the variant-id pattern given a literal value in ``path``:
    a module constant (``DEFAULT_PORT = 5005``) or a parameter default (``port=5005``)."""
    tree, found = ast.parse(path.read_text(encoding="utf-8")), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [t.id for t in targets if isinstance(t, ast.Name) and DEFAULT_NAMES.search(t.id)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "compile" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and re.fullmatch(r"\^?v(\\d|\[0-9\])\+\$?", node.args[0].value):
            found.append("the variant-id pattern")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults \
                + node.args.kw_defaults
            found += [f"{node.name}({a.arg}=...)" for a, d in zip(arguments, defaults)
                      if a.arg in DEFAULTED_PARAMETERS and isinstance(d, ast.Constant) and d.value not in (0, None, "")]
    return found


def test_defaults_and_the_variant_id_pattern_are_defined_in_contract_only():
    elsewhere = {str(p.relative_to(PROJECT)): names for p in project_modules()
                 if p.parent.name != "contract" and (names := defaults_defined(p))}
    assert elsewhere == {}
    assert {"DEFAULT_PORT", "DEFAULT_HOST", "DEFAULT_BATCH_SIZE", "MAX_BATCH_ITEMS"} <= set(
        defaults_defined(PROJECT / "contract" / "defaults.py"))
    assert defaults_defined(OWNER) == ["the variant-id pattern"]


def test_no_module_outside_stages_or_tests_imports_them():
    offenders = []
    for path in project_modules():
        top = path.relative_to(PROJECT).parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            offenders += [f"{path.relative_to(PROJECT)} imports {name}" for name in names
                          if name.split(".")[0] in ("stages", "tests") and name.split(".")[0] != top]
    assert offenders == []


def test_contract_imports_nothing_of_the_project():
    others = {p.parent.name for p in PROJECT.glob("*/__init__.py")} - {"contract"}
    imports = []
    for path in sorted((PROJECT / "contract").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            imports += [f"{path.name}: {name}" for name in names if name.split(".")[0] in others]
    assert imports == []


@pytest.mark.parametrize("variant", ["../v601", "v601/../../x", "601", "v6a", "", None, "V601"])
def test_a_variant_id_never_names_a_path(variant):
    with pytest.raises(UserError, match="not a variant id"):
        layout.variant_dir(layout.F06, variant)


def test_runtime_holds_serving_only():
    """runtime/ keeps the server and what it calls; the shared helpers moved to contract/."""
    for name in ("files", "windows", "seal", "manifest", "client"):
        assert not (PROJECT / "runtime" / f"{name}.py").exists(), name


@pytest.mark.parametrize("writer", [
    "with atomic_path(target) as scratch:\n    scratch.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "import contract.files as files\nfiles.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
    "write_text_atomic(target, 'half')\n",
])
def test_a_write_killed_midway_leaves_scratch_that_the_next_write_of_the_file_removes(tmp_path, writer):
    """SIGKILL runs no cleanup: an infer stage killed mid-write left its scratch inside the
    tracked logs/ for good (the folder no longer byte-reproducible)."""
    import subprocess
    import sys

    from contract.files import atomic_path

    target = tmp_path / "logs" / "raw_predictions.parquet"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / ".other.parquet.x.tmp").write_text("another file's scratch")
    code = ("import os, signal, sys\nfrom pathlib import Path\nfrom contract.files import atomic_path, "
            "write_text_atomic\ntarget = Path(sys.argv[1])\n" + writer)
    killed = subprocess.run([sys.executable, "-c", code, str(target)], cwd=PROJECT)
    assert killed.returncode == -9
    assert [p.name.startswith(".raw_predictions.parquet.") for p in (tmp_path / "logs").iterdir()].count(True) == 1
    with atomic_path(target) as scratch:
        scratch.write_bytes(b"whole")
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [".other.parquet.x.tmp", "raw_predictions.parquet"]
    assert target.read_bytes() == b"whole"


def test_json_is_written_with_the_same_umask_rule_as_every_other_file(tmp_path):
    """JSON went through tempfile (0600) while parquet, CSV and HTML followed the umask (0644)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from contract.files import atomic_path, write_json_atomic

    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "verdict.json", {"passed": True})
        with atomic_path(tmp_path / "log.parquet") as scratch:
            pq.write_table(pa.table({"x": [1]}), scratch)
        (tmp_path / "plain.csv").write_text("x\n")
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes == {"verdict.json": 0o644, "log.parquet": 0o644, "plain.csv": 0o644}


def test_ctrl_c_in_a_command_is_one_line_not_a_traceback(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = ("import time\nfrom contract.errors import exit_on_user_error\n"
            "print('started', flush=True)\nexit_on_user_error(lambda: time.sleep(60))\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
    try:
        assert process.stdout.readline() == "started\n"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:  # one that ignored it is not left running
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert stderr.strip().splitlines() == ["interrupted: nothing was half-written; run the command again to finish it"]
