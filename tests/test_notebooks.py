"""The phase notebooks (`make nb6-run`, `make nb7-run`): executed with papermill on the small
demo (conftest's ``demo_project``, built by the DVC stages), they write every DVC-tracked
output byte for byte as the stages did, show each step's outputs and no error, and refuse
what the stages refuse with the same message, writing nothing.

Equivalence is measured by DVC itself: the outputs are deleted, the notebook rebuilds
them, and `dvc status` must find every hash of dvc.lock (written by the script run) again.
"""
import json
import shutil
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from contract import layout
from lifecycle.project import F06, F07, Project
from tests.conftest import PROJECT, edit_params, run

VARIANT6, VARIANT7 = "v601", "v701"
UP_TO_DATE = "Data and pipelines are up to date."


def dvc(root, *args, check=True):
    return run([sys.executable, "-m", "dvc", *args], root, check=check, timeout=900)


def notebook_run(root: Path, phase: str, variant: str, check=True):
    return run([sys.executable, "-m", "lifecycle", f"nb{phase}", "--variant", variant], root, check=check)


def locked_outputs(root: Path, phase, variant: str) -> list[Path]:
    return Project(root).locked_outputs(phase, variant)


def delete(paths) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def executed(root: Path, phase, variant: str) -> nbformat.NotebookNode:
    return nbformat.read(root / layout.executed_notebook(phase.folder, variant), as_version=4)


def outputs_of(notebook) -> list[list[dict]]:
    return [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]


def steps_shown(notebook) -> list[bool]:
    """Per step cell (one that calls a step): whether it shows anything."""
    return [bool(cell.outputs) for cell in notebook.cells if cell.cell_type == "code" and "steps." in cell.source]


def digests(paths) -> dict:
    from contract.seal import sha256_file
    found = {}
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        found.update({str(f): sha256_file(f) for f in files if f.is_file() and f.name != ".gitignore"})
    return found


@pytest.fixture(scope="module")
def notebook_project(demo_project, tmp_path_factory) -> Path:
    """One copy of the built demo shared by this module's tests, which leave it as built."""
    return Path(shutil.copytree(demo_project, tmp_path_factory.mktemp("notebooks") / "repo", symlinks=True))


def test_the_committed_notebooks_are_their_py_sources_without_outputs():
    for phase in (F06, F07):
        source = PROJECT / layout.phase_notebook(phase.folder)
        paired = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        expected = jupytext.read(source)
        assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in expected.cells], \
            f"{source.with_suffix('.ipynb')} differs from {source}: run `jupytext --sync {source}`"
        assert not any(cell.get("outputs") for cell in paired.cells)
        assert any("parameters" in cell.metadata.get("tags", []) for cell in paired.cells)


@pytest.mark.parametrize("phase", [F06, F07], ids=["F06", "F07"])
def test_the_notebook_steps_are_the_dvc_stages_in_order(phase):
    """Each stage of the phase in dvc.yaml is a step the notebook runs, in the pipeline's order."""
    stages = Project(PROJECT).stages(phase)
    source = (PROJECT / layout.phase_notebook(phase.folder)).read_text(encoding="utf-8")
    called = {stage: source.find(f"steps.{stage}(VARIANT)") for stage in stages}
    assert all(at >= 0 for at in called.values()), f"stages without a step in the notebook: {called}"
    assert sorted(called, key=called.get) == list(stages)


def test_nb6_writes_the_script_runs_bytes(notebook_project):
    root = notebook_project
    outputs = locked_outputs(root, F06, VARIANT6)
    delete(outputs)
    result = notebook_run(root, "6", VARIANT6)
    assert f"executed notebook: {layout.executed_notebook(F06.folder, VARIANT6)}" in result.stdout
    assert dvc(root, "status").stdout.strip() == UP_TO_DATE
    notebook = executed(root, F06, VARIANT6)
    assert len(steps_shown(notebook)) >= 5 and all(steps_shown(notebook)), "a step shows nothing"
    assert not [o for cell in outputs_of(notebook) for o in cell if o.output_type == "error"]
    assert "seal verified" in json.dumps(outputs_of(notebook)[-1])
    assert not run(["git", "status", "--porcelain", "--", "notebooks"], root).stdout.strip(), \
        "the executed notebook is not git-ignored"


def test_nb7_writes_the_script_runs_bytes(notebook_project):
    root = notebook_project
    delete(locked_outputs(root, F07, VARIANT7))
    notebook_run(root, "7", VARIANT7)
    assert dvc(root, "status").stdout.strip() == UP_TO_DATE
    notebook = executed(root, F07, VARIANT7)
    shown = outputs_of(notebook)
    assert not [o for cell in shown for o in cell if o.output_type == "error"]
    assert len(steps_shown(notebook)) >= 5 and all(steps_shown(notebook)), "a step shows nothing"
    text = json.dumps(shown)
    assert "GET /ready" in text and "GET /models" in text and "raw_predictions" in text and "verdict@" in text
    assert any("image/png" in o.get("data", {}) for o in shown[-1]), "no figure shown inline"


def test_nb6_honours_a_changed_time_range_like_the_script(project_copy):
    """With a narrower replay in params.yaml, the notebook writes what `dvc repro` then
    finds already there (the stages rerun on the changed params and rewrite nothing)."""
    root = project_copy
    package = root / layout.variant_dir(layout.F06, VARIANT6)
    metadata = json.loads((package / layout.PACKAGE_METADATA).read_text())
    start = metadata["replay"]["first_segs"] + 86_400
    edit_params(root, lambda p: {**p, "packaging": {**p["packaging"], VARIANT6: {
        **p["packaging"][VARIANT6], "replay": {**p["packaging"][VARIANT6]["replay"],
                                                "time_range": {"start": start, "end": None}}}}})
    notebook_run(root, "6", VARIANT6)
    by_notebook = digests(locked_outputs(root, F06, VARIANT6))
    narrowed = json.loads((package / layout.PACKAGE_METADATA).read_text())["replay"]
    assert narrowed["first_segs"] == start and narrowed["rows"] < metadata["replay"]["rows"]
    dvc(root, "repro", *Project(root).targets(F06, VARIANT6))
    assert digests(locked_outputs(root, F06, VARIANT6)) == by_notebook


def test_nb6_refuses_what_the_stage_refuses_with_the_same_message_and_writes_nothing(project_copy):
    root = project_copy
    package = root / layout.variant_dir(layout.F06, VARIANT6)
    metadata = json.loads((package / layout.PACKAGE_METADATA).read_text())
    outside = metadata["replay"]["last_segs"] + 10 * 86_400
    edit_params(root, lambda p: {**p, "packaging": {**p["packaging"], VARIANT6: {
        **p["packaging"][VARIANT6], "replay": {**p["packaging"][VARIANT6]["replay"],
                                                "time_range": {"start": None, "end": outside}}}}})
    before = digests(locked_outputs(root, F06, VARIANT6))
    script = run([sys.executable, "-m", "stages.materialize_replay", VARIANT6], root, check=False)
    notebook = notebook_run(root, "6", VARIANT6, check=False)
    assert script.returncode == notebook.returncode == 1
    message = script.stderr.strip().splitlines()[-1]
    assert message.startswith("error: packaging.v601.replay.time_range.end") and "outside the data" in message
    assert notebook.stderr.splitlines()[-2] == message
    assert str(layout.executed_notebook(F06.folder, VARIANT6)) in notebook.stderr.splitlines()[-1]
    assert "Traceback" not in notebook.stderr
    assert digests(locked_outputs(root, F06, VARIANT6)) == before
    error = [o for cell in outputs_of(executed(root, F06, VARIANT6)) for o in cell if o.output_type == "error"]
    assert [e.traceback for e in error] == [[message]]


def test_nb7_refuses_an_unknown_variant_as_script7_run_does(notebook_project):
    variants = yaml.safe_load((notebook_project / "params.yaml").read_text())["deployrun"].keys()
    script = run([sys.executable, "-m", "lifecycle", "run7", "--variant", "v799"], notebook_project, check=False)
    notebook = notebook_run(notebook_project, "7", "v799", check=False)
    assert script.returncode == notebook.returncode == 1
    assert notebook.stderr == script.stderr and "deployrun.v799" in notebook.stderr
    assert yaml.safe_load((notebook_project / "params.yaml").read_text())["deployrun"].keys() == variants
    assert "v799" not in variants


def test_a_bug_in_a_step_keeps_its_traceback(notebook_project):
    """Only a UserError is one line; any other exception is a bug and shows its traceback
    (on the terminal and in the executed notebook), and the run still exits 1."""
    source = notebook_project / layout.phase_notebook(F06.folder)
    original = source.read_text(encoding="utf-8")
    try:
        source.write_text(original.replace("digests = steps.lineage(VARIANT)",
                                           "digests = steps.lineage(VARIANT)[99]"), encoding="utf-8")
        result = notebook_run(notebook_project, "6", VARIANT6, check=False)
    finally:
        source.write_text(original, encoding="utf-8")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "IndexError" in result.stderr and "[99]" in result.stderr
    assert result.stderr.splitlines()[-2] == "error: IndexError: list index out of range"
    error, = [o for cell in outputs_of(executed(notebook_project, F06, VARIANT6)) for o in cell
              if o.output_type == "error"]
    assert error.ename == "IndexError" and len(error.traceback) > 1
