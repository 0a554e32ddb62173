"""report@<variant>: report/report.html with its figures, then the phase record
07_deployrun_metadata.json, from what the score stage wrote."""
from contract import layout
from f07_validation import steps
from stages.common import run_stage


def main(variant: str) -> None:
    run = steps.report(variant)
    print(f"report@{variant}: {run.path(layout.REPORT_HTML)}")


if __name__ == "__main__":
    run_stage(__doc__, main)
