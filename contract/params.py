"""Reading params.yaml: the whole file checked against its schema (``contract.config``)
before any work, and one variant's entry of a section. What every stage script and every
phase notebook starts with, so both refuse the same configuration with the same message."""
from __future__ import annotations

from pathlib import Path

import yaml

from contract import layout
from contract.config import validate_params
from contract.errors import UserError

PARAMS_FILE = Path(layout.PARAMS_FILE)


class ParamsError(UserError):
    """params.yaml cannot be read, or has no entry for the variant asked for."""


def read_params(path: Path = PARAMS_FILE) -> dict:
    """The whole params.yaml, checked against its schema (every variant, every key)."""
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stages from the project root")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML ({error})") from None
    return validate_params(params, path)


def variant_params(section: str, variant: str, path: Path = PARAMS_FILE) -> dict:
    """The ``<section>.<variant>`` entry (``packaging.v601``, ``deployrun.v701``)."""
    entries = read_params(path).get(section) or {}
    if variant not in entries:
        raise ParamsError(f"{path}: no entry '{section}.{variant}'; known: {', '.join(sorted(entries)) or 'none'}")
    return entries[variant]
