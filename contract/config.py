"""The schema of params.yaml's ``packaging`` and ``deployrun`` sections, checked whole
before any work.

Every nested mapping is declared here, once (``SCHEMA``, JSON Schema 2020-12, validated by
jsonschema): an unknown key is refused with the known ones listed, a wrong type is named
with its key path, a variant id must be ``v`` + digits (so it never names a path), and a
batch larger than the server accepts is refused before serving. What needs the upstream
artifacts (does that F05 run exist, is that metric a metric) stays with the code that
reads them (``f06_packaging.plan``, ``f07_validation.gates``), which runs right after.

To add a key: add it to the mapping it belongs to below (``PACKAGING_ENTRY``,
``DEPLOYRUN_ENTRY``, ``RUNTIME``, ``GATES``, ``REFERENCE``...) with its type and limits;
nothing else needs to change.
"""
from __future__ import annotations

import jsonschema

from contract.defaults import MAX_BATCH_ITEMS
from contract.errors import UserError
from contract.layout import LOG_CSV_COMPRESSIONS, PARAMS_FILE, PREDICTIONS_CSV, VARIANT_ID

VARIANT = {"type": "string", "pattern": f"^{VARIANT_ID.pattern}\\Z",
           "description": "a variant id: 'v' followed by digits"}
NAME = {"type": "string", "minLength": 1, "pattern": "^[^/\\\\]+\\Z", "not": {"enum": [".", ".."]},
        "description": "a name that can be a folder name"}
TIME = {"type": ["integer", "string", "null"], "description": "epoch seconds or an ISO-8601 time"}
BOUNDS = {"type": "object", "additionalProperties": {"type": ["number", "null"]},
          "description": "metric name (as in metrics_per_model.csv) -> bound (null: the gate is off)"}


def mapping(properties: dict, *, required=(), description: str = "") -> dict:
    """A mapping with exactly these keys (each optional unless ``required``)."""
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": list(required), "description": description}


def variants_of(entry: dict) -> dict:
    """A section: variant id -> entry."""
    return {"type": ["object", "null"], "propertyNames": VARIANT, "additionalProperties": entry}


PACKAGING_ENTRY = mapping({
    "parent_variants_f05": {"type": "array", "items": VARIANT, "minItems": 1, "uniqueItems": True},
    "temporal": {"type": ["object", "null"], "additionalProperties": False, "properties": {
        "Tu": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "OW": {"type": ["integer", "null"], "minimum": 1},
        "LT": {"type": ["integer", "null"], "minimum": 0},
        "PW": {"type": ["integer", "null"], "minimum": 1}}},
    "models": {"type": "object", "propertyNames": VARIANT, "additionalProperties": {
        "type": "array", "items": mapping({"model_id": NAME, "source_f05": VARIANT},
                                          required=("model_id", "source_f05"))}},
    "replay": mapping({
        "source": mapping({"dataset_id": VARIANT}, required=("dataset_id",)),
        "time_range": {"type": ["object", "null"], "additionalProperties": False,
                       "properties": {"start": TIME, "end": TIME}},
    }, required=("source",)),
}, required=("parent_variants_f05", "models", "replay"), description="an F06 variant")

RUNTIME = mapping({
    "host": {"type": "string", "minLength": 1},
    "port": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "0 picks a free port"},
    "server": {"enum": ["werkzeug", "gunicorn", "mlserver"],
               "description": "mlserver: the package exported to MLServer (f07_validation.mlserver_export); "
                              "with url: a running MLServer"},
    "workers": {"type": "integer", "minimum": 1, "maximum": 64},
    "url": {"type": ["string", "null"], "pattern": "^https?://", "description": "a server already running"},
    "expose": {"type": "boolean", "description": "allow a host other than loopback"},
    "token_env": {"type": ["string", "null"], "pattern": "^[A-Za-z_][A-Za-z0-9_]*\\Z",
                  "description": "the environment variable holding the bearer token"},
    "access_log": {"type": "boolean"},
    "request_timeout": {"type": "number", "exclusiveMinimum": 0,
                        "description": "seconds a replay request may take before it is a runtime fault"},
}, description="how the variant is served")

GATES = {**mapping({
    "min": BOUNDS, "max": BOUNDS, "max_drop": BOUNDS,
    "baseline": VARIANT,
    "models": {"type": "array", "items": {"type": "string"}},
}, description="bounds the run's metrics must meet"), "type": ["object", "null"]}

REFERENCE = {**mapping({
    "sample_windows": {"type": ["integer", "null"], "minimum": 1},
    "tolerance": {"type": "number", "minimum": 0},
}, description="the independent reference comparison"), "type": ["object", "null"]}

DEPLOYRUN_ENTRY = mapping({
    "parent_variant_f06": VARIANT,
    "runtime": {**RUNTIME, "type": ["object", "null"]},
    "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_ITEMS,
                   "description": f"windows per request; the server accepts at most {MAX_BATCH_ITEMS}"},
    "check_equivalence": {"type": "boolean"},
    "equivalence_sample_windows": {"type": ["integer", "null"], "minimum": 1,
                                   "description": "windows compared in-process at least (every k-th batch "
                                                  "and the last); null: every window"},
    "gates": GATES,
    "reference": REFERENCE,
    "min_scored_share": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "the least share of predictions on F04 windows that must get a label"},
    "log_csv_compression": {"enum": list(LOG_CSV_COMPRESSIONS),
                            "description": "the CSV copy of the prediction log is written as " + ", ".join(
                                f"{PREDICTIONS_CSV[value]} ({value})" for value in LOG_CSV_COMPRESSIONS)},
}, required=("parent_variant_f06",), description="an F07 variant")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"packaging": variants_of(PACKAGING_ENTRY), "deployrun": variants_of(DEPLOYRUN_ENTRY)},
}


class ConfigError(UserError):
    """params.yaml does not follow the schema; the message names every key at fault."""


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _describe(error: jsonschema.ValidationError) -> str:
    """One error as ``<key path>: <problem>``, in this project's words."""
    where = _key_path(error) or "the file"
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties") or {})
        unknown = sorted(set(value) - set(known))
        return "; ".join(f"{where}.{key}: unknown key; known: {', '.join(known)}" for key in unknown)
    if error.validator == "propertyNames" or (error.validator == "pattern" and schema is VARIANT):
        bad = error.instance if error.validator == "pattern" else next(
            (key for key in value if not VARIANT_ID.fullmatch(str(key))), value)
        return (f"{where}: {bad!r} is not a variant id; use 'v' followed by digits (a variant id is a "
                f"folder name, never a path)")
    if schema is NAME or error.validator == "not":
        return f"{where}: {value!r} must be a name: not empty, no '/' or '\\', not '.' or '..'"
    if error.validator == "required":
        return f"{where}: {error.message.split(' is a required')[0]} is missing"
    if error.validator == "type":
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return f"{where}: must be {' or '.join(kinds)}, got {value!r}"
    if error.validator == "enum":
        return f"{where}: {value!r} is not allowed; use one of: {', '.join(map(str, schema['enum']))}" + (
            f"; {schema['description']}" if "description" in schema else "")
    if error.validator in ("maximum", "minimum", "exclusiveMinimum"):
        return f"{where}: {value!r} is out of range ({error.validator} {error.validator_value})" + (
            f"; {schema['description']}" if "description" in schema else "")
    return f"{where}: {error.message}"


# YAML's 256.0 is a float, and JSON Schema's "integer" accepts any number with no fraction:
# the value would pass here and be refused later, deep inside a stage, naming its
# internal files. An integer key takes an int only.
_STRICT = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)))


def config_errors(params: dict) -> list[str]:
    """Every problem of ``params`` (the whole params.yaml), ordered by key path."""
    if not isinstance(params, dict):
        return [f"must hold a mapping with sections packaging: and deployrun:, got {type(params).__name__}"]
    validator = _STRICT(SCHEMA)
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(error) for error in errors]


def validate_params(params: dict, path=PARAMS_FILE) -> dict:
    """``params`` when it follows the schema; else a ConfigError naming every key at fault."""
    problems = config_errors(params)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return params
