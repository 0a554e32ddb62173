"""F06 and F07 at upstream scale, stage by stage: wall time, peak memory and windows/s,
side by side with the same at a quarter of the length.

    python -m bench.bench_scale [--rows 4000000] [--seed 17] [--keep DIR]

For N and N/4 F02 rows, ``bench.scale_upstream`` writes an upstream-shaped F02–F05
(Tu = 10 s, ~7% of rows with events, OW/LT/PW = 600/100/100, no t0 column, three real
Keras models) into a project folder, then every stage runs there exactly as ``dvc repro``
runs it (``python -m stages.<stage> <variant>``, one process each), in pipeline order.
For each stage the table shows its wall time (process start to exit, TensorFlow start-up
included), its peak resident memory (``VmHWM`` of the stage process, through
``bench.peak_memory``; the infer stage's server is a process of its own and is not
counted) and windows per second (the package's replay windows per model over the
stage's wall time), then the ratio of N to N/4: memory flat in replay length shows as
a peak-memory ratio near 1.0, time linear in it as ~4.0.

The evaluate stage's time is printed over the score stage's (both read the whole log
once; the issue bounds the ratio at 1.5x), and infer's per-batch latency percentiles.
Infer also reports, from its untracked ``logs/timing.json``, its end-to-end rate (every
window sent, answered, logged and compared in-process) beside a serving-only rate measured
apart, right after it: the same replay through a fresh server of the same package, answers
decoded and checked, nothing logged or compared; and their ratio. ``make bench``
(``bench.bench_runtime``) compares HTTP with the same models in-process at each batch
size. The bench uses both cores; run it on an otherwise idle machine.
"""
from __future__ import annotations

import console.quiet_tensorflow  # noqa: F401  (first: TensorFlow start-up noise off stderr)
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scale_upstream import DEFAULT_ROWS, generate
from contract import layout
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess, replay

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = [("select_models", "v601"), ("materialize_replay", "v601"), ("seal_package", "v601"),
          ("settings", "v701"), ("serve", "v701"), ("infer", "v701"), ("score", "v701"), ("evaluate", "v701"), ("reference", "v701"),
          ("verdict", "v701"), ("report", "v701")]
PEAK_LIMIT_BYTES = 1.5 * 1024 ** 3  # the bound on every stage at upstream size
FLAT_WITHIN = 0.10  # a stage's peak at N may exceed its peak at N/4 by this much
EVALUATE_WITHIN = 1.5  # the evaluate stage's time over the score stage's (issue 24)
MIB = 1024 ** 2


def run_stage(project: Path, stage: str, variant: str) -> dict:
    """One stage in its own process; its wall time and peak memory."""
    record = project / f".peak_{stage}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.peak_memory", str(record), f"stages.{stage}", variant],
                          cwd=project, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{stage}@{variant} failed in {project}:\n{done.stderr[-4000:]}")
    return {"seconds": seconds, "peak_bytes": json.loads(record.read_text())["peak_bytes"]}


def run_length(root: Path, rows: int, seed: int) -> dict:
    project = root / f"rows_{rows}"
    started = time.perf_counter()
    sizes = generate(project, rows, seed)
    print(f"  generated {rows:,} F02 rows, {sizes['windows']:,} windows in {time.perf_counter() - started:.0f} s",
          flush=True)
    results = {}
    for stage, variant in STAGES:
        results[stage] = run_stage(project, stage, variant)
        print(f"  {stage:<18} {results[stage]['seconds']:7.1f} s {results[stage]['peak_bytes'] / MIB:8.0f} MiB",
              flush=True)
    run_dir = layout.variant_dir(layout.F07, "v701", project / layout.EXECUTIONS)
    summary, timing, verdict = (json.loads((run_dir / name).read_text())
                                for name in (layout.RUN_SUMMARY, layout.RUN_TIMING, layout.VERDICT))
    serving = serving_only_rate(run_dir / layout.MANIFEST)
    print(f"  serving only       {summary['windows_sent'] / serving:7.1f} s", flush=True)
    return {"rows": rows, "windows": summary["windows_sent"], "stages": results, "timing": timing,
            "serving_windows_per_second": serving, "verdict": verdict["passed"], "sizes": _output_sizes(run_dir)}


def serving_only_rate(manifest_path: Path) -> float:
    """Windows/s of the same replay through a fresh server of the same package, answers
    decoded and checked, nothing logged or compared: the ceiling the infer stage's end to
    end rate is measured against, on the same machine, right after it."""
    manifest = load_manifest(manifest_path)
    with ServerProcess(manifest_path) as server:
        started, windows = time.perf_counter(), 0
        for batch in replay(server.url, manifest, progress=None):
            windows += len(batch.windows)
        return windows / (time.perf_counter() - started)


def _output_sizes(run_dir: Path) -> dict:
    """Bytes of the small, git-tracked outputs (plots, figures, report) that must stay bounded."""
    return {path.relative_to(run_dir).as_posix(): path.stat().st_size
            for folder in (layout.METRICS_DIR, layout.REPORT_DIR) for path in sorted((run_dir / folder).rglob("*"))
            if path.is_file()}


def print_table(short: dict, long: dict) -> None:
    print(f"\n| stage | wall s N/4 | wall s N | ratio | peak MiB N/4 | peak MiB N | ratio | windows/s N/4 | windows/s N |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, _ in STAGES:
        a, b = short["stages"][stage], long["stages"][stage]
        print(f"| {stage} | {a['seconds']:.1f} | {b['seconds']:.1f} | {b['seconds'] / a['seconds']:.2f}x | "
              f"{a['peak_bytes'] / MIB:.0f} | {b['peak_bytes'] / MIB:.0f} | {b['peak_bytes'] / a['peak_bytes']:.2f}x | "
              f"{short['windows'] / a['seconds']:,.0f} | {long['windows'] / b['seconds']:,.0f} |")
    print(f"\nN/4 = {short['rows']:,} F02 rows ({short['windows']:,} windows), N = {long['rows']:,} "
          f"({long['windows']:,} windows), 3 models.")
    for label, result in (("N/4", short), ("N", long)):
        timing = result["timing"]
        end_to_end = timing["windows_per_second"]  # sent, answered, logged and compared
        serving = result["serving_windows_per_second"]  # a second replay, nothing logged or compared
        print(f"infer at {label}: end to end {end_to_end:,.0f} windows/s, serving only {serving:,.0f} "
              f"({end_to_end / serving:.2f}x; the replay waited {timing['waiting_for_log_seconds']:,.0f} of "
              f"{timing['seconds']:,.0f} s for the log and the in-process comparison); "
              f"verdict {'PASSED' if result['verdict'] else 'FAILED'}")
    over = [stage for stage, _ in STAGES if long["stages"][stage]["peak_bytes"] > PEAK_LIMIT_BYTES]
    grew = [stage for stage, _ in STAGES
            if long["stages"][stage]["peak_bytes"] > (1 + FLAT_WITHIN) * short["stages"][stage]["peak_bytes"]]
    print(f"stages over {PEAK_LIMIT_BYTES / 1024 ** 3:.1f} GiB at N: {', '.join(over) or 'none'}; "
          f"stages whose peak grew more than {FLAT_WITHIN:.0%} from N/4 to N: {', '.join(grew) or 'none'}")
    for label, result in (("N/4", short), ("N", long)):
        evaluate, score = (result["stages"][stage]["seconds"] for stage in ("evaluate", "score"))
        print(f"evaluate at {label}: {evaluate:.1f} s, {evaluate / score:.2f}x the score stage's {score:.1f} s "
              f"(bound {EVALUATE_WITHIN}x); per-batch latency {result['timing'].get('latency_ms')}")
    largest = max(long["sizes"].items(), key=lambda item: item[1])
    print(f"largest tracked metrics/report file at N: {largest[0]} ({largest[1] / 1024:.0f} KiB)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="N, F02 rows (default %(default)s)")
    parser.add_argument("--seed", type=int, default=17,
                        help="the generator's seed: another seed is a held-out dataset of the same shape")
    parser.add_argument("--keep", type=Path, help="build the projects here and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        root = args.keep or Path(tmp)
        results = []
        for rows in (args.rows // 4, args.rows):
            print(f"N = {rows:,} F02 rows", flush=True)
            results.append(run_length(root, rows, args.seed))
    print_table(*results)


if __name__ == "__main__":
    main()
