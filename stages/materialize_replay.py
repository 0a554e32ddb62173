"""materialize_replay@<variant>: the F02 rows inside the variant's time range, unchanged."""
from contract import layout
from f06_packaging.lineage import checked_plan
from f06_packaging.replay import materialize_replay
from stages.common import run_stage, variant_dir, variant_params


def main(variant: str) -> None:
    plan = checked_plan(variant, variant_params("packaging", variant))
    rows = materialize_replay(plan.replay, variant_dir("packaging", variant) / layout.REPLAY)
    print(f"replay of F02 {plan.replay.source.variant.id}: {rows} rows")


if __name__ == "__main__":
    run_stage(__doc__, main)
