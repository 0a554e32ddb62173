"""reference@<variant>: executions/07_deployrun/<variant>/reference.json, the server's logged
answers against each model scored independently on the F04 datasets' own windows
(f07_validation/reference.py), and the coverage of the F04 windows in the replay.

Differences are a result, not an error: the stage writes them and exits 0 and the verdict
fails on them. Only a configuration error or a missing input stops the stage.
"""
from f07_validation import steps
from f07_validation.reference import describe
from stages.common import run_stage


def main(variant: str) -> None:
    print(f"reference@{variant}:\n{describe(steps.reference(variant))}")


if __name__ == "__main__":
    run_stage(__doc__, main)
