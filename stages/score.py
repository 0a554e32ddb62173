"""score@<variant>: metrics of an F07 run against its package's F04 references
(executions/07_deployrun/<variant>/metrics/); a verdict that names this variant as its
baseline reads them there."""
from f07_validation.deployrun import load_deployrun
from f07_validation.scoring import score_deployrun, write_scoring
from stages.common import run_stage, variant_params


def main(variant: str) -> None:
    run = load_deployrun(variant, variant_params("deployrun", variant))
    write_scoring(score_deployrun(run), run)


if __name__ == "__main__":
    run_stage(__doc__, main)
