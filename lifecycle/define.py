"""Create a variant (`make variant6` / `make variant7`): turn the make variables into a
``params.yaml`` entry, validate it the way the pipeline will, and add it only when it is
valid, so that a mistake is reported now, naming the make variable to fix, rather than
half-way through `dvc repro`.

An F06 entry is validated by ``f06_packaging.plan.build_plan`` against ``executions/``,
the same function every F06 stage starts with: the upstream (F02–F05) must be there.
"""
from __future__ import annotations

import yaml

from contract.config import validate_params
from contract.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_EQUIVALENCE_SAMPLE, DEFAULT_HOST,
                               DEFAULT_LOG_CSV_COMPRESSION, DEFAULT_MAX_DROP, DEFAULT_PORT, DEFAULT_QUALITY_FLOORS,
                               MAX_BATCH_ITEMS)
from contract.files import write_text_atomic
from contract.layout import F05, LOG_CSV_COMPRESSIONS
from f06_packaging.plan import PackagingError, build_plan
from lifecycle.project import F06, F07, LifecycleError, Phase, Project, check_variant_id
from lifecycle.yamledit import add_entry
from upstream.reader import UpstreamError, resolve_lineage

MODELS_EXAMPLE = "{v401: [{model_id: m03, source_f05: v501}]}"

# Which make variable sets which key of a packaging entry, to name it in an error.
_MAKE_VARIABLE = {"parent_variants_f05": "PARENTS_F05", "models": "MODELS", "temporal.Tu": "TU",
                  "temporal.OW": "OW", "temporal.LT": "LT", "temporal.PW": "PW",
                  "replay.time_range.start": "REPLAY_START", "replay.time_range.end": "REPLAY_END",
                  "replay.time_range": "REPLAY_START/REPLAY_END"}


def _refuse_existing(project: Project, phase: Phase, variant: str) -> None:
    check_variant_id(variant)
    if variant in project.entries(phase):
        raise LifecycleError(f"{phase.label} variant {variant} already exists in params.yaml "
                             f"('{phase.section}.{variant}'): choose another VARIANT, or remove it first with "
                             f"`make remove{phase.number} VARIANT={variant}`")


def _spaced_colons(text: str) -> str:
    """The seed writes MODELS as ``{v401:[{model_id:m03,source_f05:v501}]}``; YAML reads
    ``model_id:m03`` as one plain word, so a space goes after every colon outside quotes."""
    out, quote, escaped = [], None, False
    for index, char in enumerate(text):
        out.append(char)
        if quote:
            if escaped:
                escaped = False
            elif quote == '"' and char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == ":" and index + 1 < len(text) and not text[index + 1].isspace():
            out.append(" ")
    return "".join(out)


def parse_models(text: str) -> dict:
    """MODELS: ``{<F04 objective>: [{model_id, source_f05}, ...]}`` in YAML (flow or block)."""
    if not text.strip():
        raise LifecycleError(f"MODELS is empty: select at least one model per F04 objective, e.g. "
                             f"MODELS='{MODELS_EXAMPLE}'")
    try:
        models = yaml.safe_load(_spaced_colons(text))
    except yaml.YAMLError as error:
        raise LifecycleError(f"MODELS is not valid YAML ({str(error).splitlines()[0]}): write it as "
                             f"MODELS='{MODELS_EXAMPLE}'") from None
    if not isinstance(models, dict):
        raise LifecycleError(f"MODELS must map F04 objectives to lists of models, e.g. MODELS='{MODELS_EXAMPLE}'; "
                             f"got {models!r}")
    return models


def parse_parents(text: str) -> list[str]:
    """PARENTS_F05: ids separated by spaces or commas (``"v501 v502"``)."""
    parents = text.replace(",", " ").split()
    if not parents:
        raise LifecycleError('PARENTS_F05 is empty: list the F05 variants the system combines, e.g. '
                             'PARENTS_F05="v501 v502"')
    for parent in parents:
        check_variant_id(parent, "PARENTS_F05 entry")
    return parents


def _number(text: str, option: str, unit: str):
    if not text.strip():
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    raise LifecycleError(f"{option}={text!r} is not a number: give it in {unit}, or leave it empty to inherit "
                         f"it from F03")


def _time(text: str):
    """Epoch seconds stay numbers; anything else (an ISO-8601 time) is kept as written
    and validated by the plan."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _explain(error: PackagingError, variant: str) -> str:
    """The plan's message, plus the make variable that sets the key it is about (the
    first key it names)."""
    message = str(error)
    named = [(message.find(f"packaging.{variant}.{key}"), -len(key), key) for key in _MAKE_VARIABLE
             if f"packaging.{variant}.{key}" in message]
    if named:
        return f"{message}\n(set by {_MAKE_VARIABLE[min(named)[2]]}=...; params.yaml was not changed)"
    return f"{message}\n(params.yaml was not changed)"


def packaging_entry(project: Project, variant: str, parents: str, models: str, temporal: dict[str, str],
                    start: str = "", end: str = "") -> dict:
    """The validated ``packaging.<variant>`` entry; ``temporal`` maps Tu/OW/LT/PW to the
    text given (empty = inherit from F03). The replay source is the lineage's one F02."""
    _refuse_existing(project, F06, variant)
    parent_ids = parse_parents(parents)
    known = sorted(p.name for p in (project.executions / F05).glob("v*") if p.is_dir())
    unknown = [p for p in parent_ids if p not in known]
    if unknown:
        raise LifecycleError(f"PARENTS_F05 names F05 variants {unknown} that are not in {project.executions / F05} "
                             f"(known: {', '.join(known) or 'none'}); fix the ids, or build/pull the upstream "
                             f"first (`dvc repro` or `dvc pull`)")
    selection = parse_models(models)
    units = {"Tu": "seconds", "OW": "units of Tu", "LT": "units of Tu", "PW": "units of Tu"}
    regime = {key: _number(temporal.get(key, ""), key.upper(), unit) for key, unit in units.items()}
    try:
        f02 = resolve_lineage(project.executions, parent_ids).f02.variant.id
    except UpstreamError as error:
        raise LifecycleError(f"PARENTS_F05={' '.join(parent_ids)}: {error}") from None
    entry = {
        "parent_variants_f05": parent_ids,
        "temporal": regime,
        "models": selection,
        "replay": {"source": {"dataset_id": f02}, "time_range": {"start": _time(start), "end": _time(end)}},
    }
    try:
        build_plan(variant, entry, project.executions)
    except PackagingError as error:
        raise LifecycleError(_explain(error, variant)) from None
    return entry


def _whole_number(text: str, option: str, default: int, minimum: int, maximum: int | None = None) -> int:
    if not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise LifecycleError(f"{option}={text!r} must be a whole number {bounds} (empty = {default})")
    return value


def _choice(text: str, option: str, default: str, allowed) -> str:
    value = text.strip() or default
    if value not in allowed:
        raise LifecycleError(f"{option}={text!r} must be one of: {', '.join(allowed)} (empty = {default})")
    return value


def deployrun_entry(project: Project, variant: str, parent: str, host: str = "", port: str = "",
                    batch_size: str = "", log_csv_compression: str = "", baseline: str = "") -> dict:
    """The ``deployrun.<variant>`` entry: the package to deploy, how to serve it, how much
    of the replay to compare in-process and how to write the log's CSV copy (written out
    even at their defaults: DVC's ``infer`` stage tracks the keys, and DVC refuses a
    tracked parameter that is absent), and the quality gates: the floors of
    ``DEFAULT_QUALITY_FLOORS`` and, with a ``baseline`` run, ``DEFAULT_MAX_DROP`` against it
    (written out too, so that params.yaml shows what is judged, and a user can edit them)."""
    _refuse_existing(project, F07, variant)
    check_variant_id(parent, "PARENT")
    packages = project.entries(F06)
    if parent not in packages:
        raise LifecycleError(f"PARENT={parent} is not an F06 variant of params.yaml (known: "
                             f"{', '.join(packages) or 'none'}); create it first with `make variant6 "
                             f"VARIANT={parent} ...` or choose a known one")
    gates = {"min": dict(DEFAULT_QUALITY_FLOORS)}
    if baseline.strip():
        check_variant_id(baseline.strip(), "BASELINE")
        runs = project.entries(F07)
        if baseline.strip() not in runs:
            raise LifecycleError(f"BASELINE={baseline.strip()} is not an F07 variant of params.yaml (known: "
                                 f"{', '.join(runs) or 'none'}); name the run to compare with, or leave it empty")
        gates.update(baseline=baseline.strip(), max_drop=dict(DEFAULT_MAX_DROP))
    return {
        "parent_variant_f06": parent,
        "runtime": {"host": host.strip() or DEFAULT_HOST,
                    "port": _whole_number(port, "RUNTIME_PORT", DEFAULT_PORT, 0, 65535)},
        "batch_size": _whole_number(batch_size, "BATCH_SIZE", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_ITEMS),
        "check_equivalence": True,
        "equivalence_sample_windows": DEFAULT_EQUIVALENCE_SAMPLE,
        "log_csv_compression": _choice(log_csv_compression, "LOG_CSV_COMPRESSION", DEFAULT_LOG_CSV_COMPRESSION,
                                       LOG_CSV_COMPRESSIONS),
        "gates": gates,
    }


def add_variant(project: Project, phase: Phase, variant: str, entry: dict) -> None:
    """Append the entry to its section of params.yaml, leaving the rest byte for byte,
    once the whole new file follows the schema (a BATCH_SIZE above the server's limit,
    for instance, is refused here, not after serving)."""
    text = project.params_path.read_text(encoding="utf-8")
    new = add_entry(text, phase.section, variant, entry, str(project.params_path))
    validate_params(yaml.safe_load(new), project.params_path)
    write_text_atomic(project.params_path, new)
