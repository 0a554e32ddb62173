"""Gates: the bounds an F07 run's metrics must meet for its verdict to pass, set per
variant in params.yaml, optionally against another F07 variant (the baseline):

    deployrun:
      v702:
        gates:
          min: {recall: 0.5}       # every gated model: recall >= 0.5
          max: {FP: 100}           # every gated model: FP <= 100
          baseline: v701           # the F07 variant to compare with ...
          max_drop: {f1: 0.02}     # ... f1 at most 0.02 below the same model there
          models: [v401/v501/m]    # optional: gate only these models (default: all)

Metric names are those of metrics_per_model.csv (`f07_validation.metric_names.METRICS`).
Absolute bounds apply to every gated model; a drop is measured per model against the
baseline's model with the same `<objective>/<source_f05>/<model_id>`. A bound written as
`null` is a gate switched off: the verdict shows it as off, not as passed. A gate on an
undefined rate (no positive window in the reference, say) fails, saying why: nothing
was measured that could meet the bound.

`make variant7` writes the quality floors of `contract.defaults.DEFAULT_QUALITY_FLOORS`
(and, given a baseline, `DEFAULT_MAX_DROP`); a run whose gates leave one of those
metrics unset gets a "not judged" check for it (`unjudged_quality`), never a pass.

`validate_gates` is the one place that reads this configuration. It needs nothing but
params.yaml and the package's model list, so the serve stage and `make variant7` call
it before any work: a typo in a gate then fails in seconds, naming the key, instead of
after a full replay. The verdict calls it again and evaluates the `Bound`s it returns.

A verdict depends on its own baseline's metrics_per_model.csv only (dvc.yaml reads the
baseline from the generated dvc_deps.yaml, `verdict_deps`), so scoring another variant
leaves it up to date.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contract import dvc_deps, layout
from contract.defaults import DEFAULT_QUALITY_FLOORS
from contract.errors import UserError
from contract.model_key import KEY_COLUMNS, key_of
from f07_validation.deployrun import DeployRunError
from f07_validation.metric_names import METRICS, RATES

KINDS = ("min", "max", "max_drop")  # the order of the verdict's gate checks
GATE_KEYS = KINDS + ("baseline", "models")
EXAMPLES = {"min": "{recall: 0.5}", "max": "{FP: 100}", "max_drop": "{f1: 0.02}"}

DROP_DECIMALS = 9  # see drop()


class GateError(UserError):
    """A gates configuration that cannot be evaluated; the message names the variant,
    the params.yaml key and the fix."""


@dataclass(frozen=True)
class Bound:
    """One gate: `kind` is min, max or max_drop, `limit` as written in params.yaml (None:
    switched off)."""

    kind: str
    metric: str
    limit: int | float | None

    @property
    def off(self) -> bool:
        return self.limit is None

    def label(self, baseline: str | None) -> str:
        against = f" vs {baseline}" if self.kind == "max_drop" else ""
        return f"gate {self.kind} {self.metric} {self.limit}{against}"

    @property
    def expected(self) -> str:
        return f">= {self.limit}" if self.kind == "min" else f"<= {self.limit}"

    def holds(self, measured: int | float) -> bool:
        """`measured` is the metric, or for max_drop its drop()."""
        return measured >= self.limit if self.kind == "min" else measured <= self.limit


def drop(value: float, baseline_value: float) -> float:
    """How far a rate fell below the baseline's (negative when it rose). Rates are
    ratios of counts, so their difference carries float noise (0.63 - 0.61 =
    0.020000000000000018, which would fail `max_drop: 0.02`); it is rounded to
    DROP_DECIMALS, far finer than any two ratios of real counts that truly differ."""
    return round(baseline_value - value, DROP_DECIMALS)


@dataclass(frozen=True)
class Gates:
    bounds: tuple[Bound, ...] = ()
    baseline: str | None = None
    models: tuple[str, ...] | None = None  # model names; None gates every model

    def applies_to(self, name: str) -> bool:
        return self.models is None or name in self.models

    def unjudged_quality(self, model_names: Iterable[str]) -> list[tuple[str, str | None]]:
        """(metric, model) for each quality floor of DEFAULT_QUALITY_FLOORS that these
        gates do not judge: the model is None where the floor is not set at all, else a
        model left out of ``models``."""
        unjudged = []
        for metric in DEFAULT_QUALITY_FLOORS:
            if not any(bound.kind == "min" and bound.metric == metric for bound in self.bounds):
                unjudged.append((metric, None))
            else:
                unjudged += [(metric, name) for name in model_names if not self.applies_to(name)]
        return unjudged


def validate_gates(variant: str, entry: dict, deployrun_section: dict,
                   package_models: Iterable[dict]) -> Gates:
    """The gates of `deployrun.<variant>` (`entry`), checked against the other F07
    variants (`deployrun_section`, for the baseline) and the models the package serves
    (mappings with objective, source_f05, model_id: the `models` of the package
    metadata, which is all the serve stage has before it writes the manifest). Raises
    GateError naming the first wrong key."""
    where = f"deployrun.{variant}.gates"
    config = entry.get("gates")
    if config is None:
        return Gates()
    if not isinstance(config, dict):
        raise GateError(f"{where}: must be a mapping with keys {', '.join(GATE_KEYS)}, e.g. "
                        f"{{min: {EXAMPLES['min']}}}; got {config!r}")
    for key in config:
        if key not in GATE_KEYS:
            raise GateError(f"{where}.{key}: unknown key; known: {', '.join(GATE_KEYS)}"
                            f"{_suggestion(key, GATE_KEYS)}")
    bounds = [bound for kind in KINDS for bound in _bounds(f"{where}.{kind}", kind, config.get(kind))]
    _refuse_contradictions(where, bounds)
    baseline = _baseline(variant, where, config.get("baseline"), deployrun_section, bounds)
    served = [key_of(model) for model in package_models]
    models = _models(where, config.get("models"), served, entry.get("parent_variant_f06"), bounds)
    return Gates(bounds=tuple(bounds), baseline=baseline, models=models)


def _suggestion(name, known: Iterable[str]) -> str:
    known = list(known)
    if not isinstance(name, str):
        return ""
    close = [k for k in known if k.lower() == name.lower()] or difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _bounds(where: str, kind: str, section) -> list[Bound]:
    if section is None:
        return []
    if not isinstance(section, dict):
        raise GateError(f"{where}: must map metric names to bounds, e.g. {kind}: {EXAMPLES[kind]}; "
                        f"got {section!r}")
    bounds = []
    for metric, limit in section.items():
        key = f"{where}.{metric}"
        if metric not in METRICS:
            raise GateError(f"{key}: unknown metric {metric!r}; known: {', '.join(METRICS)}"
                            f"{_suggestion(metric, METRICS)}")
        if kind == "max_drop" and metric not in RATES:
            raise GateError(f"{key}: max_drop compares rates ({', '.join(RATES)}); {metric} is a count, "
                            f"which depends on the replay's length: bound it with min or max instead")
        if limit is not None:
            _check_limit(key, metric, limit)
        bounds.append(Bound(kind, metric, limit))
    return sorted(bounds, key=lambda bound: METRICS.index(bound.metric))


def _check_limit(key: str, metric: str, limit) -> None:
    wanted = "a rate from 0 to 1" if metric in RATES else "a whole number of predictions >= 0"
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        hint = ""
        if isinstance(limit, str):
            try:
                float(limit)
                hint = f" (YAML reads {limit} as text: write it with a decimal point, e.g. 0.001 or 1.0e-3)"
            except ValueError:
                pass
        raise GateError(f"{key}: {limit!r} is not a number{hint}; give {wanted}")
    if metric in RATES and not (math.isfinite(limit) and 0 <= limit <= 1):
        raise GateError(f"{key}: {limit!r} is outside [0, 1]; {metric} is a rate: give {wanted}")
    if metric not in RATES and (not isinstance(limit, int) or limit < 0):
        raise GateError(f"{key}: {limit!r} is not a whole number >= 0; {metric} counts predictions: "
                        f"give {wanted}")


def _refuse_contradictions(where: str, bounds: list[Bound]) -> None:
    """A min above the max of the same metric fails every model: surely a typo."""
    limits = {(bound.kind, bound.metric): bound.limit for bound in bounds if not bound.off}
    for (kind, metric), low in limits.items():
        high = limits.get(("max", metric))
        if kind == "min" and high is not None and low > high:
            raise GateError(f"{where}: min.{metric} = {low} is above max.{metric} = {high}, so no model "
                            f"can pass; lower the min or raise the max")


def _baseline(variant: str, where: str, baseline, deployrun_section: dict, bounds: list[Bound]) -> str | None:
    drops = any(bound.kind == "max_drop" for bound in bounds)
    others = sorted(v for v in deployrun_section if v != variant)
    if baseline is None:
        if drops:
            raise GateError(f"{where}.max_drop: needs {where}.baseline, the F07 variant to compare with "
                            f"(known: {', '.join(others) or 'none'}); add it or remove max_drop")
        return None
    if baseline == variant:
        raise GateError(f"{where}.baseline: {variant} cannot be its own baseline; name another F07 "
                        f"variant (known: {', '.join(others) or 'none'})")
    if not isinstance(baseline, str) or baseline not in deployrun_section:
        raise GateError(f"{where}.baseline: unknown F07 variant {baseline!r}; known: "
                        f"{', '.join(others) or 'none'} (a baseline is another key of deployrun)")
    if not drops:
        raise GateError(f"{where}.baseline: set, but no {where}.max_drop compares with it; add e.g. "
                        f"max_drop: {EXAMPLES['max_drop']} or remove baseline")
    return baseline


def _models(where: str, models, served: list[str], package, bounds: list[Bound]) -> tuple[str, ...] | None:
    if models is None:
        return None
    example = served[0] if served else "<objective>/<source_f05>/<model_id>"
    if not isinstance(models, list) or not models:
        raise GateError(f"{where}.models: must be a non-empty list of <objective>/<source_f05>/<model_id>, "
                        f"e.g. [{example}], or be left out to gate every model; got {models!r}")
    for index, name in enumerate(models):
        if name not in served:
            raise GateError(f"{where}.models[{index}]: unknown model {name!r}; package {package} serves: "
                            f"{', '.join(served)}{_suggestion(name, served)}")
        if name in models[:index]:
            raise GateError(f"{where}.models[{index}]: {name} is listed twice; list each model once")
    if not bounds:
        raise GateError(f"{where}.models: restricts the gates to some models, but no gate is set; add "
                        f"min, max or max_drop, or remove models")
    return tuple(models)


def read_model_metrics(path: Path, fix: str) -> dict[str, dict[str, int | float | None]]:
    """Model key -> {metric: value} from a metrics_per_model.csv (the run's own or its
    baseline's). Read as text, not through pandas' type guessing, so that names stay exactly
    as written (a model_id 'NA' is not a missing value) and every float comes back as
    the same double; an undefined rate (an empty cell) is None."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in (*KEY_COLUMNS, *METRICS) if column not in (reader.fieldnames or [])]
            if missing:
                raise DeployRunError(f"{path} lacks columns {missing}: {fix}")
            rows = list(reader)
    except FileNotFoundError:
        raise DeployRunError(f"{path} is missing: {fix}") from None
    metrics = {}
    for line, row in enumerate(rows, start=2):
        try:
            # an empty rate is undefined (scoring.ratios), kept as None
            metrics[key_of(row)] = {metric: (float(row[metric]) if row[metric] != "" else None)
                                    if metric in RATES else int(row[metric]) for metric in METRICS}
        except ValueError as error:
            raise DeployRunError(f"{path} line {line}: {error}: {fix}") from None
    return metrics


def verdict_deps(variant: str, entry: dict) -> dict:
    """dvc_deps.yaml's ``verdict`` entry of ``variant``: its package and the run whose
    metrics_per_model.csv its verdict reads (its baseline, else its own, which the verdict
    depends on anyway)."""
    gates = entry.get("gates") if isinstance(entry, dict) else None
    baseline = gates.get("baseline") if isinstance(gates, dict) else None
    return {"parent_variant_f06": entry.get("parent_variant_f06"),
            "baseline": baseline if layout.is_variant_id(baseline) else variant}


def check_declared(variant: str, entry: dict, deps_file=layout.DVC_DEPS_FILE) -> None:
    """Refuse a verdict whose DVC dependencies (dvc_deps.yaml) are not its baseline's.
    Without the file there is nothing to check: DVC cannot have run the stage."""
    if not Path(deps_file).is_file():
        return
    listed = dvc_deps.read(deps_file)["verdict"].get(variant)
    wanted = verdict_deps(variant, entry)
    if listed != wanted:
        raise GateError(f"{deps_file} lists the verdict of deployrun.{variant} as {listed}, but params.yaml "
                        f"gives {wanted}: its DVC dependencies would be wrong; rewrite it with "
                        f"`python -m lifecycle deps` (make deps) and run again")
