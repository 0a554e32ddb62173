"""F07 runtime: serving only. Serve the models of a sealed F06 package over HTTP.

- ``vectorize``: model inputs from windows.
- ``models``: a packaged Keras model as one callable, and the equivalence check.
- ``server``: the Flask app and ``python -m runtime.server``.

The package seal, the manifest and the window geometry it serves by are the contract's
(``contract/``); the client that starts the server and replays a package through it is
F07's (``f07_validation.client``). Imports nothing beyond ``contract``, the standard
library, numpy, TensorFlow/Keras, Flask and pyarrow; TensorFlow only where a model is called.
"""
