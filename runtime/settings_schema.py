"""The settings schema's checker: the JSON Schema keywords ``SETTINGS_SCHEMA`` uses, and no
others, checked without the jsonschema package.

Why not jsonschema: the minimal runtime (TensorFlow, Flask, requests, numpy) must check
its settings too, and jsonschema brings four packages (one of them compiled) for a flat
object of scalars. The schema stays a JSON Schema document (``/openapi.json`` could
publish it, any validator reads it); ``tests/test_runtime_minimal.py`` checks that
jsonschema gives the same verdict on every key. A keyword outside this subset is refused
when the schema is checked, so a schema that grows one cannot be half-checked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    # JSON Schema's integer is a number without a fraction: 2.0 is one
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)
                          or isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_ANNOTATIONS = {"$schema", "title", "description"}
_OBJECT_KEYWORDS = {"type", "additionalProperties", "required", "properties"} | _ANNOTATIONS
_VALUE_KEYWORDS = {"type", "enum", "minimum", "maximum", "exclusiveMinimum", "minLength",
                   "pattern"} | _ANNOTATIONS


@dataclass(frozen=True)
class SchemaError:
    """One violation: the key (``None`` for the object itself), the keyword that failed,
    and a message saying what was wrong and what is allowed."""

    key: str | None
    keyword: str
    message: str


def _check_keywords(schema: dict, allowed: set, where: str) -> None:
    unknown = set(schema) - allowed
    if unknown:
        raise ValueError(f"{where} uses JSON Schema keywords {sorted(unknown)} that "
                         "runtime.settings_schema does not check; add them there")


def _value_errors(key: str, value, schema: dict) -> list[SchemaError]:
    _check_keywords(schema, _VALUE_KEYWORDS, f"settings schema, key {key!r}")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[kind](value) for kind in types):
            return [SchemaError(key, "type", f"{value!r} is not of type "
                                             f"{' or '.join(map(repr, types))}")]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(SchemaError(key, "enum", f"{value!r} is not one of {schema['enum']}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(SchemaError(key, "minimum",
                                      f"{value!r} is less than the minimum of {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(SchemaError(key, "maximum", f"{value!r} is greater than the maximum "
                                                      f"of {schema['maximum']}"))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(SchemaError(key, "exclusiveMinimum", f"{value!r} is less than or equal "
                                      f"to the minimum of {schema['exclusiveMinimum']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(SchemaError(key, "minLength", f"{value!r} is too short"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(SchemaError(key, "pattern",
                                      f"{value!r} does not match {schema['pattern']!r}"))
    return errors


def schema_errors(schema: dict, values) -> list[SchemaError]:
    """Every violation of ``schema`` (a flat object schema) by ``values``, by key."""
    _check_keywords(schema, _OBJECT_KEYWORDS, "settings schema")
    if not isinstance(values, dict):
        return [SchemaError(None, "type", f"{values!r} is not of type 'object'")]
    properties = schema.get("properties", {})
    errors = [SchemaError(None, "required", f"{key!r} is a required property")
              for key in schema.get("required", ()) if key not in values]
    extra = sorted(set(values) - set(properties))
    if extra and schema.get("additionalProperties") is False:
        errors.append(SchemaError(None, "additionalProperties",
                                  "Additional properties are not allowed "
                                  f"({', '.join(map(repr, extra))} unexpected)"))
    for key in sorted(set(values) & set(properties)):
        errors += _value_errors(key, values[key], properties[key])
    return errors
