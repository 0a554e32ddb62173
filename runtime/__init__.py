"""F07 runtime: serving only. Serve the models of a sealed F06 package over HTTP.

- ``core``: the protocol-neutral core (verified loading, ready, metadata, infer over arrays).
- ``codecs``: wire formats (JSON, Arrow IPC, OIP tensors) <-> arrays.
- ``seed_api``, ``oip_api``: the seeds' HTTP API and Open Inference Protocol V2 front-ends.
- ``app``: ``create_app``, the Flask application both server modes run; ``http``: what the
  front-ends share (bodies within limits, responses).
- ``metrics`` (Prometheus), ``openapi`` (``/openapi.json``), ``settings`` (the one settings
  schema; ``settings_schema`` checks it), ``errors`` (the error family with status codes),
  ``optional`` (the optional extras).
- ``server``: ``python -m runtime.server`` (werkzeug), ``production``: the gunicorn mode.
- ``vectorize``: model inputs from windows.
- ``models``: a packaged Keras model as one callable, and the equivalence check.

The package seal, the manifest and the window geometry it serves by are the contract's
(``contract/``); the client that starts the server and replays a package through it is
F07's (``f07_validation.client``). Imports nothing of ours beyond ``contract`` and
``console``; of libraries, numpy, TensorFlow/Keras and Flask (the minimal runtime,
``requirements-runtime.txt``), and the optional extras gunicorn, prometheus_client and
pyarrow only where their feature runs (``optional``: a one-line refusal naming the
package when it is missing); TensorFlow only where a model is called, never before a fork.
"""
