"""The ground floor: the artifact contract every other package of this project asks.

Each fact is defined once, in one module, and this package imports nothing else of the
project, so any layer (stages, f06_packaging, f07_validation, runtime, upstream, demo,
lifecycle, bench, builders) may use it without a cycle (docs/contract.md):

- ``layout``: the ``executions/<phase>/<variant>/`` folders, every F02-F07 file name, the
  variant-id pattern (a variant id never names a path).
- ``predictions``: the raw prediction log's columns.  - ``model_key``: how a model is named.
- ``defaults``: the serving defaults and limits (host, port, batch size, largest batch).
- ``config``: the schema of params.yaml's ``packaging`` and ``deployrun`` sections,
  checked whole before any work.
- ``dvc_deps``: the per-variant dependency lists dvc.yaml reads (``dvc_deps.yaml``).
- ``errors``: the one base of the errors a user can fix, and how a command reports them.
- ``files``: stable bytes and atomic writes.       - ``windows``: the window geometry.
- ``seal``: the F06 package seal.                   - ``manifest``: the F07 manifest.
"""
