"""End-to-end serving throughput beside the in-process ceiling, per batch size.

    python -m bench.bench_runtime [--windows 10240] [--batch-sizes 1 32 256 1024]

Builds a sealed package of three real Keras models built as upstream's F05 builds them
(dense_bow 122 inputs, sequence_embedding max_len 250, cnn1d max_len 330), starts the
real server process on a loopback port, and scores the same synthetic windows (~57 codes
each) two ways:

- end-to-end: ``InferenceClient.infer_batch`` over HTTP (JSON both ways, the server
  vectorizes and calls every model);
- in-process: ``LoadedModel.predict`` on the same batches (vectorize from the window
  lists + call the models), the ceiling the server is measured against.

Throughput is windows x models per second. Target (PERFORMANCE.md): end-to-end at batch
256 at least 0.5x in-process.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from builders.packages import UPSTREAM_LARGEST_HP, ModelDef, build_package, synthetic_windows, write_manifest
from contract import layout
from contract.manifest import load_manifest
from f07_validation.client import InferenceClient, ServerProcess
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


def _batches(windows: list, size: int) -> list:
    return [windows[i:i + size] for i in range(0, len(windows), size)]


def _rates(runs: dict, batches: list, n_models: int, repeats: int) -> dict:
    """Windows x models per second of each run, best of ``repeats`` passes.

    The passes alternate between the runs, so that load from other processes on the
    machine falls on both sides of the ratio alike.
    """
    for run in runs.values():
        run(batches[0])  # first-call costs are not throughput
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            for batch in batches:
                run(batch)
            best[name] = min(best[name], time.perf_counter() - started)
    windows = sum(map(len, batches))
    return {name: windows * n_models / seconds for name, seconds in best.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=10240)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256, 1024])
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

        def in_process(batch):
            ragged = Ragged.from_lists(batch)
            for model in models:
                model.predict(ragged)

        print(f"{len(windows)} windows (~57 codes), {n_models} models "
              f"(dense_bow 122, sequence_embedding 250, cnn1d 330); windows x models per second")
        print(f"{'batch':>6} {'end-to-end HTTP':>16} {'in-process':>12} {'ratio':>7}")
        with ServerProcess(manifest_path, server_args=["--max-batch-items", max(args.batch_sizes)]) as server, \
                InferenceClient(server.url, manifest) as client:
            for size in args.batch_sizes:
                # Batch 1 is a request per window: a tenth of the windows tells the same story.
                sample = windows[:max(len(windows) // 10, 1)] if size == 1 else windows
                batches = _batches(sample, size)
                rates = _rates({"http": client.infer_batch, "local": in_process}, batches,
                               n_models, args.repeats)
                http, local = rates["http"], rates["local"]
                print(f"{size:>6} {http:>16,.0f} {local:>12,.0f} {http / local:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
