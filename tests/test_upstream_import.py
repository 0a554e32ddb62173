"""`make import6` for real: an upstream git + DVC repository published the way upstream
publishes (each variant's artifacts `dvc add`ed file by file and pushed to its own local
remote, the params files in git), imported into a fresh copy of this project, packaged,
then followed by `dvc update` after the upstream changes one F05 variant.

The project copy leaves out the embedded demo's pipeline (demo/dvc.yaml): its variant ids
are those of the small upstream (tests/upstream_builder.py), and an import may not land on
another stage's outputs.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from contract import layout
from contract.seal import verify_seal
from lifecycle.project import F06, F07, Project
from tests.conftest import PROJECT, commit_all, edit_params, project_files, run, use_storage
from tests.upstream_builder import make_upstream, packaging_params, write_yaml

DVC = [sys.executable, "-m", "dvc"]
LIFECYCLE = [sys.executable, "-m", "lifecycle"]
# what upstream keeps in git rather than DVC: the variants' params files
GIT_TRACKED = layout.PARAMS_FILE


def publish_upstream(root: Path) -> Path:
    """``root`` as the upstream publishes: git + DVC, the small upstream's artifacts `dvc
    add`ed one file at a time and pushed to the remote `storage`, params files in git."""
    root.mkdir()
    run(["git", "init", "-q"], root)
    run([*DVC, "init", "-q"], root)
    make_upstream(root / layout.EXECUTIONS)
    artifacts = sorted(str(path.relative_to(root)) for path in (root / layout.EXECUTIONS).rglob("*")
                       if path.is_file() and path.name != GIT_TRACKED)
    run([*DVC, "add", "-q", *artifacts], root)
    run([*DVC, "remote", "add", "-d", "storage", str(root.parent / "upstream-storage")], root)
    run([*DVC, "push", "-q"], root)
    commit_all(root, "publish F02-F05")
    return root


def head(root: Path) -> str:
    return run(["git", "rev-parse", "HEAD"], root).stdout.strip()


def fresh_project(root: Path) -> Path:
    """This project in a new git repo, two packages over the upstream's F05 v501 and v502
    (one each), an F07 run of v611 (one run to a verdict is the path under test; v612,
    without one, is the package an update of v502 reruns, while v611 and its run stay
    as they were); nothing under executions/."""
    for relative in project_files():
        if relative.startswith("demo/dvc."):
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / relative, target)

    def two_packages(params: dict) -> dict:
        base = packaging_params()
        params["packaging"] = {
            "v611": {**base, "parent_variants_f05": ["v501"], "models": {"v401": base["models"]["v401"]}},
            "v612": {**base, "parent_variants_f05": ["v502"], "models": {"v402": base["models"]["v402"]}},
        }
        entry = params["deployrun"]["v701"]  # the demo's own F07 entry (v711 is its MLServer twin)
        params["deployrun"] = {"v711": {**entry, "parent_variant_f06": "v611"}}
        return params

    edit_params(root, two_packages)
    use_storage(root)
    run(["git", "init", "-q"], root)
    commit_all(root, "project")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The upstream published, the project importing both F05 variants' lineage and
    building and validating both packages (`dvc repro`: F06 and F07 to a verdict)."""
    base = tmp_path_factory.mktemp("import")
    upstream = publish_upstream(base / "upstream")
    project = fresh_project(base / "project")
    result = run([*LIFECYCLE, "import6", "--repo", str(upstream), "--parents", "v501 v502"], project)
    run([*LIFECYCLE, "deps"], project)
    commit_all(project, "import upstream")
    run([*DVC, "repro", "-q"], project, timeout=900)
    commit_all(project, "package and validate")
    return upstream, project, result


EXPECTED_FOLDERS = [(layout.F02, "v201"), (layout.F03, "v301"), (layout.F04, "v401"), (layout.F04, "v402"),
                    (layout.F05, "v501"), (layout.F05, "v502")]


def test_import_brings_every_folder_of_the_lineage_with_its_source(imported):
    upstream, project, result = imported
    commit = head(upstream)
    for phase, variant in EXPECTED_FOLDERS:
        import_file = yaml.safe_load((project / layout.import_file(phase, variant)).read_text())
        assert import_file["deps"][0]["repo"]["url"] == str(upstream)
        assert import_file["deps"][0]["repo"]["rev_lock"] == commit
        ours = layout.variant_dir(phase, variant, project / layout.EXECUTIONS)
        theirs = layout.variant_dir(phase, variant, upstream / layout.EXECUTIONS)
        names = sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*")
                       if p.is_file() and not p.name.endswith(".dvc") and p.name != ".gitignore")
        assert GIT_TRACKED in names   # the git-tracked params file came with the DVC-tracked artifacts
        for name in names:
            assert (ours / name).read_bytes() == (theirs / name).read_bytes(), f"{phase}/{variant}/{name}"
    # importing again imports nothing and says how to follow the upstream
    again = run([*LIFECYCLE, "import6", "--repo", str(upstream), "--parents", "v501"], project)
    assert "already imported" in again.stdout and "dvc update" in again.stdout


def test_metadata_names_repository_revision_and_digest_under_the_seal(imported):
    upstream, project, _ = imported
    package = layout.variant_dir(layout.F06, "v611", project / layout.EXECUTIONS)
    sealed = (package / layout.PACKAGE_METADATA).read_bytes()
    metadata = json.loads(sealed)
    sources = metadata["upstream_sources"]
    assert sorted(sources) == ["02_prepareeventsds/v201", "03_preparewindowsds/v301",
                               "04_targetengineering/v401", "05_modeling/v501"]
    for source in sources.values():
        assert source["repo"] == str(upstream) and source["rev_lock"] == head(upstream)
        assert len(source["digest_sha256"]) == 64
    assert verify_seal(package).ok
    # the seal covers the source: naming another revision breaks it
    sources["05_modeling/v501"]["rev_lock"] = "0" * 40
    (package / layout.PACKAGE_METADATA).unlink()   # never write through a link into DVC's cache
    (package / layout.PACKAGE_METADATA).write_text(json.dumps(metadata))
    assert not verify_seal(package).ok
    (package / layout.PACKAGE_METADATA).unlink()
    (package / layout.PACKAGE_METADATA).write_bytes(sealed)
    assert verify_seal(package).ok


def test_report_names_the_sources(imported):
    upstream, project, _ = imported
    report = (layout.variant_dir(layout.F07, "v711", project / layout.EXECUTIONS) / layout.REPORT_HTML).read_text()
    section = report[report.index("<h3>Upstream sources</h3>"):]
    section = section[:section.index("</table>")]
    for folder in ("02_prepareeventsds/v201", "03_preparewindowsds/v301", "04_targetengineering/v401",
                   "05_modeling/v501"):
        assert folder in section
    assert section.count(str(upstream)) == 4 and section.count(head(upstream)) == 4


def test_update_of_one_f05_reruns_only_what_derives_from_it(imported):
    upstream, project, _ = imported
    summary = (layout.variant_dir(layout.F05, "v502", upstream / layout.EXECUTIONS)
               / "models" / "signal_9_ahead" / "model_summary.json")
    changed = json.loads(summary.read_text())
    changed["threshold"] = 0.6
    summary.write_text(json.dumps(changed, indent=2))
    run([*DVC, "add", "-q", str(summary.relative_to(upstream))], upstream)
    run([*DVC, "push", "-q"], upstream)
    commit_all(upstream, "F05 v502: threshold 0.6")

    run([*DVC, "update", "-q", str(layout.import_file(layout.F05, "v502"))], project)
    lock = yaml.safe_load((project / layout.import_file(layout.F05, "v502")).read_text())
    assert lock["deps"][0]["repo"]["rev_lock"] == head(upstream)
    ours = layout.variant_dir(layout.F05, "v502", project / layout.EXECUTIONS) / summary.relative_to(
        layout.variant_dir(layout.F05, "v502", upstream / layout.EXECUTIONS))
    assert json.loads(ours.read_text())["threshold"] == 0.6
    # what DVC sees changed: the one digest stage of the updated folder, nothing of v611
    status = json.loads(run([*DVC, "status", "--json"], project).stdout)
    assert sorted(stage for stage in status if "@" in stage) == ["lineage@v612-05_modeling-v502"], status
    # the other imports only say the upstream moved on (their bytes did not change there)
    assert str(layout.import_file(layout.F05, "v502")) not in status
    assert all("update available" in json.dumps(status[name]) for name in status if name.endswith(".dvc")), status
    untouched = [layout.variant_dir(layout.F06, "v611", project / layout.EXECUTIONS) / layout.PACKAGE_METADATA,
                 layout.variant_dir(layout.F07, "v711", project / layout.EXECUTIONS) / layout.VERDICT]
    before = [path.read_bytes() for path in untouched]
    repro = run([*DVC, "repro"], project, timeout=900).stdout
    ran = sorted(line.split("'")[1] for line in repro.splitlines() if line.startswith("Running stage"))
    # exactly the package deriving from v502, every stage of it (the pipeline's own stage
    # list, so a stage added to dvc.yaml is expected too); v611 and its F07 run v711 stay as they were
    pipeline = Project(project)
    expected = {"lineage@v612-05_modeling-v502", *(f"{stage}@v612" for stage in pipeline.stages(F06))}
    assert set(ran) == expected, repro
    package = layout.variant_dir(layout.F06, "v612", project / layout.EXECUTIONS)
    sources = json.loads((package / layout.PACKAGE_METADATA).read_text())["upstream_sources"]
    assert sources["05_modeling/v502"]["rev_lock"] == head(upstream)
    assert sources["04_targetengineering/v402"]["rev_lock"] != head(upstream)  # not updated: still its own
    assert verify_seal(package).ok
    assert [path.read_bytes() for path in untouched] == before


def test_refusals_are_one_line_and_import_nothing(imported, tmp_path):
    upstream, project, _ = imported
    plain = tmp_path / "plain"
    shutil.copytree(upstream / layout.EXECUTIONS, plain / layout.EXECUTIONS,
                    ignore=shutil.ignore_patterns("*.dvc", ".gitignore"))
    run(["git", "init", "-q"], plain)
    commit_all(plain, "no DVC")
    # a second lineage ending in another F02, in the upstream's params files only: it is
    # refused before anything is read beyond them
    for phase, variant, parent in [(layout.F05, "v509", "v409"), (layout.F04, "v409", "v309"),
                                   (layout.F03, "v309", "v209"), (layout.F02, "v209", "v109")]:
        write_yaml(layout.variant_dir(phase, variant, upstream / layout.EXECUTIONS) / layout.PARAMS_FILE,
                   {"parent_variant": parent})
    commit_all(upstream, "a lineage from another F02")
    before = sorted(p.name for p in (project / layout.EXECUTIONS).rglob("*.dvc"))
    cases = [
        (["--repo", str(plain), "--parents", "v501"], "not a DVC repository"),
        (["--repo", str(upstream), "--parents", "v599"], "has no F05 variant v599"),
        (["--repo", str(upstream), "--parents", "v501 v509"], "derive from 2 F02 variants"),
        (["--repo", str(upstream), "--rev", "no-such-rev", "--parents", "v501"], "'no-such-rev' does not exist"),
        (["--repo", str(tmp_path / "nowhere"), "--parents", "v501"], "not a git repository"),
    ]
    for args, reason in cases:
        result = run([*LIFECYCLE, "import6", *args], project, check=False)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], (args, result.stderr)
    assert sorted(p.name for p in (project / layout.EXECUTIONS).rglob("*.dvc")) == before
    assert not layout.variant_dir(layout.F05, "v509", project / layout.EXECUTIONS).exists()


def test_a_folder_not_imported_names_no_source(tmp_path):
    """A hand copy, even one tracked by `dvc add` (its .dvc file names no repository), is
    recorded as not imported; a .dvc import file's repository and revision are copied."""
    from f06_packaging.lineage import recorded_sources, write_digest

    executions = tmp_path / layout.EXECUTIONS
    for variant in ("v201", "v202"):
        folder = layout.variant_dir(layout.F02, variant, executions)
        folder.mkdir(parents=True)
        (folder / layout.PARAMS_FILE).write_text("parent_variant: v101\n")
    layout.import_file(layout.F02, "v201", executions).write_text("outs:\n- md5: 0123\n  path: v201\n")
    write_yaml(layout.import_file(layout.F02, "v202", executions),
               {"deps": [{"path": "executions/02_prepareeventsds/v202",
                          "repo": {"url": "/upstream", "rev": "main", "rev_lock": "a" * 40}}],
                "outs": [{"path": "v202"}]})
    for variant in ("v201", "v202"):
        write_digest("v601", layout.F02, variant, executions)
    sources = recorded_sources(layout.variant_dir(layout.F06, "v601", executions))
    assert sources["02_prepareeventsds/v201"]["repo"] is None
    assert {key: sources["02_prepareeventsds/v202"][key] for key in ("repo", "rev", "rev_lock")} == {
        "repo": "/upstream", "rev": "main", "rev_lock": "a" * 40}
