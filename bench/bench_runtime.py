"""End-to-end serving throughput beside the in-process ceiling, per batch size.

    python -m bench.bench_runtime [--windows 10240] [--batch-sizes 1 32 256 1024] [--in-flight 4]

Builds a sealed package of three real Keras models built as upstream's F05 builds them
(dense_bow 122 inputs, sequence_embedding max_len 250, cnn1d max_len 330), starts the
real server process on a loopback port, and scores the same synthetic windows (~57 codes
each), held as the replay holds them (flat code and offset arrays), four ways, side by
side in one run:

- HTTP JSON: ``InferenceClient.infer_batch`` with ``wire=codecs.JSON``, one request at a
  time (the server's default wire);
- HTTP Arrow: the same with ``wire=codecs.ARROW``, one request at a time;
- HTTP as the replay sends it: ``infer_in_order`` (Arrow, ``--in-flight`` requests at
  once, answers in order), the code the infer stage runs;
- in-process: ``LoadedModel.predict`` on the same arrays, every model, the ceiling.

Every HTTP answer is decoded and checked as the replay decodes it. Throughput is windows
x models per second. Target (issue 17): the replay's HTTP at batch 256 at least 0.8x
in-process.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off stderr)

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from builders.packages import UPSTREAM_LARGEST_HP, ModelDef, build_package, synthetic_windows, write_manifest
from contract import layout
from contract.defaults import REPLAY_IN_FLIGHT
from contract.manifest import load_manifest
from contract.windows import Windows
from f07_validation.client import InferenceClient, ServerProcess, infer_in_order
from runtime import codecs
from runtime.models import load_models
from runtime.vectorize import Ragged

VOCAB = list(range(1, 123))


def demo_shaped_models() -> list[ModelDef]:
    """Upstream's architectures at the largest sizes of its search space (cnn1d: one
    dense layer, as upstream allows), so the model cost is as in a real run."""
    cnn_hp = {**UPSTREAM_LARGEST_HP, "n_layers": 1}
    return [
        ModelDef("bench_a", "dense_bow", "v401", "v501", vocab=VOCAB, width=122, seed=1,
                 hp=UPSTREAM_LARGEST_HP),
        ModelDef("bench_a", "sequence_embedding", "v401", "v502", vocab=VOCAB, width=250, seed=2,
                 hp=UPSTREAM_LARGEST_HP),
        ModelDef("bench_b", "cnn1d", "v402", "v503", vocab=VOCAB, width=330, seed=3, hp=cnn_hp),
    ]


def _batches(windows: list, size: int) -> list[Windows]:
    """The windows in batches of ``size``, as the replay cuts them (arrays, not lists)."""
    batches = []
    for start in range(0, len(windows), size):
        ragged = Ragged.from_lists(windows[start:start + size])
        batches.append(Windows(t0=np.arange(start, start + len(ragged), dtype=np.int64),
                               codes=ragged.codes, offsets=ragged.offsets))
    return batches


def _rates(runs: dict, batches: list, n_models: int, repeats: int) -> dict:
    """Windows x models per second of each run (``run(batches)`` scores them all), best
    of ``repeats`` passes.

    The passes alternate between the runs, so that load from other processes on the
    machine falls on every side of the ratios alike.
    """
    for run in runs.values():
        run(batches[:2])  # first-call costs are not throughput
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run(batches)
            best[name] = min(best[name], time.perf_counter() - started)
    windows = sum(map(len, batches))
    return {name: windows * n_models / seconds for name, seconds in best.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=10240)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256, 1024])
    parser.add_argument("--in-flight", type=int, default=REPLAY_IN_FLIGHT, help="the replay's requests at once")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_runtime_") as tmp:
        tmp = Path(tmp)
        build_package(tmp / "package", demo_shaped_models())
        manifest_path = write_manifest(tmp / "v701" / layout.MANIFEST, tmp / "package")
        manifest = load_manifest(manifest_path)
        models = list(load_models(manifest).values())
        windows = synthetic_windows(args.windows, mean_len=57, codes=(1, 130), seed=7)
        n_models = len(models)

        def in_process(batches):
            for batch in batches:
                for model in models:
                    model.predict(batch)

        print(f"{len(windows)} windows (~57 codes), {n_models} models "
              f"(dense_bow 122, sequence_embedding 250, cnn1d 330); windows x models per second")
        replay_column = f"Arrow x{args.in_flight}"
        print(f"{'batch':>6} {'JSON x1':>9} {'Arrow x1':>9} {replay_column:>9} {'in-proc':>9}   "
              f"{'JSON':>5} {'Arrow':>5} {replay_column:>9}  (ratios to in-process)")
        with ServerProcess(manifest_path, server_args=["--max-batch-items", max(args.batch_sizes)]) as server, \
                InferenceClient(server.url, manifest, wire=codecs.JSON) as json_client, \
                InferenceClient(server.url, manifest, wire=codecs.ARROW) as arrow_client:

            def one_at_a_time(client):
                def run(batches):
                    for batch in batches:
                        client.infer_batch(batch)
                return run

            def as_the_replay(batches):
                for _ in infer_in_order(server.url, manifest, batches, in_flight=args.in_flight):
                    pass

            for size in args.batch_sizes:
                # Batch 1 is a request per window: a tenth of the windows tells the same story.
                sample = windows[:max(len(windows) // 10, 1)] if size == 1 else windows
                rates = _rates({"json": one_at_a_time(json_client), "arrow": one_at_a_time(arrow_client),
                                "replay": as_the_replay, "local": in_process},
                               _batches(sample, size), n_models, args.repeats)
                local = rates["local"]
                print(f"{size:>6} {rates['json']:>9,.0f} {rates['arrow']:>9,.0f} {rates['replay']:>9,.0f} "
                      f"{local:>9,.0f}   {rates['json'] / local:>4.2f}x {rates['arrow'] / local:>4.2f}x "
                      f"{rates['replay'] / local:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
