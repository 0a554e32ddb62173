"""verdict@<variant>: executions/07_deployrun/<variant>/verdict.json, whether the run passes
its checks and gates and why.

A failed verdict is a result, not an error: the stage writes it and exits 0, so that the
report shows it and `make publish7` refuses the variant. Only a configuration error or a
missing input stops the stage.
"""
from f07_validation.deployrun import load_deployrun
from f07_validation.gates import check_declared
from f07_validation.verdict import describe, judge, write_verdict
from stages.common import read_params, run_stage, variant_params


def main(variant: str) -> None:
    check_declared(variant, variant_params("deployrun", variant))  # its DVC deps name its baseline
    run = load_deployrun(variant, variant_params("deployrun", variant))
    verdict = judge(run, read_params()["deployrun"])
    write_verdict(run, verdict)
    print(describe(verdict))


if __name__ == "__main__":
    run_stage(__doc__, main)
