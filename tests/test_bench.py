"""The benchmarks in bench/ still run against the code they measure (a smoke run each, at
the smallest size it accepts, its figures not judged: speed and memory are the
benchmarks' own business, printed side by side, never asserted by a test). One of them
once stopped running for several commits when the infer stage's signature changed.
bench_scale is left out: even at 8,000 rows it runs every stage in a process of its own
at two lengths (~70 s), and the README's figures come from a run of it at full size."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT, project_env

SMOKE_RUNS = {
    "bench_csv_log": (["--predictions", "20000", "--repeats", "1"], "gzip / none: CSV bytes"),
    "bench_runtime": (["--windows", "256", "--batch-sizes", "32", "--repeats", "1"], "(ratios to in-process)"),
    "bench_serving": (["--requests", "4", "--clients", "1"], "vs 1 werkzeug"),
    "bench_page_checksums": (["--rows", "10000", "--repeats", "1"], "crc / none: bytes"),
    "bench_dvc_yaml": (["--repeats", "1"], "pure / C:"),
    "bench_startup": (["--repeats", "1", "--modules", "stages.settings"], "all: no bytecode / bytecode:"),
    "bench_engines": (["--windows", "64", "--batch-sizes", "32", "--repeats", "1"], "(ratios to in-process)"),
    # the smallest replay whose log writes a whole row group
    "bench_replay_memory": (["--base-rows", "220000", "--factors", "1"], "the client's peak memory moves"),
}


@pytest.mark.parametrize("module", SMOKE_RUNS)
def test_the_benchmark_runs_and_prints_its_table(module):
    args, last_words = SMOKE_RUNS[module]
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=PROJECT, env=project_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert last_words in done.stdout, done.stdout[-2000:]
