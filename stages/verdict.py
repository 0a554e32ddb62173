"""verdict@<variant>: executions/07_deployrun/<variant>/verdict.json, whether the run passes
its checks and gates and why.

A failed verdict is a result, not an error: the stage writes it and exits 0, so that the
report shows it and `make publish7` refuses the variant. Only a configuration error or a
missing input stops the stage.
"""
from f07_validation import steps
from f07_validation.verdict import describe
from stages.common import run_stage


def main(variant: str) -> None:
    print(describe(steps.verdict(variant)))


if __name__ == "__main__":
    run_stage(__doc__, main)
