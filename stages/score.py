"""score@<variant>: metrics of an F07 run against its package's F04 references
(executions/07_deployrun/<variant>/metrics/); a verdict that names this variant as its
baseline reads them there."""
from f07_validation import steps
from f07_validation.scoring import shown_rate
from stages.common import run_stage


def main(variant: str) -> None:
    per_model = steps.score(variant).per_model
    print(f"score@{variant}: {len(per_model)} models scored; f1 " +
          ", ".join(f"{row.source_f05}/{row.model_id} {shown_rate(row.f1, 3)}" for row in per_model.itertuples()))


if __name__ == "__main__":
    run_stage(__doc__, main)
