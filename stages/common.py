"""What every stage script shares: reading its variant's parameters (``contract.params``, the
one reader the phase notebooks use too), and reporting an error the user can fix
(``contract.errors.UserError``) as one clear line and exit 1; any other exception is a bug
and keeps its traceback."""
from __future__ import annotations

from contract.errors import run_variant_command
from contract.params import read_params, variant_params

__all__ = ["read_params", "run_stage", "variant_params"]


def run_stage(description: str, body) -> None:
    """``body(variant)`` as a command (``python -m stages.<name> <variant>``)."""
    run_variant_command(description, body)
