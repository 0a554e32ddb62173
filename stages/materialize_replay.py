"""materialize_replay@<variant>: the F02 rows inside the variant's time range, unchanged."""
from f06_packaging.plan import build_plan
from f06_packaging.replay import REPLAY_PATH, materialize_replay
from stages.common import EXECUTIONS, run_stage, variant_dir, variant_params


def main(variant: str) -> None:
    plan = build_plan(variant, variant_params("packaging", variant), EXECUTIONS)
    rows = materialize_replay(plan.replay, variant_dir("packaging", variant) / REPLAY_PATH)
    print(f"replay of F02 {plan.replay.source.variant.id}: {rows} rows")


if __name__ == "__main__":
    run_stage(__doc__, main)
