"""seal_package@<variant>: probe every packaged model, add the reference datasets, the
effective params and the sealed metadata."""
from f06_packaging.lineage import checked_plan
from f06_packaging.package import write_package
from f06_packaging.probe import probe_models
from stages.common import run_stage, variant_dir, variant_params


def main(variant: str) -> None:
    plan = checked_plan(variant, variant_params("packaging", variant))
    metadata = write_package(plan, variant_dir("packaging", variant), probe_models)
    print(f"sealed {variant_dir('packaging', variant)}: digest {metadata['seal']['digest']}")


if __name__ == "__main__":
    run_stage(__doc__, main)
