"""infer@<variant>: replay the package through a server process and log every raw prediction."""
from f07_validation import steps
from stages.common import run_stage


def main(variant: str) -> None:
    summary = steps.infer(variant)
    print(f"infer@{variant}: {summary['windows_sent']} windows, {summary['rows_logged']} predictions logged")


if __name__ == "__main__":
    run_stage(__doc__, main)
