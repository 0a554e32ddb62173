"""Refusals and limits of the server, each made to happen for its real reason against a
real process: the bearer token, exposure beyond loopback, the access log switch, and
loading only the bytes the seal verified (a model swapped during start-up is never
served)."""
import contextlib
import hashlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from builders.packages import ModelDef, build_served_package, synthetic_windows
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess
from runtime import core
from runtime.errors import PackageRefused
from runtime.models import LoadedModel
from runtime.settings import ServingSettings, SettingsError
from runtime.vectorize import Ragged
from tests.conftest import as_from_a_terminal

TOKEN_ENV, TOKEN = "H14_RUNTIME_TEST_TOKEN", "s3cret-token"


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    vocab = list(range(1, 41))
    return build_served_package(tmp_path_factory.mktemp("hardening"), [
        ModelDef("m", "dense_bow", "v401", "v501", vocab=vocab, seed=1),
        ModelDef("n", "dense_bow", "v401", "v502", vocab=vocab, seed=2)])


@pytest.fixture(scope="module")
def token_server(manifest_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_ENV, TOKEN)
        with ServerProcess(manifest_path, server_args=["--token-env", TOKEN_ENV, "--access-log"]) as running:
            yield running


def run_server(manifest_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "runtime.server", "--manifest", str(manifest_path),
                           "--port", "0", *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("method, path", [("get", "/models"), ("get", "/metrics"), ("post", "/infer_batch"),
                                          ("post", "/v2/models/v401__v501__m/infer"), ("get", "/v2/models")])
def test_without_the_token_every_route_but_the_probes_is_401(token_server, method, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = requests.request(method, token_server.url + path, headers=headers, json={})
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN_ENV in response.json()["error"] and TOKEN not in response.text


def test_with_the_token_the_routes_answer_and_probes_need_none(token_server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(token_server.url + "/models", headers=auth).status_code == 200
    answer = requests.post(token_server.url + "/infer_batch", headers=auth, json={"windows": [[1, 2]]})
    assert answer.status_code == 200 and answer.json()["n"] == 1
    for probe in ("/health", "/ready", "/v2/health/live", "/v2/health/ready", "/openapi.json"):
        assert requests.get(token_server.url + probe).status_code == 200, probe
    document = requests.get(token_server.url + "/openapi.json").json()
    assert document["security"] == [{"bearer": []}]
    assert "401" in document["paths"]["/infer_batch"]["post"]["responses"]


def test_the_access_log_is_written_when_switched_on(token_server):
    requests.get(token_server.url + "/models?x=1", headers={"Authorization": f"Bearer {TOKEN}"})
    requests.get(token_server.url + "/models")
    tail = token_server.stderr_tail()
    assert '"GET /models?x=1 HTTP/1.1" 200' in tail and '"GET /models HTTP/1.1" 401' in tail


def test_a_token_variable_that_is_unset_refuses_to_start(manifest_path):
    result = run_server(manifest_path, "--token-env", "H14_NOT_SET_ANYWHERE")
    assert result.returncode == 2
    assert "H14_NOT_SET_ANYWHERE" in result.stderr and "unset or empty" in result.stderr


def test_a_non_loopback_host_needs_expose(manifest_path):
    result = run_server(manifest_path, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "'0.0.0.0' is not a loopback address" in result.stderr and "runtime.expose: true" in result.stderr
    assert "LISTENING" not in result.stdout


def test_expose_allows_it_with_a_warning():
    settings = ServingSettings.from_mapping({"manifest": "m.json", "host": "0.0.0.0", "expose": True})
    assert "WARNING: serving on 0.0.0.0, reachable from the network" in settings.exposure_warning()
    assert ServingSettings.from_mapping({"manifest": "m.json", "host": "::1"}).exposure_warning() is None
    with pytest.raises(SettingsError, match="known keys: .*workers"):
        ServingSettings.from_mapping({"manifest": "m.json", "wokers": 2})
    with pytest.raises(SettingsError, match="key 'server'"):
        ServingSettings.from_mapping({"manifest": "m.json", "server": "uwsgi"})


def _model_dirs(manifest_path):
    """The served model ``m`` and the other model ``n`` (same vocabulary, other weights)."""
    package = load_manifest(manifest_path).package_dir
    return package / "models/v401/v501__m", package / "models/v401/v502__n"


def test_a_model_swapped_during_start_up_is_never_served(manifest_path, tmp_path):
    served_dir, other_dir = _model_dirs(manifest_path)
    original = (served_dir / "model.h5").read_bytes()
    summary = (served_dir / "model_summary.json").read_bytes()
    windows = synthetic_windows(50, mean_len=15, codes=(0, 45), seed=5)
    try:
        with ServerProcess(manifest_path, wait_ready=False, server_args=["--load-delay", "2"]) as server:
            # The server has verified the seal and is listening; its models are not loaded yet.
            shutil.copyfile(other_dir / "model.h5", served_dir / "model.h5")
            server.wait_ready()
            described = requests.get(server.url + "/models").json()["models"][0]
            answer = requests.post(server.url + "/infer_batch", json={"windows": windows}).json()
    finally:
        (served_dir / "model.h5").write_bytes(original)
    assert described["sha256"]["model.h5"] == hashlib.sha256(original).hexdigest()
    served = np.array(answer["models"][0]["probabilities"])
    ragged = Ragged.from_lists(windows)
    sealed = LoadedModel.from_bytes(original, summary, name="sealed").predict(ragged)
    swapped = LoadedModel.from_bytes((other_dir / "model.h5").read_bytes(), summary, name="swapped").predict(ragged)
    np.testing.assert_array_equal(served, sealed.astype(np.float64))
    assert np.abs(served - swapped).max() > 1e-3  # the swap would have been visible


def test_a_file_changed_after_the_seal_check_is_refused(manifest_path, monkeypatch):
    served_dir, other_dir = _model_dirs(manifest_path)
    original = (served_dir / "model.h5").read_bytes()
    real_verify = core.verify_seal

    def verify_then_swap(package_dir):
        check = real_verify(package_dir)  # the real check passes on the sealed files...
        shutil.copyfile(other_dir / "model.h5", served_dir / "model.h5")  # ...which then change
        return check

    monkeypatch.setattr(core, "verify_seal", verify_then_swap)
    try:
        with pytest.raises(PackageRefused, match="models/v401/v501__m/model.h5 changed after its seal was verified"):
            core.read_sealed_models(load_manifest(manifest_path))
    finally:
        (served_dir / "model.h5").write_bytes(original)


# ------------------------------------------------------------------ bodies that lie about their size

ARROW = "application/vnd.apache.arrow.stream"
BOMB_CODES = 25_000_000  # 200 MB of int64 codes once decoded; ~6 KB as ZSTD


@pytest.fixture(scope="module")
def plain_server(manifest_path):
    with ServerProcess(manifest_path) as running:
        yield running


def resident_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def arrow_stream(column, compression=None) -> bytes:
    import pyarrow as pa

    batch = pa.record_batch([column], names=["windows"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema,
                           options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def test_a_compressed_arrow_body_is_bounded_by_its_decoded_size(plain_server):
    import pyarrow as pa

    offsets = pa.array(np.array([0, BOMB_CODES // 2, BOMB_CODES], dtype=np.int64))
    column = pa.LargeListArray.from_arrays(offsets, pa.array(np.zeros(BOMB_CODES, dtype=np.int64)))
    body = arrow_stream(column, "zstd")
    assert len(body) < 64 * 1024  # far below the 32 MiB body limit
    before = resident_mib(plain_server.pid)
    response = requests.post(plain_server.url + "/infer_batch", data=body,
                             headers={"Content-Type": ARROW}, timeout=60)
    grown = resident_mib(plain_server.pid) - before
    assert response.status_code == 413, response.text
    assert "decodes to more than the server's limit" in response.json()["error"]
    assert grown < 50, f"the server grew by {grown:.0f} MiB decoding a {len(body)}-byte body"
    # the same stream compressed but within the limit is served as it would be uncompressed
    small = pa.LargeListArray.from_arrays(pa.array(np.array([0, 2, 3], dtype=np.int64)),
                                          pa.array(np.array([1, 2, 3], dtype=np.int64)))
    answers = [requests.post(plain_server.url + "/infer_batch", data=arrow_stream(small, codec),
                             headers={"Content-Type": ARROW, "Accept": "application/json"}, timeout=30)
               for codec in (None, "zstd", "lz4")]
    assert all(a.status_code == 200 for a in answers) and answers[0].json() == answers[1].json() == answers[2].json()


def test_arrow_list_offsets_outside_the_values_are_400(plain_server):
    import pyarrow as pa

    offsets = np.array([0, 2, 4], dtype=np.int64)
    valid = arrow_stream(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.arange(4, dtype=np.int64))))
    # the same stream with its last offset pointing far past the 4 values
    crafted = valid.replace(offsets.tobytes(), np.array([0, 2, 1_000_000], dtype=np.int64).tobytes())
    assert crafted != valid
    response = requests.post(plain_server.url + "/infer_batch", data=crafted,
                             headers={"Content-Type": ARROW}, timeout=30)
    assert response.status_code == 400, response.text
    assert "not a readable Arrow IPC stream" in response.json()["error"]


@pytest.mark.parametrize("path, body", [
    ("/infer", b'{"events": [1, 2]}'),
    ("/infer_batch", b'{"windows": [[1, 2]]}'),
    ("/v2/models/v401__v501__m/infer",
     b'{"inputs": [{"name": "events", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}'),
])
def test_a_body_of_another_content_type_is_415(plain_server, path, body):
    refused = requests.post(plain_server.url + path, data=body, headers={"Content-Type": "text/csv"}, timeout=30)
    assert refused.status_code == 415, refused.text
    assert "'text/csv' is not served here" in refused.json()["error"]
    served = requests.post(plain_server.url + path, data=body, headers={"Content-Type": "application/json"},
                           timeout=30)
    assert served.status_code == 200, served.text


def test_metrics_labels_come_from_a_fixed_set_whatever_the_client_sends(token_server):
    """Any method name used to become a series, even answered 401: /metrics grew without bound."""
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def invented_methods(names):
        for name in names:
            requests.request(name, token_server.url + f"/no/such/{name}", timeout=10)
        return requests.get(token_server.url + "/metrics", headers=auth).text

    invented_methods([f"W{i:04d}Y" for i in range(5)])  # the series they share, and /metrics's, exist now
    before = invented_methods([f"V{i:04d}Y" for i in range(5)])
    after = invented_methods([f"X{i:04d}Y" for i in range(300)])
    assert len(after) - len(before) < 200, f"/metrics grew by {len(after) - len(before)} bytes"
    assert "X0001Y" not in after and 'method="other"' in after


@pytest.mark.parametrize("key, value", [("threshold", 0.01), ("model_id", "other"), ("input_shape", [None, 7])])
def test_what_is_served_comes_from_the_seal_not_the_manifest(tmp_path, key, value):
    """manifest.json is not sealed: an edited threshold was served under the package digest."""
    import json

    edited = build_served_package(tmp_path, [ModelDef("m", vocab=[1, 2, 3])])
    data = json.loads(edited.read_text())
    data["models"][0][key] = value
    edited.write_text(json.dumps(data))
    result = run_server(edited)
    assert result.returncode == 2, result.stderr
    assert f"models[0].{key} is {value!r} but the sealed package says" in result.stderr
    assert "rebuild the manifest (serve stage)" in result.stderr and "LISTENING" not in result.stdout


def test_a_model_that_fails_to_load_is_named_on_ready_without_a_path(tmp_path):
    """/ready needs no token; the load error it shows named absolute paths of the machine."""
    from tests.served_models import package_with_a_corrupt_model

    with ServerProcess(package_with_a_corrupt_model(tmp_path), wait_ready=False) as server:
        for _ in range(600):
            shown = requests.get(server.url + "/ready", timeout=10)
            if shown.json()["models"]["v401/v501/m"]["state"] == "failed":
                break
            time.sleep(0.1)
        index = requests.get(server.url + "/v2/models", timeout=10).text
        logged = server.stderr_tail()
    error = shown.json()["models"]["v401/v501/m"]["error"]
    assert shown.status_code == 503 and "cannot load" in error
    for answer in (shown.text, index):
        assert "/" + str(tmp_path).strip("/").split("/")[0] not in answer and "/tmp" not in answer, answer
    assert "failed to load" in logged  # the operator's log keeps the whole message


@pytest.mark.parametrize("server", ["werkzeug", "gunicorn"])
def test_ctrl_c_at_any_moment_stops_the_server_without_a_traceback(manifest_path, server):
    """Interrupted while importing its modules it printed a traceback of up to 40 lines."""
    import os
    import signal

    for delay in (0.2, 0.4, 0.8, 3.0):  # importing, starting, serving
        process = subprocess.Popen([sys.executable, "-m", "runtime.server", "--manifest", str(manifest_path),
                                    "--port", "0", "--server", server], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=as_from_a_terminal)
        try:
            time.sleep(delay)
            os.killpg(process.pid, signal.SIGINT)  # as a terminal sends Ctrl-C: to the whole group
            _, stderr = process.communicate(timeout=60)
        finally:  # a server that ignored it is not left running (nor its workers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert process.returncode in (0, 130) and "Traceback" not in stderr, (delay, process.returncode, stderr)
