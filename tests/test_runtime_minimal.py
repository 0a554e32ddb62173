"""The minimal runtime: the server in a venv holding only ``requirements-runtime.txt``
(TensorFlow, Flask, requests, numpy and what they require; ``tests.minimal_venv`` says
how it is built without a registry), a real process replayed through over HTTP, and each
optional extra refused in one line naming its package when its feature is asked for."""
import json
import subprocess

import jsonschema
import numpy as np
import pytest
import requests

from contract.manifest import load_manifest
from f07_validation.client import ServerProcess, ServerStartError, replay, replay_windows
from runtime import codecs
from runtime.models import EquivalenceCheck
from runtime.settings import SETTINGS_SCHEMA
from runtime.settings_schema import schema_errors
from tests.conftest import PROJECT
from tests.minimal_venv import link_venv

EXTRAS = ("prometheus_client", "gunicorn", "pyarrow", "jsonschema", "mlserver")
PIPELINE = ("pandas", "dvc", "yaml", "matplotlib", "pytest")


@pytest.fixture(scope="module")
def minimal_python(tmp_path_factory):
    return link_venv(tmp_path_factory.mktemp("minimal") / "venv", PROJECT / "requirements-runtime.txt")


@pytest.fixture(scope="module")
def server(minimal_python, serving_manifest):
    with ServerProcess(serving_manifest, python=minimal_python) as running:
        yield running


def test_the_minimal_venv_holds_the_runtime_and_nothing_else(minimal_python):
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None "
             f"for m in {list(EXTRAS + PIPELINE + ('tensorflow', 'keras', 'flask', 'requests', 'numpy'))}}}))")
    found = json.loads(subprocess.run([str(minimal_python), "-c", probe], capture_output=True, text=True,
                                      check=True, cwd="/").stdout)
    assert [m for m in EXTRAS + PIPELINE if found[m]] == []
    assert all(found[m] for m in ("tensorflow", "keras", "flask", "requests", "numpy"))


def test_the_replay_runs_against_the_minimal_runtime(server, serving_manifest):
    manifest = load_manifest(serving_manifest)
    check = EquivalenceCheck.from_manifest(manifest)
    answered = 0
    for batch in replay(server.url, manifest, batch_size=128, wire=codecs.JSON, progress=None):
        check.add(batch.windows, {a.entry.key: np.where(a.answered, a.probabilities, np.nan)
                                  for a in batch.answers})
        answered += len(batch.windows)
    expected = sum(len(w) for w in replay_windows(manifest.replay_path(), manifest.regime(), 128))
    assert answered == expected > 0
    summary = check.summary()
    assert summary["passed"], summary
    assert "not installed" not in server.stderr_tail()  # silent while no extra is asked for


def documented_501(server) -> dict[tuple[str, str], str]:
    """(method, path) -> the description of its 501 answer, in the server's /openapi.json."""
    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    return {(method, path): operation["responses"]["501"]["description"]
            for path, item in document["paths"].items() for method, operation in item.items()
            if "501" in operation["responses"]}


def test_metrics_without_prometheus_client_is_one_line_naming_it(server):
    answer = requests.get(server.url + "/metrics", timeout=10)
    assert answer.status_code == 501
    message = answer.json()["error"]
    assert "prometheus-client" in message and "pip install prometheus-client" in message
    assert "\n" not in message
    assert documented_501(server)[("get", "/metrics")] == message  # the OpenAPI document says it


def test_arrow_bodies_without_pyarrow_are_one_line_naming_it(server):
    windows = [[1, 2, 3], [4]]
    codes = np.array([c for w in windows for c in w])
    body = codecs.windows_to_arrow(codes, np.array([0, 3, 4]))  # built here, where pyarrow is
    answer = requests.post(server.url + "/infer_batch", data=body, timeout=10,
                           headers={"Content-Type": codecs.ARROW})
    assert answer.status_code == 501
    assert "pip install pyarrow" in answer.json()["error"]
    assert documented_501(server)[("post", "/infer_batch")] == answer.json()["error"]
    json_answer = requests.post(server.url + "/infer_batch", json={"windows": windows}, timeout=10)
    assert json_answer.status_code == 200  # the same batch as JSON is served


def test_the_openapi_document_lists_a_501_only_where_an_extra_is_missing(server):
    """The two refusals above, and no other operation: the JSON bodies, the OIP routes and
    the rest need no extra (the full server's document lists no 501:
    test_runtime_server_openapi.py)."""
    assert set(documented_501(server)) == {("get", "/metrics"), ("post", "/infer_batch")}


def test_gunicorn_without_its_packages_refuses_to_start_in_one_line(minimal_python, serving_manifest):
    with pytest.raises(ServerStartError) as refused:
        with ServerProcess(serving_manifest, python=minimal_python, server_args=["--server", "gunicorn"]):
            pass
    tail = str(refused.value).split("start-up:\n", 1)[1]
    assert tail.startswith("runtime.server: the gunicorn server (--server gunicorn) needs the "
                           "Python package gunicorn") and "pip install gunicorn" in tail
    assert len(tail.splitlines()) == 1


# The settings checker (runtime.settings_schema) against jsonschema on every key: values
# of the right and wrong types, at and beyond each bound.
SAMPLES = [None, True, False, 0, 1, -1, 2.5, 0.0, 65535, 65536, 64, 65, 256, 257, 3600, 3601,
           "", "x", "werkzeug", "gunicorn", "uwsgi", "MY_TOKEN", "1BAD", "127.0.0.1", [], {}]


@pytest.mark.parametrize("key", sorted(SETTINGS_SCHEMA["properties"]))
def test_the_settings_checker_agrees_with_jsonschema(key):
    validator = jsonschema.Draft202012Validator(SETTINGS_SCHEMA)
    for value in SAMPLES:
        values = {"manifest": "m.json", key: value}
        ours = [(e.key, e.keyword) for e in schema_errors(SETTINGS_SCHEMA, values)]
        theirs = [(".".join(map(str, e.path)) or None, e.validator) for e in validator.iter_errors(values)]
        assert sorted(ours, key=str) == sorted(theirs, key=str), (key, value)
    for values in ({}, {"manifest": "m.json", "wokers": 2}, []):
        assert bool(schema_errors(SETTINGS_SCHEMA, values)) == bool(list(validator.iter_errors(values)))


def test_a_schema_keyword_the_checker_does_not_know_is_refused():
    schema = {**SETTINGS_SCHEMA, "properties": {"port": {"type": "integer", "multipleOf": 2}}}
    with pytest.raises(ValueError, match="multipleOf"):
        schema_errors(schema, {"port": 1})


def test_the_mlserver_runtime_without_mlserver_is_one_line_naming_it(minimal_python):
    done = subprocess.run([str(minimal_python), "-c", "import runtime.mlserver_model"], capture_output=True,
                          text=True, cwd=PROJECT, env={"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("runtime.optional.MissingPackage: serving on MLServer needs the Python package mlserver")
    assert "pip install -r requirements-mlserver.txt" in last
