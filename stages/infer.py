"""infer@<variant>: replay the package through a server process and log every raw prediction."""
from f07_validation.deployrun import DeployRun
from f07_validation.infer import infer
from stages.common import run_stage, variant_params


def main(variant: str) -> None:
    summary = infer(DeployRun(variant, variant_params("deployrun", variant)))
    print(f"infer@{variant}: {summary['windows_sent']} windows, {summary['rows_logged']} predictions logged")


if __name__ == "__main__":
    run_stage(__doc__, main)
