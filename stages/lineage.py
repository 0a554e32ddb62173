"""lineage@<F06 variant>-<phase>-<upstream variant>: the digest of one upstream folder an F06
variant derives from, in the variant's lineage/ folder (dvc_deps.yaml lists the pairs; the
variant's F06 stages depend on that folder only, so an unrelated upstream leaves them be)."""
import argparse

from contract import layout
from contract.errors import exit_on_user_error
from f06_packaging.lineage import write_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", help="the F06 variant")
    parser.add_argument("phase", choices=layout.UPSTREAM_PHASES, help="the upstream phase folder")
    parser.add_argument("upstream", help="the upstream variant")
    args = parser.parse_args()
    exit_on_user_error(lambda: print(f"lineage of {args.variant}: "
                                     f"{write_digest(args.variant, args.phase, args.upstream)}"))


if __name__ == "__main__":
    main()
