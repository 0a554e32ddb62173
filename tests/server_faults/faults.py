"""Faults injected into a real server process, for tests that must watch a check fail.

Installed by ``sitecustomize.py`` beside it, which Python imports at start-up from the
first ``sys.path`` entry holding one: a test puts this folder on ``PYTHONPATH`` and
describes the fault in the environment variable ``F07_TEST_FAULT`` (JSON), and every
Python process it starts (the server, or a stage that starts the server) gets the fault.

Faults (``kind``):
- ``vocab_shift``: the runtime's vectorizer of ``family`` (``sequence`` or ``dense_bow``)
  builds inputs over a vocabulary shifted by one position: a wrong input that the
  runtime's own in-process comparison shares.
- ``kill_after``: the server kills itself (SIGKILL) on its ``batches``-th POST /infer_batch.
- ``hang_after``: the server stops answering from its ``batches``-th POST /infer_batch.
- ``fail_after``: from its ``batches``-th POST /infer_batch the server answers 500 (a
  model raising on the batch).
- ``nan``: model ``model_id`` answers null (a non-finite output, with its error) on every
  ``every``-th window of each batch.
- ``drop``: from the ``after``-th batch on, every model's answer lacks the batch's
  last window (the count ``n`` still claims all of them).
- ``reorder``: every model's answers come back in reverse window order.
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


def install(fault: dict) -> None:
    if fault["kind"] == "vocab_shift":
        cls, shifted = vocab_shift(fault["family"])
        cls.__call__ = shifted
    else:
        _answers(fault)


def _answers(fault: dict) -> None:
    import signal
    import time

    import flask

    original = flask.Flask.process_response
    batches = [0]

    def process_response(self, response):
        response = original(self, response)
        if flask.request.path != "/infer_batch" or response.status_code != 200:
            return response
        batches[0] += 1
        kind = fault["kind"]
        if kind == "kill_after" and batches[0] >= fault["batches"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "hang_after" and batches[0] >= fault["batches"]:
            time.sleep(3600)
        if kind == "fail_after" and batches[0] >= fault["batches"]:
            response.status_code = 500
            response.set_data(json.dumps({"error": "model v402/v503/obj_b raised on the batch: injected"}))
            return response
        body = json.loads(response.get_data())
        for model in body["models"]:
            if kind == "nan" and model["model_id"] == fault["model_id"]:
                for i in range(0, len(model["probabilities"]), fault["every"]):
                    model["probabilities"][i] = model["y_pred"][i] = None
                    model["errors"].append({"window": i, "error": "non-finite probability (nan)"})
            if kind == "drop" and batches[0] >= fault["after"]:
                model["probabilities"], model["y_pred"] = model["probabilities"][:-1], model["y_pred"][:-1]
            if kind == "reorder":
                model["probabilities"].reverse()
                model["y_pred"].reverse()
        response.set_data(json.dumps(body))
        return response

    flask.Flask.process_response = process_response

