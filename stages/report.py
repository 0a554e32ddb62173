"""report@<variant>: report/report.html with its figures, then the phase record
07_deployrun_metadata.json, from what the score stage wrote."""
from f07_validation.deployrun import load_deployrun
from f07_validation.phase_metadata import write_phase_metadata
from f07_validation.report import read_metrics, write_report
from stages.common import run_stage, variant_params


def main(variant: str) -> None:
    run = load_deployrun(variant, variant_params("deployrun", variant))
    per_model, scoring = read_metrics(run)
    write_report(run, per_model, scoring)
    write_phase_metadata(run, per_model, scoring)


if __name__ == "__main__":
    run_stage(__doc__, main)
