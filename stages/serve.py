"""serve@<variant>: boot the real server on the sealed package, check /ready and /models,
and write the variant's manifest.json."""
from f07_validation.deployrun import DeployRun
from f07_validation.serve import serve
from stages.common import read_params, run_stage, variant_params


def main(variant: str) -> None:
    record = serve(DeployRun(variant, variant_params("deployrun", variant)), read_params()["deployrun"])
    print(f"serve@{variant}: package {record['package_digest'][:12]} verified, "
          f"{len(record['models'])} models ready")


if __name__ == "__main__":
    run_stage(__doc__, main)
