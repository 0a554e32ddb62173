"""The variant lifecycle (`python -m lifecycle`, behind the Makefile's variant6 … clean7).

Most commands are tested on a tiny project (the small upstream of ``upstream_builder``,
this repo's dvc.yaml, a params.yaml with comments) without running DVC; the commands
that drive DVC and git (run, publish, remove with a real dvc.lock) are
tested on a copy of the demo project built by ``conftest``; `dvc exp run` is in
test_pipeline.py.
"""
from __future__ import annotations

import difflib
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from contract import layout
from contract.layout import PREDICTIONS_CSV, REPLAY
from f06_packaging.package import copy_models, write_package
from f06_packaging.plan import build_plan
from f06_packaging.probe import probe_models
from f06_packaging.replay import materialize_replay
from lifecycle.checks import F07_FILES
from lifecycle.cli import _parser, main
from lifecycle.project import F06, F07, Project
from lifecycle.yamledit import YamlEditError, add_entry, copy_entries, remove_entries
from tests.conftest import PROJECT, edit_params, run
from tests.upstream_builder import FIXTURE_MODEL_ID, ORIGIN, TU, make_upstream

PARAMS = f"""\
# The lifecycle tests' tiny project.
demo:
  days: 4   # not used here

# F06 packages
packaging:
  v601:
    parent_variants_f05: [v501, v502]
    temporal: {{Tu: null, OW: null, LT: null, PW: null}}
    models:
      v401:
        - {{model_id: {FIXTURE_MODEL_ID}, source_f05: v501}}
      v402:
        - {{model_id: signal_9_ahead, source_f05: v502}}
    replay:
      source: {{dataset_id: v201}}
      time_range: {{start: null, end: null}}   # whole stream

# F07 runs
deployrun:
  v701:
    parent_variant_f06: v601
    runtime: {{host: 127.0.0.1, port: 0}}
    batch_size: 256
    check_equivalence: true
    equivalence_sample_windows: 20000
    log_csv_compression: none
"""
UPSTREAM_PHASES = ("02_prepareeventsds", "03_preparewindowsds", "04_targetengineering", "05_modeling")


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Path:
    return make_upstream(tmp_path_factory.mktemp("upstream"))


@pytest.fixture(scope="module")
def built_package(upstream, tmp_path_factory) -> Path:
    """executions/06_packaging/v601 of the tiny project, built as the F06 stages build it."""
    out = tmp_path_factory.mktemp("built") / "v601"
    plan = build_plan("v601", yaml.safe_load(PARAMS)["packaging"]["v601"], upstream)
    copy_models(plan, out / "models")
    materialize_replay(plan.replay, out / REPLAY)
    write_package(plan, out, probe_models)
    return out


@pytest.fixture
def tiny(upstream, tmp_path) -> Path:
    """A project root: this repo's dvc.yaml, PARAMS, and executions/ whose upstream phases
    link to the shared tiny upstream (read-only) while F06/F07 outputs are private."""
    root = tmp_path / "project"
    (root / "executions").mkdir(parents=True)
    shutil.copy(PROJECT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
    for phase in UPSTREAM_PHASES:
        (root / "executions" / phase).symlink_to(upstream / phase)
    return root


def cli(root: Path, *args: str, capsys) -> tuple[int, str]:
    """Run one lifecycle command in-process; returns (exit code, stdout + stderr)."""
    code = main(list(args), root=root)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def params(root: Path) -> dict:
    return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))


def only_insertions(old: str, new: str) -> bool:
    """``new`` is ``old`` with lines inserted, every original line kept byte for byte."""
    ops = difflib.SequenceMatcher(None, old.splitlines(True), new.splitlines(True), autojunk=False).get_opcodes()
    return all(tag in ("equal", "insert") for tag, *_ in ops)


def fake_lock(project: Project, variants: dict) -> str:
    """A dvc.lock in DVC's layout with an entry per stage of each variant
    (``{phase: [variants]}``); the DVC tests below use a real one."""
    stages = {}
    for phase, ids in variants.items():
        for variant in ids:
            for target in project.targets(phase, variant):
                stages[target] = {"cmd": f"python -m stages.{target.split('@')[0]} {variant}",
                                  "outs": [{"path": f"executions/{phase.folder}/{variant}/x", "hash": "md5",
                                            "md5": "0" * 32, "size": 1}]}
    return yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False)


# ------------------------------------------------------------------- in-place YAML edits

def test_yamledit_adds_and_removes_an_entry_leaving_every_other_byte():
    before = ("top: 1  # kept\n"
              "section:\n"
              "  # about a\n"
              "  a:\n"
              "    x: [1, 2]\n"
              "    # a's last word\n"
              "\n"
              "# the next section\n"
              "other: {k: null}\n")
    added = add_entry(before, "section", "b", {"x": None, "y": ["p", "q"]}, "f.yaml")
    assert added == before.replace("    # a's last word\n",
                                   "    # a's last word\n  b:\n    x: null\n    y: [p, q]\n")
    assert remove_entries(added, "section", ["b"], "f.yaml") == before
    emptied = remove_entries(before, "section", ["a"], "f.yaml")
    assert emptied == "top: 1  # kept\nsection: {}\n  # about a\n\n# the next section\nother: {k: null}\n"
    assert yaml.safe_load(emptied) == {"top": 1, "section": {}, "other": {"k": None}}
    assert add_entry("top: 1\n", "section", "b", {"x": 1}, "f.yaml") == "top: 1\n\nsection:\n  b:\n    x: 1\n"
    as_dvc_writes_it = "section:\n  a:\n    end:\n  c:\n    end:\nnext: 1\n"  # `dvc exp run -S` writes null so
    assert remove_entries(as_dvc_writes_it, "section", ["a"], "f.yaml") == "section:\n  c:\n    end:\nnext: 1\n"
    assert add_entry(as_dvc_writes_it, "section", "b", 2, "f.yaml") == as_dvc_writes_it.replace("next", "  b: 2\nnext")
    assert add_entry("section: null  # none yet\n", "section", "b", 1, "f.yaml") == \
        "section:   # none yet\n  b: 1\n"


def test_copy_entries_takes_one_variants_entries_and_leaves_every_other_byte():
    """What publish commits: the last commit's file with this variant's entries as the
    working tree has them, in place, and nothing of another variant's edits."""
    committed = "schema: '2.0'\nstages:\n  serve@v701:\n    cmd: a\n  seal_package@v601:  # kept\n    cmd: b\n"
    working = ("schema: '2.0'\nstages:\n  serve@v701:\n    cmd: a2\n  seal_package@v601:\n    cmd: b-edited\n"
               "  serve@v702:\n    cmd: c\n")
    published = copy_entries(committed, working, "stages", ["serve@v701", "infer@v701"], "dvc.lock")
    assert published == committed.replace("cmd: a\n", "cmd: a2\n")  # v601's edit and v702's entry stay out
    added = copy_entries(committed, working, "stages", ["serve@v702"], "dvc.lock")
    assert added == committed + "  serve@v702:\n    cmd: c\n"
    assert copy_entries(committed, "stages: {}\n", "stages", ["serve@v701"], "dvc.lock") == \
        "schema: '2.0'\nstages:\n  seal_package@v601:  # kept\n    cmd: b\n"
    # appended in the working file's order (DVC's), whatever order the keys come in: the
    # published dvc.lock then equals the working one once every variant is published
    two = working + "  score@v702:\n    cmd: d\n"
    assert copy_entries(committed, two, "stages", ["score@v702", "serve@v702"], "dvc.lock") == \
        committed + "  serve@v702:\n    cmd: c\n  score@v702:\n    cmd: d\n"


def test_yamledit_refuses_a_layout_it_cannot_edit_in_place():
    with pytest.raises(YamlEditError, match=r"not a block mapping.*Add it by hand under 'section:':\n  b:\n    x: 1"):
        add_entry("section: {a: 1}\n", "section", "b", {"x": 1}, "f.yaml")
    with pytest.raises(YamlEditError, match="Remove section.a by hand"):
        remove_entries("section: {a: 1, c: 2}\n", "section", ["a"], "f.yaml")


# ------------------------------------------------------------------------------ variant6

def test_variant6_adds_a_validated_entry_in_the_seeds_syntax(tiny, capsys):
    before = (tiny / "params.yaml").read_text()
    code, out = cli(tiny, "variant6", "--variant", "v602", "--parents", "v501",
                    "--models", f"{{v401:[{{model_id:{FIXTURE_MODEL_ID},source_f05:v501}}]}}",
                    "--tu", "", "--ow", "9", "--lt", "", "--pw", "", "--start", str(ORIGIN + 50 * TU),
                    "--end", "2023-11-14T23:00:00Z", capsys=capsys)
    assert code == 0, out
    assert "make script6-run VARIANT=v602" in out
    after = (tiny / "params.yaml").read_text()
    assert only_insertions(before, after)
    assert after.index("  v602:") < after.index("# F07 runs")
    entry = params(tiny)["packaging"]["v602"]
    assert entry == {"parent_variants_f05": ["v501"],
                     "temporal": {"Tu": None, "OW": 9, "LT": None, "PW": None},
                     "models": {"v401": [{"model_id": FIXTURE_MODEL_ID, "source_f05": "v501"}]},
                     "replay": {"source": {"dataset_id": "v201"},
                                "time_range": {"start": ORIGIN + 50 * TU, "end": "2023-11-14T23:00:00Z"}}}
    plan = build_plan("v602", entry, tiny / "executions")
    assert plan.regime["OW"].value == 9 and plan.replay.end == 1700002800


BASE6 = {"--parents": "v501 v502",
         "--models": f"{{v401: [{{model_id: {FIXTURE_MODEL_ID}, source_f05: v501}}], "
                     f"v402: [{{model_id: signal_9_ahead, source_f05: v502}}]}}"}


@pytest.mark.parametrize("variant, changes, expected", [
    ("v601", {}, ["v601 already exists", "packaging.v601", "make remove6 VARIANT=v601"]),
    ("602", {}, ["VARIANT='602' is not a variant id", "'v' followed by digits"]),
    ("v6a", {}, ["VARIANT='v6a' is not a variant id"]),
    ("v602", {"--parents": ""}, ["PARENTS_F05 is empty", 'PARENTS_F05="v501 v502"']),
    ("v602", {"--parents": "v501 v599"}, ["PARENTS_F05 names F05 variants ['v599']", "known: v501, v502"]),
    ("v602", {"--parents": "v501 5"}, ["PARENTS_F05 entry='5' is not a variant id"]),
    ("v602", {"--models": ""}, ["MODELS is empty", "MODELS='{v401: [{model_id: m03, source_f05: v501}]}'"]),
    ("v602", {"--models": "{v401: [{model_id: x"}, ["MODELS is not valid YAML", "MODELS='{v401: ["]),
    ("v602", {"--models": "[v401, v402]"}, ["MODELS must map F04 objectives to lists of models"]),
    ("v602", {"--models": "{v401: [{model_id: m03, source_f05: v501}], v402: [{model_id: signal_9_ahead, "
                          "source_f05: v502}]}"},
     ["packaging.v602.models.v401[0].model_id", "'m03' not found", FIXTURE_MODEL_ID, "(set by MODELS="]),
    ("v602", {"--models": "{v401: [{model_id: signal_9_ahead, source_f05: v502}]}"},
     ["F05 v502 derives from F04 v402", "move it under packaging.v602.models.v402", "(set by MODELS="]),
    ("v602", {"--parents": "v501"},
     ["packaging.v602.models.v402[0].source_f05", "'v502' is not in packaging.v602.parent_variants_f05",
      "(set by MODELS="]),
    ("v602", {"--models": f"{{v401: [{{model_id: {FIXTURE_MODEL_ID}, source_f05: v501}}]}}"},
     ["lists ['v502'] but packaging.v602.models selects no model from them", "(set by PARENTS_F05="]),
    ("v602", {"--ow": "abc"}, ["OW='abc' is not a number", "units of Tu", "leave it empty to inherit"]),
    ("v602", {"--ow": "0"}, ["packaging.v602.temporal.OW must be a whole number", "(set by OW="]),
    ("v602", {"--tu": "2.5"}, ["packaging.v602.temporal.Tu must be a whole number of seconds", "(set by TU="]),
    ("v602", {"--start": "1999-01-01"}, ["packaging.v602.replay.time_range.start", "lies outside the data",
                                         "(set by REPLAY_START="]),
    ("v602", {"--start": str(ORIGIN + 90 * TU), "--end": str(ORIGIN + 10 * TU)},
     ["must be before end", "(set by REPLAY_START/REPLAY_END="]),
    ("v602", {"--end": "yesterday"}, ["replay.time_range.end must be epoch seconds or an ISO-8601 time",
                                      "(set by REPLAY_END="]),
])
def test_variant6_refuses_and_writes_nothing(tiny, capsys, variant, changes, expected):
    options = {**BASE6, **changes}
    args = ["variant6", "--variant", variant] + [item for pair in options.items() for item in pair]
    code, out = cli(tiny, *args, capsys=capsys)
    assert code == 1
    for fragment in expected:
        assert fragment in out
    assert (tiny / "params.yaml").read_text() == PARAMS


def test_variant6_refuses_a_lineage_with_two_f02(tiny, upstream, capsys):
    """The replay source is the lineage's one F02; F05 runs over two F02s have none."""
    executions = tiny / "executions"
    chain = {"02_prepareeventsds": ("v201", "v202", None), "03_preparewindowsds": ("v301", "v302", "v202"),
             "04_targetengineering": ("v402", "v403", "v302"), "05_modeling": ("v502", "v503", "v403")}
    for phase, (source, copy, parent) in chain.items():
        (executions / phase).unlink()
        shutil.copytree(upstream / phase, executions / phase)
        shutil.copytree(executions / phase / source, executions / phase / copy)
        if parent:
            entry = yaml.safe_load((executions / phase / copy / "params.yaml").read_text())
            (executions / phase / copy / "params.yaml").write_text(yaml.safe_dump({**entry, "parent_variant": parent}))
    code, out = cli(tiny, "variant6", "--variant", "v602", "--parents", "v501 v503",
                    "--models", "{v401: [{model_id: x, source_f05: v501}]}", capsys=capsys)
    assert code == 1
    assert "PARENTS_F05=v501 v503" in out and "2 F02 variants (v201, v202)" in out
    assert (tiny / "params.yaml").read_text() == PARAMS


# ------------------------------------------------------------------------------ variant7

def test_variant7_adds_an_entry_with_the_seeds_defaults(tiny, capsys):
    code, out = cli(tiny, "variant7", "--variant", "v702", "--parent", "v601", "--host", "", "--port", "",
                    "--batch-size", "", capsys=capsys)
    assert code == 0, out
    code, out = cli(tiny, "variant7", "--variant", "v703", "--parent", "v601", "--host", "0.0.0.0", "--port", "0",
                    "--batch-size", "64", "--log-csv-compression", "gzip", "--baseline", "v701", capsys=capsys)
    assert code == 0, out
    after = (tiny / "params.yaml").read_text()
    assert only_insertions(PARAMS, after)
    deployrun = params(tiny)["deployrun"]
    assert deployrun["v702"] == {"parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 5005},
                                 "batch_size": 256, "check_equivalence": True, "equivalence_sample_windows": 20000,
                                 "log_csv_compression": "none", "gates": {"min": {"recall": 0.5, "f1": 0.5}}}
    assert deployrun["v703"]["runtime"] == {"host": "0.0.0.0", "port": 0} and deployrun["v703"]["batch_size"] == 64
    assert deployrun["v703"]["log_csv_compression"] == "gzip"
    assert deployrun["v703"]["gates"] == {"min": {"recall": 0.5, "f1": 0.5}, "baseline": "v701",
                                          "max_drop": {"recall": 0.05, "f1": 0.05}}
    assert list(deployrun) == ["v701", "v702", "v703"]


@pytest.mark.parametrize("args, expected", [
    (["--variant", "v701", "--parent", "v601"], ["F07 variant v701 already exists", "make remove7 VARIANT=v701"]),
    (["--variant", "x7", "--parent", "v601"], ["VARIANT='x7' is not a variant id"]),
    (["--variant", "v702", "--parent", "v699"], ["PARENT=v699 is not an F06 variant", "known: v601",
                                                 "make variant6 VARIANT=v699"]),
    (["--variant", "v702", "--parent", ""], ["PARENT='' is not a variant id"]),
    (["--variant", "v702", "--parent", "v601", "--baseline", "v799"], ["BASELINE=v799 is not an F07 variant",
                                                                       "known: v701"]),
    (["--variant", "v702", "--parent", "v601", "--port", "70000"], ["RUNTIME_PORT='70000' must be a whole number 0..65535"]),
    (["--variant", "v702", "--parent", "v601", "--port", "http"], ["RUNTIME_PORT='http'"]),
    (["--variant", "v702", "--parent", "v601", "--batch-size", "0"], ["BATCH_SIZE='0' must be a whole number 1..8192",
                                                                      "(empty = 256)"]),
    (["--variant", "v702", "--parent", "v601", "--batch-size", "8193"],  # more than the server accepts
     ["BATCH_SIZE='8193' must be a whole number 1..8192"]),
    (["--variant", "v702", "--parent", "v601", "--log-csv-compression", "zip"],
     ["LOG_CSV_COMPRESSION='zip' must be one of: none, gzip (empty = none)"]),
])
def test_variant7_refuses_and_writes_nothing(tiny, capsys, args, expected):
    code, out = cli(tiny, "variant7", *args, capsys=capsys)
    assert code == 1
    for fragment in expected:
        assert fragment in out
    assert (tiny / "params.yaml").read_text() == PARAMS


# ------------------------------------------------------------------ remove, clean, check

def test_remove_refuses_a_parent_then_removes_entry_lock_and_outputs(tiny, capsys):
    project = Project(tiny)
    (tiny / "dvc.lock").write_text(fake_lock(project, {F06: ["v601"], F07: ["v701"]}))
    for phase, variant in ((F06, "v601"), (F07, "v701")):
        (project.variant_dir(phase, variant) / "sub").mkdir(parents=True)
    code, out = cli(tiny, "remove6", "--variant", "v601", capsys=capsys)
    assert code == 1
    assert "needed by F07 variant(s) v701 (deployrun.v701.parent_variant_f06 = v601)" in out
    assert "make remove7 VARIANT=v701" in out
    assert (tiny / "params.yaml").read_text() == PARAMS and project.variant_dir(F06, "v601").is_dir()

    assert cli(tiny, "remove7", "--variant", "v701", capsys=capsys)[0] == 0
    assert cli(tiny, "remove6", "--variant", "v601", capsys=capsys)[0] == 0
    text = (tiny / "params.yaml").read_text()
    assert "# F06 packages" in text and "# F07 runs" in text and "days: 4   # not used here" in text
    assert params(tiny) == {"demo": {"days": 4}, "packaging": {}, "deployrun": {}}
    assert yaml.safe_load((tiny / "dvc.lock").read_text()) == {"schema": "2.0", "stages": {}}
    assert not project.variant_dir(F06, "v601").exists() and not project.variant_dir(F07, "v701").exists()

    code, out = cli(tiny, "remove7", "--variant", "v701", capsys=capsys)
    assert code == 1 and "F07 variant v701 does not exist" in out and "nothing to remove" in out


def test_remove7_removes_the_comparisons_naming_the_variant(tiny, capsys):
    """compare7's pages and plot folders that name v701 go with it (a plot folder's
    dvc.yaml would name curve files that no longer exist: `dvc plots show` fails on
    them); a comparison of other variants stays."""
    comparisons = tiny / layout.EXECUTIONS / layout.COMPARISONS
    named = [layout.comparison_page(["v701", "v702"], tiny / layout.EXECUTIONS),
             layout.comparison_plots(["v703", "v701"], tiny / layout.EXECUTIONS)]
    other = layout.comparison_plots(["v702", "v7010"], tiny / layout.EXECUTIONS)
    for path in (*named, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert cli(tiny, "remove7", "--variant", "v701", capsys=capsys)[0] == 0
    assert sorted(path.name for path in comparisons.iterdir()) == ["v702_v7010"]
    assert other.read_text() == "x"


def test_remove7_refuses_a_run_that_another_run_compares_with(tiny, capsys):
    with_baseline = PARAMS + "  v702:\n    parent_variant_f06: v601\n    gates: {baseline: v701, max_drop: {f1: 0.02}}\n"
    (tiny / "params.yaml").write_text(with_baseline)
    code, out = cli(tiny, "remove7", "--variant", "v701", capsys=capsys)
    assert code == 1 and "needed by F07 variant(s) v702 (deployrun.v702.gates.baseline = v701)" in out
    assert (tiny / "params.yaml").read_text() == with_baseline


def test_remove_cleans_what_a_hand_deleted_entry_left_behind(tiny, capsys):
    """DVC keeps stage@v entries in dvc.lock and the outputs after the params entry is gone."""
    project = Project(tiny)
    lock = yaml.safe_load(fake_lock(project, {F07: ["v701", "v709"]}))
    outside = "executions/07_scoreboard/v709.csv"  # an output outside the variant's folder
    lock["stages"][project.targets(F07, "v709")[-1]]["outs"].append({"path": outside, "md5": "0" * 32})
    (tiny / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    project.variant_dir(F07, "v709").mkdir(parents=True)
    (tiny / outside).parent.mkdir(parents=True)
    (tiny / outside).write_text("x")
    assert cli(tiny, "remove7", "--variant", "v709", capsys=capsys)[0] == 0
    assert list(yaml.safe_load((tiny / "dvc.lock").read_text())["stages"]) == project.targets(F07, "v701")
    assert not project.variant_dir(F07, "v709").exists() and not (tiny / outside).exists()
    assert (tiny / "params.yaml").read_text() == PARAMS


def test_clean_outside_a_dvc_repository_deletes_nothing(tiny, capsys):
    """clean deletes only what `dvc checkout` brings back from the DVC cache: without
    DVC nothing would come back, so it refuses and the outputs stay."""
    project = Project(tiny)
    for phase, variant in ((F06, "v601"), (F06, "v602"), (F07, "v701")):
        (project.variant_dir(phase, variant) / "models").mkdir(parents=True)
    code, out = cli(tiny, "clean6", capsys=capsys)
    assert code == 1 and "is not a DVC repository (no .dvc/)" in out and "nothing was deleted" in out
    assert sorted(path.name for path in project.phase_dir(F06).iterdir()) == ["v601", "v602"]
    assert (project.variant_dir(F06, "v601") / "models").is_dir()
    assert (tiny / "params.yaml").read_text() == PARAMS


def test_check6_passes_on_a_package_built_as_the_stages_build_it(tiny, built_package, capsys):
    shutil.copytree(built_package, Project(tiny).variant_dir(F06, "v601"))
    code, out = cli(tiny, "check6", "--variant", "v601", capsys=capsys)
    assert code == 0, out
    assert "check6 v601: OK" in out and "seal verified" in out


def test_check6_lists_everything_that_is_wrong(tiny, built_package, capsys):
    package = Project(tiny).variant_dir(F06, "v601")
    shutil.copytree(built_package, package)
    (package / REPLAY).unlink()
    shutil.rmtree(package / "datasets")
    model = next(package.rglob("model_summary.json"))
    model.write_text(model.read_text() + " ")
    metadata = json.loads((package / "06_packaging_metadata.json").read_text())
    del metadata["replay"], metadata["models"][0]["threshold"]
    (package / "06_packaging_metadata.json").write_text(json.dumps(metadata))
    code, out = cli(tiny, "check6", "--variant", "v601", capsys=capsys)
    assert code == 1
    assert "check6 v601: NOT OK" in out
    for fragment in ("replay/replay_events.parquet is missing", "datasets/ is missing or holds no *.parquet",
                     "lacks keys ['replay']", "seal does NOT verify", f"changed: {model.relative_to(package)}",
                     "missing: replay/replay_events.parquet", "make script6-run VARIANT=v601"):
        assert fragment in out


def test_check7_asks_for_the_csv_copy_that_log_csv_compression_names(tiny, capsys):
    """With gzip, a plain raw_predictions.csv (an earlier setting's) is not the run's CSV copy."""
    edit_params(tiny, lambda p: {**p, "deployrun": {"v701": {**p["deployrun"]["v701"], "log_csv_compression": "gzip"}}})
    folder = tiny / "executions/07_deployrun/v701"
    for relative in (*F07_FILES, PREDICTIONS_CSV["none"]):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text("{}")
    missing = f"{folder / PREDICTIONS_CSV['gzip']} is missing"
    code, out = cli(tiny, "check7", "--variant", "v701", capsys=capsys)
    assert code == 1 and missing in out
    assert [line for line in out.splitlines() if "raw_predictions" in line] == [
        f"  - {missing}; run `make script7-run VARIANT=v701`"]
    (folder / PREDICTIONS_CSV["gzip"]).write_bytes(b"")
    code, out = cli(tiny, "check7", "--variant", "v701", capsys=capsys)
    assert "raw_predictions" not in out


def test_check_refuses_an_unbuilt_or_undefined_variant(tiny, capsys):
    code, out = cli(tiny, "check6", "--variant", "v601", capsys=capsys)
    assert code == 1 and "06_packaging/v601 does not exist" in out and "make script6-run VARIANT=v601" in out
    code, out = cli(tiny, "check7", "--variant", "v709", capsys=capsys)
    assert code == 1 and "F07 variant v709 is not defined" in out and "make variant7 VARIANT=v709" in out


def test_commands_outside_the_project_root_say_where_to_run(tmp_path, capsys):
    code, out = cli(tmp_path, "clean7", capsys=capsys)
    assert code == 1 and "run the lifecycle commands from the project root" in out


def test_every_makefile_target_parses_with_the_cli():
    """The Makefile's command lines, with sample values, are accepted by the CLI."""
    makefile = (PROJECT / "Makefile").read_text()
    lines = re.findall(r"^\t\$\(LIFECYCLE\) ((?:.*\\\n)*.*)$", makefile, flags=re.M)
    values = {"VARIANT": "v602", "PARENTS_F05": "v501 v502", "MODELS": BASE6["--models"], "PARENT": "v601",
              "RUNTIME_PORT": "0"}
    commands = set()
    for line in lines:
        line = line.replace("\\\n", " ").replace("$(if $(FORCE),--force)", "")
        line = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), ""), line)
        args = _parser().parse_args(shlex.split(line))
        commands.add(args.command)
    assert commands == {f"{verb}{n}" for verb in ("variant", "run", "nb", "check", "publish", "remove", "clean")
                        for n in "67"} | {"deps", "import6", "compare7"}


# ----------------------------------------------------- DVC and git, on the built demo

def lifecycle(root: Path, *args: str, check: bool = True):
    """The CLI as `make` runs it: a subprocess in the project root."""
    return run([sys.executable, "-m", "lifecycle", *args], root, check=check, timeout=900)


def lock_stages(root: Path) -> list[str]:
    return list(yaml.safe_load((root / "dvc.lock").read_text())["stages"])


def test_new_variants_run_check_publish_and_remove(project_copy):
    """variant6/7 -> run7 (DVC builds the new package on the way, and leaves every stage of
    v601 and v701 up to date) -> run6 (nothing left) -> check -> publish (refused on a
    failed verdict, then forced) -> remove, back to the original params.yaml and dvc.lock."""
    root = project_copy
    original_params = (root / "params.yaml").read_text()
    original_lock = (root / "dvc.lock").read_text()
    original_deps = (root / "dvc_deps.yaml").read_text()
    v601 = json.loads((root / "executions/06_packaging/v601/06_packaging_metadata.json").read_text())
    first, last = v601["replay"]["first_segs"], v601["replay"]["last_segs"]
    model = next(m for m in v601["models"] if m["source_f05"] == "v501")
    models = f"{{{model['objective']}:[{{model_id:{model['model_id']},source_f05:v501}}]}}"  # the seed's syntax
    lifecycle(root, "variant6", "--variant", "v602", "--parents", "v501", "--models", models,
              "--start", str(first + (last - first) // 2), "--end", "")
    lifecycle(root, "variant7", "--variant", "v702", "--parent", "v602", "--port", "0",
              "--log-csv-compression", "gzip")
    edit_params(root, lambda p: {**p, "deployrun": {**p["deployrun"], "v702": {
        **p["deployrun"]["v702"], "gates": {"min": {"TN": 10 ** 9},  # a gate no model meets
                                            "baseline": "v701", "max_drop": {"f1": 1.0}}}}})

    assert "check7 v701: OK" in lifecycle(root, "check7", "--variant", "v701").stdout
    published = lifecycle(root, "publish7", "--variant", "v701").stdout  # the demo's run passes
    # git holds v701 already; v602 and v702, defined but unpublished, are not v701's to commit
    assert "git already holds this version, nothing to commit" in published

    lifecycle(root, "run7", "--variant", "v702")
    assert {"seal_package@v602", "report@v702"} <= set(lock_stages(root))
    # The new variants left every stage of the others exactly as dvc.lock records them. v702
    # compares with v701 as its baseline: its verdict reads v701's scores, v701 reads nothing of v702.
    others = [f"{stage}@v701" for stage in ("settings", "serve", "infer", "score", "evaluate", "reference", "verdict",
                                            "report")] + [
        f"{stage}@v601" for stage in ("select_models", "materialize_replay", "seal_package")]
    status = run([sys.executable, "-m", "dvc", "status", "--json", *others], root).stdout
    assert json.loads(status or "{}") == {}, status
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert "executions/07_deployrun/v701/metrics/metrics_per_model.csv" in [d["path"] for d in lock["verdict@v702"]["deps"]]
    assert not [d["path"] for d in lock["verdict@v701"]["deps"] if "v702" in d["path"]]
    logs = root / "executions/07_deployrun/v702/logs"
    assert sorted(path.name for path in logs.glob("raw_predictions*")) == ["raw_predictions.csv.gz",
                                                                           "raw_predictions.parquet"]
    assert "Data and pipelines are up to date" in lifecycle(root, "run6", "--variant", "v602").stdout
    assert "check6 v602: OK" in lifecycle(root, "check6", "--variant", "v602").stdout
    failed_gate = f"gate min TN {10 ** 9}: {model['objective']}/v501/{model['model_id']}: measured"
    checked = lifecycle(root, "check7", "--variant", "v702", check=False)
    assert checked.returncode == 1 and "the verdict did not pass" in checked.stderr and failed_gate in checked.stderr
    assert "problem" not in checked.stderr  # the gzip CSV copy is the one check7 asks for

    lifecycle(root, "publish6", "--variant", "v602")
    # only v602 went into that commit: not v702's params entry, lock entries, verdict or outputs
    committed = run(["git", "show", "--name-only", "--format=", "HEAD"], root).stdout.split()
    assert "executions/06_packaging/v602/lineage/05_modeling_v501.json" in committed  # a git-tracked output
    assert not any("v702" in path for path in committed)
    head = {name: run(["git", "show", f"HEAD:{name}"], root).stdout for name in ("params.yaml", "dvc.lock",
                                                                                   "dvc_deps.yaml")}
    assert "v602" in yaml.safe_load(head["params.yaml"])["packaging"]
    assert "v702" not in yaml.safe_load(head["params.yaml"])["deployrun"]
    assert "seal_package@v602" in head["dvc.lock"] and "@v702" not in head["dvc.lock"]
    assert "v602-05_modeling-v501" in head["dvc_deps.yaml"] and "v702" not in head["dvc_deps.yaml"]
    assert "params.yaml" in run(["git", "status", "--porcelain"], root).stdout  # v702's entry: still to publish
    refused = lifecycle(root, "publish7", "--variant", "v702", check=False)
    assert refused.returncode == 1 and "v702 was not published" in refused.stderr and "FORCE=1" in refused.stderr
    lifecycle(root, "publish7", "--variant", "v702", "--force")
    subjects = run(["git", "log", "--format=%s", "-3"], root).stdout.splitlines()
    assert subjects == ["publish7 v702", "publish6 v602", "dvc repro"]
    body = run(["git", "log", "--format=%b", "-1"], root).stdout
    assert "FORCED: published although the verdict did not pass" in body and failed_gate in body
    committed = run(["git", "show", "--name-only", "--format=", "HEAD"], root).stdout.split()
    assert {"executions/07_deployrun/v702/verdict.json", "executions/07_deployrun/v702/metrics/window_level/v501.json",
            "executions/07_deployrun/v702/report/report.html"} <= set(committed)
    outside = [out for out in Project(root).locked_outputs(F07, "v702") if "07_deployrun/v702" not in str(out)]
    assert all(str(out.relative_to(root)) in committed for out in outside)  # cache: false, outside the folder
    assert not any("raw_predictions" in path for path in committed)  # cached: in the DVC remote, not in git
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for target, name in (("select_models@v602", "models"), ("infer@v702", "logs")):
        [md5] = [out["md5"] for out in lock[target]["outs"] if out["path"].endswith(name)]
        assert (root.parent / "dvc-storage/files/md5" / md5[:2] / md5[2:]).is_file(), f"{target} {name} not pushed"
    assert run(["git", "status", "--porcelain", "--", "params.yaml", "dvc.lock", "executions"], root).stdout == "", \
        run(["git", "diff", "--", "params.yaml", "dvc.lock"], root).stdout

    refused = lifecycle(root, "remove6", "--variant", "v602", check=False)
    assert refused.returncode == 1 and "F07 variant(s) v702 (deployrun.v702.parent_variant_f06" in refused.stderr
    lifecycle(root, "remove7", "--variant", "v702")
    lifecycle(root, "remove6", "--variant", "v602")
    assert (root / "params.yaml").read_text() == original_params
    assert (root / "dvc.lock").read_text() == original_lock
    assert (root / "dvc_deps.yaml").read_text() == original_deps  # v602's lineage and v702's verdict entries gone
    assert not (root / "executions/06_packaging/v602").exists() and not (root / "executions/07_deployrun/v702").exists()
    assert "Data and pipelines are up to date" in run([sys.executable, "-m", "dvc", "status"], root).stdout


def test_clean_deletes_only_what_dvc_checkout_brings_back(project_copy):
    """clean7 then clean6 on the built demo, then `dvc checkout`: every stage of v601 and
    v701 is up to date again and the seal verifies. The `cache: false` outputs (the verdict,
    the metrics, the lineage digests: never in the DVC cache), a file that is no output,
    and a cached output that differs from dvc.lock (checkout would bring back dvc.lock's
    version, not this one) were never touched."""
    root = project_copy
    project = Project(root)
    run7, package = project.variant_dir(F07, "v701"), project.variant_dir(F06, "v601")
    uncached = [run7 / "verdict.json", *(run7 / "metrics").rglob("*.*"), *(package / "lineage").iterdir(),
                package / ".gitignore", run7 / ".gitignore"]
    edited = run7 / "logs" / "equivalence.json"  # in infer's cached logs/
    original = edited.read_bytes()
    edited.write_bytes(original + b"\n")
    notes = project.phase_dir(F07) / "notes.txt"
    notes.write_text("not an output")
    before = {path: path.read_bytes() for path in [*uncached, edited, notes]}

    cleaned7 = lifecycle(root, "clean7").stdout
    assert "kept 1 cached output(s) that differ from dvc.lock" in cleaned7 and "`dvc checkout`" in cleaned7, cleaned7
    cleaned6 = lifecycle(root, "clean6").stdout
    assert "F06: removed the" in cleaned6, cleaned6
    assert not [name for name in ("models", "replay", "datasets", "params.yaml", "06_packaging_metadata.json")
                if (package / name).exists()]
    others = [folder.name for folder in project.phase_dir(F07).iterdir() if folder.is_dir() and folder != run7]
    assert others and "F07: removed the" in cleaned7 and not [name for name in others
                                                              if (project.phase_dir(F07) / name / "logs").exists()]
    assert {path: path.read_bytes() for path in before} == before

    edited.write_bytes(original)
    run([sys.executable, "-m", "dvc", "checkout"], root)
    targets = project.targets(F06, "v601") + project.targets(F07, "v701")
    status = run([sys.executable, "-m", "dvc", "status", "--json", *targets], root).stdout
    assert json.loads(status or "{}") == {}, status
    assert {path: path.read_bytes() for path in uncached} == {path: before[path] for path in uncached}
    run([sys.executable, "-m", "contract.seal", "verify", str(package.relative_to(root))], root)


def test_deps_refuses_what_dvc_would_refuse_in_its_own_words(tmp_path, capsys):
    """An F07 variant on an F06 variant that does not exist failed on DVC's missing
    dependency: `python -m lifecycle deps`, the step after a hand edit, names it. One
    written by hand without the optional keys infer uses made DVC fail ("Parameters ...
    are missing from params.yaml") until infer tracked them in the run's params.yaml (the
    settings stage's, every key written out): nothing left to refuse there."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(PROJECT / name, tmp_path / name)

    def hand_written(params):
        entry = dict(params["deployrun"]["v701"])
        for key in ("equivalence_sample_windows", "log_csv_compression"):
            entry.pop(key, None)
        params["deployrun"]["v702"] = entry
        params["deployrun"]["v703"] = {**params["deployrun"]["v701"], "parent_variant_f06": "v699"}
        return params

    edit_params(tmp_path, hand_written)
    assert main(["deps"], root=tmp_path) == 1
    error = capsys.readouterr().err
    assert "v702" not in error, error
    assert "deployrun.v703.parent_variant_f06: v699 is not an F06 variant of params.yaml (known: v601" in error
    assert "\n" not in error.strip() and "Traceback" not in error
