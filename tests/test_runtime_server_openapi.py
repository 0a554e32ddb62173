"""The OpenAPI description against the real server: schemathesis generates requests for
every route from ``/openapi.json``, sends them to a real server process and checks that
no answer is a 5xx and every status, content type and body is the one described. A
control run with a description that lies about one answer shows the run can fail."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from f07_validation.client import ServerProcess

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


@pytest.fixture(scope="module")
def server(serving_manifest):
    # Small limits, so that generated batches reach them.
    with ServerProcess(serving_manifest, server_args=["--max-batch-items", 32,
                                                    "--max-content-length", 16384]) as running:
        yield running


def schemathesis(location, base_url, cwd, *args):
    command = [str(Path(sys.executable).parent / "st"), "run", str(location), "--url", base_url,
               "--checks", CHECKS, "--max-examples", "25", "--workers", "1", "--seed", "14",
               "--no-color", "--generation-database", "none", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_every_route_is_described(server):
    document = requests.get(server.url + "/openapi.json").json()
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routes = {("/health", "GET"), ("/ready", "GET"), ("/models", "GET"), ("/infer", "POST"),
              ("/infer_batch", "POST"), ("/metrics", "GET"), ("/openapi.json", "GET"), ("/v2", "GET"),
              ("/v2/health/live", "GET"), ("/v2/health/ready", "GET"), ("/v2/models", "GET"),
              ("/v2/repository/index", "POST"), ("/v2/models/{name}", "GET"),
              ("/v2/models/{name}/ready", "GET"), ("/v2/models/{name}/infer", "POST"),
              ("/v2/models/{name}/versions/{version}", "GET"),
              ("/v2/models/{name}/versions/{version}/ready", "GET"),
              ("/v2/models/{name}/versions/{version}/infer", "POST")}
    assert described == routes
    # every optional extra is installed here: no 501 (the minimal runtime's in test_runtime_minimal.py)
    assert [path for path, item in document["paths"].items() for operation in item.values()
            if "501" in operation["responses"]] == []
    batch = document["paths"]["/infer_batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["properties"]["windows"]["maxItems"] == 32
    assert "16384 bytes" in batch["summary"]


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_description(server, tmp_path):
    result = schemathesis(server.url + "/openapi.json", server.url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", result.stdout).groups())
    tested = int(re.search(r"Tested: (\d+)", result.stdout).group(1))
    assert selected == total == tested >= 17, result.stdout[-3000:]  # every operation was exercised


def test_a_description_that_lies_is_caught(server, tmp_path):
    document = requests.get(server.url + "/openapi.json").json()
    answer = document["paths"]["/models"]["get"]["responses"]["200"]["content"]["application/json"]
    answer["schema"]["properties"]["package_digest"] = {"type": "integer"}  # it is a string
    lying = tmp_path / "openapi.json"
    lying.write_text(json.dumps(document))
    result = schemathesis(lying, server.url, tmp_path, "--include-path", "/models")
    assert result.returncode != 0
    assert "Response violates schema" in result.stdout and "package_digest" in result.stdout
