"""What every stage script shares: reading its variant's parameters, and reporting an
error the user can fix (``contract.errors.UserError``) as one clear line and exit 1; any
other exception is a bug and keeps its traceback."""
from __future__ import annotations

from pathlib import Path

import yaml

from contract import layout
from contract.config import validate_params
from contract.errors import UserError, run_variant_command

PARAMS_FILE = Path(layout.PARAMS_FILE)


class StageError(UserError):
    """A stage cannot run as configured."""


def read_params(path: Path = PARAMS_FILE) -> dict:
    """The whole params.yaml, checked against its schema (every variant, every key) before
    the stage does any work."""
    if not path.is_file():
        raise StageError(f"{path} not found: run the stages from the project root")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise StageError(f"{path} is not valid YAML ({error})") from None
    return validate_params(params, path)


def variant_params(section: str, variant: str, path: Path = PARAMS_FILE) -> dict:
    entries = read_params(path).get(section) or {}
    if variant not in entries:
        raise StageError(f"{path}: no entry '{section}.{variant}'; known: {', '.join(sorted(entries)) or 'none'}")
    return entries[variant]


def variant_dir(section: str, variant: str) -> Path:
    return layout.variant_dir(section, variant)


def run_stage(description: str, body) -> None:
    """``body(variant)`` as a command (``python -m stages.<name> <variant>``)."""
    run_variant_command(description, body)
