"""The one settings schema of the server: every knob, its type, its default, its limits.

The command line (``python -m runtime.server``), the F07 variant's ``runtime:`` block and
the tests all end up here, so a setting is named, typed and defaulted once. Values are
checked with a JSON schema (``SETTINGS_SCHEMA``, by ``runtime.settings_schema``, which needs
no package beyond the minimal runtime) before anything starts; a wrong one is a
``SettingsError`` naming the key and the allowed values.

Two rules that are policy, not types:

- **Exposure**: a host other than a loopback address serves the models to the network;
  it needs ``expose: true`` (and then a warning is printed), so that ``0.0.0.0`` is never
  typed by accident.
- **Token**: ``token_env`` names an environment variable holding the bearer token; the
  token itself never appears in params or on a command line (where ``ps`` and
  ``params.yaml`` would show it). A name whose variable is unset or empty is refused.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from contract.defaults import DEFAULT_HOST, DEFAULT_PORT, MAX_BATCH_ITEMS, MAX_CONTENT_LENGTH
from runtime.settings_schema import schema_errors

SERVERS = ("werkzeug", "gunicorn")

SETTINGS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "runtime server settings",
    "type": "object",
    "additionalProperties": False,
    "required": ["manifest"],
    "properties": {
        "manifest": {"type": "string", "minLength": 1,
                     "description": "the F07 variant's manifest.json"},
        "host": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535,
                 "description": "0 picks a free port"},
        "server": {"enum": list(SERVERS),
                   "description": "werkzeug: one process, a thread per connection (tests, "
                                  "single-process use); gunicorn: N worker processes"},
        "workers": {"type": "integer", "minimum": 1, "maximum": 64,
                    "description": "gunicorn worker processes"},
        "threads": {"type": "integer", "minimum": 1, "maximum": 256,
                    "description": "request threads per gunicorn worker"},
        "expose": {"type": "boolean",
                   "description": "allow a host other than loopback (serves to the network)"},
        "token_env": {"type": ["string", "null"], "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                      "description": "environment variable holding the bearer token"},
        "access_log": {"type": "boolean", "description": "one line per request on stderr"},
        "max_batch_items": {"type": "integer", "minimum": 1},
        "max_content_length": {"type": "integer", "minimum": 1,
                               "description": "largest request body, bytes"},
        "read_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                         "description": "seconds a connection may stay silent while a request "
                                        "is expected or being read"},
        "graceful_timeout": {"type": "number", "minimum": 0, "maximum": 3600,
                             "description": "seconds a stopping server lets requests finish"},
        "load_delay": {"type": "number", "minimum": 0,
                       "description": "seconds to wait before loading the models (readiness "
                                      "checks)"},
        "parent_pid": {"type": ["integer", "null"], "minimum": 1,
                       "description": "shut down when this process is no longer the parent"},
    },
}


class SettingsError(ValueError):
    """A setting the server cannot start with; the message names the key and the fix."""


@dataclass(frozen=True)
class ServingSettings:
    manifest: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    server: str = "werkzeug"
    workers: int = 2
    threads: int = 4
    expose: bool = False
    token_env: str | None = None
    access_log: bool = False
    max_batch_items: int = MAX_BATCH_ITEMS
    max_content_length: int = MAX_CONTENT_LENGTH
    read_timeout: float = 10.0
    graceful_timeout: float = 10.0
    load_delay: float = 0.0
    parent_pid: int | None = None

    @classmethod
    def from_mapping(cls, values: dict, where: str = "runtime settings") -> "ServingSettings":
        """Checked settings from a mapping (defaults fill what is absent)."""
        errors = schema_errors(SETTINGS_SCHEMA, values)
        if errors:
            error = errors[0]
            key = error.key or "(top level)"
            if error.keyword == "additionalProperties":
                known = ", ".join(sorted(SETTINGS_SCHEMA["properties"]))
                raise SettingsError(f"{where}: {error.message}; known keys: {known}")
            raise SettingsError(f"{where}: key '{key}': {error.message}")
        settings = cls(**values)
        settings.check_host()
        return settings

    @property
    def workers_expected(self) -> int:
        """Processes that must each be ready before the server says it is."""
        return self.workers if self.server == "gunicorn" else 1

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False  # a host name other than localhost resolves who knows where

    def check_host(self) -> None:
        if not self.is_loopback() and not self.expose:
            raise SettingsError(
                f"host {self.host!r} is not a loopback address: the models would be served to "
                "the network. Use 127.0.0.1, or set runtime.expose: true (--expose) to mean it")

    def exposure_warning(self) -> str | None:
        if self.is_loopback():
            return None
        return (f"WARNING: serving on {self.host}, reachable from the network"
                + ("" if self.token_env else "; no token is required (set runtime.token_env)"))

    def token(self) -> str | None:
        """The bearer token, read from the environment variable ``token_env`` names."""
        if self.token_env is None:
            return None
        token = os.environ.get(self.token_env, "")
        if not token:
            raise SettingsError(f"runtime.token_env names the environment variable "
                                f"{self.token_env}, but it is unset or empty; export the token "
                                "in it (the token never goes in params)")
        return token

