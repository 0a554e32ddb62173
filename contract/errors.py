"""The errors a user can fix, and how a command reports them.

A configuration or input mistake (a wrong key in params.yaml, a missing upstream file, a
package whose seal does not verify, a server that will not start on the configured port)
derives from ``UserError``: a command prints its message as one line naming the problem
and the fix, and exits 1. Any other exception is a bug in this project and keeps its
traceback, so that it is never mistaken for a configuration problem.
"""
from __future__ import annotations

import argparse
import sys


class UserError(Exception):
    """Something the user can fix; the message names the variant, file or key and the fix."""


def exit_on_user_error(call) -> None:
    """``call()``; a ``UserError`` becomes ``error: <message>`` on stderr and exit code 1,
    and Ctrl-C one line and exit code 130 (the shell's for SIGINT), not a traceback: being
    stopped by its user is no bug, and every output is replaced only once whole
    (``contract.files``), so an interrupted command has left the earlier ones as they were."""
    try:
        call()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing was half-written; run the command again to finish it", file=sys.stderr)
        sys.exit(130)


def run_variant_command(description: str, body) -> None:
    """Parse ``<variant>`` from the command line and call ``body(variant)``, reporting a
    ``UserError`` as one line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variant", help="the variant id, a key of its section in params.yaml")
    args = parser.parse_args()
    exit_on_user_error(lambda: body(args.variant))
