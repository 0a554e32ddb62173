"""What a user sees of the demo's metrics and plots: `dvc metrics show` fits a terminal
and `dvc metrics diff` compares model by model, and the plots DVC renders are the score
stage's images, of bounded size."""
import sys

from tests.conftest import run

MAX_WIDTH = 200  # characters: a terminal, not a spreadsheet


RUN = "executions/07_deployrun/v701"
MODELS = ("v501", "v502", "v503")


def metrics_table(root, *args: str) -> tuple[list[str], list[str]]:
    shown = run([sys.executable, "-m", "dvc", "metrics", *args], root).stdout
    lines = [line for line in shown.splitlines() if line.strip()]
    assert lines[0].split()[0] == "Path", shown
    return lines, lines[0].split()[1:]


def test_dvc_metrics_show_lists_models_failures_and_verdict_in_rows_within_a_terminal(demo_project):
    """The whole table holds every headline: three window-level and three failure-level
    values per model (a file each, so a row each: the table grows in rows with the models)
    and the verdict, and fits a terminal; every column is one plain metric name."""
    lines, header = metrics_table(demo_project, "show")
    assert max(len(line) for line in lines) < MAX_WIDTH, "\n".join(lines)
    assert sorted(header) == sorted(["f1", "precision", "recall", "failure_recall", "lead_time_p50_s",
                                     "false_alarms_per_day", "failed", "passed"])
    rows = {line.split()[0]: dict(zip(header, line.split()[1:])) for line in lines[1:]}
    files = [f"{RUN}/metrics/{family}/{f05}.json" for family in ("window_level", "failure_level") for f05 in MODELS]
    assert set(files) | {f"{RUN}/verdict_metrics.json"} <= set(rows)
    assert all(rows[f"{RUN}/metrics/window_level/{f05}.json"]["f1"] != "-" for f05 in MODELS)
    assert all(rows[f"{RUN}/metrics/failure_level/{f05}.json"]["failure_recall"] != "-" for f05 in MODELS)
    assert rows[f"{RUN}/verdict_metrics.json"]["passed"] == "1" and rows[f"{RUN}/verdict_metrics.json"]["failed"] == "0"


def test_dvc_metrics_diff_compares_each_models_values(demo_project):
    """Against the commit before the demo was built (no metrics yet), every model's file
    and value is a row of its own, new in the workspace."""
    lines, header = metrics_table(demo_project, "diff", "HEAD~1")
    assert header == ["Metric", "HEAD~1", "workspace", "Change"]
    changed = {tuple(line.split()[:2]) for line in lines[1:]}
    assert {(f"{RUN}/metrics/window_level/{f05}.json", "f1") for f05 in MODELS} <= changed
    assert {(f"{RUN}/metrics/failure_level/{f05}.json", "false_alarms_per_day") for f05 in MODELS} <= changed


def test_dvc_plots_show_renders_the_images_and_bounded_curves(demo_project, tmp_path):
    out = tmp_path / "plots"
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], demo_project)
    images = sorted(p.name for p in out.rglob("*.png"))
    assert images and all(("confusion_" in name or "timeline" in name or "thresholds" in name) for name in images), images
    page = out / "index.html"
    # the images are files beside it, and no per-window rows are inlined: the threshold
    # curves are (1,001 points per model and curve, whatever the replay's length)
    assert page.stat().st_size < 4_000_000
