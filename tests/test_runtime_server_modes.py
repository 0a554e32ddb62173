"""Both ways of running the server, as real processes on loopback ports: werkzeug (one
process, a thread per connection) and gunicorn (two worker processes). The same checks
run against each: a silent or slow client never holds up others, concurrent clients get
the right answers, readiness and metrics cover every worker, OIP answers equal
``/infer_batch``, and the limits hold."""
import re
import socket
import threading
import time

import numpy as np
import pytest
import requests

from builders.packages import synthetic_windows
from f07_validation.client import ServerProcess

MAX_BYTES = 64 * 1024
READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def manifest_path(serving_manifest):
    return serving_manifest


@pytest.fixture(scope="module", params=["werkzeug", "gunicorn"])
def server(request, manifest_path):
    args = ["--server", request.param, "--max-content-length", MAX_BYTES,
            "--read-timeout", READ_TIMEOUT]
    if request.param == "gunicorn":
        args += ["--workers", 2, "--threads", 4]
    with ServerProcess(manifest_path, server_args=args) as running:
        running.mode = request.param
        yield running


def post_json(url, body, **kwargs):
    return requests.post(url, json=body, timeout=30, **kwargs)


def metric(text: str, name: str, **labels) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if match:
            sample = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(sample.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def test_health_answers_while_a_silent_connection_is_held_open(server):
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))):
        time.sleep(0.3)  # the server has accepted it and waits for a request that never comes
        started = time.monotonic()
        assert requests.get(server.url + "/health", timeout=2).status_code == 200
        assert time.monotonic() - started < 2


def test_a_client_sending_headers_slowly_is_dropped_and_holds_no_one_up(server):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.sendall(b"POST /infer_batch HTTP/1.1\r\nHost: x\r\n")  # ... and no more
        started = time.monotonic()
        assert requests.get(server.url + "/health", timeout=2).status_code == 200
        assert time.monotonic() - started < 2
        slow.settimeout(READ_TIMEOUT + 10)
        assert slow.recv(1024) == b""  # closed by the server, after its read timeout
        assert time.monotonic() - started >= READ_TIMEOUT - 0.5


TRICKLERS = 12  # more connections than gunicorn's 2 workers x 4 request threads


def trickle(port: int, head: bytes, until: float) -> float | None:
    """Send ``head``, then a byte every 0.25 s (never a read timeout's worth of silence)
    until ``until``; the seconds after which the server dropped the connection (closed it,
    or answered and closed it), None if it never did."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(0.05)
        try:
            client.sendall(head)
            while time.monotonic() < until:
                client.sendall(b"a")
                try:
                    client.recv(4096)  # b"" (closed) or the server's answer: dropped either way
                    return time.monotonic() - started
                except TimeoutError:
                    time.sleep(0.25)
        except OSError:  # reset: dropped
            return time.monotonic() - started
    return None


def test_clients_trickling_their_requests_are_dropped_at_the_deadline(server):
    """A read timeout bounds one read; a client sending a byte every 0.25 s never lets one
    expire. The deadline bounds the whole request, headers or body, and frees the thread
    (gunicorn has 8 here: 12 tricklers would otherwise hold every /health up)."""
    port = int(server.url.rsplit(":", 1)[1])
    heads = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # headers that never end
             b"POST /infer_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % (MAX_BYTES // 2)]  # a body that never ends
    until = time.monotonic() + 3 * READ_TIMEOUT + 2
    dropped = [None] * TRICKLERS
    threads = [threading.Thread(target=lambda i=i: dropped.__setitem__(i, trickle(port, heads[i % 2], until)))
               for i in range(TRICKLERS)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every trickler connected and sending
    waits = []
    # /health is asked while any trickler still sends: once the server has dropped them all,
    # nothing holds a thread any more
    while time.monotonic() < until - 1 and any(thread.is_alive() for thread in threads):
        started = time.monotonic()
        try:
            requests.get(server.url + "/health", timeout=READ_TIMEOUT + 2).raise_for_status()
            waits.append(time.monotonic() - started)
        except requests.RequestException:
            waits.append(float("inf"))
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert all(d is not None and READ_TIMEOUT - 0.5 < d < READ_TIMEOUT + 1.0 for d in dropped), dropped
    assert max(waits) < READ_TIMEOUT + 1.0, waits


def test_concurrent_clients_each_get_their_own_answers(server):
    batches = [synthetic_windows(32, mean_len=20, codes=(0, 60), seed=seed) for seed in range(8)]
    expected = [post_json(server.url + "/infer_batch", {"windows": b}).json() for b in batches]
    answers, errors = [None] * 8, []

    def client(i):
        try:
            with requests.Session() as session:
                for _ in range(3):
                    answers[i] = session.post(server.url + "/infer_batch", json={"windows": batches[i]},
                                              timeout=30).json()
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert answers == expected


def test_ready_counts_every_worker(server):
    body = requests.get(server.url + "/ready").json()
    expected = 2 if server.mode == "gunicorn" else 1
    # With two processes, a worker can only report 2 by reading the other's shared gauge.
    assert body["workers"] == {"ready": expected, "expected": expected, "exited": 0} and body["ready"] is True
    assert requests.get(server.url + "/v2/health/ready").status_code == 200


def test_metrics_aggregate_every_worker(server):
    before = requests.get(server.url + "/metrics").text
    windows = synthetic_windows(10, mean_len=10, codes=(0, 60), seed=1)
    for _ in range(12):  # new connections: the workers share them
        assert requests.post(server.url + "/infer_batch", json={"windows": windows}).status_code == 200
    after = requests.get(server.url + "/metrics").text
    key = {"route": "/infer_batch", "method": "POST", "status": "200"}
    assert metric(after, "runtime_http_requests_total", **key) - \
        metric(before, "runtime_http_requests_total", **key) == 12
    for model in ("v401/v501/obj_a", "v402/v504/broken"):
        assert metric(after, "runtime_windows_scored_total", model=model) - \
            metric(before, "runtime_windows_scored_total", model=model) == 120
    assert metric(after, "runtime_non_finite_outputs_total", model="v402/v504/broken") - \
        metric(before, "runtime_non_finite_outputs_total", model="v402/v504/broken") == 120
    assert metric(after, "runtime_non_finite_outputs_total", model="v401/v501/obj_a") == 0
    assert metric(after, "runtime_batch_windows_count", protocol="seed") - \
        metric(before, "runtime_batch_windows_count", protocol="seed") == 12
    assert metric(after, "runtime_model_load_seconds", model="v402/v503/obj_b") > 0
    assert metric(after, "runtime_http_request_seconds_count", route="/infer_batch") >= 12


def test_oip_infer_equals_infer_batch(server):
    windows = synthetic_windows(20, mean_len=15, codes=(0, 60), seed=4) + [[]]
    width = max(map(len, windows))
    rows = [w + [-1] * (width - len(w)) for w in windows]
    batch = post_json(server.url + "/infer_batch", {"windows": windows}).json()
    models = requests.get(server.url + "/v2/models").json()["models"]
    assert len(models) == len(batch["models"])
    for listed, expected in zip(models, batch["models"]):
        answer = post_json(f"{server.url}/v2/models/{listed['name']}/infer", {"inputs": [
            {"name": "events", "datatype": "INT64", "shape": [len(rows), width],
             "data": [c for row in rows for c in row]}]}).json()
        outputs = {o["name"]: o for o in answer["outputs"]}
        want = np.array(expected["probabilities"], dtype=np.float64).astype(np.float32)
        got = np.array(outputs["probability"]["data"], dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(got, want)
        y_pred = [-1 if y is None else y for y in expected["y_pred"]]
        assert outputs["y_pred"]["data"] == y_pred


def test_a_chunked_body_over_the_limit_is_413_not_cut(server):
    def chunks():
        yield b'{"windows": ['
        for _ in range(2 * MAX_BYTES // 8000):
            yield b"[1,2,3]," * 1000
        yield b"[1]]}"

    response = requests.post(server.url + "/infer_batch", data=chunks(), timeout=30,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and f"limit of {MAX_BYTES} bytes" in response.json()["error"]


def test_a_refused_chunked_body_is_not_read_on_and_its_connection_closes(server):
    """After a chunked 413, werkzeug read on (9.5 GB in 7 s) and gunicorn said keep-alive,
    then closed."""
    port = int(server.url.rsplit(":", 1)[1])
    chunk = b"%x\r\n" % 65536 + b"1" * 65536 + b"\r\n"
    sent, stopped = [0], threading.Event()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"POST /infer_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n")

        def send_forever():
            try:
                while not stopped.is_set():
                    client.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:  # the server closed the connection
                pass

        sender = threading.Thread(target=send_forever)
        sender.start()
        client.settimeout(30)
        answer = client.recv(65536)
        at_answer = sent[0]
        sender.join(10)
        stopped.set()
        closed_in_time = not sender.is_alive()
        sender.join()
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in head, answer
    assert closed_in_time and sent[0] - at_answer < 64 * 2**20, (at_answer, sent[0])


def test_a_malformed_chunked_body_is_400(server):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"POST /infer_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        client.settimeout(10)
        answer = b""
        while b"}" not in answer and (part := client.recv(65536)):
            answer += part
    assert answer.startswith(b"HTTP/1.1 400") and b"could not be read to its end" in answer, answer


def test_json_nested_too_deeply_is_400(server):
    body = b'{"windows": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    response = requests.post(server.url + "/infer_batch", data=body, timeout=30,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "too deeply" in response.json()["error"]


def test_openapi_is_served(server):
    document = requests.get(server.url + "/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/infer_batch", "/v2/models/{name}/infer", "/metrics"} <= set(document["paths"])


def test_gunicorn_finishes_a_request_in_flight_when_told_to_stop(manifest_path):
    body = b'{"windows": [[1, 2, 3], [4, 5]]}'
    with ServerProcess(manifest_path, server_args=["--server", "gunicorn", "--workers", "1"]) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /infer_batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
            time.sleep(0.5)  # the worker is reading this request's body
            server.process.terminate()  # SIGTERM: a graceful stop
            time.sleep(0.5)
            client.sendall(body[10:])
            client.settimeout(10)
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'"n":2' in answer
        assert server.process.wait(10) == 0


def test_a_gunicorn_worker_that_died_is_counted_and_infer_records_it(manifest_path):
    """A worker killed while idle fails no request (the master replaces it); the master
    counts it on /ready, and infer's check after the replay turns it into a runtime fault
    (no fault was recorded before)."""
    import os
    import signal
    from pathlib import Path

    from contract.manifest import load_manifest
    from f07_validation.client import BatchFailed
    from f07_validation.endpoint import Endpoint
    from f07_validation.infer import check_workers_lived, runtime_fault

    with ServerProcess(manifest_path, server_args=["--server", "gunicorn", "--workers", 2]) as server:
        ready = server.wait_ready()
        assert ready["workers"]["exited"] == 0
        endpoint = Endpoint(server.url, None, server, ready)
        manifest = load_manifest(manifest_path)
        check_workers_lived(endpoint, manifest, 5, 0, 10)  # no worker died: no fault
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)
        for _ in range(100):
            if requests.get(server.url + "/ready", timeout=10).json()["workers"]["exited"] == 1:
                break
            time.sleep(0.1)
        with pytest.raises(BatchFailed) as failure:
            check_workers_lived(endpoint, manifest, 5, 0, 10)
        fault = runtime_fault(failure.value, endpoint)
    assert fault["kind"] == "worker exited" and fault["batch"] == 5 and fault["exit_code"] is None
    assert "1 of the server's worker processes exited during the replay" in fault["reason"]
