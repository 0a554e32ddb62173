"""The three upstream model families: their input encoding and their Keras networks.

Inputs are built here (``encode``) from the same ``vectorization`` block that is written
to ``model_summary.json``, by the demo's own implementation of the F05 contract, as
upstream's F05 has its own: the demo is the upstream the runtime is judged against, so
it must not be built by the code under judgement (an edit to ``runtime/`` would retrain
the demo's models, and a bug there would be trained into them and pass unseen).

The networks are upstream's (``scripts/05_modeling.py``): dense_bow is an MLP over event
counts; sequence_embedding averages the embeddings of the event sequence; cnn1d runs a
1-D convolution over the embeddings and max-pools. One deliberate difference: upstream's
sequence_embedding masks the padding (``mask_zero=True``), and the masked average of a
window with no events is 0/0; a single such window in a batch turns the loss, then every
weight, into NaN, which is how upstream's real sequence_embedding model ended up
predicting NaN. Here the padding id has its own learned embedding and is averaged like
any other position (which also tells the network how full the window is).

Every layer is named explicitly:
Keras otherwise numbers layers from a process-wide counter (``dense_7``), and those names
are written into the HDF5 file, so the bytes would depend on what else the process built.
"""
from __future__ import annotations

import keras
import numpy as np

from demo.artifacts import DemoError

FAMILIES = ("dense_bow", "sequence_embedding", "cnn1d")
ENCODING = {"dense_bow": "dense_bow", "sequence_embedding": "sequence", "cnn1d": "sequence"}


def vectorization(family: str, codes: np.ndarray, offsets: np.ndarray, max_len_percentile: float) -> dict:
    """The ``vectorization`` block for windows (flat ``codes`` + ``offsets``): the vocabulary
    is every code seen; ``max_len`` is a percentile of the window lengths (upstream uses
    the 95th), at least 1. ``vocab_size`` is ``len(vocab)`` as upstream writes it; ids
    run 1..vocab_size and 0 pads, so the embedding has ``vocab_size + 1`` rows."""
    vocab = np.unique(codes).tolist()
    if ENCODING[family] == "dense_bow":
        return {"vectorization": "dense_bow", "vocab": vocab, "input_dim": len(vocab)}
    lengths = np.diff(offsets)
    max_len = max(1, int(np.percentile(lengths, max_len_percentile))) if len(lengths) else 1
    return {"vectorization": "sequence", "vocab": vocab, "vocab_size": len(vocab), "max_len": max_len}


def encode(spec: dict, codes: np.ndarray, offsets: np.ndarray, where: str) -> np.ndarray:
    """Model input for windows (flat ``codes``, window i = ``codes[offsets[i]:offsets[i+1]]``)
    as the F05 contract defines it: ``dense_bow`` float32 ``[n, input_dim]``, column i
    counting ``vocab[i]``; ``sequence`` int32 ``[n, max_len]``, a code as 1 + its position
    in ``vocab``, unknown codes dropped, the last ``max_len`` kept, zeros padding the left."""
    kind = spec.get("vectorization")
    if kind not in ("dense_bow", "sequence"):
        raise DemoError(f"{where}: unknown vectorization {kind!r}")
    codes, offsets = np.asarray(codes, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    vocab = np.asarray(spec["vocab"], dtype=np.int64)
    order = np.argsort(vocab, kind="stable")
    at = np.minimum(np.searchsorted(vocab[order], codes), max(len(vocab) - 1, 0))
    known = (vocab[order][at] == codes) if len(vocab) else np.zeros(len(codes), bool)
    position = order[at][known]                                     # index in vocab of each known code
    window = np.repeat(np.arange(n), np.diff(offsets))[known]
    if kind == "dense_bow":
        out = np.zeros((n, spec["input_dim"]), dtype=np.float32)
        np.add.at(out, (window, position), 1)
        return out
    width = spec["max_len"]
    per_window = np.bincount(window, minlength=n)
    from_end = np.cumsum(per_window)[window] - 1 - np.arange(len(window))  # 0 for a window's last known code
    keep = from_end < width
    out = np.zeros((n, width), dtype=np.int32)
    out[window[keep], width - 1 - from_end[keep]] = position[keep] + 1
    return out


def build(family: str, spec: dict, hp: dict, where: str) -> keras.Model:
    """The (uncompiled) network of one trial's hyperparameters ``hp``."""
    def need(key):
        if key not in hp:
            raise DemoError(f"{where}: hyperparameter '{key}' is missing for model_family {family}")
        return hp[key]

    if family == "dense_bow":
        layers = [keras.Input(shape=(spec["input_dim"],), name="counts")]
    else:
        layers = [keras.Input(shape=(spec["max_len"],), name="sequence"),
                  keras.layers.Embedding(spec["vocab_size"] + 1, need("embed_dim"), name="embedding")]
        if family == "sequence_embedding":
            layers.append(keras.layers.GlobalAveragePooling1D(name="average"))
        else:
            layers += [keras.layers.Conv1D(need("filters"), need("kernel_size"), activation="relu",
                                           padding="same", name="conv"),
                       keras.layers.GlobalMaxPooling1D(name="max_pool")]
    for i in range(need("n_layers")):
        layers.append(keras.layers.Dense(need("units"), activation="relu", name=f"dense_{i}"))
        if need("dropout") > 0:
            layers.append(keras.layers.Dropout(hp["dropout"], name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(1, activation="sigmoid", name="probability"))
    return keras.Sequential(layers, name=family)
