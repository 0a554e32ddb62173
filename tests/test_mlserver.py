"""The sealed package on MLServer: the repository ``f07_validation.mlserver_export`` writes,
served by a real ``mlserver start`` process (``runtime.mlserver_model``), answering the
Open Inference Protocol as our server does, replayed through by F07's OIP client, judged
by ``runtime.url``, and refusing a package changed after its seal."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

from builders.packages import ModelDef, build_served_package
from contract import layout
from contract.manifest import load_manifest
from f07_validation.client import OIP, ServerProcess, ServerStartError, replay, replay_windows
from f07_validation.deployrun import DeployRunError
from f07_validation.endpoint import open_endpoint
from f07_validation.mlserver_process import MLServerProcess
from runtime.models import EquivalenceCheck

WHERE = "deployrun.v702"


@pytest.fixture(scope="module")
def mlserver(manifest):
    with MLServerProcess(manifest, host="127.0.0.1") as running:
        yield running


@pytest.fixture(scope="module")
def ours(serving_manifest):
    with ServerProcess(serving_manifest) as running:
        yield running


def oip_request(rows):
    width = max(map(len, rows))
    padded = [row + [-1] * (width - len(row)) for row in rows]
    return {"id": "r1", "inputs": [{"name": "events", "datatype": "INT64", "shape": [len(rows), width],
                                    "data": [code for row in padded for code in row]}]}


def test_the_repository_names_each_model_as_our_server_and_links_the_package(mlserver, ours, manifest):
    repository = mlserver.repository
    names = sorted(m["name"] for m in requests.get(ours.url + "/v2/models", timeout=10).json()["models"])
    settings = sorted(repository.glob(f"*/{layout.MLSERVER_MODEL_SETTINGS}"))
    assert [path.parent.name for path in settings] == names
    for path in settings:
        model = json.loads(path.read_text())
        assert model["name"] == path.parent.name and model["versions"] == [manifest.package_digest]
        assert model["implementation"] == "runtime.mlserver_model.SealedPackageModel"
    link = repository / layout.MLSERVER_PACKAGE_LINK
    assert link.is_symlink() and link.resolve() == manifest.package_dir  # referenced, not copied
    assert load_manifest(repository / layout.MANIFEST).package_dir == manifest.package_dir


def test_mlserver_answers_the_oip_as_our_server_does(mlserver, ours, manifest):
    rows = [[1, 2, 3], [], [5, 5, 5, 5, 7, 39, 2], [999, 4]]
    for name in sorted(p.parent.name for p in mlserver.repository.glob(f"*/{layout.MLSERVER_MODEL_SETTINGS}")):
        theirs = requests.post(f"{mlserver.url}/v2/models/{name}/infer", json=oip_request(rows), timeout=30)
        mine = requests.post(f"{ours.url}/v2/models/{name}/infer", json=oip_request(rows), timeout=30)
        assert theirs.status_code == mine.status_code == 200, theirs.text
        theirs, mine = theirs.json(), mine.json()
        assert {k: theirs[k] for k in ("model_name", "model_version", "id")} == \
               {k: mine[k] for k in ("model_name", "model_version", "id")}
        by_name = {o["name"]: o for o in theirs["outputs"]}
        for output in mine["outputs"]:
            got = by_name[output["name"]]
            assert (got["datatype"], got["shape"]) == (output["datatype"], output["shape"])
            if None in output["data"]:  # a non-finite output: null in both, never a number
                assert got["data"] == output["data"]
            else:
                assert got["data"] == pytest.approx(output["data"], abs=1e-7)
        assert theirs.get("parameters", {}).get("non_finite") == mine.get("parameters", {}).get("non_finite")
    broken = requests.post(f"{mlserver.url}/v2/models/v402__v504__broken/infer", json=oip_request(rows),
                           timeout=30).json()
    outputs = {o["name"]: o["data"] for o in broken["outputs"]}
    assert outputs == {"probability": [None] * 4, "y_pred": [-1] * 4}  # never a 0
    assert broken["parameters"]["non_finite"] == 4


def test_a_bad_request_is_refused_as_our_server_refuses_it(mlserver, ours):
    request = oip_request([[1, 2], [3]])
    request["inputs"][0]["data"] = [1, 2, -1, 3]  # a code after the padding
    theirs = requests.post(f"{mlserver.url}/v2/models/v401__v501__obj_a/infer", json=request, timeout=10)
    mine = requests.post(f"{ours.url}/v2/models/v401__v501__obj_a/infer", json=request, timeout=10)
    assert theirs.status_code == mine.status_code == 400
    assert theirs.json()["error"] == mine.json()["error"]


def test_the_replay_through_mlserver_equals_the_models_in_process(mlserver, manifest):
    check = EquivalenceCheck.from_manifest(manifest)
    sent = 0
    for batch in replay(mlserver.url, manifest, batch_size=100, wire=OIP, progress=None):
        check.add(batch.windows, {a.entry.key: a.probabilities for a in batch.answers})
        sent += len(batch.windows)
    assert sent == sum(len(w) for w in replay_windows(manifest.replay_path(), manifest.regime(), 100)) > 0
    summary = check.summary()
    assert summary["passed"], summary
    assert summary["models"]["v402/v504/broken"]["non_finite_mismatch"] == 0


def test_runtime_url_judges_a_running_mlserver_and_refuses_another_package(mlserver, manifest, tmp_path):
    with open_endpoint(manifest, {"url": mlserver.url, "server": "mlserver"}, WHERE) as endpoint:
        assert endpoint.server is None and endpoint.wire == OIP and endpoint.ready["ready"] is True
    # Another package holding a model of the same name (v401/v501/obj_a): only its digest differs.
    other = load_manifest(build_served_package(tmp_path, [ModelDef("obj_a", "dense_bow", "v401", "v501", seed=9)]))
    assert other.package_digest != manifest.package_digest
    with pytest.raises(DeployRunError) as refused:
        with open_endpoint(other, {"url": mlserver.url, "server": "mlserver"}, WHERE):
            pass
    message = str(refused.value)
    assert f"serves package digest {manifest.package_digest}" in message
    assert f"has digest {other.package_digest}" in message and f"{WHERE}.runtime.url" in message


def test_a_package_changed_after_export_is_refused_when_mlserver_loads_it(tmp_path, serving_manifest):
    root = tmp_path / "executions"
    shutil.copytree(serving_manifest.parents[2], root, symlinks=True)
    manifest = load_manifest(root / serving_manifest.relative_to(serving_manifest.parents[2]))
    server = MLServerProcess(manifest, host="127.0.0.1", start_timeout=60)  # exported: the seal verified
    changed = manifest.models[0].model_path
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    with pytest.raises(ServerStartError) as refused:
        with server:
            pass
    message = str(refused.value)
    assert "refusing to serve" in message
    assert f"changed: {changed.relative_to(manifest.package_dir).as_posix()}" in message
    assert server.process.poll() is not None and not server.repository.exists()


def test_settings_of_our_server_are_refused_for_mlserver(manifest):
    with pytest.raises(DeployRunError, match=r"\['workers'\] are settings of our server"):
        with open_endpoint(manifest, {"host": "127.0.0.1", "port": 0, "server": "mlserver", "workers": 2}, WHERE):
            pass


def test_padded_events_is_the_oip_input():
    from f07_validation.oip_client import padded_events

    matrix = padded_events(np.array([9, 1, 2, 3, 4, 5]), np.array([1, 4, 4, 6]))
    assert matrix.tolist() == [[1, 2, 3], [-1, -1, -1], [4, 5, -1]]


def test_a_vocabulary_shift_fails_the_reference_on_mlserver_as_on_our_server(tmp_path, monkeypatch):
    """tests/test_runtime_faults.py's vocabulary shift, injected into the MLServer process
    (it runs runtime.vectorize too) and into the in-process comparison: the stages run
    unchanged on `server: mlserver`, the transport check passes, the independent
    reference fails for the two sequence models, as with our server."""
    import importlib

    import yaml

    from tests.server_faults.faults import vocab_shift
    from tests.validated_package import CNN, EMBEDDING, FAULTS, build_validated_package

    root = tmp_path / "project"
    build_validated_package(root / "executions")
    entry = {"parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0, "server": "mlserver"},
             "batch_size": 32, "check_equivalence": True}
    (root / "params.yaml").write_text(yaml.safe_dump({"deployrun": {"v701": entry}}))
    monkeypatch.chdir(root)
    for stage in ("settings", "serve"):
        importlib.import_module(f"stages.{stage}").main("v701")
    cls, shifted = vocab_shift("sequence")
    monkeypatch.setattr(cls, "__call__", shifted)
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))
    monkeypatch.setenv("F07_TEST_FAULT", json.dumps({"kind": "vocab_shift", "family": "sequence"}))
    importlib.import_module("stages.infer").main("v701")
    monkeypatch.delenv("F07_TEST_FAULT")
    for stage in ("score", "reference", "verdict"):
        importlib.import_module(f"stages.{stage}").main("v701")
    verdict = json.loads((root / "executions" / layout.F07 / "v701" / layout.VERDICT).read_text())
    wrong = {c["name"]: c["detail"] for c in verdict["checks"] if c["passed"] is False}
    shifted = {f"reference equivalence: {EMBEDDING}", f"reference equivalence: {CNN}"}
    # shifted inputs move probabilities across the threshold too: decisions may differ as well
    assert shifted <= set(wrong) <= shifted | {f"reference decisions: {EMBEDDING}", f"reference decisions: {CNN}"}, wrong
    passed = {c["name"] for c in verdict["checks"] if c["passed"] is True}
    assert {f"transport: {CNN}", "replay completed", "server loaded the package", "server ready"} <= passed


def test_the_export_refuses_a_package_that_does_not_verify(tmp_path, serving_manifest, capsys):
    from f07_validation import mlserver_export

    root = tmp_path / "executions"
    shutil.copytree(serving_manifest.parents[2], root, symlinks=True)
    package = root / layout.F06 / "v601"
    summary = next(package.rglob(layout.MODEL_SUMMARY))
    summary.write_text(summary.read_text() + " ")
    assert mlserver_export.main(["--package", str(package), "--out", str(tmp_path / "repo")]) == 2
    error = capsys.readouterr().err
    assert "refusing to export" in error and f"changed: {summary.relative_to(package).as_posix()}" in error
    assert not (tmp_path / "repo").exists()  # nothing written
    assert mlserver_export.main(["--package", str(tmp_path), "--out", str(tmp_path / "repo")]) == 2
    assert "is not a sealed package" in capsys.readouterr().err


def test_mlserver_stops_when_the_process_that_started_it_is_killed(serving_manifest, tmp_path):
    """F07 killed by SIGKILL runs no ``finally``: the kernel stops its MLServer (PR_SET_PDEATHSIG)."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT, project_env

    starter = ("import os, signal, sys\n"
               "from contract.manifest import load_manifest\n"
               "from f07_validation.mlserver_process import MLServerProcess\n"
               "server = MLServerProcess(load_manifest(sys.argv[1]), host='127.0.0.1').__enter__()\n"
               "print(server.pid, flush=True)\n"
               "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**project_env(), "TMPDIR": str(tmp_path)}  # the exported repository, which no one removes here
    done = subprocess.run([sys.executable, "-c", starter, str(serving_manifest)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    pid = int(done.stdout.split()[0])

    def running() -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "State:\tZ" not in state  # a zombie no one has reaped yet is stopped

    deadline = time.monotonic() + 20
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running()


def test_the_oip_client_replays_through_any_oip_server_as_through_mlserver(ours, manifest):
    """Our server's /v2 publishes no package parameters: the digest is its models'
    version, no batch limit is stated, and the replay still equals the models in-process."""
    with open_endpoint(manifest, {"url": ours.url, "server": "mlserver"}, WHERE) as endpoint:
        assert endpoint.ready["ready"] is True
    check = EquivalenceCheck.from_manifest(manifest)
    for batch in replay(ours.url, manifest, batch_size=100, wire=OIP, progress=None):
        check.add(batch.windows, {a.entry.key: a.probabilities for a in batch.answers})
    assert check.summary()["passed"] and check.windows_compared > 0
