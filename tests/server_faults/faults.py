"""Faults injected into a real server process, for tests that must watch a check fail.

Installed by ``sitecustomize.py`` beside it, which Python imports at start-up from the
first ``sys.path`` entry holding one: a test puts this folder on ``PYTHONPATH`` and
describes the fault in the environment variable ``F07_TEST_FAULT`` (JSON), and every
Python process it starts (the server, or a stage that starts the server) gets the fault.

Batches are numbered as the replay numbers them (its ``X-Request-ID``: with several
requests in flight they reach the server in any order), or in the order the server
receives them from a client that sends no id. Answers are rewritten in the format
they were sent in, JSON or Arrow IPC (decoded, changed, encoded again), so a fault
reaches the client on whichever wire it speaks.

In an MLServer process (``mlserver start``, ``runtime: {server: mlserver}``) the same
faults are injected into MLServer's request handling, which calls the runtime class
(``runtime.mlserver_model``) once per model and batch (``POST /v2/models/<name>/infer``): there
"POST /infer_batch" below reads "a model's request", a batch's number is the replay's
(the OIP client sends it as the request's ``id``; for a client that sends none, the
order of arrival of that model's requests), and a batch counts as answered once every
model answered it. ``kill_after``, ``hang_after``, ``fail_after``, ``nan``, ``drop``,
``reorder``, ``scale``, ``decision`` and ``vocab_shift`` apply there as written;
``kill_master_after`` does not (the exported repository runs MLServer as one process,
``parallel_workers: 0``: there is no master apart from the process that serves), nor do
the Arrow rewrites (the OIP client speaks JSON only). There the fault may also be
``{"kind": "from_file", "path": ...}``: the fault the file holds, read again on every
request (none while it is absent), so that one MLServer process, validated by URL,
takes several faults in turn (a ``hang_after`` hangs until the file changes). It holds
no ``vocab_shift`` (installed at start-up), and ``kill_after`` leaves nothing to reuse.
``from_file`` works the same in our server (``python -m runtime.server``, validated by
URL the same way): ``POST /infer_batch``'s answer and the core's decisions follow the
file's fault at each request.

Faults (``kind``):
- ``vocab_shift``: the runtime's vectorizer of ``family`` (``sequence`` or ``dense_bow``)
  builds inputs over a vocabulary shifted by one position: a wrong input that the
  runtime's own in-process comparison shares.
- ``kill_after``: the server kills itself (SIGKILL) on its ``batches``-th POST
  /infer_batch, once every batch it received before that one has been answered (so the
  failing batch is that one however many requests the client keeps in flight).
- ``kill_master_after``: on its ``batches``-th POST /infer_batch the server kills the
  process it was started as (SIGKILL; under gunicorn the master, whose workers go on).
- ``hang_after``: the server stops answering from its ``batches``-th POST /infer_batch
  (and creates the file ``hung_file``, if given, when it does: a test's cue to act).
- ``fail_after``: from its ``batches``-th POST /infer_batch the server answers 500 (a
  model raising on the batch).
- ``nan``: model ``model_id`` answers null (a non-finite output, with its error) on every
  ``every``-th window of each batch.
- ``drop``: from the ``after``-th batch on, every model's answer lacks the batch's
  last window (the count ``n`` still claims all of them).
- ``reorder``: every model's answers come back in reverse window order.
- ``scale``: on the ``batch``-th batch only, model ``model_id``'s probabilities come back
  multiplied by ``factor`` (still probabilities): a transport that alters answers.
- ``decision``: the server's core decides ``y_pred`` otherwise than ``probability >= the
  model's threshold``: with ``rule: inverted``, ``probability < threshold`` (the one-token
  slip); with ``threshold: t``, ``probability >= t`` whatever the model declares.

Faults of the client side, the prediction log's writer, are patched into the test's own
process (where the infer stage runs) with ``monkeypatch.setattr``: ``log_writer(kind,
...)`` gives the patched ``PredictionLog.add``.
"""
import json
import os
import sys


def vocab_shift(family: str):
    """The runtime's vectorizer class of ``family`` and a ``__call__`` for it that reads
    every code as its vocabulary neighbour (to set with ``monkeypatch.setattr`` in-process)."""
    import numpy as np

    from runtime import vectorize

    cls = vectorize.Sequence if family == "sequence" else vectorize.DenseBow
    original = cls.__call__

    def shifted(self, windows):
        out = original(self, windows)
        if family == "sequence":  # id p+1 becomes p
            return np.where(out > 1, out - 1, out).astype(out.dtype)
        return np.roll(out, 1, axis=1)

    return cls, shifted


def log_writer(kind: str, **options):
    """``PredictionLog`` and an ``add`` for it that logs each batch wrongly, as a slip in
    the log writer would (to set with ``monkeypatch.setattr`` in the infer stage's process;
    the batch the replay goes on with is left as it was):

    - ``y_pred_model_major``: the decisions stacked model after model instead of window
      after window (one ``axis=1`` forgotten), the probabilities beside them right;
    - ``t0``: every logged ``t0`` as ``options["transform"](t0)`` (off the grid, shifted,
      in another unit);
    - ``nothing``: no row at all."""
    import dataclasses

    import numpy as np

    from f07_validation.infer import PredictionLog

    original = PredictionLog.add

    def add(self, batch):
        if kind == "nothing":
            return None
        if kind == "t0":
            windows = dataclasses.replace(batch.windows, t0=options["transform"](batch.windows.t0))
            return original(self, dataclasses.replace(batch, windows=windows))
        if kind == "y_pred_model_major":
            n, m = len(batch.windows), len(batch.answers)
            logged = np.concatenate([a.y_pred for a in batch.answers]).reshape(n, m)  # row i*m + j
            answers = [dataclasses.replace(a, y_pred=logged[:, j].copy()) for j, a in enumerate(batch.answers)]
            return original(self, dataclasses.replace(batch, answers=answers))
        raise ValueError(f"unknown log writer fault {kind!r}")

    return PredictionLog, add


def _decision(current) -> None:
    """The core's decision rule replaced (the ``decision`` fault ``current()`` returns)."""
    import dataclasses

    import numpy as np

    from runtime import core

    original = core.ModelSlot.scores

    def scores(self, windows):
        result = original(self, windows)
        fault = current()
        if fault is None or fault["kind"] != "decision":
            return result
        if fault.get("rule") == "inverted":
            y_pred = result.probabilities < self.entry.threshold
        else:
            y_pred = result.probabilities >= fault["threshold"]
        return dataclasses.replace(result, y_pred=y_pred.astype(np.int8))

    core.ModelSlot.scores = scores


def _from_file(path: str):
    """The fault in the file ``path`` as it is now (None while there is none)."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return None


def install(fault: dict) -> None:
    if fault["kind"] == "vocab_shift":
        cls, shifted = vocab_shift(fault["family"])
        cls.__call__ = shifted
        return

    def current():
        return _from_file(fault["path"]) if fault["kind"] == "from_file" else fault

    # The core patched only where a decision fault can come: importing runtime.core at
    # start-up imports prometheus_client before runtime.server points it at its
    # multiprocess folder, and gunicorn's workers would then never count as ready.
    if fault["kind"] in ("from_file", "decision"):
        _decision(current)
    if os.path.basename(sys.argv[0]) == "mlserver":  # the command ``mlserver start``
        _oip_answers(current)
    elif fault["kind"] != "decision":
        _answers(current)


def _rewrite_json(fault: dict, body: dict, batch: int) -> dict:
    kind = fault["kind"]
    for model in body["models"]:
        if kind == "nan" and model["model_id"] == fault["model_id"]:
            for i in range(0, len(model["probabilities"]), fault["every"]):
                model["probabilities"][i] = model["y_pred"][i] = None
                model["errors"].append({"window": i, "error": "non-finite probability (nan)"})
        if kind == "drop" and batch >= fault["after"]:
            model["probabilities"], model["y_pred"] = model["probabilities"][:-1], model["y_pred"][:-1]
        if kind == "reorder":
            model["probabilities"].reverse()
            model["y_pred"].reverse()
        if kind == "scale" and batch == fault["batch"] and model["model_id"] == fault["model_id"]:
            model["probabilities"] = [None if p is None else p * fault["factor"] for p in model["probabilities"]]
    return body


def _rewrite_arrow(fault: dict, body: bytes, batch: int) -> bytes:
    """The same rewrites on an Arrow answer: columns ``<key>/probability`` and
    ``<key>/y_pred``, the models' identities and errors in the schema metadata."""
    import numpy as np
    import pyarrow as pa

    from runtime import codecs

    table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    metadata = dict(table.schema.metadata)
    models = json.loads(metadata[b"models"])
    kind, n = fault["kind"], table.num_rows
    if kind == "drop" and batch >= fault["after"]:
        table = table.slice(0, n - 1)
    if kind == "reorder":
        table = table.take(pa.array(np.arange(n)[::-1]))
    for model in models:
        if kind == "nan" and model["model_id"] == fault["model_id"]:
            nulls = np.zeros(n, dtype=bool)
            nulls[::fault["every"]] = True
            for name in codecs.arrow_answer_columns(model["key"]):
                column = table.column(name)
                index = table.column_names.index(name)
                table = table.set_column(index, name, pa.compute.if_else(
                    pa.array(nulls), pa.scalar(None, column.type), column))
            model["errors"] += [{"window": int(i), "error": "non-finite probability (nan)"}
                                for i in np.flatnonzero(nulls)]
        if kind == "scale" and batch == fault["batch"] and model["model_id"] == fault["model_id"]:
            name = codecs.arrow_answer_columns(model["key"])[0]
            table = table.set_column(table.column_names.index(name), name,
                                     pa.compute.multiply(table.column(name), fault["factor"]))
    metadata[b"models"] = json.dumps(models).encode()
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


ANSWER_FAULTS = ("kill_after", "kill_master_after", "hang_after", "fail_after", "nan", "drop", "reorder", "scale")


def _answers(current) -> None:
    """The answer faults in our server (Flask, any of its modes), the fault being
    ``current()`` when a request arrives: ``POST /infer_batch``'s answer rewritten, or
    the process killed, hung or failing. A batch's number is the replay's (its
    ``X-Request-ID``), or for a client that sends none the order of arrival under the
    current fault (counted afresh when the fault changes)."""
    import signal
    import threading
    import time

    import flask
    import pyarrow.compute  # noqa: F401  (pa.compute, for the Arrow rewrites)

    from f07_validation.client import REQUEST_ID_HEADER, replay_batch_number

    original_preprocess = flask.Flask.preprocess_request
    original = flask.Flask.process_response
    lock = threading.Condition()
    seen = {"fault": None, "received": 0, "answered": set()}
    started_as = os.getpid()  # at start-up, before gunicorn forks its workers: the master

    def preprocess_request(self):
        if flask.request.path == "/infer_batch":
            fault = current()
            if fault is not None and fault["kind"] in ANSWER_FAULTS:
                with lock:
                    if fault != seen["fault"]:  # another fault, counted afresh
                        seen.update(fault=fault, received=0, answered=set())
                    seen["received"] += 1
                    # The replay's batch number (its requests in flight arrive in any order);
                    # the order of arrival for a client that sends none.
                    sent_as = replay_batch_number(flask.request.headers.get(REQUEST_ID_HEADER, ""))
                    flask.g.fault = fault, seen["received"] if sent_as is None else sent_as, seen["answered"]
        return original_preprocess(self)

    def process_response(self, response):
        response = original(self, response)
        fault, batch, answered = flask.g.get("fault", (None, None, None))
        if fault is None or response.status_code != 200:
            return response
        kind = fault["kind"]
        if kind == "kill_after" and batch >= fault["batches"]:
            with lock:  # the batches received earlier are answered first
                lock.wait_for(lambda: answered >= set(range(1, batch)), timeout=60)
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "kill_master_after" and batch == fault["batches"]:
            os.kill(started_as, signal.SIGKILL)
        if kind == "hang_after" and batch >= fault["batches"]:
            if fault.get("hung_file"):
                open(fault["hung_file"], "w").close()
            for _ in range(36_000):  # an hour, or until the fault is lifted (``from_file``)
                if current() != fault:
                    break
                time.sleep(0.1)
        if kind == "fail_after" and batch >= fault["batches"]:
            response.status_code = 500
            response.mimetype = "application/json"
            response.set_data(json.dumps({"error": "model v402/v503/obj_b raised on the batch: injected"}))
            return response
        from runtime.codecs import ARROW  # imported here: only a server process gets this far

        if response.mimetype == ARROW:
            response.set_data(_rewrite_arrow(fault, response.get_data(), batch))
        else:
            response.set_data(json.dumps(_rewrite_json(fault, json.loads(response.get_data()), batch)))

        def sent():  # once the server has written the whole answer
            with lock:
                answered.add(batch)
                lock.notify_all()

        response.call_on_close(sent)
        return response

    flask.Flask.preprocess_request = preprocess_request
    flask.Flask.process_response = process_response


def _oip_answers(current) -> None:
    """The answer faults in an MLServer process, the fault being ``current()`` at each
    request: MLServer's request handling wrapped (``DataPlane.infer``, which calls the
    runtime class's ``predict`` once per model and batch; the class itself cannot be
    patched: MLServer reloads its module when it loads a model). The export runs the
    runtime in MLServer's own process (``parallel_workers: 0``). A batch's number is the
    replay's, which the OIP client sends as the request's ``id`` (a model's request of
    batch k is batch k, whichever arrives first); for a client that sends no id, the
    order in which this model's requests arrive under the current fault. The rewrites
    are ``_rewrite_json``'s, on the model's ``probability`` and ``y_pred`` outputs (a
    probability made null gets ``y_pred`` -1 and counts in ``parameters.non_finite``,
    as the codec answers it)."""
    import asyncio
    import collections
    import signal

    from mlserver.errors import MLServerError
    from mlserver.handlers.dataplane import DataPlane
    from mlserver.types import InferenceResponse

    from f07_validation.client import replay_batch_number

    original = DataPlane.infer
    seen = {"fault": None, "arrived": collections.Counter(), "answered": collections.Counter()}

    async def infer(self, payload, name, version=None):
        fault = current()
        if fault is None:
            return await original(self, payload, name, version)
        if fault != seen["fault"]:  # another fault, counted afresh
            seen.update(fault=fault, arrived=collections.Counter(), answered=collections.Counter())
        arrived, answered = seen["arrived"], seen["answered"]
        model = await self._model_registry.get_model(name, version)  # a SealedPackageModel
        arrived[name] += 1
        sent_as = replay_batch_number(payload.id or "")
        batch = arrived[name] if sent_as is None else sent_as
        [slot] = model._core.slots
        kind = fault["kind"]
        if kind == "kill_master_after":
            raise ValueError("kill_master_after: MLServer runs as one process here (parallel_workers: 0), "
                             "no master apart from the process serving; use kill_after")
        if kind == "kill_after" and batch >= fault["batches"]:
            # every model's answer to every earlier batch first, and a moment for MLServer
            # to write the last of them (an answer goes out once infer has returned)
            models = len(model._core.manifest.models)
            while any(answered[earlier] < models for earlier in range(1, batch)):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "hang_after" and batch >= fault["batches"]:
            if fault.get("hung_file"):
                open(fault["hung_file"], "w").close()
            # this request only (MLServer goes on serving others), until the fault is lifted
            for _ in range(36_000):
                if current() != fault:
                    break
                await asyncio.sleep(0.1)
        if kind == "fail_after" and batch >= fault["batches"]:
            raise MLServerError(f"model {name} raised on the batch: injected", status_code=500)
        response = (await original(self, payload, name, version)).model_dump(mode="json", exclude_none=True)
        outputs = {output["name"]: output for output in response["outputs"]}
        answer = {"model_id": slot.entry.model_id, "probabilities": outputs["probability"]["data"],
                  "y_pred": outputs["y_pred"]["data"], "errors": []}
        _rewrite_json(fault, {"models": [answer]}, batch)
        outputs["probability"]["data"] = answer["probabilities"]
        outputs["y_pred"]["data"] = [-1 if label is None else label for label in answer["y_pred"]]
        if answer["errors"]:
            parameters = response.setdefault("parameters", {})
            parameters["non_finite"] = parameters.get("non_finite", 0) + len(answer["errors"])
        answered[batch] += 1
        return InferenceResponse.model_validate(response)

    DataPlane.infer = infer
