"""The inference server as a real process on a loopback port: endpoints, bad requests,
readiness, start-up refusals and equivalence with the same models in-process."""
import hashlib
import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import requests

from builders.packages import ModelDef, build_served_package, synthetic_windows
from contract.manifest import load_manifest
from f07_validation.client import ServerProcess, ServerStartError
from runtime.models import EquivalenceCheck, load_models
from tests.served_models import package_with_a_corrupt_model
from runtime.vectorize import Ragged

MAX_ITEMS, MAX_BYTES = 300, 256 * 1024
UPSTREAM_KEY = "v401/v505/battery_active_power_any-to-80_100"


@pytest.fixture(scope="module")
def manifest_path(serving_manifest):
    return serving_manifest


@pytest.fixture(scope="module")
def server(manifest_path):
    args = ["--max-batch-items", MAX_ITEMS, "--max-content-length", MAX_BYTES]
    with ServerProcess(manifest_path, server_args=args) as running:
        yield running


def post(server, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"},
                         timeout=30)


def by_key(answer):
    return {f"{m['objective']}/{m['source_f05']}/{m['model_id']}": m for m in answer["models"]}


def test_port_zero_binds_a_real_free_port(server):
    port = int(server.url.rsplit(":", 1)[1])
    assert server.url.startswith("http://127.0.0.1:") and port > 0


def test_health_ready_and_models(server, manifest_path):
    assert requests.get(server.url + "/health").json() == {"status": "alive"}
    ready = requests.get(server.url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert {s["state"] for s in ready.json()["models"].values()} == {"ready"}

    described = requests.get(server.url + "/models").json()
    manifest = load_manifest(manifest_path)
    assert described["package_digest"] == manifest.package_digest
    assert described["limits"] == {"max_batch_items": MAX_ITEMS, "max_content_length_bytes": MAX_BYTES}
    assert [m["key"] for m in described["models"]] == [e.key for e in manifest.models]
    cnn = next(m for m in described["models"] if m["key"] == "v402/v503/obj_b")
    assert cnn["threshold"] == 0.4 and cnn["model_family"] == "cnn1d"
    assert cnn["input"] == {"vectorization": "sequence", "input_shape": [None, 60], "vocab_length": 40}


def test_infer_batch_answers_one_array_per_model_with_thresholds_applied(server, manifest_path):
    windows = synthetic_windows(40, mean_len=30, codes=(0, 130), seed=1) + [[]]
    response = post(server, "/infer_batch", {"windows": windows})
    assert response.status_code == 200
    answer = response.json()
    assert answer["n"] == len(windows)
    manifest = load_manifest(manifest_path)
    assert list(by_key(answer)) == [e.key for e in manifest.models]
    for key, model in by_key(answer).items():
        if key == "v402/v504/broken":
            continue
        p = np.array(model["probabilities"], dtype=np.float64)  # null -> NaN
        assert len(p) == len(windows)
        # Only the empty window may go unanswered: a masked average of no events is 0/0,
        # NaN or not as the CPU's TensorFlow kernels compute it; a null is then reported.
        nulls = np.flatnonzero(np.isnan(p)).tolist()
        assert nulls in ([], [len(windows) - 1]), (key, nulls)
        assert [e["window"] for e in model["errors"]] == nulls
        expected = [None if np.isnan(v) else int(v >= model["threshold"]) for v in p]
        assert model["y_pred"] == expected
    cnn = by_key(answer)["v402/v503/obj_b"]
    assert cnn["threshold"] == 0.4


def test_a_non_finite_output_is_null_with_an_error_never_zero(server):
    broken = by_key(post(server, "/infer_batch", {"windows": [[1, 2], [], [3]]}).json())["v402/v504/broken"]
    assert broken["probabilities"] == [None, None, None] and broken["y_pred"] == [None, None, None]
    assert [e["window"] for e in broken["errors"]] == [0, 1, 2]
    assert "non-finite" in broken["errors"][0]["error"] and "v402/v504/broken" in broken["errors"][0]["error"]


def test_infer_one_window_equals_its_row_in_a_batch_of_one(server):
    single = post(server, "/infer", {"events": [5, 7, 7, 12]}).json()
    batch = post(server, "/infer_batch", {"windows": [[5, 7, 7, 12]]}).json()
    for one, many in zip(single["models"], batch["models"]):
        assert one["probability"] == many["probabilities"][0]
        assert one["y_pred"] == many["y_pred"][0]


def test_server_probabilities_equal_the_models_in_process(server, manifest_path):
    lists = synthetic_windows(256, mean_len=57, codes=(0, 130), seed=3)
    answer = post(server, "/infer_batch", {"windows": lists}).json()
    served = {key: np.array(m["probabilities"], dtype=np.float64) for key, m in by_key(answer).items()}
    check = EquivalenceCheck(load_models(load_manifest(manifest_path)))
    check.add(Ragged.from_lists(lists), served)
    summary = check.summary()
    assert summary["passed"], summary
    assert summary["models"][UPSTREAM_KEY]["max_abs_diff"] <= 1e-6
    assert summary["models"]["v402/v504/broken"]["non_finite_mismatch"] == 0


@pytest.mark.parametrize("path, body, status, message", [
    ("/infer_batch", "not json", 400, "not valid JSON"),
    ("/infer_batch", "[[1, 2]]", 400, "must be a JSON object"),
    ("/infer_batch", {"events": [1]}, 400, "missing key 'windows'"),
    ("/infer_batch", {"windows": "1 2 3"}, 400, "'windows' must be a list"),
    ("/infer_batch", {"windows": [[1], 2]}, 400, "windows[1] must be a list"),
    ("/infer_batch", {"windows": [[1], [2, True]]}, 400, "windows[1][1] is true (bool)"),
    ("/infer_batch", {"windows": [[1.5]]}, 400, "windows[0][0] is 1.5 (float)"),
    ("/infer_batch", {"windows": [["7"]]}, 400, "windows[0][0] is \"7\" (str)"),
    ("/infer_batch", {"windows": [[2 ** 70]]}, 400, "outside the int64 range"),
    ("/infer_batch", {"windows": []}, 400, "'windows' is empty"),
    ("/infer_batch", {"windows": [[1]] * (MAX_ITEMS + 1)}, 413, f"limit of {MAX_ITEMS}"),
    ("/infer_batch", {"windows": [[1] * 1000] * 100}, 413, f"limit of {MAX_BYTES} bytes"),
    ("/infer", {"windows": [[1]]}, 400, "missing key 'events'"),
    ("/infer", {"events": 5}, 400, "'events' must be a list"),
    ("/infer", {"events": [1, None]}, 400, "events[1] is null"),
])
def test_bad_requests_get_a_json_error_naming_the_problem(server, path, body, status, message):
    response = post(server, path, body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert requests.get(server.url + "/health").status_code == 200  # and the server keeps answering


def test_unknown_routes_and_methods_answer_json(server):
    assert requests.get(server.url + "/nope").status_code == 404
    wrong = requests.get(server.url + "/infer_batch")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_not_ready_until_warmed_up(manifest_path):
    with ServerProcess(manifest_path, wait_ready=False, server_args=["--load-delay", "1"]) as slow:
        ready = requests.get(slow.url + "/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert set(ready.json()["models"]) == {e.key for e in load_manifest(manifest_path).models}
        refused = post(slow, "/infer_batch", {"windows": [[1]]})
        assert refused.status_code == 503 and "poll GET /ready" in refused.json()["error"]
        assert requests.get(slow.url + "/health").status_code == 200
        slow.wait_ready()
        assert post(slow, "/infer", {"events": [1]}).status_code == 200


def run_server(manifest_path, *args):
    return subprocess.run([sys.executable, "-m", "runtime.server", "--manifest", str(manifest_path), *args],
                          capture_output=True, text=True, timeout=60)


def test_a_port_in_use_exits_naming_the_port_and_the_param(manifest_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server(manifest_path, "--port", str(port))
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "deployrun.v701.runtime.port in params.yaml" in result.stderr and "0 picks a free one" in result.stderr


def test_a_package_whose_seal_breaks_is_refused_naming_the_file(tmp_path):
    manifest_path = build_served_package(tmp_path, [ModelDef("m", vocab=[1, 2, 3])])
    package = tmp_path / "06_packaging" / "v601"
    with open(package / "models/v401/v501__m/model_summary.json", "a") as handle:
        handle.write(" ")
    result = run_server(manifest_path, "--port", "0")
    assert result.returncode == 2
    assert "seal does NOT verify" in result.stderr
    assert "changed: models/v401/v501__m/model_summary.json" in result.stderr
    with pytest.raises(ServerStartError, match="changed: models/v401/v501__m/model_summary.json"):
        with ServerProcess(manifest_path):
            pass


def test_a_manifest_made_for_another_package_is_refused(tmp_path):
    manifest_path = build_served_package(tmp_path, [ModelDef("m", vocab=[1, 2, 3])])
    data = json.loads(manifest_path.read_text())
    data["package_digest"] = "0" * 64
    manifest_path.write_text(json.dumps(data))
    result = run_server(manifest_path, "--port", "0")
    assert result.returncode == 2 and "rebuild the manifest" in result.stderr


def test_a_model_that_cannot_load_fails_the_start_naming_it(tmp_path):
    manifest_path = package_with_a_corrupt_model(tmp_path)
    with pytest.raises(ServerStartError, match="v401/v501/m: ModelLoadError: model v401/v501/m: cannot load"):
        with ServerProcess(manifest_path):
            pass


ARROW = "application/vnd.apache.arrow.stream"


def arrow_body(windows):
    import pyarrow as pa

    table = pa.table({"windows": pa.array(windows, pa.list_(pa.int64()))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_an_arrow_body_gets_the_same_answers_as_json(server):
    import pyarrow as pa

    windows = synthetic_windows(30, mean_len=20, codes=(0, 130), seed=9) + [[]]
    expected = post(server, "/infer_batch", {"windows": windows}).json()
    response = requests.post(server.url + "/infer_batch", data=arrow_body(windows),
                             headers={"Content-Type": ARROW}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == ARROW
    table = pa.ipc.open_stream(response.content).read_all()
    models = json.loads(table.schema.metadata[b"models"])
    assert int(table.schema.metadata[b"n"]) == len(windows)
    for described, want in zip(models, expected["models"]):
        key = described["key"]
        assert table.column(f"{key}/probability").to_pylist() == want["probabilities"]
        assert table.column(f"{key}/y_pred").to_pylist() == want["y_pred"]
        assert described["errors"] == want["errors"] and described["threshold"] == want["threshold"]
    as_json = requests.post(server.url + "/infer_batch", data=arrow_body(windows),
                            headers={"Content-Type": ARROW, "Accept": "application/json"}, timeout=30)
    assert as_json.json() == expected


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"not arrow", ARROW, 400, "not a readable Arrow IPC stream"),
    (b"windows=1", "text/plain", 415, "'text/plain' is not served here"),
])
def test_bad_arrow_and_unknown_content_types(server, body, content_type, status, message):
    response = requests.post(server.url + "/infer_batch", data=body, headers={"Content-Type": content_type})
    assert response.status_code == status and message in response.json()["error"]


def test_an_arrow_batch_over_the_item_limit_is_413(server):
    response = requests.post(server.url + "/infer_batch", data=arrow_body([[1]] * (MAX_ITEMS + 1)),
                             headers={"Content-Type": ARROW})
    assert response.status_code == 413 and f"limit of {MAX_ITEMS}" in response.json()["error"]


def test_models_reports_the_sha256_of_what_was_loaded(server, manifest_path):
    described = {m["key"]: m for m in requests.get(server.url + "/models").json()["models"]}
    for entry in load_manifest(manifest_path).models:
        assert described[entry.key]["sha256"] == {
            "model.h5": hashlib.sha256(entry.model_path.read_bytes()).hexdigest(),
            "model_summary.json": hashlib.sha256(entry.summary_path.read_bytes()).hexdigest()}


def test_keep_alive_and_no_access_log_unless_asked(server):
    with requests.Session() as session:
        first = session.get(server.url + "/health")
        second = session.get(server.url + "/health")
    assert first.raw.version == second.raw.version == 11  # HTTP/1.1: the connection is reused
    assert '"GET /health HTTP/1.1" 200' not in server.stderr_tail()
