"""seal_package@<variant>: probe every packaged model, add the reference datasets, the
effective params and the sealed metadata."""
from f06_packaging import steps
from stages.common import run_stage


def main(variant: str) -> None:
    metadata = steps.seal_package(variant)
    print(f"sealed {steps.package_dir(variant)}: digest {metadata['seal']['digest']}")
    for line in steps.reference_joins(metadata):
        print(f"  {line}")


if __name__ == "__main__":
    run_stage(__doc__, main)
