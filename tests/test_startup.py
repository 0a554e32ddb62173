"""The entry points that start most often import only what they run.

Every `make` lifecycle command and the settings, serve and infer stages of every F07 run
start a Python process; none of them reads a prediction log, so none imports pandas (the
scoring, reference and report code: a third of a second each time). A module-level
import of the scoring code in the gates, which all of them check, once made each of them
pay it. The cost itself is measured by bench/bench_startup.py, not here.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT, project_env

WITHOUT_PANDAS = ("lifecycle.cli", "stages.settings", "stages.serve", "stages.infer")
HEAVY = ("pandas", "f07_validation.scoring", "f07_validation.reference")
CHECK = "import importlib, sys; importlib.import_module(sys.argv[1]); print(sorted(set(sys.argv[2:]) & set(sys.modules)))"


@pytest.mark.parametrize("module", WITHOUT_PANDAS)
def test_the_entry_point_starts_without_the_scoring_code(module):
    done = subprocess.run([sys.executable, "-c", CHECK, module, *HEAVY], cwd=PROJECT, env=project_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()} at start"
