"""select_models@<variant>: copy the explicitly chosen F05 models into the package, by objective."""
from f06_packaging import steps
from stages.common import run_stage


def main(variant: str) -> None:
    plan = steps.select_models(variant)
    print(f"select_models@{variant}: {len(plan.models)} models")


if __name__ == "__main__":
    run_stage(__doc__, main)
