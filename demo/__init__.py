"""The embedded demo upstream: synthetic F02–F05 artifacts in the upstream layout.

The project packages (F06) and validates (F07) the outputs of an upstream pipeline. So
that it can be built, tested and shown without that pipeline's data, the demo generates
its own upstream, with the same files, columns and conventions real upstream variants
have (CONTRACT.md), from a simulated building-energy site whose faults are announced by
precursors, so the trained models genuinely predict something:

- ``simulate``: the site's power signals, faults with precursors, sensor dropouts.
- ``discretize``: signals to band-transition events and the event catalog (F02).
- ``targets``: a window's label from its prediction window (F04).
- ``families`` / ``train``: the three upstream model families, trained deterministically
  and judged on a held-out time split (F05).
- ``f02`` … ``f05``: one module per phase, each ``build(root, variant, params)`` giving
  the variant's files and a ``python -m demo.fNN <variant>`` entry that ``demo/dvc.yaml``
  runs; ``artifacts``: parameters in, files out.

F03's windows come from ``contract.windows``. The model inputs are built by the demo's own
implementation of the F05 contract (``families.encode``), never by ``runtime/``: the demo
is the upstream the runtime is judged against, and a change to the runtime leaves every
demo stage up to date.

Every demo stage process starts here, so TensorFlow's start-up noise is filtered before
F05 loads it.
"""
import console.quiet_tensorflow  # noqa: F401  (first: before anything imports TensorFlow)
