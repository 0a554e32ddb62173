"""One F07 variant's run: its folder and every file in it, its settings, its manifest and,
per objective, the F04 reference dataset in the package.

Serve, infer, score, verdict and report all go through ``DeployRun``, so that they agree
on every path (``contract.layout`` names them) and fail with the same messages: which
file is missing or wrong, and which stage to run to fix it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from contract import layout
from contract.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_EQUIVALENCE_SAMPLE, DEFAULT_HOST,
                               DEFAULT_LOG_CSV_COMPRESSION, DEFAULT_MIN_SCORED_SHARE, DEFAULT_PORT,
                               DEFAULT_REFERENCE_SAMPLE, DEFAULT_REFERENCE_TOLERANCE, DEFAULT_REQUEST_TIMEOUT)
from contract.errors import UserError
from contract.manifest import Manifest, ModelEntry, load_manifest
from contract.parquet import damaged_package_fix, parquet_file


class DeployRunError(UserError):
    """An F07 variant cannot run as configured, or an input of it is missing or
    inconsistent; the message names the key or file and how to fix it."""


def read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployRunError(f"{path} is missing: {fix}") from None
    except json.JSONDecodeError as exc:
        raise DeployRunError(f"{path} is not valid JSON ({exc}): {fix}") from None


@dataclass(frozen=True)
class ReferenceSpec:
    """Where an objective's labels are: the manifest's `dataset` (relative to the
    package) and its input and label columns."""

    dataset: str
    input_column: str
    label_column: str
    recovered_t0: str | None = None  # beside a dataset without t0, when F06 recovered it


@dataclass(frozen=True)
class Settings:
    """How the variant is served: ``deployrun.<variant>`` without the gates, defaults applied."""

    parent_variant_f06: str
    host: str
    port: int
    batch_size: int
    check_equivalence: bool
    equivalence_sample: int | None  # windows compared in-process at least; None: all
    runtime: dict  # the runtime block, host and port filled in unless a url is given (f07_validation.endpoint)
    request_timeout: float        # s a replay request may take (runtime.request_timeout)
    reference_sample: int | None  # windows compared with the reference at least; None: all
    reference_tolerance: float
    min_scored_share: float
    log_csv_compression: str      # how the log's CSV copy is written (contract.layout.PREDICTIONS_CSV)


class DeployRun:
    """F07 ``variant`` (its params.yaml entry ``params``) under ``executions/07_deployrun/``.

    The paths exist before the files do (serve writes the manifest that the later stages
    read); ``manifest`` and ``references`` are read on first use."""

    def __init__(self, variant: str, params: dict, executions=layout.EXECUTIONS):
        self.variant = variant
        self.params = params
        self.executions = Path(executions)
        self.root = layout.variant_dir(layout.F07, variant, self.executions)

    # ------------------------------------------------------------------ files
    def path(self, relative: str) -> Path:
        """A file of the run, ``relative`` one of ``contract.layout``'s F07 names."""
        return self.root / relative

    @property
    def manifest_path(self) -> Path:
        return self.root / layout.MANIFEST

    @property
    def predictions_path(self) -> Path:
        """The run's prediction log: the complete one, or the partial one that
        run_summary.json names after a runtime fault cut the replay short."""
        summary = self.root / layout.RUN_SUMMARY
        if summary.is_file() and read_json(summary, self.stage_fix("infer")).get("log") == layout.PREDICTIONS_PARTIAL:
            return self.root / layout.PREDICTIONS_PARTIAL
        return self.root / layout.PREDICTIONS

    @property
    def package_root(self) -> Path:
        """The F06 package params.yaml names (the manifest's, once serve has run)."""
        return layout.variant_dir(layout.F06, self.params.get("parent_variant_f06"), self.executions)

    def parquet(self, path: Path, fix: str) -> pq.ParquetFile:
        """A parquet file of the run or its package, opened (``contract.parquet``); one
        that is cut short or not parquet is a DeployRunError naming it and ``fix``."""
        return parquet_file(path, f"F07 variant {self.variant}", fix, DeployRunError)

    @property
    def package_fix(self) -> str:
        """What to do about a damaged file of the run's package."""
        return damaged_package_fix(self.manifest.package_dir, self.manifest.parent_variant_f06)

    def stage_fix(self, stage: str) -> str:
        return f"run `dvc repro {stage}@{self.variant}` first"

    def read_log_json(self, relative: str) -> dict:
        """`run_summary.json` or `equivalence.json` (``layout.RUN_SUMMARY``,
        ``layout.EQUIVALENCE``), both written by the infer stage."""
        return read_json(self.root / relative, self.stage_fix("infer"))

    def read_optional_json(self, relative: str) -> dict | None:
        """Files that may legitimately be absent: the untracked timing, and the verdict
        until the verdict stage exists."""
        path = self.root / relative
        if not path.exists():
            return None
        return read_json(path, f"delete it or rerun the stage that writes {relative}")

    # ------------------------------------------------------------------ settings
    @cached_property
    def settings(self) -> Settings:
        """``deployrun.<variant>`` (everything but the gates) with defaults applied, once
        the package it names is there (``settings_of``)."""
        parent = self.params.get("parent_variant_f06")
        if not layout.is_variant_id(parent) or not (self.package_root / layout.PACKAGE_METADATA).is_file():
            raise DeployRunError(f"deployrun.{self.variant}.parent_variant_f06: {parent!r} is not a built F06 "
                                 f"package; name a packaging variant and run its seal_package stage")
        return settings_of(self.params)

    def effective_params(self) -> str:
        """The run's params.yaml (``layout.PARAMS_FILE``), which the settings stage writes:
        what serve, infer and reference use, every key written out with its default applied
        and the gates left out. DVC tracks those stages' parameters in this file rather than
        in params.yaml, where a key the schema calls optional may be absent (DVC refuses a
        tracked parameter that is missing) and where a gate edit would rerun them (the
        reference stage runs every model again: minutes at upstream scale)."""
        settings = settings_of(self.params)
        return yaml.safe_dump({
            "variant": self.variant, "parent_variant_f06": settings.parent_variant_f06,
            "runtime": settings.runtime, "batch_size": settings.batch_size,
            "check_equivalence": settings.check_equivalence,
            "equivalence_sample_windows": settings.equivalence_sample,
            "log_csv_compression": settings.log_csv_compression,
            "reference": {"sample_windows": settings.reference_sample, "tolerance": settings.reference_tolerance},
        }, sort_keys=True, default_flow_style=False)

    def check_effective_params(self) -> None:
        """Refuse to serve, infer or compare with the reference unless the run's params.yaml
        holds params.yaml's entry as it is now: DVC judged the stage up to date or not on
        that file."""
        path = self.path(layout.PARAMS_FILE)
        if not path.is_file() or path.read_text(encoding="utf-8") != self.effective_params():
            state = "is missing" if not path.is_file() else "was written before params.yaml's last edit"
            raise DeployRunError(f"{path} {state}: it holds deployrun.{self.variant} as serve, infer and "
                                 f"reference use it (DVC tracks their parameters there); run "
                                 f"`dvc repro settings@{self.variant}` first (`dvc repro` without -s does)")

    # ------------------------------------------------------------------ manifest and package
    @cached_property
    def manifest(self) -> Manifest:
        """The manifest serve wrote; refuses one made for another package than the one
        params.yaml names now (a stale serve stage) and model names that cannot be part
        of an output file name."""
        fix = self.stage_fix("serve")
        manifest = load_manifest(self.manifest_path)
        if manifest.parent_variant_f06 != self.params.get("parent_variant_f06"):
            raise DeployRunError(
                f"{self.manifest_path} was made for package {manifest.parent_variant_f06}, but "
                f"params.yaml deployrun.{self.variant}.parent_variant_f06 is "
                f"{self.params.get('parent_variant_f06')}: {fix}"
            )
        for model in manifest.models:
            for name in (model.objective, model.prediction_name, model.source_f05, model.model_id):
                if name in ("", ".", "..") or "/" in name or "\\" in name:
                    raise DeployRunError(
                        f"{self.manifest_path}: model name {name!r} cannot be part of a file "
                        f"name (outputs are named after it); rename it upstream"
                    )
        return manifest

    @property
    def models(self) -> tuple[ModelEntry, ...]:
        return self.manifest.models

    @property
    def package_dir(self) -> Path:
        return self.manifest.package_dir

    @property
    def package_dir_label(self) -> str:
        """The package folder relative to the run folder, as manifest.json writes it
        (never an absolute path in a tracked output)."""
        return Path(os.path.relpath(self.manifest.package_dir, self.manifest.path.parent)).as_posix()

    def package_metadata(self) -> dict:
        return read_json(
            self.manifest.package_dir / layout.PACKAGE_METADATA,
            f"package {self.manifest.parent_variant_f06} is incomplete; rebuild it with `dvc repro`",
        )

    @cached_property
    def references(self) -> dict[str, ReferenceSpec]:
        """Per objective (in manifest order), the reference fields of manifest.json's
        model entries, which ``contract.manifest`` does not keep (serving never reads
        labels). The models of one objective must agree on them."""
        fix = "rerun the serve stage to rewrite it"
        path = self.manifest.path
        specs: dict[str, ReferenceSpec] = {}
        for index, entry in enumerate(read_json(path, fix)["models"]):
            missing = [key for key in ("dataset", "input_column", "label_column") if not entry.get(key)]
            if missing:
                raise DeployRunError(f"{path}, models[{index}]: keys {missing} are missing; {fix}")
            spec = ReferenceSpec(entry["dataset"], entry["input_column"], entry["label_column"],
                                 entry.get("recovered_t0"))
            if specs.setdefault(entry["objective"], spec) != spec:
                raise DeployRunError(
                    f"{path}: the models of objective {entry['objective']} name different "
                    f"reference datasets or columns; {fix}"
                )
        return specs

    def dataset_path(self, objective: str) -> Path:
        return self.manifest.package_dir / self.references[objective].dataset


def settings_of(entry: dict) -> Settings:
    """A ``deployrun.<variant>`` entry (everything but the gates) with defaults applied.
    Keys and types are the schema's (``contract.config``, checked before any stage runs)."""
    runtime = dict(entry.get("runtime") or {})
    if not runtime.get("url"):  # a server this run starts
        runtime = {"host": DEFAULT_HOST, "port": DEFAULT_PORT, **runtime}
    reference = entry.get("reference") or {}
    return Settings(parent_variant_f06=entry.get("parent_variant_f06"), host=runtime.get("host", DEFAULT_HOST),
                    port=runtime.get("port", DEFAULT_PORT),
                    batch_size=entry.get("batch_size", DEFAULT_BATCH_SIZE),
                    check_equivalence=entry.get("check_equivalence", True),
                    equivalence_sample=entry.get("equivalence_sample_windows", DEFAULT_EQUIVALENCE_SAMPLE),
                    runtime=runtime,
                    request_timeout=float(runtime.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)),
                    reference_sample=reference.get("sample_windows", DEFAULT_REFERENCE_SAMPLE),
                    reference_tolerance=float(reference.get("tolerance", DEFAULT_REFERENCE_TOLERANCE)),
                    min_scored_share=float(entry.get("min_scored_share", DEFAULT_MIN_SCORED_SHARE)),
                    log_csv_compression=entry.get("log_csv_compression", DEFAULT_LOG_CSV_COMPRESSION))


def load_deployrun(variant: str, params: dict, executions=layout.EXECUTIONS) -> DeployRun:
    """A run whose serve stage has written its manifest: the manifest and the references
    are read and checked now, so a stale or broken one stops the stage before any work."""
    run = DeployRun(variant, params, executions)
    run.references  # noqa: B018 (reads and checks the manifest too)
    return run
