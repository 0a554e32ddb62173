"""evaluate@<variant>: failure-level evaluation of an F07 run: the replay's failures (from
its F02 events and the F04 objectives), which each model warned and how early, its false
alarms per day, and its figures across decision thresholds (executions/07_deployrun/<variant>/metrics/)."""
from f07_validation import steps
from stages.common import run_stage


def main(variant: str) -> None:
    models = steps.evaluate(variant).summary["models"]
    print(f"evaluate@{variant}: failures warned " + ", ".join(
        f"{item['source_f05']}/{item['model_id']} {item['warned']}/{item['warned'] + item['missed']}"
        f" ({item['declared']['false_alarms_per_day']:.2f} false alarms/day)" for item in models.values()))


if __name__ == "__main__":
    run_stage(__doc__, main)
