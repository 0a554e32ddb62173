"""Serving under concurrency: throughput and latency of both server modes, side by side.

    python -m bench.bench_serving [--requests 96] [--batch-size 128] [--clients 1 4 8]

Builds a sealed package of three upstream-shaped Keras models (``bench_runtime``'s), and
for each server mode (werkzeug: one process, a thread per connection; gunicorn: two
worker processes) starts the real server process on a loopback port and sends the same
``--requests`` batches of ``--batch-size`` windows (~57 codes each) to
``POST /infer_batch`` from 1, 4 and 8 concurrent clients (threads, each with its own
keep-alive session; every answer is decoded, as the F07 client does). It prints, per mode
and number of clients, windows per second (each window scored by the three models) and
the p50 / p99 request latency, and each mode's throughput relative to werkzeug with one
client. The clients share the machine's cores with the server, as a replay client on
the same host does.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off stderr)

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from bench.bench_runtime import demo_shaped_models
from builders.packages import build_package, synthetic_windows, write_manifest
from contract import layout
from f07_validation.client import ServerProcess

MODES = {"werkzeug": ["--server", "werkzeug"],
         "gunicorn": ["--server", "gunicorn", "--workers", "2", "--threads", "4"]}


def _run(url: str, bodies: list[bytes], clients: int) -> tuple[float, np.ndarray]:
    """Send every body once, ``clients`` at a time; (wall seconds, latencies in s)."""
    latencies = np.zeros(len(bodies))
    next_body = iter(range(len(bodies)))
    lock = threading.Lock()
    failures = []

    def client():
        with requests.Session() as session:
            session.trust_env = False
            while True:
                with lock:
                    i = next(next_body, None)
                if i is None:
                    return
                started = time.perf_counter()
                response = session.post(f"{url}/infer_batch", data=bodies[i], timeout=120,
                                        headers={"Content-Type": "application/json"})
                answer = response.json()
                latencies[i] = time.perf_counter() - started
                if response.status_code != 200 or len(answer["models"]) != 3:
                    failures.append(response.text[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"the server refused requests: {failures[0]}")
    return wall, latencies


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args(argv)

    windows = synthetic_windows(args.requests * args.batch_size, mean_len=57, codes=(1, 130), seed=7)
    bodies = [json.dumps({"windows": windows[i:i + args.batch_size]}, separators=(",", ":")).encode()
              for i in range(0, len(windows), args.batch_size)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        tmp = Path(tmp)
        build_package(tmp / "package", demo_shaped_models())
        manifest_path = write_manifest(tmp / "v701" / layout.MANIFEST, tmp / "package")
        for mode, server_args in MODES.items():
            with ServerProcess(manifest_path, server_args=server_args) as server:
                _run(server.url, bodies[:max(args.clients) * 2], max(args.clients))  # warm every thread
                for clients in args.clients:
                    wall, latencies = _run(server.url, bodies, clients)
                    rows.append((mode, clients, len(windows) / wall,
                                 1000 * np.percentile(latencies, 50), 1000 * np.percentile(latencies, 99)))

    base = rows[0][2]
    print(f"{args.requests} requests x {args.batch_size} windows (~57 codes), 3 models "
          f"(dense_bow 122, sequence_embedding 250, cnn1d 330)")
    print(f"{'server':>9} {'clients':>7} {'windows/s':>10} {'vs 1 werkzeug':>13} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, clients, rate, p50, p99 in rows:
        print(f"{mode:>9} {clients:>7} {rate:>10,.0f} {rate / base:>12.2f}x {p50:>8.1f} {p99:>8.1f}")


if __name__ == "__main__":
    main()
