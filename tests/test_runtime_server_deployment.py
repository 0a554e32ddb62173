"""Validating a deployment by URL: F07 starts nothing, and judges a server that runs
elsewhere only when it is ready and serves this very package. The deployment here is the
project's own server in gunicorn mode, started outside F07 as a team would run it."""
import json
import socket
import sys

import numpy as np
import pytest
import requests

from builders.packages import ModelDef, build_served_package
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess, replay
from f07_validation.deployrun import DeployRunError
from f07_validation.endpoint import open_endpoint, server_args
from runtime.core import oip_name
from tests.conftest import edit_params, run

WHERE = "deployrun.v702"


def _package(root, seed):
    return load_manifest(build_served_package(root, [ModelDef("m", "dense_bow", "v401", "v501",
                                                              vocab=list(range(1, 41)), seed=seed)]))


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    return _package(tmp_path_factory.mktemp("deployed"), 1), _package(tmp_path_factory.mktemp("other"), 2)


@pytest.fixture(scope="module")
def deployment(packages):
    with ServerProcess(packages[0].path, server_args=["--server", "gunicorn", "--workers", "2"]) as server:
        yield server


def test_a_deployment_of_the_package_is_judged_without_starting_a_server(packages, deployment):
    manifest = packages[0]
    with open_endpoint(manifest, {"url": deployment.url + "/"}, WHERE) as endpoint:
        assert endpoint.url == deployment.url and endpoint.server is None
        assert endpoint.ready["workers"] == {"ready": 2, "expected": 2, "exited": 0}
        batches = list(replay(endpoint.url, manifest, batch_size=128, progress=None))
    assert sum(len(b.windows) for b in batches) > 0
    assert all(a.answered.all() for b in batches for a in b.answers)


def test_a_deployment_of_another_package_is_refused_naming_both_digests(packages, deployment):
    other = packages[1]
    assert other.package_digest != packages[0].package_digest
    with pytest.raises(DeployRunError) as refused:
        with open_endpoint(other, {"url": deployment.url}, WHERE):
            pass
    message = str(refused.value)
    assert f"serves package digest {packages[0].package_digest}" in message
    assert f"has digest {other.package_digest}" in message and "deployrun.v702.runtime.url" in message


def test_a_deployment_that_is_not_ready_or_not_there_is_refused(packages):
    manifest = packages[0]
    with ServerProcess(manifest.path, wait_ready=False, server_args=["--load-delay", "30"]) as slow:
        with pytest.raises(DeployRunError, match="is not ready"):
            with open_endpoint(manifest, {"url": slow.url}, WHERE):
                pass
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    with pytest.raises(DeployRunError, match="cannot reach"):
        with open_endpoint(manifest, {"url": url}, WHERE):
            pass


def test_local_servers_get_the_runtime_settings_as_flags():
    assert server_args({"host": "127.0.0.1", "port": 0, "server": "gunicorn", "workers": 2,
                        "expose": False, "token_env": "TOKEN", "access_log": True}) == [
        "--server", "gunicorn", "--workers", "2", "--token-env", "TOKEN", "--access-log"]


def test_an_f07_variant_pointed_at_a_deployment_by_url_passes_its_verdict(project_copy, packages):
    """The demo package deployed outside DVC (gunicorn), v702 validates it by URL through
    the real stages; v703 points at a deployment of another package and is refused."""
    deployed_manifest = project_copy / "executions/07_deployrun/v701/manifest.json"
    with ServerProcess(deployed_manifest, server_args=["--server", "gunicorn", "--workers", "2"]) as deployed, \
            ServerProcess(packages[1].path) as elsewhere:
        def add_variants(params):  # v701's settings, served elsewhere
            for variant, url in (("v702", deployed.url), ("v703", elsewhere.url)):
                params["deployrun"][variant] = {**params["deployrun"]["v701"], "runtime": {"url": url}}
            return params

        check_the_deployment_speaks_oip(deployed, load_manifest(deployed_manifest))
        batches_before = batches_answered(deployed)
        edit_params(project_copy, add_variants)
        run([sys.executable, "-m", "lifecycle", "deps"], project_copy)
        run([sys.executable, "-m", "dvc", "repro", "verdict@v702"], project_copy, timeout=900)
        refused = run([sys.executable, "-m", "dvc", "repro", "serve@v703"], project_copy, check=False)
        batches_served = batches_answered(deployed) - batches_before
    run_dir = project_copy / "executions/07_deployrun/v702"
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["passed"] is True, verdict
    digest = load_manifest(deployed_manifest).package_digest
    assert json.loads((run_dir / "serve.json").read_text())["package_digest"] == digest
    summary = json.loads((run_dir / "logs/run_summary.json").read_text())
    assert summary["windows_sent"] > 0 and summary["windows_answered"] == summary["windows_sent"]
    # The replay really went to the deployment (F07 started no server of its own).
    assert batches_served == summary["batches"]
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert f"serves package digest {packages[1].package_digest}" in output and f"has digest {digest}" in output


def batches_answered(server) -> float:
    """POST /infer_batch answered 200, over every worker (the deployment's /metrics)."""
    key = 'runtime_http_requests_total{method="POST",route="/infer_batch",status="200"} '
    return sum(float(line[len(key):]) for line in requests.get(server.url + "/metrics").text.splitlines()
               if line.startswith(key))


def check_the_deployment_speaks_oip(server, manifest):
    """The demo package in gunicorn mode: OIP readiness, OIP answers equal to /infer_batch
    for the same windows, the description, the metrics."""
    assert requests.get(server.url + "/v2/health/ready").status_code == 200
    windows = [[1, 2, 3], [], [5, 5, 9, 14]]
    rows = [w + [-1] * (4 - len(w)) for w in windows]
    batch = requests.post(server.url + "/infer_batch", json={"windows": windows}).json()["models"]
    for entry, expected in zip(manifest.models, batch):
        name = oip_name(entry)
        answer = requests.post(f"{server.url}/v2/models/{name}/infer", json={"inputs": [
            {"name": "events", "datatype": "INT64", "shape": [3, 4], "data": rows}]}).json()
        probability = next(o for o in answer["outputs"] if o["name"] == "probability")["data"]
        assert np.array_equal(np.float32(probability), np.float32(expected["probabilities"])), name
    assert "/v2/models/{name}/infer" in requests.get(server.url + "/openapi.json").json()["paths"]
    assert "runtime_worker_ready 2.0" in requests.get(server.url + "/metrics").text
