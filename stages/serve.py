"""serve@<variant>: boot the real server on the sealed package, check /ready and /models,
and write the variant's manifest.json."""
from f07_validation import steps
from stages.common import run_stage


def main(variant: str) -> None:
    served = steps.serve(variant)
    print(f"serve@{variant}: package {served.record['package_digest'][:12]} served, "
          f"{len(served.models['models'])} models ready")


if __name__ == "__main__":
    run_stage(__doc__, main)
