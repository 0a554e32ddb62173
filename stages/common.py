"""What every stage script shares: reading its variant's parameters, and turning a known
configuration or input error into one clear line and a non-zero exit instead of a
traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from runtime.client import ServerError

PARAMS_FILE = Path("params.yaml")
EXECUTIONS = Path("executions")
SECTIONS = {"packaging": "06_packaging", "deployrun": "07_deployrun"}


class StageError(ValueError):
    """A stage cannot run as configured."""


def read_params(path: Path = PARAMS_FILE) -> dict:
    if not path.is_file():
        raise StageError(f"{path} not found: run the stages from the project root")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def variant_params(section: str, variant: str, path: Path = PARAMS_FILE) -> dict:
    entries = read_params(path).get(section) or {}
    if variant not in entries:
        raise StageError(f"{path}: no entry '{section}.{variant}'; known: {', '.join(sorted(entries)) or 'none'}")
    return entries[variant]


def variant_dir(section: str, variant: str) -> Path:
    return EXECUTIONS / SECTIONS[section] / variant


def run_stage(description: str, body) -> None:
    """Parse ``<variant>``, call ``body(variant)``, exit 1 with the message on a
    ``ValueError`` (every configuration or input error derives from it) or a
    ``ServerError`` (the F07 server would not start or answer)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variant", help="the variant id, a key of the section in params.yaml")
    args = parser.parse_args()
    try:
        body(args.variant)
    except (ValueError, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
