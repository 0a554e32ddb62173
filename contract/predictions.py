"""The raw prediction log (F07 ``logs/raw_predictions.parquet`` and its CSV copy, plain or
gzip: ``contract.layout.PREDICTIONS_CSV``): one row per window and model, windows in time
order and models in manifest order within a window; a model is identified by its
``contract.model_key.KEY_COLUMNS``. ``y_pred`` is null where the model's output was not
finite."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from contract.model_key import KEY_COLUMNS, KEY_SEPARATOR

PREDICTION_SCHEMA = pa.schema([
    ("t0", pa.int64()),
    ("OW_events", pa.list_(pa.int64())),
    ("objective", pa.string()),
    ("prediction_name", pa.string()),
    ("source_f05", pa.string()),
    ("model_id", pa.string()),
    ("probability", pa.float64()),
    ("y_pred", pa.int8()),
])
# The CSV copy writes each window's codes as one space-separated string.
PREDICTION_CSV_SCHEMA = pa.schema([field if field.name != "OW_events" else pa.field("OW_events", pa.string())
                                   for field in PREDICTION_SCHEMA])



def model_keys(batch) -> pa.Array:
    """Each row's model key (``contract.model_key.model_key``) of a batch or table of the
    log, computed in Arrow: how score, reference and verdict tell the models' rows apart."""
    return pc.binary_join_element_wise(*(batch.column(column) for column in KEY_COLUMNS), KEY_SEPARATOR)
