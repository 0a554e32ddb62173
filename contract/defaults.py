"""Serving and validation defaults and limits, shared by the configuration schema (which
refuses a batch the server would refuse), the server's command line and the F07 stages."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5005            # 0 picks a free port
DEFAULT_BATCH_SIZE = 256       # windows per POST /infer_batch
MAX_BATCH_ITEMS = 8192         # the server refuses a larger batch (413)
MAX_CONTENT_LENGTH = 32 * 1024 * 1024   # bytes of one request body
REPLAY_IN_FLIGHT = 4           # replay requests at once: the server scores one batch while it
                               # reads, decodes and answers the others (bench/bench_runtime.py)
DEFAULT_REQUEST_TIMEOUT = 300.0  # s a replay request may take before it is a runtime fault
DEFAULT_REFERENCE_SAMPLE = 20_000  # windows per model compared with the independent reference (at least)
DEFAULT_REFERENCE_TOLERANCE = 1e-5  # largest |server - reference| accepted
DEFAULT_EQUIVALENCE_SAMPLE = 20_000  # windows per model compared in-process with the server's answers (at
                                     # least: whole batches, every k-th; all on a shorter replay)
DEFAULT_MIN_SCORED_SHARE = 0.95  # of the predictions on F04 windows, the share that must get a label
DEFAULT_LOG_CSV_COMPRESSION = "none"  # the CSV copy of the prediction log as the seeds ask (contract.layout)
MLSERVER_HTTP_PORT = 8080      # MLServer's own defaults, which KServe's probes and routes expect
MLSERVER_GRPC_PORT = 8081      # (an exported model repository: f07_validation.mlserver_export)
F05_DEFAULT_THRESHOLD = 0.5  # the F05 contract's decision threshold for a model_summary.json that declares none
# The quality gates `make variant7` writes for a new F07 variant (deployrun.<v>.gates.min), per model at its
# declared threshold. Floors that a broken system fails and a working one passes, not a business target: a
# model that never warns has recall 0, one that always warns an F1 of 2p/(1+p) at positive share p (0.01-0.04 at
# the demo's 0.7-2%), and an inverted or shuffled decision 0.0-0.1; the demo's models score 0.8 or more.
DEFAULT_QUALITY_FLOORS = {"recall": 0.5, "f1": 0.5}
DEFAULT_MAX_DROP = {"recall": 0.05, "f1": 0.05}  # ... and, given a BASELINE run, the most each may fall below it
