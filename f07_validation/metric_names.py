"""The names of what F07 measures per model: the columns of metrics_per_model.csv, which the
score stage writes, the gates bound, the report and the phase metadata show.

A module of names only: the gates, which every lifecycle command and the serve stage
check, read them without importing the scoring code (pandas and pyarrow).
"""
MODEL_COLUMNS = ["objective", "prediction_name", "source_f05", "model_id", "model_family",
                 "threshold", "join"]
CONFUSION_METRICS = ["TP", "TN", "FP", "FN", "precision", "recall", "f1"]
COUNT_METRICS = ["no_ref_pred_1", "no_ref_pred_0", "no_ref_total", "ambiguous", "non_finite",
                 "referenced", "predictions"]
METRICS = CONFUSION_METRICS + COUNT_METRICS
# The rates: in [0, 1], higher is better, None where their denominator is 0
# (``f07_validation.scoring.UNDEFINED_BECAUSE``); the rest of METRICS count predictions.
RATES = ("precision", "recall", "f1")
HEADLINE_METRICS = ["precision", "recall", "f1"]  # per model in window_level/ (dvc metrics show)
