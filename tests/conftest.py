"""Shared fixtures: the project copied into a temporary git repo where DVC runs for real.

``built_demo`` builds the whole pipeline once per test run on a small demo (the same
stages as `make run`, smaller data), shared by pytest-xdist's workers; tests that only
read it take ``demo_project``, tests that change it take ``project_copy``.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.upstream_builder import make_upstream

PROJECT = Path(__file__).resolve().parents[1]
NOT_COPIED = ("executions/", "tests/artifacts/")

# The suite starts some five hundred Python processes on this project's modules (stages,
# servers, the lifecycle CLI). With PYTHONDONTWRITEBYTECODE set, as some images set it, each
# would compile again every module of ours it imports (about 5% of its start:
# bench/bench_startup.py), and pytest would rewrite every test module again in each worker
# (a second of each worker's collection): bytecode is cached as Python does by default, in
# the `__pycache__` folders that git and DVC ignore (.gitignore, .dvcignore).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def project_env() -> dict:
    """The environment DVC stages need: this interpreter's `python` first on PATH, a git
    identity for commits, TensorFlow quiet."""
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GIT_AUTHOR_NAME", "tests")
    env.setdefault("GIT_AUTHOR_EMAIL", "tests@localhost")
    env.setdefault("GIT_COMMITTER_NAME", "tests")
    env.setdefault("GIT_COMMITTER_EMAIL", "tests@localhost")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(args, cwd, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}) in {cwd}:\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def project_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT, capture_output=True, text=True, check=True).stdout
    return sorted(path for path in listed.split("\0")
                  if path and not path.startswith(NOT_COPIED) and (PROJECT / path).is_file())


# Five days: the fewest on which every demo model clears the default quality gates (recall and F1
# >= 0.5). On four, the grid model trains on two generator trips and catches one of the four it
# is then scored on (recall 0.26): a weak model, which the gates rightly fail.
SMALL_DEMO_DAYS = 5
# Half the demo's training epochs: every model still clears those gates with room (F1 0.68-0.79
# at 5 epochs, 0.76-0.85 at 10), and training is most of the build's F05 time.
SMALL_DEMO_EPOCHS = 5


def small_demo(params: dict) -> dict:
    """The test-sized demo: the same stages, fewer days of events and training epochs, free ports."""
    for entry in params["demo"]["f02"].values():
        entry["days"] = SMALL_DEMO_DAYS
    for entry in params["demo"]["f05"].values():
        entry["epochs"] = SMALL_DEMO_EPOCHS
    for entry in (params.get("deployrun") or {}).values():
        entry["runtime"]["port"] = 0
    return params


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that a test interrupts as Ctrl-C does: SIGINT back to its
    default. A suite started as a background job (`make test &`, a CI step run so) ignores
    SIGINT, children inherit that, and Python then installs no KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def use_storage(root: Path) -> Path:
    """Point the repo's DVC remote `storage` at a folder beside it (in .dvc/config.local,
    as `make setup DVC_REMOTE_URL=...` does), never at the machine's shared default."""
    storage = root.parent / "dvc-storage"
    (root / ".dvc" / "config.local").write_text(f"['remote \"storage\"']\n    url = {storage}\n", encoding="utf-8")
    return storage


def edit_params(root: Path, change) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(change(params), sort_keys=False), encoding="utf-8")


def commit_all(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", message], root)


@pytest.fixture(scope="session")
def pristine_upstream(tmp_path_factory) -> Path:
    return make_upstream(tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def upstream_root(pristine_upstream, tmp_path) -> Path:
    """A small upstream tree (tests/upstream_builder.py), a fresh copy per test so each
    test can break it its own way."""
    return Path(shutil.copytree(pristine_upstream, tmp_path / "executions"))


def build_demo_project(root: Path) -> None:
    """This project copied into ``root`` as a git + DVC repo, the small demo built end to end."""
    for relative in project_files():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / relative, target)
    edit_params(root, small_demo)
    use_storage(root)
    run(["git", "init", "-q"], root)
    commit_all(root, "project")
    run([sys.executable, "-m", "dvc", "repro"], root, timeout=900)
    commit_all(root, "dvc repro")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test run, even with pytest-xdist's workers (each has
    its own session): the first worker to ask builds in the run's common temporary folder
    under a file lock, the others wait for it and get the same folder, to read or copy,
    never to change. A failed build is recorded, so the others fail at once with it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent
    folder, built, failed = shared / name, shared / f"{name}.built", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            raise RuntimeError(f"building {name} failed in another worker:\n{failed.read_text()}")
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that died while building left
            folder.mkdir()
            try:
                build(folder)
            except BaseException as error:
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
            built.touch()
    return folder


@pytest.fixture(scope="session")
def serving_manifest(tmp_path_factory) -> Path:
    """The manifest of a sealed package of ``tests.served_models.serving_models()`` (one
    small model of each family, a model with NaN weights, the real upstream model), built
    once per run: the runtime tests' servers and in-process models read it, none changes it."""
    from builders.packages import build_served_package
    from contract import layout
    from tests.served_models import serving_models

    root = built_once(tmp_path_factory, "serving", lambda folder: build_served_package(folder, serving_models()))
    return layout.variant_dir(layout.F07, "v701", root) / layout.MANIFEST


@pytest.fixture(scope="module")
def manifest(serving_manifest):
    """``serving_manifest`` loaded (``contract.manifest.Manifest``), once per test module."""
    from contract.manifest import load_manifest

    return load_manifest(serving_manifest)


@pytest.fixture(scope="session")
def built_demo(tmp_path_factory) -> Path:
    """The small demo project built end to end, once per test run; nothing runs in it."""
    root = built_once(tmp_path_factory, "demo", lambda folder: build_demo_project(folder / "repo"))
    return root / "repo"


@pytest.fixture(scope="session")
def demo_project(built_demo, tmp_path_factory) -> Path:
    """A git + DVC repo holding this project, with the small demo built end to end: this
    session's own copy of ``built_demo`` (its tests run read-only DVC commands in it, which
    would race with another worker copying the same folder)."""
    root = Path(shutil.copytree(built_demo, tmp_path_factory.mktemp("project") / "repo", symlinks=True))
    use_storage(root)
    return root


@pytest.fixture
def project_copy(demo_project, tmp_path) -> Path:
    """A private copy of the built demo project, for a test that changes it, with its
    own DVC remote."""
    root = Path(shutil.copytree(demo_project, tmp_path / "repo", symlinks=True))
    use_storage(root)
    return root


# `make test` runs the suite on two pytest-xdist workers, a module at a time (`--dist
# loadscope`: a module's fixtures, such as its server, start once), in this order. The
# longest modules go first so that neither worker is left with one at the end, and the
# first one builds the demo (``built_demo``) while the other worker works through modules
# that need no demo (test_runtime_faults, test_bench, test_upstream_import: about as long as
# the build, so that no worker waits for it). Modules not listed follow in their usual order.
XDIST_ORDER = ("test_pipeline.py", "test_runtime_faults.py", "test_bench.py", "test_upstream_import.py",
               "test_readme.py", "test_lifecycle.py", "test_notebooks.py", "test_dvc_deps.py", "test_mlserver.py",
               "test_runtime_server_deployment.py")


def pytest_collection_modifyitems(items) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:
        rank = {name: position for position, name in enumerate(XDIST_ORDER)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
