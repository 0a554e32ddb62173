"""Does the replay client's memory stay flat as the replay grows?

    python -m bench.bench_replay_memory [--base-rows 400000] [--factors 1 4 16]

The promise under test: the F07 client streams the replay and writes every prediction as
it goes, so its memory does not grow with the length of the replay. For each length
(``--factors`` times ``--base-rows`` F02 rows, one a second with ~2 event codes each, at
the fixtures' regime Tu=10 s, OW=6) the benchmark builds a sealed package of three small
real Keras models (one per family) with ``builders.packages``, laid out as a project
(``executions/06_packaging/v601``, ``executions/07_deployrun/v701/manifest.json``), and
runs the infer stage itself on it, ``f07_validation.infer.infer``: the real server
process, the HTTP replay, the raw prediction log (parquet + CSV) and the in-process
equivalence check, exactly as ``dvc repro`` runs them.

How memory is measured: each length runs ``infer`` in a fresh Python process, which then
reports its ``VmHWM`` (``/proc/self/status``), the kernel's high-water mark of that
process's resident memory. It counts every allocator the client uses (Python, NumPy,
Arrow's memory pool, TensorFlow for the equivalence check), misses no short peak (a
sampling thread misses those inside C calls that hold the GIL) and leaves out the server,
a separate process. Not ``getrusage(...).ru_maxrss``: Linux carries the pre-exec high-water
mark over ``execve``, so a spawned process's ``ru_maxrss`` starts at its parent's resident
memory, and this parent holds TensorFlow and the replay it just built (~1 GiB at 16x).
The mark never goes down within a process, hence one process per length. The fixed part
(Python, TensorFlow, the models) is the same at every length, so growth with the replay
shows up as the difference from the 1x run.

The prediction log buffers ``BATCH_ROWS`` rows before it writes a row group, so a run
logging fewer rows than that peaks below the steady state and would make a poor 1x
reference: ``--base-rows`` is refused below it.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow's start-up noise off stderr)

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builders.packages import (
    DEFAULT_REGIME,
    ModelDef,
    build_served_package,
    synthetic_event_rows,
)
from contract import layout
from contract.row_stream import BATCH_ROWS

MEAN_EVENTS = 2.0
# Flat: no run peaks more than 4% above the 1x run. Bounded effects make up to ~2.5% at 16x:
# the jitter of the log's flush peaks, and the fixture replay's row groups (as large as the
# replay up to 1,048,576 rows; the reader holds a whole one).
FLAT_WITHIN = 0.04
# every window compared in-process (TensorFlow on every batch): the client's heaviest setting
DEPLOYRUN = {"parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0},
             "batch_size": 256, "check_equivalence": True, "equivalence_sample_windows": None}
REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def small_models() -> list[ModelDef]:
    vocab = list(range(1, 41))
    return [
        ModelDef("mem_a", "dense_bow", "v401", "v501", vocab=vocab, seed=1),
        ModelDef("mem_a", "sequence_embedding", "v401", "v502", vocab=vocab, width=120, seed=2),
        ModelDef("mem_b", "cnn1d", "v402", "v503", vocab=vocab, width=120, seed=3),
    ]


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (Linux ``VmHWM``)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(project: Path) -> dict:
    """Run the infer stage in ``project``, in this process; its figures and peak RSS."""
    from f07_validation.deployrun import DeployRun
    from f07_validation.infer import infer

    os.chdir(project)
    started = time.perf_counter()
    summary = infer(DeployRun("v701", DEPLOYRUN))
    return {"seconds": time.perf_counter() - started, "windows": summary["windows_sent"],
            "peak_bytes": peak_rss_bytes()}


def run_length(root: Path, rows: int) -> dict:
    """Build the package for ``rows`` replay rows and measure infer on it in a new process."""
    project = root / f"rows_{rows}"
    replay = synthetic_event_rows(rows, start=DEFAULT_REGIME.origin, mean_events=MEAN_EVENTS, seed=rows)
    build_served_package(project / layout.EXECUTIONS, small_models(), replay=replay)
    done = subprocess.run([sys.executable, "-m", "bench.bench_replay_memory", "--measure", str(project)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"infer on {rows} rows failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-rows", type=int, default=400_000)
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the per-length process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    factors = sorted(args.factors)
    n_models = len(small_models())
    predictions = args.base_rows * factors[0] // DEFAULT_REGIME.Tu * n_models
    if predictions < BATCH_ROWS:
        parser.error(f"the shortest replay logs ~{predictions:,} predictions, fewer than the "
                     f"{BATCH_ROWS:,} the log buffers; raise --base-rows")

    print(f"infer on replays of {args.base_rows:,} rows x {factors} (~{MEAN_EVENTS:g} codes a row, "
          f"Tu={DEFAULT_REGIME.Tu} s, OW={DEFAULT_REGIME.OW}), {n_models} models, every window compared in-process; "
          f"peak RSS of the client process (server excluded)")
    print(f"{'length':>6} {'rows':>10} {'windows':>9} {'infer s':>8} {'peak MiB':>9} {'vs 1x':>7} {'+MiB':>7}")
    peaks = []
    with tempfile.TemporaryDirectory(prefix="bench_replay_memory_") as tmp:
        for factor in factors:
            result = run_length(Path(tmp), args.base_rows * factor)
            peaks.append(result["peak_bytes"])
            print(f"{factor:>5}x {args.base_rows * factor:>10,} {result['windows']:>9,} "
                  f"{result['seconds']:>8.1f} {peaks[-1] / MIB:>9.1f} {peaks[-1] / peaks[0]:>6.3f}x "
                  f"{(peaks[-1] - peaks[0]) / MIB:>+7.1f}", flush=True)
    growth = max(peaks) / peaks[0] - 1
    verdict = "flat" if growth <= FLAT_WITHIN else "NOT flat"
    print(f"{verdict}: over {factors[-1] / factors[0]:g}x the replay length the client's peak memory "
          f"moves {growth:+.1%} from the shortest run (bound +{FLAT_WITHIN:.0%})")


if __name__ == "__main__":
    main()
