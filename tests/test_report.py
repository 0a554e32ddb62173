"""F07 report: the files the report stage writes, their determinism, and the page as a
reader sees it in headless Chromium (no console error, the metrics table, every figure
decoded). Inputs are the synthetic run of f07_synthetic.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests import f07_synthetic as synthetic
from tests.chromium import CHROMIUM, open_page
from tests.f07_synthetic import run_f07_stage

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # git-ignored; kept for a look after CI
TIMING = {"seconds": 0.5, "windows_per_second": 17835.2}
VERDICT = {"variant": "v701", "passed": False, "passed_checks": 1, "failed_checks": 1, "not_measured": 1,
           "checks": [
               {"name": "seal verified when served", "passed": True, "detail": ""},
               {"name": "min f1: v401/v502/power_high", "passed": False, "detail": "f1 = 0"},
               {"name": "functional equivalence", "passed": None, "detail": "not measured: disabled"}]}
FIGURES = ["confusion_power_high.png", "confusion_temp.alarm.png", "timeline.png"]
TRACKED = ["report/report.html", *(f"report/figures/{name}" for name in FIGURES),
           "07_deployrun_metadata.json"]
PAGE_FACTS = {
    "metric_rows": "document.querySelectorAll('#metrics tr').length - 1",
    "metric_text": "document.getElementById('metrics').innerText",
    "throughput": "document.getElementById('throughput').textContent",
    "verdict": "document.getElementById('verdict') !== null",
}
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="the report's browser tests need Chromium, and no `chromium` or `chromium-browser` is on PATH: "
           "install it (Debian/Ubuntu: sudo apt-get install -y chromium; see README, Quickstart) to run them")


def build_report(root: Path, **run_options) -> Path:
    run = synthetic.write_everything(root, **run_options)
    for stage in ("score", "report"):
        result = run_f07_stage(stage, root)
        assert result.returncode == 0, result.stderr
    return run


def tracked_bytes(run: Path) -> dict[str, bytes]:
    return {relpath: (run / relpath).read_bytes() for relpath in TRACKED}


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """The synthetic run with a timing.json and a verdict, scored and reported once, for
    the tests that only read it."""
    return build_report(tmp_path_factory.mktemp("reported"), timing=TIMING, verdict=VERDICT)


def test_report_stage_writes_the_seed_files_and_the_sidecar(reported):
    assert sorted(p.name for p in (reported / "report" / "figures").iterdir()) == FIGURES
    assert (reported / "report" / "runtime.js").read_text() == (
        'window.F07_RUNTIME = {"seconds": 0.5, "windows_per_second": 17835.2};\n')
    html = (reported / "report" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert "17835" not in html  # wall clock stays out of the tracked page
    assert str(reported.parents[2]) not in html  # no absolute path either


def test_phase_metadata_records_the_run_without_times(reported):
    metadata = json.loads((reported / "07_deployrun_metadata.json").read_text())
    assert (metadata["phase"], metadata["variant"], metadata["parent_variant_f06"]) == (
        "07_deployrun", "v701", "v601")
    assert metadata["package_digest"] == synthetic.DIGEST
    assert metadata["lineage"]["f05"] == {"v501": "v401", "v502": "v401", "v503": "v402"}
    assert [(m["source_f05"], m["metrics"]["TP"], m["metrics"]["non_finite"]) for m in metadata["models"]] == [
        ("v501", 2, 0), ("v502", 0, 2), ("v503", 1, 0)]
    assert metadata["matching"]["v402"]["join"] == "ow_content"
    assert metadata["held_out"]["value"] is None
    assert metadata["verdict_passed"] is False and "verdict.json" in metadata["outputs"]
    assert "report/report.html" in metadata["outputs"] and "metrics/window_level/v501.json" in metadata["outputs"]
    assert not [p for p in metadata["outputs"] if p.endswith(("timing.json", "runtime.js"))]


def test_rerun_is_byte_identical_even_when_the_timing_changes(tmp_path):
    run = build_report(tmp_path, timing=TIMING)
    before = tracked_bytes(run)
    (run / "logs" / "timing.json").write_text(json.dumps({"windows_per_second": 1.0, "seconds": 8.0}))
    assert run_f07_stage("report", tmp_path).returncode == 0
    assert tracked_bytes(run) == before
    assert "1.0" in (run / "report" / "runtime.js").read_text()
    for name in FIGURES:  # Agg writes no time; the Software tag (matplotlib version) is dropped
        assert b"matplotlib" not in (run / "report" / "figures" / name).read_bytes().lower()


def test_verdict_banner_only_when_verdict_json_exists(reported, tmp_path):
    html = (reported / "report" / "report.html").read_text()
    banner = html[html.index('<div id="verdict"'):html.index("</div>")]
    assert html.index('<div id="verdict"') < html.index("<h1>")
    assert "Verdict: FAILED" in banner and "1 checks passed, 1 failed, 1 not measured" in banner
    # the checks table follows the banner, before everything else
    table = html[html.index('<table id="checks">'):html.index("</table>")]
    assert html.index('<table id="checks">') < html.index("<h1>")
    rows = table.split("<tr")[2:]
    assert "seal verified when served" in rows[0] and "<td>passed</td>" in rows[0]
    assert "min f1: v401/v502/power_high" in rows[1] and "<strong>FAILED</strong>" in rows[1] and "f1 = 0" in rows[1]
    assert "functional equivalence" in rows[2] and "not measured" in rows[2]
    assert 'id="verdict"' not in (build_report(tmp_path) / "report" / "report.html").read_text()


def test_report_before_score_fails_naming_the_fix_and_writes_nothing(tmp_path):
    run = synthetic.write_everything(tmp_path)
    result = run_f07_stage("report", tmp_path)
    assert result.returncode == 1
    assert "metrics_per_model.csv" in result.stderr and "score" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run / "report").exists() and not (run / "07_deployrun_metadata.json").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


@needs_chromium
def test_page_shows_table_figures_and_throughput_without_console_errors(reported, tmp_path):
    """Opened from a copy of report/ elsewhere: the page carries its figures itself."""
    copy = tmp_path / "elsewhere" / "report"
    shutil.copytree(reported / "report", copy)
    page = open_page(copy / "report.html", PAGE_FACTS)
    screenshot = tmp_path / "f07_report.png"
    screenshot.write_bytes(page.screenshot)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / screenshot.name)

    assert page.errors == []
    assert page.values["metric_rows"] == 3
    # v502 predicted no positive: its precision is undefined, and the page says why
    for expected in ("power_high", "temp.alarm", "0.6667", "sequence_embedding", "undefined\nno window predicted positive"):
        assert expected in page.values["metric_text"]
    assert len(page.images) == len(FIGURES)
    assert all(image["complete"] and image["width"] > 0 for image in page.images), page.images
    assert "17835 windows/s" in page.values["throughput"]
    assert page.values["verdict"] is True
    assert page.screenshot.startswith(b"\x89PNG")


@needs_chromium
def test_page_without_timing_says_not_measured_without_console_errors(tmp_path):
    run = build_report(tmp_path)
    assert (run / "report" / "runtime.js").read_text() == "window.F07_RUNTIME = null;\n"
    page = open_page(run / "report" / "report.html", PAGE_FACTS)
    assert page.errors == []
    assert page.values["throughput"].startswith("Not measured in this copy")
    assert all(image["complete"] and image["width"] > 0 for image in page.images)
    assert page.values["verdict"] is False


@needs_chromium
def test_page_copied_without_its_sidecar_still_shows_everything(reported, tmp_path):
    """A fresh git clone has report.html but not the untracked runtime.js: the page
    still shows everything and says "not measured"; the browser's only complaint is the
    missing runtime.js (documented limit of keeping wall-clock out of tracked files)."""
    (tmp_path / "report.html").write_bytes((reported / "report" / "report.html").read_bytes())
    page = open_page(tmp_path / "report.html", PAGE_FACTS)
    assert len(page.errors) == 1 and "runtime.js" in page.errors[0]
    assert page.values["metric_rows"] == 3
    assert all(image["complete"] and image["width"] > 0 for image in page.images)
    assert page.values["throughput"].startswith("Not measured in this copy")


@needs_chromium
@pytest.mark.parametrize("body, expected", [
    ("<script>undefinedFunction();</script>", "undefinedFunction"),
    ("<script>console.error('deliberate');</script>", "deliberate"),
    ('<script src="missing.js"></script>', "missing.js"),
])
def test_checker_catches_a_deliberate_console_error(tmp_path, body, expected):
    page_path = tmp_path / "broken.html"
    page_path.write_text(f"<!DOCTYPE html><html><body><p>x</p>{body}</body></html>")
    errors = open_page(page_path).errors
    assert len(errors) == 1 and expected in errors[0], errors


@needs_chromium
def test_checker_catches_an_image_that_does_not_decode(tmp_path):
    page_path = tmp_path / "image.html"
    page_path.write_text('<!DOCTYPE html><html><body><img alt="bad" src="data:image/png;base64,AAAA">'
                         "</body></html>")
    page = open_page(page_path)
    assert page.images == [{"alt": "bad", "complete": True, "width": 0}]
