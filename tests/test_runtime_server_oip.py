"""Open Inference Protocol V2 through a real OIP client (``tritonclient.http``) against a
real server process: discovery, metadata, readiness, and inference whose answers equal
``/infer_batch`` for the same windows, in the protocol's JSON and binary tensor forms."""
import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from builders.packages import synthetic_windows
from f07_validation.client import ServerProcess
from runtime.core import oip_name

BROKEN = "v402__v504__broken"


@pytest.fixture(scope="module")
def server(manifest):
    with ServerProcess(manifest.path) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def padded(windows):
    width = max(map(len, windows))
    return np.array([w + [-1] * (width - len(w)) for w in windows], dtype=np.int64)


def infer(client, name, windows, binary: bool):
    events = triton.InferInput("events", list(padded(windows).shape), "INT64")
    events.set_data_from_numpy(padded(windows), binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probability", "y_pred")]
    return client.infer(name, [events], outputs=outputs)


def test_discovery_and_metadata(client, manifest):
    assert client.is_server_live() and client.is_server_ready()
    names = [oip_name(entry) for entry in manifest.models]
    index = client.get_model_repository_index()
    assert [m["name"] for m in index] == names
    assert {m["version"] for m in index} == {manifest.package_digest}
    assert all(client.is_model_ready(name) for name in names)
    metadata = client.get_model_metadata("v401__v505__battery_active_power_any-to-80_100")
    assert metadata["versions"] == [manifest.package_digest]
    assert metadata["inputs"] == [{"name": "events", "datatype": "INT64", "shape": [-1, -1]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probability", "y_pred"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_answers_equal_infer_batch(client, server, manifest, binary):
    windows = synthetic_windows(64, mean_len=25, codes=(0, 130), seed=11) + [[], [7]]
    batch = requests.post(server.url + "/infer_batch", json={"windows": windows}).json()["models"]
    for entry, expected in zip(manifest.models, batch):
        result = infer(client, oip_name(entry), windows, binary)
        probability, y_pred = result.as_numpy("probability"), result.as_numpy("y_pred")
        assert probability.dtype == np.float32 and y_pred.dtype == np.int8
        want = np.array(expected["probabilities"], dtype=np.float64).astype(np.float32)  # null -> NaN
        np.testing.assert_array_equal(probability, want, err_msg=entry.key)
        np.testing.assert_array_equal(y_pred, [-1 if y is None else y for y in expected["y_pred"]])
        assert result.get_response()["model_version"] == manifest.package_digest


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_non_finite_output_is_nan_with_y_pred_minus_one_never_zero(client, binary):
    result = infer(client, BROKEN, [[1, 2], [3]], binary)
    assert np.isnan(result.as_numpy("probability")).all()
    assert result.as_numpy("y_pred").tolist() == [-1, -1]
    assert result.get_response()["parameters"] == {"non_finite": 2}


def test_a_versioned_call_and_an_unknown_version(client, manifest):
    name = oip_name(manifest.models[0])
    events = triton.InferInput("events", [1, 2], "INT64")
    events.set_data_from_numpy(np.array([[3, 4]], dtype=np.int64))
    assert client.infer(name, [events], model_version=manifest.package_digest).as_numpy("y_pred").shape == (1,)
    with pytest.raises(InferenceServerException, match="has only version"):
        client.infer(name, [events], model_version="1")


@pytest.mark.parametrize("tensor, status, message", [
    ({"name": "events", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}, 400, "must be INT64"),
    ({"name": "events", "datatype": "INT64", "shape": [2], "data": [1, 2]}, 400, "must be [n, L]"),
    ({"name": "events", "datatype": "INT64", "shape": [1, 3], "data": [1, -1, 4]}, 400,
     "row 0 has an event code after its -1 padding"),
    ({"name": "events", "datatype": "INT64", "shape": [1, 3], "data": [1, 2]}, 400, "needs 3"),
    ({"name": "events", "datatype": "INT64", "shape": [1, 2], "data": [1, 2.5]}, 400, "must be integers"),
    ({"name": "other", "datatype": "INT64", "shape": [1, 1], "data": [1]}, 400, "named 'events'"),
    ({"name": "events", "datatype": "INT64", "shape": [0, 1], "data": []}, 400, "no rows"),
])
def test_bad_tensors_are_400_naming_the_problem(server, manifest, tensor, status, message):
    url = f"{server.url}/v2/models/{oip_name(manifest.models[0])}/infer"
    response = requests.post(url, json={"inputs": [tensor]})
    assert response.status_code == status and message in response.json()["error"]


def test_unknown_model_and_output_names(server, manifest):
    response = requests.get(f"{server.url}/v2/models/nope")
    assert response.status_code == 404 and "GET /v2/models lists them" in response.json()["error"]
    url = f"{server.url}/v2/models/{oip_name(manifest.models[0])}/infer"
    response = requests.post(url, json={"inputs": [{"name": "events", "datatype": "INT64", "shape": [1, 1],
                                                    "data": [1]}], "outputs": [{"name": "logits"}]})
    assert response.status_code == 400 and "unknown outputs ['logits']" in response.json()["error"]


def test_malformed_parameters_are_400_not_500(server, manifest):
    url = f"{server.url}/v2/models/{oip_name(manifest.models[0])}/infer"
    events = {"name": "events", "datatype": "INT64", "shape": [1, 1], "data": [1]}
    for body in ({"inputs": [events], "parameters": "x"},
                 {"inputs": [events], "outputs": [{"name": "y_pred", "parameters": 1}]},
                 {"inputs": [{**events, "parameters": []}]}):
        response = requests.post(url, json=body)
        assert response.status_code == 400 and "'parameters' must be an object" in response.json()["error"]
