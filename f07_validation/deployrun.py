"""One F07 variant as the scoring and report stages see it: its folder, its manifest
(read by `runtime.manifest`, the same reader the server and client use) and, per
objective, the F04 reference dataset in the package.

Both stages resolve these here, so that they agree on every path and fail with the same
messages (which file is missing or wrong, and which stage to run to fix it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runtime.manifest import Manifest, ModelEntry, load_manifest
from runtime.seal import METADATA_NAME

# The raw prediction log as the infer stage writes it (design: F07 `logs/`).
PREDICTION_COLUMNS = {
    "t0": pa.int64(),
    "OW_events": pa.list_(pa.int64()),
    "objective": pa.string(),
    "prediction_name": pa.string(),
    "source_f05": pa.string(),
    "model_id": pa.string(),
    "probability": pa.float64(),
    "y_pred": pa.int8(),
}
KEY_COLUMNS = ["objective", "source_f05", "model_id"]
DEPLOYRUN_PHASE = "07_deployrun"


class DeployRunError(ValueError):
    """An input of an F07 variant is missing or inconsistent; the message names the
    file and how to fix it."""


def model_key(model: ModelEntry) -> tuple[str, str, str]:
    """A model's identity as a row key (two F05 runs may share a model_id and a
    prediction_name, never all three parts)."""
    return (model.objective, model.source_f05, model.model_id)


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
class DeployRun:
    variant: str
    params: dict  # params.yaml deployrun.<variant>
    executions: Path  # the executions/ folder of the project
    manifest: Manifest
    references: dict[str, ReferenceSpec]  # by objective, in manifest order

    @property
    def root(self) -> Path:
        return self.executions / DEPLOYRUN_PHASE / self.variant

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

    @property
    def predictions_path(self) -> Path:
        return self.root / "logs" / "raw_predictions.parquet"

    def stage_fix(self, stage: str) -> str:
        return f"run `dvc repro {stage}@{self.variant}` first"

    def read_log_json(self, name: str) -> dict:
        """`run_summary.json` or `equivalence.json`, both written by the infer stage."""
        return read_json(self.root / "logs" / name, self.stage_fix("infer"))

    def read_optional_json(self, relpath: str) -> dict | None:
        """Files that may legitimately be absent: the untracked `logs/timing.json`, and
        `verdict.json` until the verdict stage exists."""
        path = self.root / relpath
        if not path.exists():
            return None
        return read_json(path, f"delete it or rerun the stage that writes {relpath}")

    def package_metadata(self) -> dict:
        return read_json(
            self.manifest.package_dir / METADATA_NAME,
            f"package {self.manifest.parent_variant_f06} is incomplete; rebuild it with `dvc repro`",
        )

    def dataset_path(self, objective: str) -> Path:
        return self.manifest.package_dir / self.references[objective].dataset

    def read_predictions(self) -> pa.Table:
        """The raw prediction log, with every column in the type the design fixes (any
        integer width is accepted and widened, so that a log written with narrower types
        still scores)."""
        path = self.predictions_path
        if not path.exists():
            raise DeployRunError(f"{path} is missing: {self.stage_fix('infer')}")
        table = pq.read_table(path)
        missing = sorted(set(PREDICTION_COLUMNS) - set(table.column_names))
        if missing:
            raise DeployRunError(f"{path} lacks columns {missing}: {self.stage_fix('infer')}")
        table = table.select(list(PREDICTION_COLUMNS))
        try:
            table = table.cast(pa.schema(PREDICTION_COLUMNS))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DeployRunError(
                f"{path} has columns of unexpected types ({exc}); {self.stage_fix('infer')}"
            ) from None
        if table["OW_events"].null_count:
            raise DeployRunError(
                f"{path} has rows with a null OW_events (an empty window is an empty list): "
                f"{self.stage_fix('infer')}"
            )
        return table


def _reference_specs(manifest: Manifest) -> dict[str, ReferenceSpec]:
    """Per objective, the reference fields of manifest.json's model entries, which
    `runtime.manifest` does not keep (serving never reads labels). The models of one
    objective must agree on them."""
    fix = "rerun the serve stage to rewrite it"
    specs: dict[str, ReferenceSpec] = {}
    for index, entry in enumerate(read_json(manifest.path, fix)["models"]):
        missing = [key for key in ("dataset", "input_column", "label_column") if not entry.get(key)]
        if missing:
            raise DeployRunError(f"{manifest.path}, models[{index}]: keys {missing} are missing; {fix}")
        spec = ReferenceSpec(entry["dataset"], entry["input_column"], entry["label_column"],
                             entry.get("recovered_t0"))
        if specs.setdefault(entry["objective"], spec) != spec:
            raise DeployRunError(
                f"{manifest.path}: the models of objective {entry['objective']} name different "
                f"reference datasets or columns; {fix}"
            )
    return specs


def load_deployrun(variant: str, params: dict, executions: Path) -> DeployRun:
    """F07 `variant` (params.yaml entry `params`) under `executions/07_deployrun/`;
    refuses a manifest made for another package than the one params.yaml names now (a
    stale serve stage) and model names that cannot be part of an output file name."""
    fix = f"run `dvc repro serve@{variant}` first"
    run_dir = executions / DEPLOYRUN_PHASE / variant
    manifest = load_manifest(run_dir / "manifest.json")
    if manifest.parent_variant_f06 != params.get("parent_variant_f06"):
        raise DeployRunError(
            f"{run_dir / 'manifest.json'} was made for package {manifest.parent_variant_f06}, but "
            f"params.yaml deployrun.{variant}.parent_variant_f06 is "
            f"{params.get('parent_variant_f06')}: {fix}"
        )
    for model in manifest.models:
        for name in (model.objective, model.prediction_name, model.source_f05, model.model_id):
            if name in ("", ".", "..") or "/" in name or "\\" in name:
                raise DeployRunError(
                    f"{run_dir / 'manifest.json'}: model name {name!r} cannot be part of a file "
                    f"name (outputs are named after it); rename it upstream"
                )
    return DeployRun(variant=variant, params=params, executions=executions, manifest=manifest,
                     references=_reference_specs(manifest))
