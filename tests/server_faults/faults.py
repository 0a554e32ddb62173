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


def _decision(fault: dict) -> None:
    """The core's decision rule replaced (the ``decision`` fault)."""
    import dataclasses

    import numpy as np

    from runtime import core

    original = core.ModelSlot.scores

    def scores(self, windows):
        result = original(self, windows)
        if fault.get("rule") == "inverted":
            y_pred = result.probabilities < self.entry.threshold
        else:
            y_pred = result.probabilities >= fault["threshold"]
        return dataclasses.replace(result, y_pred=y_pred.astype(np.int8))

    core.ModelSlot.scores = scores


def install(fault: dict) -> None:
    if fault["kind"] == "vocab_shift":
        cls, shifted = vocab_shift(fault["family"])
        cls.__call__ = shifted
    elif fault["kind"] == "decision":
        _decision(fault)
    else:
        _answers(fault)


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


def _answers(fault: dict) -> None:
    import signal
    import threading
    import time

    import flask
    import pyarrow.compute  # noqa: F401  (pa.compute, for the Arrow rewrites)

    from f07_validation.client import REQUEST_ID_HEADER, replay_batch_number

    original_preprocess = flask.Flask.preprocess_request
    original = flask.Flask.process_response
    lock = threading.Condition()
    received, answered = [0], set()
    started_as = os.getpid()  # at start-up, before gunicorn forks its workers: the master

    def preprocess_request(self):
        if flask.request.path == "/infer_batch":
            with lock:
                received[0] += 1
                # The replay's batch number (its requests in flight arrive in any order);
                # the order of arrival for a client that sends none.
                sent_as = replay_batch_number(flask.request.headers.get(REQUEST_ID_HEADER, ""))
                flask.g.fault_batch = received[0] if sent_as is None else sent_as
        return original_preprocess(self)

    def process_response(self, response):
        response = original(self, response)
        batch = flask.g.get("fault_batch")
        if batch is None or response.status_code != 200:
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
            time.sleep(3600)
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
