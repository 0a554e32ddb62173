"""F07 deploy & runtime validation, one module per thing it does:

- ``deployrun``: one F07 variant's run, its files and settings (``DeployRun``), used by every stage.
- ``serve``: the manifest, proved servable by a real server.   - ``client``: that server as a child
  process, its HTTP calls and the streamed replay.              - ``infer``: the replay and the prediction log.
- ``endpoint``: the server a run judges (started, or a deployment by URL).
- ``mlserver_export``, ``mlserver_process``, ``oip_client``: the package on MLServer (a model
  repository with its KServe manifests, MLServer as the server a run starts, the client of
  a deployment that speaks only the Open Inference Protocol).
- ``matching``, ``scoring``, ``heldout``: the log against the package's F04 references.
- ``gates``, ``verdict``: does the run pass, and why.           - ``report``, ``figures``,
  ``phase_metadata``: the report and the phase record.

Serving itself is ``runtime/``; everything after infer only reads what a run left on disk,
so a run can be re-scored and re-reported without serving again.
"""
