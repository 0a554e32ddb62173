"""The infer stage of F07: replay a sealed package through a server process over HTTP.

``infer`` starts the server as its own process, replays the package through it as a
black-box client, and writes every raw prediction as it arrives (``PredictionLog``), so
memory does not grow with the replay. Wall-clock figures stay out of the tracked outputs
(``timing.json``).
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import requests

from console.progress import progress
from contract import layout
from contract.files import atomic_path, remove_stale_temporaries, write_json_atomic
from contract.parquet import WRITER_OPTIONS
from contract.predictions import PREDICTION_CSV_SCHEMA, PREDICTION_SCHEMA
from contract.row_stream import BATCH_ROWS
from contract.seal import verify_seal
from contract.windows import grid_starts
from f07_validation.client import BatchFailed, InferenceClient, ServerError, replay
from f07_validation.deployrun import DeployRun, DeployRunError
from f07_validation.endpoint import Endpoint, open_endpoint
from f07_validation.latency import NOTE as LATENCY_NOTE, LatencyHistogram
from f07_validation.overlap import Overlapped

STDERR_LINES = 20  # of the server's stderr, kept with a runtime fault
# zlib's fastest level. At upstream's shape (bench/bench_csv_log.py) it makes the CSV ~12x
# smaller for ~1.7x the plain CSV's write time (the whole log pass: ~1.3x); level 6 is ~18%
# smaller again at ~3.6x, level 9 ~22% at ~5.7x.
GZIP_LEVEL = 1
# Answered batches waiting for the log: the log writes a row group every BATCH_ROWS
# rows (~85 batches of 256 windows x 3 models), which takes ~0.1 s, and a sampled batch is
# compared in-process; with a few slots the replay stopped for each (at upstream's size,
# ~20% of infer's time). 64 batches of 256 windows of ~60 codes are ~8 MB.
LOG_QUEUE_BATCHES = 64


def open_csv_sink(path: Path, compression: str, files: contextlib.ExitStack):
    """Where the CSV copy of the log goes for ``deployrun.<v>.log_csv_compression``
    (``contract.layout.LOG_CSV_COMPRESSIONS``), closed with ``files``.

    gzip is Python's own gzip module (pyarrow's compressed stream has no level to choose:
    it writes level 9), with the header's two varying fields pinned: no file name and
    mtime 0, so the same rows give the same bytes on a re-run (with the same zlib)."""
    if compression == "none":
        return files.enter_context(pa.OSFile(str(path), "wb"))
    if compression == "gzip":
        raw = files.enter_context(open(path, "wb"))
        return files.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=GZIP_LEVEL))
    raise ValueError(f"unknown CSV log compression {compression!r}; known: {', '.join(layout.LOG_CSV_COMPRESSIONS)}")


class PredictionLog:
    """The raw prediction log, written as it arrives: a row per window and model,
    windows in time order and models in manifest order within a window. The parquet file
    and its CSV copy (``csv_compression``, see ``open_csv_sink``) are written in the same
    pass, each under a temporary name until the log is closed without an error."""

    def __init__(self, parquet_path: Path, csv_path: Path, csv_compression: str):
        self._paths = parquet_path, csv_path
        self._csv_compression = csv_compression
        self._pending: list[pa.Table] = []
        self._pending_text: list[pa.Array] = []  # OW_events as the CSV writes them, row for row
        self._pending_rows = 0
        self.rows = 0

    def __enter__(self):
        # closed in reverse: the writers, the files, then each file moved into place
        with contextlib.ExitStack() as files:
            parquet_path, csv_path = (files.enter_context(atomic_path(path)) for path in self._paths)
            self._parquet_writer = files.enter_context(pq.ParquetWriter(parquet_path, PREDICTION_SCHEMA,
                                                                        **WRITER_OPTIONS))
            csv_sink = open_csv_sink(csv_path, self._csv_compression, files)
            self._csv_writer = files.enter_context(pacsv.CSVWriter(csv_sink, PREDICTION_CSV_SCHEMA))
            self._files = files.pop_all()
        return self

    def add(self, batch) -> None:
        windows, answers = batch.windows, batch.answers
        n, m = len(windows), len(answers)
        # row i*m + j: window i, model j; each window's events are built (and, for the CSV,
        # written out as text) once, then repeated for its models
        repeat = pa.array(np.repeat(np.arange(n), m))
        events = pa.ListArray.from_arrays(pa.array(windows.offsets, pa.int32()), pa.array(windows.codes, pa.int64()))
        probabilities = np.stack([a.probabilities for a in answers], axis=1).reshape(-1)
        answered = np.stack([a.answered for a in answers], axis=1).reshape(-1)
        y_pred = np.stack([a.y_pred for a in answers], axis=1).reshape(-1)
        per_model_row = pa.array(np.tile(np.arange(m), n))

        def per_model(values):
            return pa.array(values, pa.string()).take(per_model_row)

        table = pa.Table.from_arrays([
            pa.array(windows.t0, pa.int64()).take(repeat),
            events.take(repeat),
            per_model([a.entry.objective for a in answers]),
            per_model([a.entry.prediction_name for a in answers]),
            per_model([a.entry.source_f05 for a in answers]),
            per_model([a.entry.model_id for a in answers]),
            pa.array(probabilities, pa.float64()),
            pa.array(y_pred, pa.int8(), mask=~answered),
        ], schema=PREDICTION_SCHEMA)
        self._pending.append(table)
        self._pending_text.append(pc.binary_join(pc.cast(events, pa.list_(pa.string())), " ").take(repeat))
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        events_text = pa.chunked_array(self._pending_text, pa.string())
        self._pending, self._pending_text, self._pending_rows = [], [], 0
        self._parquet_writer.write_table(table, row_group_size=BATCH_ROWS)
        self._csv_writer.write_table(table.set_column(1, "OW_events", events_text))

    def __exit__(self, *exc_info):
        if exc_info[0] is None:
            try:
                self._flush()
            except BaseException as error:  # nothing moves into place
                self._files.__exit__(type(error), error, error.__traceback__)
                raise
        return self._files.__exit__(*exc_info)


def discard_results(run: DeployRun) -> None:
    """Remove every result of an earlier run of this variant from its log on (the log,
    its summaries, the metrics, the reference comparison, the verdict, the report): a
    replay that then fails must not leave an earlier verdict or report beside logs it
    no longer describes. The CSV copy goes under every name it has (both compressions):
    after a change of ``log_csv_compression`` only the current setting's file remains; so
    does whatever scratch a killed earlier run left in ``logs/``."""
    for relative in (layout.PREDICTIONS, layout.PREDICTIONS_PARTIAL, *layout.PREDICTIONS_CSV.values(),
                     *layout.PREDICTIONS_CSV_PARTIAL.values(), layout.RUN_SUMMARY, layout.EQUIVALENCE,
                     layout.REFERENCE, layout.VERDICT, layout.VERDICT_METRICS, layout.RUN_METADATA):
        run.path(relative).unlink(missing_ok=True)
    for relative in (layout.METRICS_DIR, layout.REPORT_DIR):
        shutil.rmtree(run.path(relative), ignore_errors=True)
    remove_stale_temporaries(run.path(layout.LOGS_DIR))  # an earlier infer killed mid-write


class ServerGone(Exception):
    """The server process this run started has exited, yet an answer came: from a process
    it left behind (a gunicorn master killed, its orphaned workers still serving the
    inherited socket), which no one watches or stops."""


def check_server_alive(endpoint: Endpoint, number: int, batch, timeout: float) -> None:
    """Raise ``BatchFailed`` for answered batch ``number`` (it is not logged) when the server
    process started for this run has exited: answers that outlive it are not the served
    package's, however complete they look."""
    server = endpoint.server
    if server is not None and server.process.poll() is not None:
        raise BatchFailed(number, int(batch.windows.t0[0]), len(batch.windows), timeout,
                          ServerGone("the server process had exited when this answer arrived (from "
                                     "a process it left behind)"))


class WorkerExited(Exception):
    """A worker process of the server exited during the replay (and was replaced)."""


def check_workers_lived(endpoint: Endpoint, manifest, number: int, t0: int, timeout: float) -> None:
    """Raise ``BatchFailed`` after the last batch ``number`` (first ``t0``) when the server counts more
    worker exits on ``GET /ready`` than when the replay started: a worker that died
    between two requests, and was replaced by gunicorn, fails no request, and the
    answers came from processes the run did not start with."""
    before = (endpoint.ready.get("workers") or {}).get("exited")
    if before is None:  # a server that does not count them (a deployment by URL of another build)
        return
    try:
        with InferenceClient(endpoint.url, manifest, timeout=timeout, token=endpoint.token) as client:
            _, body = client.ready()
    except requests.RequestException as error:
        raise BatchFailed(number, t0, 0, timeout, error) from None
    after = (body.get("workers") or {}).get("exited", before)
    if after > before:
        raise BatchFailed(number, t0, 0, timeout, WorkerExited(
            f"{after - before} of the server's worker processes exited during the replay (and were "
            "replaced): its answers did not all come from the processes it started with"))


def runtime_fault(failure: BatchFailed, endpoint: Endpoint) -> dict:
    """What is known of a batch that got no usable answer: which batch and windows,
    what the client saw, whether the server process is gone (its exit code) and the last
    lines it wrote to stderr (for a server this run started; a deployment by URL shows
    only what the client saw). The server's URL (a port that changes every run) is left
    out of the client's message."""
    cause, server = failure.cause, endpoint.server
    code = server.process.poll() if server else None
    if server and code is None and not isinstance(cause, (ServerError, requests.Timeout, WorkerExited)):
        try:  # a refused or reset connection: give a dying server a moment to be reaped
            code = server.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
    if code is not None:
        kind = "server exited"
        reason = f"the server process exited with code {code}" + (
            f" (killed by {signal.Signals(-code).name})" if code < 0 else "")
    elif isinstance(cause, requests.Timeout):
        kind, reason = "timeout", f"the server did not answer within {failure.timeout:g} s"
    elif isinstance(cause, ServerError):
        kind, reason = "bad answer", str(cause)
    elif isinstance(cause, WorkerExited):
        kind, reason = "worker exited", str(cause)
    else:
        kind, reason = "connection lost", f"the connection to the server failed ({type(cause).__name__})"
    return {"kind": kind, "reason": reason, "batch": failure.batch, "first_t0": failure.t0,
            "windows": failure.windows, "exit_code": code,
            "client_error": str(cause).replace(endpoint.url, "<server>")[:1000],
            "stderr_tail": server.stderr_tail().splitlines()[-STDERR_LINES:] if server else []}


def expected_windows(manifest) -> int:
    """How many windows the replay sends: the grid starts whose OW lies in it (the
    progress bar's total)."""
    metadata = json.loads((manifest.package_dir / layout.PACKAGE_METADATA).read_text(encoding="utf-8"))
    span = metadata["replay"]
    return len(grid_starts(manifest.regime(), span["first_segs"], span["last_segs"]))


def equivalence_stride(windows: int, batch_size: int, sample_windows: int | None) -> int:
    """Compare every k-th batch of the replay (and its last) in-process: the largest k that
    still compares at least ``sample_windows`` of the replay's ``windows``; 1 (every batch)
    when ``sample_windows`` is None or the replay is no longer.

    Why a sample: the comparison runs the package's models again, on the client's side of
    the same machine, so comparing every window costs as much CPU as serving it and halves
    the replay's rate (bench/bench_scale.py). What it judges, the HTTP hop, fails the same
    way on every batch it touches (a codec, an ordering, a precision bug), and whole
    batches keep each compared answer beside its own request; the last batch is the one
    shorter than the rest."""
    if sample_windows is None or windows <= sample_windows:
        return 1
    batches = -(-windows // batch_size)
    return max(1, batches // -(-sample_windows // batch_size))


def infer(run: DeployRun) -> dict:
    """Replay the package through a server process; write the raw prediction log, the
    run summary, the transport comparison and (untracked) the timing.

    A fault of the package under test during the replay (the server exits or hangs, a
    request times out, a batch is answered with an error or a malformed answer) is a
    result: what was logged stays under the partial log's name, the fault goes into the
    run summary, and the stage ends normally so that the verdict fails naming it. A
    configuration or harness error raises before or outside the replay."""
    settings = run.settings
    manifest = run.manifest
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise DeployRunError(check.describe())
    equivalence = None
    if settings.check_equivalence:
        from runtime.models import EquivalenceCheck  # TensorFlow, only when asked for
        equivalence = EquivalenceCheck.from_manifest(manifest)
    summary = {"windows_sent": 0, "windows_answered": 0, "windows_with_events": 0, "batches": 0,
               "batch_size": settings.batch_size,
               "models": {m.key: {"non_finite": 0} for m in manifest.models}, "first_t0": None, "last_t0": None,
               "fault": None, "log": layout.PREDICTIONS}
    total = expected_windows(manifest)
    stride = equivalence_stride(total, settings.batch_size, settings.equivalence_sample)
    compared = {"sample_windows": settings.equivalence_sample, "stride_batches": stride, "batches_compared": 0}
    compression = settings.log_csv_compression
    latency = LatencyHistogram()  # per batch size, wall clock: into timing.json only
    partial = run.path(layout.PREDICTIONS_PARTIAL), run.path(layout.PREDICTIONS_CSV_PARTIAL[compression])
    with open_endpoint(manifest, settings.runtime, f"deployrun.{run.variant}") as endpoint:
        # Only now, with the server up (a configuration error has left every output as it
        # was): this replay replaces the earlier one and everything judged from it.
        discard_results(run)
        with PredictionLog(*partial, compression) as log:

            def record(batch) -> None:  # on the worker thread, batch after batch, in order
                log.add(batch)
                windows, index = batch.windows, summary["batches"]
                summary["windows_sent"] += len(windows)
                summary["windows_with_events"] += int(np.count_nonzero(np.diff(windows.offsets)))
                # every answer holds one probability or null per window (checked by the client)
                summary["windows_answered"] += len(batch.answers[0].probabilities)
                summary["batches"] += 1
                latency.add(len(windows), batch.latency_seconds)
                if summary["first_t0"] is None:
                    summary["first_t0"] = int(windows.t0[0])
                summary["last_t0"] = int(windows.t0[-1])
                for answer in batch.answers:
                    summary["models"][answer.entry.key]["non_finite"] += int((~answer.answered).sum())
                if equivalence is not None and (index % stride == 0 or summary["windows_sent"] == total):
                    equivalence.add(windows, {a.entry.key: a.probabilities for a in batch.answers},
                                    {a.entry.key: np.where(a.answered, a.y_pred, -1) for a in batch.answers})
                    compared["batches_compared"] += 1

            started = time.perf_counter()
            failure = None
            with Overlapped(record, depth=LOG_QUEUE_BATCHES) as worker, progress(desc=f"infer@{run.variant}", total=total,
                                                        unit="window", unit_scale=True) as bar:
                try:
                    for number, batch in enumerate(replay(endpoint.url, manifest, batch_size=settings.batch_size,
                                                          timeout=settings.request_timeout, token=endpoint.token,
                                                          progress=None, wire=endpoint.wire), start=1):
                        check_server_alive(endpoint, number, batch, settings.request_timeout)
                        worker.put(batch)
                        bar.update(len(batch.windows))
                    else:
                        check_workers_lived(endpoint, manifest, number, int(batch.windows.t0[0]),
                                            settings.request_timeout)
                except BatchFailed as error:
                    failure = error
                replayed = time.perf_counter()
            seconds = time.perf_counter() - started  # every batch logged and compared
            # how long the replay waited for the log and the comparison (and for their tail)
            waiting_for_log = worker.blocked_seconds + (seconds - (replayed - started))
            if failure is not None:
                summary["windows_sent"] += failure.windows
                summary["fault"] = runtime_fault(failure, endpoint)
                summary["log"] = layout.PREDICTIONS_PARTIAL
    if summary["fault"] is None:  # only a complete log takes the complete log's name
        os.replace(partial[0], run.predictions_path)
        os.replace(partial[1], run.path(layout.PREDICTIONS_CSV[compression]))
    else:
        print(f"infer@{run.variant}: RUNTIME FAULT: {summary['fault']['reason']} at batch "
              f"{summary['fault']['batch']}; kept what was logged as {layout.PREDICTIONS_PARTIAL}; the verdict "
              f"will fail naming it (after a transient fault: dvc repro -f -s infer@{run.variant})",
              file=sys.stderr)
    summary["rows_logged"] = log.rows
    write_json_atomic(run.path(layout.RUN_SUMMARY), summary)
    write_json_atomic(run.path(layout.EQUIVALENCE),
                      {**equivalence.summary(), **compared} if equivalence else {"enabled": False, "passed": None})
    windows = summary["windows_sent"]
    write_json_atomic(run.path(layout.RUN_TIMING), {
        "url": endpoint.url,  # where it was served: with runtime.port 0, the free port it got
        "seconds": round(seconds, 3),
        "windows_per_second": round(windows / seconds, 1) if seconds > 0 else None,
        "predictions_per_second": round(log.rows / seconds, 1) if seconds > 0 else None,
        "batch_size": settings.batch_size,
        "waiting_for_log_seconds": round(waiting_for_log, 3),
        "latency_ms": latency.summary(),
        "latency_note": LATENCY_NOTE,
        "note": "end to end: every window sent, answered and logged, and the sampled batches compared "
                "in-process (logs/equivalence.json); logging and the comparison run on a worker thread "
                "beside the replay, and waiting_for_log_seconds is "
                "how long the replay waited for them (time in which the client side, not serving, was "
                "the bottleneck)",
    })
    return summary
