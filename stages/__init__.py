"""The DVC stage scripts: thin commands, one per dvc.yaml stage (`python -m stages.<name> <variant>`).

Every stage process starts here, so TensorFlow's start-up noise is filtered before any
stage loads it (the probes, the server checks, the in-process equivalence check)."""
import console.quiet_tensorflow  # noqa: F401  (first: before anything imports TensorFlow)
