"""The server's one Prometheus registry (prometheus_client), served at ``GET /metrics``.

prometheus_client is optional (``runtime.optional``): without it every metric is an
``Unmeasured`` that counts nothing, and ``GET /metrics`` answers 501 naming the package.

One process (werkzeug mode): the metrics live in this process's default registry.
Several gunicorn workers: each worker writes its values to files in the folder named by
``PROMETHEUS_MULTIPROC_DIR`` (the server's command line creates a private one and sets
the variable *before* this module is imported, as prometheus_client requires), and
``/metrics`` aggregates every worker's files, whichever worker answers; a worker that
exits is marked dead so its live gauges stop counting.

The same mechanism answers readiness across workers: ``runtime_worker_ready`` is a
``livesum`` gauge (1 once a worker has loaded every model), so any worker can tell
whether all of them are ready.
"""
from __future__ import annotations

import os

from runtime import optional

try:
    from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                                   generate_latest, multiprocess)
    from prometheus_client import REGISTRY as _PROCESS_REGISTRY
except ModuleNotFoundError as error:  # the minimal runtime: nothing counted, GET /metrics says why
    if error.name != "prometheus_client":
        raise
    CONTENT_TYPE_LATEST = "text/plain"
    Counter = Gauge = Histogram = optional.Unmeasured
    _PROCESS_REGISTRY = None

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Every label takes its value from a fixed set, never from what a client sends: a series
# per method name a client invents would grow /metrics (and every worker's files) without
# bound. Routes are the app's rules (or "(unmatched)"), statuses the server's own.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"

REQUESTS = Counter("runtime_http_requests", "HTTP requests answered, by route and status",
                   ["route", "method", "status"])
LATENCY = Histogram("runtime_http_request_seconds", "Time to answer a request, by route",
                    ["route"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                        5, 10))
BATCH_SIZE = Histogram("runtime_batch_windows", "Windows per inference request, by protocol",
                       ["protocol"], buckets=(1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192))
WINDOWS_SCORED = Counter("runtime_windows_scored", "Windows scored, per model", ["model"])
NON_FINITE = Counter("runtime_non_finite_outputs",
                     "Windows whose probability was NaN or infinite, per model", ["model"])
MODEL_LOAD_SECONDS = Gauge("runtime_model_load_seconds",
                           "Seconds to load and warm up a model (the slowest worker)", ["model"],
                           multiprocess_mode="max")
WORKER_EXITS = Counter("runtime_worker_exits", "Worker processes that exited while the server ran "
                       "(counted by the gunicorn master)")
WORKER_READY = Gauge("runtime_worker_ready", "Worker processes with every model loaded",
                     multiprocess_mode="livesum")


def method_label(method: str) -> str:
    """The ``method`` label of a request: a standard method, else ``other``."""
    return method if method in HTTP_METHODS else OTHER_METHOD


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def _registry() -> CollectorRegistry:
    if _PROCESS_REGISTRY is None:
        raise optional.MissingPackage(optional.missing_message("prometheus_client"))
    if not multiprocess_mode():
        return _PROCESS_REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """Every metric of every worker, in the Prometheus text format."""
    registry = _registry()  # first: without prometheus_client, the one-line refusal
    return generate_latest(registry)


def workers_ready() -> int:
    """How many live worker processes have every model loaded."""
    for family in _registry().collect():
        if family.name == "runtime_worker_ready":
            return int(sum(sample.value for sample in family.samples))
    return 0


def worker_exits() -> int:
    """How many worker processes have exited (been replaced, or stopped) so far: none in
    one process (werkzeug), where nothing counts them and the minimal runtime, without
    prometheus_client, answers /ready all the same."""
    if not multiprocess_mode():
        return 0
    for family in _registry().collect():
        if family.name == "runtime_worker_exits":
            return int(sum(s.value for s in family.samples if s.name.endswith("_total")))
    return 0


def mark_worker_dead(pid: int) -> None:
    """Called by the gunicorn master when a worker exits: its live gauges stop counting,
    and the exit is counted (a client can tell a worker died, even one replaced between
    its requests)."""
    multiprocess.mark_process_dead(pid)
    WORKER_EXITS.inc()
