"""Read and validate the artifacts of the upstream phases F02–F05.

Everything this project consumes from upstream comes through here, for the demo and for
real upstream folders alike, so that a broken lineage is caught once, with a message that
names the variant, the file and the key, and what to do about it.

Layout (``contract.layout``): ``<root>/<NN_phase>/<variant>/`` with a ``params.yaml`` whose
``parent_variant`` names the parent one phase up (F05 → F04 → F03 → F02).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from contract.defaults import F05_DEFAULT_THRESHOLD
from contract.errors import UserError
from contract.parquet import CheckedParquetFile, parquet_file
from contract.layout import (DATASET, EVENT_CATALOG, F02, F03, F04, F05, F05_EXPERIMENTS, F05_MODELS, METADATA,
                             MODEL_FILE, MODEL_SUMMARY, PARAMS_FILE, PHASE_LABEL, is_variant_id, phase_file)
from runtime.vectorize import VectorizationError, from_spec

MODEL_FAMILIES = ("dense_bow", "sequence_embedding", "cnn1d")
NAN_EVENT_SUFFIX = "_NaN_NaN"
REBUILD_UPSTREAM = "rebuild or copy it again from the upstream run"


class UpstreamError(UserError):
    """An upstream artifact is missing or does not follow the contract."""


def _where(phase: str, variant: str, name: str | None = None) -> str:
    where = f"{PHASE_LABEL[phase]} variant {variant}"
    return f"{where}, file {name}" if name else where


def read_yaml(path: Path, context: str) -> dict:
    if not path.is_file():
        raise UpstreamError(f"{context}: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UpstreamError(f"{context}: {path} is not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"{context}: {path} must hold a mapping, found {type(data).__name__}")
    return data


def read_json(path: Path, context: str):
    if not path.is_file():
        raise UpstreamError(f"{context}: {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UpstreamError(f"{context}: {path} is not valid JSON ({error})") from None


@dataclass(frozen=True)
class Variant:
    """One variant folder of one phase."""

    root: Path
    phase: str
    id: str

    @property
    def dir(self) -> Path:
        return self.root / self.phase / self.id

    @property
    def label(self) -> str:
        return _where(self.phase, self.id)

    def file(self, name: str) -> Path:
        return self.dir / name

    def parquet(self, path: Path) -> CheckedParquetFile:
        """``path``, a parquet file of this variant, opened to be read: cut short or damaged,
        an ``UpstreamError`` naming the variant, the file and how to get it back."""
        return parquet_file(path, self.label, REBUILD_UPSTREAM, UpstreamError)

    def phase_file(self, suffix: str) -> Path:
        """The phase-prefixed files: ``<phase>_dataset.parquet``, ``<phase>_metadata.json``…"""
        return self.dir / phase_file(self.phase, suffix)

    @cached_property
    def params(self) -> dict:
        return read_yaml(self.file(PARAMS_FILE), self.label)

    def param(self, key: str, *, required: bool = True):
        if key not in self.params and required:
            raise UpstreamError(f"{_where(self.phase, self.id, PARAMS_FILE)}: key '{key}' is missing")
        return self.params.get(key)

    @property
    def parent_id(self) -> str:
        parent = self.param("parent_variant")
        if not isinstance(parent, str) or not is_variant_id(parent):
            raise UpstreamError(f"{_where(self.phase, self.id, PARAMS_FILE)}: key 'parent_variant' "
                                f"must be a variant id like 'v401', got {parent!r}")
        return parent


def open_variant(root, phase: str, variant: str, *, child: Variant | None = None) -> Variant:
    """A variant folder that exists; the error names who asked for it when it does not."""
    if not is_variant_id(variant):
        raise UpstreamError(f"{PHASE_LABEL[phase]} variant id must look like 'v123', got {variant!r}")
    found = Variant(Path(root), phase, variant)
    if not found.dir.is_dir():
        asked = f" (the parent_variant of {child.label})" if child else ""
        known = sorted(p.name for p in (Path(root) / phase).glob("v*") if p.is_dir())
        raise UpstreamError(f"{found.label}{asked} not found: no folder {found.dir}. "
                            f"Known {PHASE_LABEL[phase]} variants: {', '.join(known) or 'none'}")
    return found


# --------------------------------------------------------------------------- F02

@dataclass(frozen=True)
class EventStream:
    variant: Variant

    @property
    def dataset_path(self) -> Path:
        return self.variant.phase_file(DATASET)

    @cached_property
    def metadata(self) -> dict:
        return read_json(self.variant.phase_file(METADATA), self.variant.label)

    @cached_property
    def catalog(self) -> dict[str, int]:
        name = phase_file(F02, EVENT_CATALOG)
        catalog = read_json(self.variant.phase_file(EVENT_CATALOG), self.variant.label)
        if not isinstance(catalog, dict) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in catalog.values()):
            raise UpstreamError(f"{_where(F02, self.variant.id, name)}: must map event names to integer codes")
        return catalog

    @cached_property
    def span(self) -> tuple[int, int]:
        """First and last ``segs`` (the first is the F03 grid origin)."""
        path = self.dataset_path
        if not path.is_file():
            raise UpstreamError(f"{self.variant.label}: dataset {path} does not exist")
        dataset = self.variant.parquet(path)
        for column in ("segs", "events"):
            if column not in dataset.schema_arrow.names:
                raise UpstreamError(f"{_where(F02, self.variant.id, path.name)}: column '{column}' is missing")
        # the first and last non-empty row groups only: the dataset may hold millions of rows
        groups = [g for g in range(dataset.num_row_groups) if dataset.metadata.row_group(g).num_rows]
        if not groups:
            raise UpstreamError(f"{_where(F02, self.variant.id, path.name)}: the dataset has no rows")
        first = dataset.read_row_group(groups[0], columns=["segs"]).column("segs")
        last = dataset.read_row_group(groups[-1], columns=["segs"]).column("segs")
        return int(first[0].as_py()), int(last[-1].as_py())

    @property
    def nan_codes(self) -> list[int]:
        return sorted(code for name, code in self.catalog.items() if name.strip().endswith(NAN_EVENT_SUFFIX))

    def codes_of(self, names, context: str) -> list[int]:
        unknown = [name for name in names if name not in self.catalog]
        if unknown:
            raise UpstreamError(f"{context}: event names {unknown} are not in the catalog of "
                                f"{_where(F02, self.variant.id, phase_file(F02, EVENT_CATALOG))}")
        return [self.catalog[name] for name in names]


# --------------------------------------------------------------------------- F03

@dataclass(frozen=True)
class RegimeValue:
    value: float | int
    source: str


@dataclass(frozen=True)
class WindowSet:
    variant: Variant
    events: EventStream

    @cached_property
    def metadata(self) -> dict:
        path = self.variant.phase_file(METADATA)
        return read_json(path, self.variant.label) if path.is_file() else {}

    def regime(self) -> dict[str, RegimeValue]:
        """``Tu``, ``OW``, ``LT``, ``PW`` with where each came from.

        OW/LT/PW are integers in units of Tu from ``params.yaml``; ``Tu`` may be null
        there, then it comes from this F03's metadata, else from its F02's metadata.
        """
        where = _where(F03, self.variant.id, PARAMS_FILE)
        values = {}
        for key in ("OW", "LT", "PW"):
            value = self.variant.param(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UpstreamError(f"{where}: key '{key}' must be a non-negative integer (units of Tu), "
                                    f"got {value!r}")
            values[key] = RegimeValue(value, f"F03 {self.variant.id} params.yaml")
        candidates = [
            (self.variant.params.get("Tu"), f"F03 {self.variant.id} params.yaml"),
            (self.metadata.get("Tu"), f"F03 {self.variant.id} {phase_file(F03, METADATA)}"),
            (self.events.metadata.get("Tu"), f"F02 {self.events.variant.id} {phase_file(F02, METADATA)}"),
        ]
        for value, source in candidates:
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise UpstreamError(f"{source}: key 'Tu' must be a positive number of seconds, got {value!r}")
                values["Tu"] = RegimeValue(float(value), source)
                break
        else:
            raise UpstreamError(f"{self.variant.label}: Tu is null in params.yaml and missing from "
                                f"{F03}_metadata.json and from the metadata of F02 {self.events.variant.id}")
        return values

    @property
    def window_strategy(self) -> str:
        return self.variant.params.get("window_strategy", "synchro")

    @property
    def nan_strategy(self):
        return self.variant.params.get("nan_strategy")


# --------------------------------------------------------------------------- F04

@dataclass(frozen=True)
class Objective:
    variant: Variant
    windows: WindowSet

    @property
    def id(self) -> str:
        return self.variant.id

    @property
    def prediction_name(self) -> str:
        name = self.variant.param("prediction_name")
        if not isinstance(name, str) or not name:
            raise UpstreamError(f"{_where(F04, self.id, PARAMS_FILE)}: key 'prediction_name' must be a name")
        return name

    @property
    def definition(self) -> dict:
        where = _where(F04, self.id, PARAMS_FILE)
        objective = self.variant.param("prediction_objective")
        if not isinstance(objective, dict):
            raise UpstreamError(f"{where}: key 'prediction_objective' must be a mapping {{operator, events}}")
        operator, events = objective.get("operator"), objective.get("events")
        if operator not in ("OR", "AND"):
            raise UpstreamError(f"{where}: key 'prediction_objective.operator' must be OR or AND, got {operator!r}")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise UpstreamError(f"{where}: key 'prediction_objective.events' must be a non-empty list of event names")
        self.windows.events.codes_of(events, where)
        return {"operator": operator, "events": events}

    @property
    def dataset_path(self) -> Path:
        return self.variant.phase_file(DATASET)

    @cached_property
    def dataset_columns(self) -> list[str]:
        path = self.dataset_path
        if not path.is_file():
            raise UpstreamError(f"{self.variant.label}: dataset {path} does not exist")
        names = self.variant.parquet(path).schema_arrow.names
        for column in ("OW_events", "label"):
            if column not in names:
                raise UpstreamError(f"{_where(F04, self.id, path.name)}: column '{column}' is missing")
        return names


# --------------------------------------------------------------------------- F05

@dataclass(frozen=True)
class ModelSummary:
    """``model_summary.json``: what it takes to rebuild a model's input."""

    path: Path
    prediction_name: str
    model_family: str
    threshold: float
    vectorization: dict

    @property
    def expected_input_shape(self) -> tuple:
        v = self.vectorization
        return (None, v["input_dim"]) if v["vectorization"] == "dense_bow" else (None, v["max_len"])


def read_model_summary(path: Path, context: str) -> ModelSummary:
    data = read_json(path, context)
    where = f"{context}, file {path}"
    for key in ("prediction_name", "model_family", "vectorization"):
        if key not in data:
            raise UpstreamError(f"{where}: key '{key}' is missing")
    threshold = data.get("threshold", F05_DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise UpstreamError(f"{where}: key 'threshold' must be a number in [0, 1], got {threshold!r}")
    vec = data["vectorization"]
    try:  # the serving code's own check: what it accepts here, it can serve
        from_spec(vec, where)
    except VectorizationError as error:
        raise UpstreamError(str(error)) from None
    return ModelSummary(path=path, prediction_name=data["prediction_name"], model_family=data["model_family"],
                        threshold=float(threshold), vectorization=vec)


@dataclass(frozen=True)
class ModelFiles:
    source_f05: str
    model_id: str
    h5_path: Path
    summary: ModelSummary
    trial: bool


@dataclass(frozen=True)
class Modeling:
    variant: Variant
    objective: Objective

    @property
    def id(self) -> str:
        return self.variant.id

    @property
    def model_family(self) -> str:
        family = self.variant.param("model_family")
        if family not in MODEL_FAMILIES:
            raise UpstreamError(f"{_where(F05, self.id, PARAMS_FILE)}: key 'model_family' is {family!r}; "
                                f"expected one of {list(MODEL_FAMILIES)}")
        return family

    def official_ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.variant.dir.glob(f"{F05_MODELS}/*/{MODEL_FILE}"))

    def trial_ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.variant.dir.glob(f"{F05_EXPERIMENTS}/*/{MODEL_FILE}"))

    def model(self, model_id: str) -> ModelFiles:
        """An official model (``models/<id>/``) or a trial (``experiments/<id>/``), which
        shares the vectorization of its run's official model."""
        official, trials = self.official_ids(), self.trial_ids()
        if model_id in official:
            folder = self.variant.dir / F05_MODELS / model_id
            trial = False
        elif model_id in trials:
            if len(official) != 1:
                raise UpstreamError(f"{self.variant.label}: trial '{model_id}' needs the model_summary.json of "
                                    f"the run's one official model, but models/ holds {official or 'none'}")
            folder = self.variant.dir / F05_MODELS / official[0]
            trial = True
        else:
            raise UpstreamError(f"{self.variant.label}: model_id '{model_id}' not found; available: "
                                f"{', '.join(official + trials) or 'none'} (models/<id>/model.h5 or "
                                f"experiments/<id>/model.h5)")
        summary_path = folder / MODEL_SUMMARY
        if not summary_path.is_file():
            raise UpstreamError(f"{self.variant.label}, model '{model_id}': {summary_path} is missing; "
                                "F05 must write it beside model.h5")
        summary = read_model_summary(summary_path, f"{self.variant.label}, model '{model_id}'")
        if summary.prediction_name.lower() != self.objective.prediction_name.lower():
            raise UpstreamError(f"{self.variant.label}, model '{model_id}': prediction_name "
                                f"'{summary.prediction_name}' in model_summary.json is not the one of its "
                                f"objective {self.objective.variant.label} ('{self.objective.prediction_name}')")
        h5 = (self.variant.dir / F05_EXPERIMENTS / model_id if trial else folder) / MODEL_FILE
        return ModelFiles(self.id, model_id, h5, summary, trial)


# ------------------------------------------------------------------ the lineage

@dataclass
class Lineage:
    """F05 variants resolved to the F04, F03 and F02 they derive from."""

    modeling: dict[str, Modeling] = field(default_factory=dict)

    @property
    def objectives(self) -> dict[str, Objective]:
        return {m.objective.id: m.objective for m in self.modeling.values()}

    @property
    def window_sets(self) -> dict[str, WindowSet]:
        return {o.windows.variant.id: o.windows for o in self.objectives.values()}

    @property
    def event_streams(self) -> dict[str, EventStream]:
        return {w.events.variant.id: w.events for w in self.window_sets.values()}

    @property
    def f02(self) -> EventStream:
        streams = self.event_streams
        if len(streams) != 1:
            paths = "; ".join(f"F05 {m.id} → F04 {m.objective.id} → F03 {m.objective.windows.variant.id} → "
                              f"F02 {m.objective.windows.events.variant.id}" for m in self.modeling.values())
            raise UpstreamError(f"the lineage holds {len(streams)} F02 variants ({', '.join(sorted(streams))}); "
                                f"a system replays one event stream, so every F05 must derive from the same F02: "
                                f"{paths}")
        return next(iter(streams.values()))

    def as_dict(self) -> dict:
        return {
            "f02": sorted(self.event_streams),
            "f03": {w: ws.events.variant.id for w, ws in sorted(self.window_sets.items())},
            "f04": {o: obj.windows.variant.id for o, obj in sorted(self.objectives.items())},
            "f05": {m: mod.objective.id for m, mod in sorted(self.modeling.items())},
        }


def resolve_modeling(root, f05_id: str) -> Modeling:
    """Follow ``parent_variant`` from an F05 variant up to its F02."""
    f05 = open_variant(root, F05, f05_id)
    f04 = open_variant(root, F04, f05.parent_id, child=f05)
    f03 = open_variant(root, F03, f04.parent_id, child=f04)
    f02 = open_variant(root, F02, f03.parent_id, child=f03)
    return Modeling(f05, Objective(f04, WindowSet(f03, EventStream(f02))))


def resolve_lineage(root, f05_ids) -> Lineage:
    return Lineage({f05_id: resolve_modeling(root, f05_id) for f05_id in f05_ids})
