"""How a model is named across a run: its objective, the F05 run that trained it and its
model id. Two F05 runs may share a ``model_id`` and a ``prediction_name``, never all three
parts. The key ``<objective>/<source_f05>/<model_id>`` names a model in run_summary.json,
equivalence.json, serve.json, the server's /ready answer and the gates' ``models`` list;
the three columns identify it in the prediction log and the metrics. Standard library only.
"""
from __future__ import annotations

KEY_COLUMNS = ["objective", "source_f05", "model_id"]  # a list: pandas selects columns by a list
KEY_SEPARATOR = "/"


def model_key(objective: str, source_f05: str, model_id: str) -> str:
    return KEY_SEPARATOR.join((objective, source_f05, model_id))


def key_of(record) -> str:
    """The model key of a mapping with the key columns (a metadata model, a metrics row)."""
    return model_key(*(record[column] for column in KEY_COLUMNS))
