"""Real artifacts at a small size, built on demand for the tests and the benchmarks (which
must not import ``tests``): sealed F06 packages with real Keras models, manifests, replays."""
