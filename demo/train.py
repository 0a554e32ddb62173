"""Seeded training of one trial, and the held-out figures that judge it.

Determinism: every DVC-tracked output must come out byte-identical on a re-run, models
included. ``keras.utils.set_random_seed`` seeds Python, NumPy and TensorFlow (weight
initialisation, dropout, the shuffling in ``fit``), and
``tf.config.experimental.enable_op_determinism`` makes TensorFlow use deterministic
kernels (or fail loudly where it has none). The session is cleared before each trial so
that a trial's result does not depend on which trials ran before it in the process.
Measured on the pinned stack: re-runs give byte-identical HDF5 files (h5py writes no
timestamps, and every layer is named). Two things still move the bytes: the CPU thread
count (the oneDNN convolution of cnn1d splits its work by thread, even with op
determinism; the F05 stage pins TensorFlow to one thread, see ``demo.f05.main``), and
the CPU's instruction set or the TensorFlow/oneDNN build, which choose the float kernels;
another machine of that kind may train equally valid models with other bytes.

Splits are by time (windows are in ``t0`` order): train on the oldest, choose a trial on
the next, and report the newest as held out, since a random split would leak a fault's
neighbouring, almost identical windows into the test set.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from console.progress import progress
from demo.artifacts import DemoError
from demo.families import build

SPLITS = ("train", "val", "test")


def time_split(n: int, fractions: dict, where: str) -> dict[str, slice]:
    """Consecutive train / val / test slices of ``n`` time-ordered rows."""
    if set(fractions) != set(SPLITS) or any(not 0 < fractions[s] < 1 for s in SPLITS) \
            or abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise DemoError(f"{where}: key 'split' must give train, val and test fractions in (0, 1) "
                        f"summing to 1, got {fractions}")
    n_train = int(fractions["train"] * n)
    n_val = int(fractions["val"] * n)
    return {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val), "test": slice(n_train + n_val, n)}


def positive_weight(labels: np.ndarray, setting, where: str) -> float:
    """Class weight of the positives: ``balanced`` (negatives per positive, as upstream's
    ``imbalance: auto``) or a number. Failures are rare, so unweighted training tends to
    predict all-negative."""
    if setting == "balanced":
        positives = int(labels.sum())
        return (len(labels) - positives) / positives if positives else 1.0
    if isinstance(setting, bool) or not isinstance(setting, (int, float)) or setting <= 0:
        raise DemoError(f"{where}: key 'positive_weight' must be 'balanced' or a positive number, "
                        f"got {setting!r}")
    return float(setting)


def train_trial(family: str, spec: dict, hp: dict, x: np.ndarray, y: np.ndarray, *, epochs: int,
                batch_size: int, weight: float, seed: int, where: str) -> keras.Model:
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build(family, spec, hp, where)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=hp.get("learning_rate", 0.001)),
                  loss="binary_crossentropy")
    with progress(desc=f"train {where.removeprefix('params.yaml ')}", total=epochs, unit="epoch") as bar:
        epoch_done = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False),
                                              bar.update(1)))
        model.fit(x, y.astype(np.float32), epochs=epochs, batch_size=batch_size, shuffle=True,
                  class_weight={0: 1.0, 1: weight}, verbose=0, callbacks=[epoch_done])
    return model


def probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0)
    return model.predict(x, batch_size=1024, verbose=0).reshape(-1).astype(np.float64)


def binary_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """Counts and precision / recall / f1 of ``probability >= threshold`` (0 when undefined)."""
    predicted = probability >= threshold
    actual = y.astype(bool)
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"rows": len(y), "positives": int(actual.sum()), "tp": tp, "fp": fp, "fn": fn,
            "tn": len(y) - tp - fp - fn, "precision": round(precision, 6), "recall": round(recall, 6),
            "f1": round(f1, 6)}
