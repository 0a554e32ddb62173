"""Where the demo's phases read their parameters and write their variant folders.

Parameters come from the ``demo:`` section of the top-level ``params.yaml``, one entry
per variant (``demo.f02.v201``, ``demo.f05.v503``…), which is what ``demo/dvc.yaml``
declares as each stage's params dependency. Outputs go to
``executions/<NN_phase>/<variant>/`` exactly as the upstream pipeline lays them out.

A phase computes everything in memory first and only then publishes its files, each
written beside its destination and renamed into place (``contract.files``), so a failing
stage leaves no half-written file. Bytes are stable: Parquet written by pyarrow without
pandas metadata, JSON in the project's one canonical form, YAML in insertion order.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from contract import layout
from contract.errors import UserError, run_variant_command
from contract.files import atomic_path

PARAMS_FILE = Path(layout.PARAMS_FILE)
PHASES = {"f02": layout.F02, "f03": layout.F03, "f04": layout.F04, "f05": layout.F05}


class DemoError(UserError):
    """A demo variant cannot be built as configured, or its parent is missing."""


def demo_params(phase: str, variant: str, params_file: Path = PARAMS_FILE) -> dict:
    """The ``demo.<phase>.<variant>`` entry; the error says where it should be."""
    if not params_file.is_file():
        raise DemoError(f"{params_file} not found: run the demo stages from the project root")
    section = (yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}).get("demo") or {}
    entries = section.get(phase) or {}
    if variant not in entries:
        raise DemoError(f"{params_file}: no entry 'demo.{phase}.{variant}'; "
                        f"known {phase} variants: {', '.join(sorted(entries)) or 'none'}")
    return entries[variant]


def require(entry: dict, key: str, where: str):
    if key not in entry:
        raise DemoError(f"{where}: key '{key}' is missing")
    return entry[key]


def variant_dir(root: Path, phase: str, variant: str) -> Path:
    return Path(root) / PHASES[phase] / variant


def phase_file(root: Path, phase: str, variant: str, suffix: str) -> Path:
    """``<root>/<NN_phase>/<v>/<NN_phase>_<suffix>``, the upstream naming."""
    return variant_dir(root, phase, variant) / layout.phase_file(PHASES[phase], suffix)


def existing(path: Path, reader: str) -> Path:
    """An input from the parent phase; the error says how to produce it."""
    if not Path(path).is_file():
        raise DemoError(f"{reader}: input {path} does not exist; produce the parent variant first "
                        f"(dvc repro demo/dvc.yaml)")
    return Path(path)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def yaml_text(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def publish(folder: Path, files: dict) -> None:
    """Write ``{relative path: bytes | str}`` into ``folder``. Each top-level entry (a
    file, or a subfolder such as ``models/``) is assembled aside and renamed into place
    whole, replacing what was there, so no stale file of an earlier run survives in it."""
    entries: dict[str, dict[str, bytes | str]] = {}
    for relative, content in files.items():
        top, *rest = Path(relative).parts
        entries.setdefault(top, {})[str(Path(*rest)) if rest else ""] = content
    for top, contents in entries.items():
        with atomic_path(Path(folder) / top) as target:
            for inner, content in contents.items():
                path = target / inner if inner else target
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8")


def write_variant(root: Path, phase: str, variant: str, build, params: dict) -> Path:
    """Run a phase's ``build(root, variant, params) -> {name: content}`` and publish it."""
    folder = variant_dir(root, phase, variant)
    publish(folder, build(root, variant, params))
    return folder


def stage_main(phase: str, build, description: str) -> None:
    """The command line of a demo stage: ``python -m demo.<phase> <variant>`` from the
    project root, parameters from ``params.yaml``, outputs under ``executions/``; one
    summary line when done."""
    def run(variant: str) -> None:
        folder = write_variant(layout.EXECUTIONS, phase, variant, build, demo_params(phase, variant))
        files = [path for path in folder.rglob("*") if path.is_file()]
        print(f"demo {phase}@{variant}: {len(files)} files, {sum(p.stat().st_size for p in files):,} bytes "
              f"in {folder}")

    run_variant_command(description, run)
