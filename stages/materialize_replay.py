"""materialize_replay@<variant>: the F02 rows inside the variant's time range, unchanged."""
from f06_packaging import steps
from stages.common import run_stage


def main(variant: str) -> None:
    plan, rows = steps.materialize_replay(variant)
    print(f"replay of F02 {plan.replay.source.variant.id}: {rows} rows")


if __name__ == "__main__":
    run_stage(__doc__, main)
