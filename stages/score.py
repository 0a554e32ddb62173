"""score@<variant>: metrics of an F07 run against its package's F04 references
(executions/07_deployrun/<variant>/metrics/), and the variant's copy on the scoreboard
that other variants' verdicts read as their baseline."""
import shutil

from f07_validation.deployrun import load_deployrun
from f07_validation.gates import scoreboard_path
from f07_validation.scoring import score_deployrun, write_scoring
from runtime.files import atomic_path
from stages.common import EXECUTIONS, run_stage, variant_params


def main(variant: str) -> None:
    run = load_deployrun(variant, variant_params("deployrun", variant), EXECUTIONS)
    write_scoring(score_deployrun(run), run.root / "metrics")
    with atomic_path(scoreboard_path(EXECUTIONS, variant)) as scratch:
        shutil.copyfile(run.root / "metrics" / "metrics_per_model.csv", scratch)


if __name__ == "__main__":
    run_stage(__doc__, main)
