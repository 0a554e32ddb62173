"""What a user sees of the demo's metrics and plots: `dvc metrics show` fits a terminal,
and the plots DVC renders are the score stage's images, of bounded size."""
import sys

from tests.conftest import run

MAX_WIDTH = 200  # characters: a terminal, not a spreadsheet


RUN = "executions/07_deployrun/v701"


def metrics_table(root, *targets: str) -> tuple[list[str], list[str]]:
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", *targets], root).stdout
    lines = [line for line in shown.splitlines() if line.strip()]
    assert lines[0].split()[0] == "Path", shown
    return lines, lines[0].split()[1:]


def test_dvc_metrics_show_lists_models_failures_and_verdict_each_family_within_a_terminal(demo_project):
    """The whole table holds every headline: three window-level and three failure-level
    values per model and the verdict. Window-level values and the verdict side by side (the
    files a user compares first) fit a terminal; the failure-level values (long names:
    false_alarms_per_day) and the whole table, six values for each of three models, do
    not, and the README says how to ask for each part."""
    models = ("v501", "v502", "v503")
    _, everything = metrics_table(demo_project)
    window = [f"{f05}.{metric}" for f05 in models for metric in ("f1", "precision", "recall")]
    failure = [f"{f05}.{metric}" for f05 in models
               for metric in ("failure_recall", "lead_time_p50_s", "false_alarms_per_day")]
    assert sorted(everything) == sorted([*window, *failure, "failed", "passed"])

    lines, header = metrics_table(demo_project, f"{RUN}/metrics/metrics.json", f"{RUN}/verdict_metrics.json")
    assert max(len(line) for line in lines) < MAX_WIDTH, "\n".join(lines)
    assert sorted(header) == sorted([*window, "failed", "passed"])
    verdict = next(line.split()[1:] for line in lines if line.startswith(f"{RUN}/verdict_metrics"))
    assert verdict[header.index("passed")] == "1" and verdict[header.index("failed")] == "0"

    _, header = metrics_table(demo_project, f"{RUN}/metrics/failures.json")
    assert sorted(header) == sorted(failure)


def test_dvc_plots_show_renders_the_images_and_bounded_curves(demo_project, tmp_path):
    out = tmp_path / "plots"
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)], demo_project)
    images = sorted(p.name for p in out.rglob("*.png"))
    assert images and all(("confusion_" in name or "timeline" in name or "thresholds" in name) for name in images), images
    page = out / "index.html"
    # the images are files beside it, and no per-window rows are inlined: the threshold
    # curves are (1,001 points per model and curve, whatever the replay's length)
    assert page.stat().st_size < 4_000_000
