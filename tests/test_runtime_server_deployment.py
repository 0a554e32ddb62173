"""Validating a deployment by URL: F07 starts nothing, and judges a server that runs
elsewhere only when it is ready and serves this very package. The deployment here is the
project's own server in gunicorn mode, started outside F07 as a team would run it."""
import socket

import pytest

from builders.packages import ModelDef, build_served_package
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess, replay
from f07_validation.deployrun import DeployRunError
from f07_validation.endpoint import open_endpoint, server_args

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
        assert endpoint.url == deployment.url and not endpoint.started
        assert endpoint.ready["workers"] == {"ready": 2, "expected": 2}
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
