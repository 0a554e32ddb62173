"""F07 runtime: serve the models of a sealed F06 package and replay the package through them.

- ``seal``: the package seal (verify before serving).       - ``windows``: window geometry.
- ``manifest``: the F07 manifest, read and checked once.    - ``vectorize``: model inputs from windows.
- ``models``: a packaged Keras model as one callable, and the equivalence check.
- ``server``: the Flask app and ``python -m runtime.server``.
- ``client``: the server as a child process, HTTP calls, the streamed replay.

Imports nothing beyond the standard library, numpy, TensorFlow/Keras, Flask, requests and
pyarrow (the replay parquet); TensorFlow only where a model is called.
"""
