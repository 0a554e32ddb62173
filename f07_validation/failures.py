"""The failures of a replay, taken from the data rather than from the labels, and which
of them each model warned, and how early.

CONTRACT: an F04 objective's ``prediction_objective`` (``{operator, events}``, recorded in
the package metadata's ``datasets.<objective>.objective`` from the F04 params) names F02
events. A *failure* is an instant (a ``segs`` row) of the package's replay that holds the
objective's events: any of them for ``OR``, all of them at that same instant for ``AND``.
Names become codes through the F02 event catalog of the package's lineage
(``<F02>/02_prepareeventsds_event_catalog.json``; the F07 stages depend on its digest in
the package's ``lineage/``). Each occurrence is one failure, as each is a positive
window's reason in F04.

A window starting at ``t0`` *warns* a failure at ``tf`` when it is positive and its
prediction period covers it: ``t0 + (OW+LT)*Tu <= tf < t0 + (OW+LT+PW)*Tu`` (the
package's regime). The **lead time** is ``tf`` minus the end of the OW of the first such
window. A failure that no logged window's prediction period covers (it falls in the
replay's first (OW+LT)*Tu seconds, or after a runtime fault ended the log) cannot be
warned and is counted apart, never as missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract import layout
from contract.row_stream import BATCH_ROWS
from contract.windows import EventRows, Regime
from f07_validation.deployrun import DeployRun, DeployRunError, read_json

NEVER = np.iinfo(np.int64).max  # no warning yet
WARNED, MISSED, NOT_COVERED = "warned", "missed", "not covered"


@dataclass(frozen=True)
class ObjectiveFailures:
    """An objective's failures in the replay, in time order."""

    objective: str
    prediction_name: str
    operator: str
    events: tuple[str, ...]
    codes: tuple[int, ...]
    times: np.ndarray             # segs of each failure, ascending
    names: list[str]              # per failure: the objective's events at that instant
    catalog: str                  # where the names became codes (relative to executions/)

    def describe(self) -> str:
        how = "any of" if self.operator == "OR" else "all of, at the same instant,"
        return (f"instants of the replay holding {how} {', '.join(self.events)} (prediction_objective "
                f"{self.operator} of the F04 params, codes {', '.join(map(str, self.codes))} from {self.catalog})")


def event_catalog(run: DeployRun) -> tuple[dict[str, int], str]:
    """The F02 event catalog of the package's lineage, and its path as the report names it."""
    f02 = run.package_metadata()["lineage"]["f02"]
    path = layout.variant_dir(layout.F02, f02, run.executions) / layout.phase_file(layout.F02, layout.EVENT_CATALOG)
    catalog = read_json(path, f"the failures are named by the F02 event catalog of the package's lineage; "
                              f"build or pull F02 {f02} (`dvc repro` or `dvc pull`)")
    if not isinstance(catalog, dict) or not all(isinstance(code, int) and not isinstance(code, bool)
                                                for code in catalog.values()):
        raise DeployRunError(f"{path}: must map event names to integer codes")
    return catalog, path.relative_to(run.executions).as_posix()


def objective_definitions(run: DeployRun) -> dict[str, dict]:
    """Per objective of the manifest, its ``{operator, events}`` as the package recorded it."""
    datasets = run.package_metadata().get("datasets") or {}
    found = {}
    for objective in dict.fromkeys(model.objective for model in run.models):
        definition = (datasets.get(objective) or {}).get("objective")
        if not isinstance(definition, dict) or definition.get("operator") not in ("OR", "AND") \
                or not definition.get("events"):
            raise DeployRunError(f"package {run.manifest.parent_variant_f06}: 06_packaging_metadata.json has no "
                                 f"datasets.{objective}.objective {{operator, events}}; rebuild the package "
                                 f"(`dvc repro seal_package@{run.manifest.parent_variant_f06}`)")
        found[objective] = definition
    return found


def read_failures(run: DeployRun) -> dict[str, ObjectiveFailures]:
    """Every objective's failures, from one streamed pass over the package's replay."""
    catalog, catalog_path = event_catalog(run)
    definitions = objective_definitions(run)
    wanted = {}
    for objective, definition in definitions.items():
        unknown = [name for name in definition["events"] if name not in catalog]
        if unknown:
            raise DeployRunError(f"objective {objective}: events {unknown} of its prediction_objective are not in "
                                 f"{catalog_path}; the package and its F02 disagree: rebuild the package")
        wanted[objective] = np.array(sorted({catalog[name] for name in definition["events"]}), np.int64)
    name_of = {code: name for name, code in catalog.items()}
    times = {objective: [] for objective in wanted}
    names = {objective: [] for objective in wanted}
    replay = run.manifest.replay_path()
    for batch in run.parquet(replay, run.package_fix).iter_batches(batch_size=BATCH_ROWS, columns=["segs", "events"]):
        rows = EventRows.from_arrow(batch)
        row_of = np.repeat(np.arange(len(rows)), np.diff(rows.offsets))
        for objective, codes in wanted.items():
            hit = np.isin(rows.codes, codes)
            if not hit.any():
                continue
            pairs = np.unique(np.stack([row_of[hit], rows.codes[hit]]), axis=1)  # distinct codes per row
            present = np.bincount(pairs[0], minlength=len(rows))
            needed = 1 if definitions[objective]["operator"] == "OR" else len(codes)
            failing = np.flatnonzero(present >= needed)
            times[objective].append(rows.segs[failing])
            for row in failing:
                names[objective].append(" ".join(name_of[int(c)] for c in pairs[1][pairs[0] == row]))
    prediction_names = {model.objective: model.prediction_name for model in run.models}
    return {objective: ObjectiveFailures(
        objective=objective, prediction_name=prediction_names[objective],
        operator=definitions[objective]["operator"], events=tuple(definitions[objective]["events"]),
        codes=tuple(int(c) for c in codes),
        times=np.concatenate(times[objective]) if times[objective] else np.zeros(0, np.int64),
        names=names[objective], catalog=catalog_path) for objective, codes in wanted.items()}


class FailureCoverage:
    """One model against its objective's failures, fed its windows in time order: per
    failure, how many windows' prediction periods cover it, the highest probability among
    them, and the first covering window at or above the model's threshold."""

    def __init__(self, failures: ObjectiveFailures, regime: Regime, threshold: float):
        self.failures, self.regime, self.threshold = failures, regime, threshold
        n = len(failures.times)
        self.covering = np.zeros(n, np.int64)
        self.max_value = np.full(n, -np.inf)
        self.first_warning = np.full(n, NEVER, np.int64)

    def add(self, t0: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Take windows ``t0`` with their values (-inf: no finite output); returns which
        of them cover a failure."""
        times = self.failures.times
        low = np.searchsorted(times, t0 + self.regime.pw_start_seconds, side="left")
        high = np.searchsorted(times, t0 + self.regime.horizon_seconds, side="left")
        counts = high - low
        if counts.any():
            window = np.repeat(np.arange(len(t0)), counts)
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            failure = low[window] + np.arange(len(window)) - starts[window]
            np.add.at(self.covering, failure, 1)
            np.maximum.at(self.max_value, failure, values[window])
            positive = values[window] >= self.threshold
            np.minimum.at(self.first_warning, failure[positive], t0[window][positive])
        return counts > 0

    def status(self) -> np.ndarray:
        return np.where(self.covering == 0, NOT_COVERED, np.where(self.first_warning < NEVER, WARNED, MISSED))

    def lead_times(self) -> np.ndarray:
        """Seconds from the end of the first warning window's OW to the failure; -1 when not warned."""
        warned = self.first_warning < NEVER
        return np.where(warned, self.failures.times - (self.first_warning + self.regime.ow_seconds), -1)


def lead_time_summary(lead_times: np.ndarray) -> dict:
    """min, p50 and p90 of the warned failures' lead times (nearest rank: values that occurred)."""
    if not len(lead_times):
        return {"min": None, "p50": None, "p90": None}
    return {"min": int(lead_times.min()),
            "p50": int(np.percentile(lead_times, 50, method="inverted_cdf")),
            "p90": int(np.percentile(lead_times, 90, method="inverted_cdf"))}
