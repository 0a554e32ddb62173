"""The F07 phase as steps, one per dvc.yaml stage, each writing exactly that stage's outs:
what the stage scripts (``python -m stages.<stage> <variant>``) and the phase notebook
(notebooks/07_deployrun.py, `make nb7-run`) both call, so that the two cannot drift apart
and write the same bytes.

Each step reads the variant's ``deployrun`` entry of params.yaml (``contract.params``;
serve and verdict also the other variants, for a gate's baseline) and returns what it
wrote, for the stage to print and the notebook to show.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contract import layout
from contract.files import write_json_atomic, write_text_atomic
from contract.params import read_params, variant_params
from f07_validation.deployrun import DeployRun, load_deployrun
from f07_validation.gates import check_declared

if TYPE_CHECKING:
    from f07_validation.evaluation import Evaluation
    from f07_validation.scoring import Scoring
    from f07_validation.serve import Served

# Each step imports the modules it runs when it is called: a stage process runs one step,
# and the modules of all of them (pandas, the scoring and the reference code) cost each
# stage that needs none of them (settings, serve, infer) a third of a second at start.

SECTION = "deployrun"


def run_of(variant: str) -> DeployRun:
    """The variant's run, its manifest checked (every step after serve starts here)."""
    return load_deployrun(variant, variant_params(SECTION, variant))


def settings(variant: str) -> Path:
    """``settings@<variant>``: the run's params.yaml, the variant's entry as serve and
    infer use it (every key written out, defaults applied, no gates); returns its path.
    DVC tracks their parameters there (``DeployRun.effective_params``)."""
    run = DeployRun(variant, variant_params(SECTION, variant))
    path = run.path(layout.PARAMS_FILE)
    run.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, run.effective_params())
    return path


def serve(variant: str) -> Served:
    """``serve@<variant>``: a real server up and ready on the sealed package; writes
    manifest.json and serve.json, and returns them with what the server answered on
    /ready and /models."""
    from f07_validation.serve import serve as serve_package

    run = DeployRun(variant, variant_params(SECTION, variant))
    run.check_effective_params()
    return serve_package(run, read_params()[SECTION])


def infer(variant: str) -> dict:
    """``infer@<variant>``: the replay through a server process, every raw prediction logged;
    returns the run summary."""
    from f07_validation.infer import infer as replay_through_server

    run = DeployRun(variant, variant_params(SECTION, variant))
    run.check_effective_params()
    return replay_through_server(run)


def score(variant: str) -> Scoring:
    """``score@<variant>``: metrics of every model against its F04 reference."""
    from f07_validation.scoring import score_deployrun, write_scoring

    run = run_of(variant)
    scoring = score_deployrun(run)
    write_scoring(scoring, run)
    return scoring


def evaluate(variant: str) -> Evaluation:
    """``evaluate@<variant>``: the replay's failures, which each model warned and how
    early, its false alarms, and every figure across thresholds (metrics/failures.*,
    evaluation.json, thresholds.csv, plots/curves/); the per-batch latency beside them,
    untracked."""
    from f07_validation.evaluation import evaluate_deployrun, write_evaluation, write_latency

    run = run_of(variant)
    evaluation = evaluate_deployrun(run)
    write_evaluation(evaluation, run)
    write_latency(run)
    return evaluation


def reference(variant: str) -> dict:
    """``reference@<variant>``: the server's logged answers against each model scored
    independently on the F04 datasets' own windows, and the coverage of those windows in
    the replay; differences are a result (written and returned), not an error."""
    from f07_validation.reference import compare_run

    run = run_of(variant)
    run.check_effective_params()
    result = compare_run(run)
    write_json_atomic(run.path(layout.REFERENCE), result)
    return result


def verdict(variant: str) -> dict:
    """``verdict@<variant>``: whether the run passes its checks and gates, and why. A failed
    verdict is a result (written and returned), not an error."""
    from f07_validation.verdict import judge, write_verdict

    check_declared(variant, variant_params(SECTION, variant))  # its DVC deps name its baseline
    run = run_of(variant)
    judged = judge(run, read_params()[SECTION])
    write_verdict(run, judged)
    return judged


def report(variant: str) -> DeployRun:
    """``report@<variant>``: report/report.html with its figures, then the phase record."""
    from f07_validation.phase_metadata import write_phase_metadata
    from f07_validation.report import read_metrics, write_report

    run = run_of(variant)
    per_model, scoring = read_metrics(run)
    write_report(run, per_model, scoring)
    write_phase_metadata(run, per_model, scoring)
    return run
