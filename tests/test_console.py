"""The console: TensorFlow's start-up noise kept off stderr while everything else still
shows, and progress bars that log percentage, rate and ETA when stderr is not a terminal."""
from __future__ import annotations

import re
import subprocess
import sys
import time

from console import progress as progress_module
from tests.conftest import PROJECT, project_env

# A process that loads TensorFlow and Keras as the stages do: trains a model as the demo
# does (seeded, op determinism: the path that logs "NodeDef mentions attribute"), saves it
# as HDF5 and loads it, then writes a C++-style error of its own, a Python line, and a
# traceback.
TENSORFLOW_WORK = """
import os, sys
if sys.argv[1] == "quiet":
    import console.quiet_tensorflow  # noqa: F401
import keras, numpy as np, tensorflow as tf
keras.utils.set_random_seed(1)
tf.config.experimental.enable_op_determinism()
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="adam", loss="binary_crossentropy")
model.fit(np.zeros((16, 4)), np.arange(16) % 2, epochs=1, verbose=0, class_weight={0: 1.0, 1: 2.0})
model.save(sys.argv[2])
keras.models.load_model(sys.argv[2], compile=False).predict(np.zeros((2, 4)), verbose=0)
os.write(2, b"E0000 00:00:1.5 7 some_op.cc:12] a real C++ error\\n")
print("a line of our own", file=sys.stderr)
raise RuntimeError("a real failure")
"""
NOISE = {"absl pre-init warning": r"All log messages before absl::InitializeLog",
         "C++ INFO": r"^I\d{4} ", "NodeDef error": r"^E\d{4} .*NodeDef mentions attribute",
         "absl HDF5 warning": r"WARNING:absl:"}


def tensorflow_stderr(mode: str, tmp_path) -> str:
    env = project_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    result = subprocess.run([sys.executable, "-c", TENSORFLOW_WORK, mode, str(tmp_path / f"{mode}.h5")],
                            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    return result.stderr


def noise_in(stderr: str) -> dict[str, list[str]]:
    return {name: [line for line in stderr.splitlines() if re.search(pattern, line)]
            for name, pattern in NOISE.items()}


def test_tensorflow_noise_is_dropped_and_everything_else_kept(tmp_path):
    loud = noise_in(tensorflow_stderr("loud", tmp_path))
    assert all(loud.values()), f"TensorFlow no longer makes some of this noise, the test proves nothing: {loud}"

    quiet = tensorflow_stderr("quiet", tmp_path)
    assert not any(noise_in(quiet).values()), quiet
    assert "E0000 00:00:1.5 7 some_op.cc:12] a real C++ error" in quiet
    assert "a line of our own" in quiet
    assert "Traceback (most recent call last)" in quiet and "RuntimeError: a real failure" in quiet


def stage_commands() -> set[str]:
    """The modules the DVC stages run (`python -m <module>`), from both pipelines."""
    text = (PROJECT / "dvc.yaml").read_text(encoding="utf-8") + (PROJECT / "demo" / "dvc.yaml").read_text(encoding="utf-8")
    return set(re.findall(r"cmd: python -m ([\w.]+)", text))


# Where each entry point starts: a package's __init__ runs before any module in it.
ENTRY_PACKAGES = ("stages", "demo")
SERVER = "runtime.server"  # started by F07 as `python -m runtime.server`


def test_every_entry_point_quiets_tensorflow_before_loading_it():
    assert {module.split(".")[0] for module in stage_commands()} <= set(ENTRY_PACKAGES)
    check = ("import importlib, sys; importlib.import_module(sys.argv[1]); names = list(sys.modules); "
             "quiet = 'console.quiet_tensorflow' in names; "
             "print(quiet and ('tensorflow' not in names or names.index('console.quiet_tensorflow') "
             "< names.index('tensorflow')))")
    for entry in (*ENTRY_PACKAGES, SERVER):
        result = subprocess.run([sys.executable, "-c", check, entry], cwd=PROJECT, env=project_env(),
                                capture_output=True, text=True, timeout=300)
        assert result.stdout.strip() == "True", f"{entry} does not import console.quiet_tensorflow first: {result}"


def test_progress_logs_percentage_rate_and_eta_when_not_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_INTERVAL_S", 0.05)
    for _ in progress_module.progress(range(8), desc="windows", unit="window"):
        time.sleep(0.02)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3 and not any("\r" in line for line in lines), lines
    middle = next(line for line in lines if re.search(r" [1-9]\d?%", line))
    assert re.search(r"^windows: +\d+%\|[#\d ]*\| \d/8 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+window/s\]$", middle), middle
    assert lines[-1].startswith("windows: 100%|") and lines.count(lines[-1]) == 1
