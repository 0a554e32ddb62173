"""What a user sees of the demo's metrics and plots: `dvc metrics show` fits a terminal,
and the plots DVC renders are the score stage's images, of bounded size."""
import sys

from tests.conftest import run

MAX_WIDTH = 200  # characters: a terminal, not a spreadsheet


def test_dvc_metrics_show_fits_a_terminal_with_three_values_per_model_and_the_verdict(demo_project):
    shown = run([sys.executable, "-m", "dvc", "metrics", "show"], demo_project).stdout
    lines = [line for line in shown.splitlines() if line.strip()]
    assert max(len(line) for line in lines) < MAX_WIDTH, shown
    header = lines[0].split()
    assert header[0] == "Path"
    assert sorted(header[1:]) == sorted([*(f"{f05}.{metric}" for f05 in ("v501", "v502", "v503")
                                           for metric in ("f1", "precision", "recall")), "failed", "passed"])
    verdict = next(line.split() for line in lines if line.startswith("executions/07_deployrun/v701/verdict_metrics"))
    assert verdict[header.index("passed")] == "1" and verdict[header.index("failed")] == "0"


def test_dvc_plots_show_renders_the_image_plots_only(demo_project, tmp_path):
    out = tmp_path / "plots"
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], demo_project)
    images = sorted(p.name for p in out.rglob("*.png"))
    assert images and all(("confusion_" in name or "timeline" in name) for name in images), images
    page = out / "index.html"
    assert page.stat().st_size < 1_000_000  # the images are files beside it, no rows inlined
