"""Our server (werkzeug, gunicorn) and MLServer on the same package and batches, beside
the same models in-process.

    python -m bench.bench_engines [--windows 10240] [--batch-sizes 1 32 256 1024] [--repeats 5]

Builds ``bench_runtime``'s package (three upstream-shaped Keras models), starts the three
engines on it at once, each a real process on a loopback port (ours with ``runtime.server``,
gunicorn with 2 workers x 4 threads; MLServer on the exported model repository, as F07's
``runtime: {server: mlserver}`` runs it), and scores the same windows (~57 codes) through
each over the one protocol they all speak, the Open Inference Protocol V2 with JSON
tensors: F07's ``OipClient``, one request per model and batch, one batch at a time, every
answer decoded and checked as the replay checks it. In-process is ``LoadedModel.predict``
of every model on the same batches. Passes alternate between the four, so load from other
processes falls on all of them alike. Printed per batch size and engine: windows x models
per second (best pass), its ratio to in-process, and the p50 / p99 latency of a batch
(every model answered) over all passes.

Our server's own wire (Arrow on ``/infer_batch``, several requests in flight) is
``bench_runtime``'s business; here the engines are compared on the same requests.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off stderr)

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_runtime import _batches, demo_shaped_models
from builders.packages import build_package, synthetic_windows, write_manifest
from contract import layout
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess
from f07_validation.mlserver_process import MLServerProcess
from f07_validation.oip_client import OipClient
from runtime.models import load_models

ENGINES = ("werkzeug", "gunicorn", "mlserver")


def _servers(stack: contextlib.ExitStack, manifest) -> dict:
    """Every engine up on the package, ready; stopped when ``stack`` closes."""
    return {
        "werkzeug": stack.enter_context(ServerProcess(manifest.path)),
        "gunicorn": stack.enter_context(ServerProcess(
            manifest.path, server_args=["--server", "gunicorn", "--workers", "2", "--threads", "4"])),
        "mlserver": stack.enter_context(MLServerProcess(manifest, host="127.0.0.1")),
    }


def _measure(runs: dict, batches: list, repeats: int) -> dict:
    """{run: (best pass seconds, every batch's latency)}, passes alternating between runs."""
    for run in runs.values():
        run(batches[0])  # first-call costs are not throughput
    best = dict.fromkeys(runs, float("inf"))
    latencies = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            for batch in batches:
                before = time.perf_counter()
                run(batch)
                latencies[name].append(time.perf_counter() - before)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name], np.array(latencies[name])) for name in runs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=10240)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        build_package(tmp / "package", demo_shaped_models())
        manifest = load_manifest(write_manifest(tmp / "v701" / layout.MANIFEST, tmp / "package"))
        models = list(load_models(manifest).values())
        windows = synthetic_windows(args.windows, mean_len=57, codes=(1, 130), seed=7)
        servers = _servers(stack, manifest)
        clients = {name: stack.enter_context(OipClient(server.url, manifest)) for name, server in servers.items()}

        def in_process(batch):
            for model in models:
                model.predict(batch)

        runs = {**{name: client.infer_batch for name, client in clients.items()}, "in-process": in_process}
        print(f"{len(windows)} windows (~57 codes), {len(models)} models (dense_bow 122, sequence_embedding "
              "250, cnn1d 330); OIP JSON, a request per model, one batch at a time; windows x models per second")
        print(f"{'batch':>6} {'engine':>10} {'windows/s':>10} {'vs in-proc':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for size in args.batch_sizes:
            # Batch 1 is a request per window and model: a tenth of the windows tells the same story.
            sample = windows[:max(len(windows) // 10, 1)] if size == 1 else windows
            batches = _batches(sample, size)
            measured = _measure(runs, batches, args.repeats)
            scored = len(sample) * len(models)
            local = scored / measured["in-process"][0]
            for name in (*ENGINES, "in-process"):
                seconds, latency = measured[name]
                p50, p99 = np.percentile(latency, [50, 99]) * 1000
                print(f"{size:>6} {name:>10} {scored / seconds:>10,.0f} {scored / seconds / local:>9.2f}x "
                      f"{p50:>8.1f} {p99:>8.1f}", flush=True)
        print("(ratios to in-process)")


if __name__ == "__main__":
    main()
