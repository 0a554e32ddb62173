"""Serving defaults and limits, shared by the configuration schema (which refuses a
batch the server would refuse), the server's command line and the F07 stages."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5005            # 0 picks a free port
DEFAULT_BATCH_SIZE = 256       # windows per POST /infer_batch
MAX_BATCH_ITEMS = 8192         # the server refuses a larger batch (413)
MAX_CONTENT_LENGTH = 32 * 1024 * 1024   # bytes of one request body
