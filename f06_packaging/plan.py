"""Validate one F06 variant's parameters against the upstream artifacts and resolve them
into a plan: which model files, which objectives, which regime, which replay rows.

Every F06 stage builds the plan first, so a mistake in ``params.yaml`` stops the stage
before it writes anything, with a message naming the variant and the key
(``packaging.<variant>.<key>``) and how to fix it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from contract import layout
from contract.errors import UserError
from upstream.reader import (EventStream, Lineage, ModelFiles, Objective, RegimeValue, UpstreamError,
                             resolve_lineage)

REGIME_KEYS = ("Tu", "OW", "LT", "PW")
VARIANT_KEYS = {"parent_variants_f05", "temporal", "models", "replay"}


class PackagingError(UserError):
    """A packaging variant cannot be built as configured."""


@dataclass(frozen=True)
class SelectedModel:
    objective: Objective
    files: ModelFiles

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.objective.id, self.files.source_f05, self.files.model_id)

    @property
    def package_dir(self) -> str:
        """Where the model lives inside the package: by objective, then F05 and model id,
        so two F05 runs that share a model_id both stay."""
        return layout.package_model_dir(self.objective.id, self.files.source_f05, self.files.model_id)


@dataclass(frozen=True)
class ReplaySpec:
    source: EventStream
    start: int | None
    end: int | None

    @property
    def requested(self) -> dict:
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class PackagePlan:
    variant: str
    params: dict
    lineage: Lineage
    models: list[SelectedModel]
    regime: dict[str, RegimeValue]
    replay: ReplaySpec

    @property
    def objectives(self) -> dict[str, Objective]:
        return {m.objective.id: m.objective for m in self.models}

    @property
    def origin(self) -> int:
        """The window grid's zero: the first ``segs`` of the F02 dataset."""
        return self.lineage.f02.span[0]


def _key(variant: str, *parts) -> str:
    return ".".join(["packaging", variant, *map(str, parts)])


def build_plan(variant: str, params: dict, root) -> PackagePlan:
    """Validate ``params`` (the ``packaging.<variant>`` entry) and resolve it."""
    if not isinstance(params, dict):
        raise PackagingError(f"{_key(variant)} must be a mapping with keys {sorted(VARIANT_KEYS)}")
    unknown = set(params) - VARIANT_KEYS
    if unknown:
        raise PackagingError(f"{_key(variant)}: unknown keys {sorted(unknown)}; expected {sorted(VARIANT_KEYS)}")
    try:
        return _build(variant, params, Path(root))
    except UpstreamError as error:
        raise PackagingError(f"packaging variant {variant}: {error}") from None


def _build(variant: str, params: dict, root: Path) -> PackagePlan:
    parents = params.get("parent_variants_f05")
    if not isinstance(parents, list) or not parents or not all(isinstance(p, str) for p in parents):
        raise PackagingError(f"{_key(variant, 'parent_variants_f05')} must be a non-empty list of F05 variant "
                             f"ids, e.g. [v501, v502]; got {parents!r}")
    if len(set(parents)) != len(parents):
        raise PackagingError(f"{_key(variant, 'parent_variants_f05')} lists a variant twice: {parents}")
    lineage = resolve_lineage(root, parents)
    models = _select_models(variant, params.get("models"), lineage)
    for objective in {model.objective.id: model.objective for model in models}.values():
        objective.dataset_columns  # readable, with OW_events and label, before anything is written
    f02 = lineage.f02
    regime = _resolve_regime(variant, params.get("temporal"), lineage)
    replay = _replay_spec(variant, params.get("replay"), f02)
    return PackagePlan(variant, params, lineage, models, regime, replay)


def _select_models(variant: str, selection, lineage: Lineage) -> list[SelectedModel]:
    if not isinstance(selection, dict) or not selection:
        raise PackagingError(f"{_key(variant, 'models')} selects no model: give at least one objective, e.g. "
                             "{v401: [{model_id: <id>, source_f05: v501}]}")
    chosen: list[SelectedModel] = []
    for objective_id, entries in selection.items():
        where = _key(variant, "models", objective_id)
        if not isinstance(entries, list) or not entries:
            raise PackagingError(f"{where} selects no model: list at least one {{model_id, source_f05}}")
        for index, entry in enumerate(entries):
            at = f"{where}[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"model_id", "source_f05"}:
                raise PackagingError(f"{at} must be {{model_id: <id>, source_f05: <F05 variant>}}, got {entry!r}")
            source = entry["source_f05"]
            if source not in lineage.modeling:
                raise PackagingError(f"{at}.source_f05: {source!r} is not in {_key(variant, 'parent_variants_f05')} "
                                     f"({', '.join(lineage.modeling)}); add it there or fix the id")
            modeling = lineage.modeling[source]
            if modeling.objective.id != objective_id:
                raise PackagingError(f"{at}: F05 {source} derives from F04 {modeling.objective.id}, not from the "
                                     f"objective {objective_id} it is listed under; move it under "
                                     f"{_key(variant, 'models', modeling.objective.id)}")
            try:
                files = modeling.model(str(entry["model_id"]))
            except UpstreamError as error:
                raise PackagingError(f"{at}.model_id: {error}") from None
            chosen.append(SelectedModel(modeling.objective, files))
    keys = [m.key for m in chosen]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise PackagingError(f"{_key(variant, 'models')} selects the same model twice: {duplicated}")
    unused = sorted(set(lineage.modeling) - {m.files.source_f05 for m in chosen})
    if unused:
        raise PackagingError(f"{_key(variant, 'parent_variants_f05')} lists {unused} but "
                             f"{_key(variant, 'models')} selects no model from them; select one or drop them")
    return sorted(chosen, key=lambda m: m.key)


def _resolve_regime(variant: str, temporal, lineage: Lineage) -> dict[str, RegimeValue]:
    """A value the user sets wins; the others are inherited from the lineage's F03s, which
    must then agree."""
    temporal = {} if temporal is None else temporal
    if not isinstance(temporal, dict) or set(temporal) - set(REGIME_KEYS):
        raise PackagingError(f"{_key(variant, 'temporal')} must be a mapping with keys {list(REGIME_KEYS)} "
                             f"(null = inherit from F03), got {temporal!r}")
    inherited = {ws_id: ws.regime() for ws_id, ws in sorted(lineage.window_sets.items())}
    regime = {}
    for key in REGIME_KEYS:
        value = temporal.get(key)
        if value is not None:
            valid = (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                     and float(value).is_integer()) or (key == "LT" and value == 0)
            if not valid:
                raise PackagingError(f"{_key(variant, 'temporal', key)} must be a whole number "
                                     f"{'of seconds' if key == 'Tu' else 'of Tu units'} "
                                     f"{'>= 0' if key == 'LT' else '> 0'}, got {value!r}")
            regime[key] = RegimeValue(float(value) if key == "Tu" else int(value),
                                      f"user ({_key(variant, 'temporal', key)})")
            continue
        values = {ws_id: r[key] for ws_id, r in inherited.items()}
        distinct = {v.value for v in values.values()}
        if len(distinct) > 1:
            listing = ", ".join(f"F03 {ws_id}: {v.value} ({v.source})" for ws_id, v in values.items())
            raise PackagingError(f"{_key(variant, 'temporal', key)} is null, so it is inherited from F03, but the "
                                 f"lineage's F03 variants disagree ({listing}); set it explicitly")
        regime[key] = next(iter(values.values()))
    if not float(regime["Tu"].value).is_integer():
        raise PackagingError(f"Tu = {regime['Tu'].value} s ({regime['Tu'].source}) is not a whole number of "
                             f"seconds, which the window grid needs; set {_key(variant, 'temporal', 'Tu')}")
    return regime


def _to_epoch(value, where: str) -> int | None:
    """Epoch seconds, or an ISO-8601 time (UTC when it names no offset)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return int(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise PackagingError(f"{where} must be epoch seconds or an ISO-8601 time such as "
                                 f"2024-01-01T00:00:00Z, got {value!r}") from None
    else:
        raise PackagingError(f"{where} must be epoch seconds or an ISO-8601 time, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _replay_spec(variant: str, replay, f02: EventStream) -> ReplaySpec:
    if not isinstance(replay, dict) or not isinstance(replay.get("source"), dict):
        raise PackagingError(f"{_key(variant, 'replay')} must be {{source: {{dataset_id: <F02 variant>}}, "
                             f"time_range: {{start, end}}}}, got {replay!r}")
    dataset_id = replay["source"].get("dataset_id")
    if not isinstance(dataset_id, str) or not layout.is_variant_id(dataset_id):
        raise PackagingError(f"{_key(variant, 'replay', 'source', 'dataset_id')} must be an F02 variant id, "
                             f"got {dataset_id!r}")
    if dataset_id != f02.variant.id:
        raise PackagingError(f"{_key(variant, 'replay', 'source', 'dataset_id')} is {dataset_id}, but the "
                             f"lineage's F02 is {f02.variant.id}: the replay must come from the events the "
                             f"models' windows were cut from; set it to {f02.variant.id}")
    time_range = replay.get("time_range") or {}
    if not isinstance(time_range, dict) or set(time_range) - {"start", "end"}:
        raise PackagingError(f"{_key(variant, 'replay', 'time_range')} must be {{start, end}}, got {time_range!r}")
    start = _to_epoch(time_range.get("start"), _key(variant, "replay", "time_range", "start"))
    end = _to_epoch(time_range.get("end"), _key(variant, "replay", "time_range", "end"))
    first, last = f02.span
    for name, bound in (("start", start), ("end", end)):
        if bound is not None and not first <= bound <= last:
            raise PackagingError(
                f"{_key(variant, 'replay', 'time_range', name)} = {bound} ({_iso(bound)}) lies outside the data of "
                f"F02 {f02.variant.id}: {first} ({_iso(first)}) to {last} ({_iso(last)}); use a time within it "
                f"or null for the whole stream")
    if start is not None and end is not None and start >= end:
        raise PackagingError(f"{_key(variant, 'replay', 'time_range')}: start {start} ({_iso(start)}) must be "
                             f"before end {end} ({_iso(end)})")
    return ReplaySpec(f02, start, end)
