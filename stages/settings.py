"""settings@<variant>: the run's params.yaml, deployrun.<variant> as serve, infer and
reference use it (every key written out with its default, the gates left out); DVC tracks
their parameters in it, so that a key params.yaml leaves out is no missing parameter to DVC
and a gate edit reruns none of them."""
from f07_validation import steps
from stages.common import run_stage


def main(variant: str) -> None:
    print(f"settings@{variant}: {steps.settings(variant)} written")


if __name__ == "__main__":
    run_stage(__doc__, main)
