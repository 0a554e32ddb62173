"""select_models@<variant>: copy the explicitly chosen F05 models into the package, by objective."""
from f06_packaging.package import copy_models
from f06_packaging.plan import build_plan
from stages.common import EXECUTIONS, run_stage, variant_dir, variant_params


def main(variant: str) -> None:
    plan = build_plan(variant, variant_params("packaging", variant), EXECUTIONS)
    copy_models(plan, variant_dir("packaging", variant) / "models")


if __name__ == "__main__":
    run_stage(__doc__, main)
