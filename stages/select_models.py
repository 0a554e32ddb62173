"""select_models@<variant>: copy the explicitly chosen F05 models into the package, by objective."""
from contract import layout
from f06_packaging.lineage import checked_plan
from f06_packaging.package import copy_models
from stages.common import run_stage, variant_dir, variant_params


def main(variant: str) -> None:
    plan = checked_plan(variant, variant_params("packaging", variant))
    copy_models(plan, variant_dir("packaging", variant) / layout.PACKAGE_MODELS)


if __name__ == "__main__":
    run_stage(__doc__, main)
