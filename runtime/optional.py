"""The runtime's optional extras: what each one is for, and the one-line refusal when a
feature that needs one is asked for and its package is not installed.

The minimal runtime (``requirements-runtime.txt``) is TensorFlow, Flask, requests and
numpy: it serves the seeds' API and the Open Inference Protocol with JSON bodies. The
extras (``requirements.txt`` installs them all) each add a feature and are imported only
where that feature runs, so a server without them starts silently:

- ``prometheus_client``: ``GET /metrics``, and the readiness count across gunicorn
  workers (so gunicorn mode needs it too);
- ``gunicorn``: ``--server gunicorn`` (``runtime: {server: gunicorn}``);
- ``pyarrow``: Arrow IPC request and answer bodies (the replay's wire);
- ``mlserver``: serving a package on MLServer (``runtime.mlserver_model``).
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import NamedTuple

from runtime.errors import ServingError


class Extra(NamedTuple):
    """An optional extra: the distribution to install, the feature that needs it, the
    project's requirements file that pins it, and the server's operations that answer 501
    without it (``(method, OpenAPI path)``; ``runtime.openapi`` lists the 501 from here)."""

    distribution: str
    feature: str
    requirements: str
    operations: tuple[tuple[str, str], ...] = ()


EXTRAS = {  # import name -> Extra
    "prometheus_client": Extra("prometheus-client", "metrics (GET /metrics, gunicorn's readiness "
                                                    "across workers)", "requirements.txt",
                               operations=(("get", "/metrics"),)),
    "gunicorn": Extra("gunicorn", "the gunicorn server (--server gunicorn)", "requirements.txt"),
    "pyarrow": Extra("pyarrow", "Arrow IPC bodies (Content-Type: application/vnd.apache.arrow.stream)",
                     "requirements.txt", operations=(("post", "/infer_batch"),)),
    "mlserver": Extra("mlserver", "serving on MLServer", "requirements-mlserver.txt"),
}


class MissingPackage(ServingError):
    """A feature asked for whose package is not installed (501: this server does not
    implement it as installed); the message names the package and how to install it."""

    status = 501


def missing_message(module: str) -> str:
    distribution, feature, requirements, _ = EXTRAS[module]
    return (f"{feature} needs the Python package {distribution}, which is not installed in "
            f"this environment; install it with `pip install -r {requirements}` (pinned) or "
            f"`pip install {distribution}`, or use the server without it")


def installed(module: str) -> bool:
    """Whether an extra is installed, without importing it (prometheus_client, for one,
    must be imported only once its multiprocess folder is set)."""
    return importlib.util.find_spec(module) is not None


def require_installed(*modules: str) -> None:
    """Refuse (``MissingPackage``) a feature whose extras are not all installed, without
    importing them."""
    for module in modules:
        if not installed(module):
            raise MissingPackage(missing_message(module))


def require(module: str) -> ModuleType:
    """Import an extra for the feature asked for, or raise ``MissingPackage`` in one line."""
    if module not in EXTRAS:
        raise KeyError(f"{module} is not one of the runtime's optional extras {sorted(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module and not (error.name or "").startswith(module + "."):
            raise  # the extra is there but broken: its own error says more than ours would
        raise MissingPackage(missing_message(module)) from None


class Unmeasured:
    """A metric of the minimal runtime, without prometheus_client: counts nothing (the
    same calls as a prometheus_client metric, labelled or not), so serving code never asks
    whether metrics are on; ``GET /metrics`` says why there is nothing to show."""

    def __init__(self, *args, **kwargs):
        pass

    def labels(self, *args, **kwargs) -> "Unmeasured":
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass
