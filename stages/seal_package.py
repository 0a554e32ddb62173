"""seal_package@<variant>: probe every packaged model, add the reference datasets, the
effective params and the sealed metadata."""
from f06_packaging import steps
from stages.common import run_stage


def main(variant: str) -> None:
    metadata = steps.seal_package(variant)
    print(f"sealed {steps.package_dir(variant)}: digest {metadata['seal']['digest']}")
    for objective, dataset in sorted(metadata["datasets"].items()):
        # F07 matches predictions by t0 when it can; when it cannot, say why here, not only in the metadata
        refused = " (F07 will match predictions by OW content)" if dataset["join"] == "ow_content" else ""
        print(f"  reference {objective}: joined by {dataset['join']}: {dataset['join_note']}{refused}")


if __name__ == "__main__":
    run_stage(__doc__, main)
