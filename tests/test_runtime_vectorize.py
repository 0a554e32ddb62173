"""Model inputs rebuilt from windows, against a straightforward per-window reference."""
import numpy as np
import pytest

from contract.windows import Windows
from runtime.vectorize import DenseBow, Ragged, Sequence, VectorizationError, from_spec

VOCAB = [7, 3, 11, 42]
DENSE = {"vectorization": "dense_bow", "vocab": VOCAB, "input_dim": 4}
SEQ = {"vectorization": "sequence", "vocab": VOCAB, "vocab_size": 4, "max_len": 3}


def reference_dense(windows, vocab, input_dim):
    out = np.zeros((len(windows), input_dim), dtype=np.float32)
    for i, window in enumerate(windows):
        for code in window:
            if code in vocab:
                out[i, vocab.index(code)] += 1
    return out


def reference_sequence(windows, vocab, max_len):
    out = np.zeros((len(windows), max_len), dtype=np.int32)
    for i, window in enumerate(windows):
        ids = [vocab.index(c) + 1 for c in window if c in vocab][-max_len:]
        if ids:
            out[i, max_len - len(ids):] = ids
    return out


def test_dense_bow_counts_each_vocab_code_and_ignores_others():
    x = from_spec(DENSE, "test")(Ragged.from_lists([[7, 7, 3, 99, 42, 7], [], [5, -1, 10**12]]))
    assert x.dtype == np.float32 and x.shape == (3, 4)
    np.testing.assert_array_equal(x, [[3, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_dense_bow_leaves_columns_beyond_the_vocab_at_zero():
    x = from_spec({**DENSE, "input_dim": 6}, "test")(Ragged.from_lists([[42, 11]]))
    np.testing.assert_array_equal(x, [[0, 0, 1, 1, 0, 0]])


def test_sequence_maps_to_one_plus_position_and_left_pads():
    x = from_spec(SEQ, "test")(Ragged.from_lists([[3], [42, 7]]))
    assert x.dtype == np.int32 and x.shape == (2, 3)
    np.testing.assert_array_equal(x, [[0, 0, 2], [0, 4, 1]])


def test_sequence_drops_unknown_codes_before_keeping_the_last_max_len():
    # Known codes in order: 7 3 11 42 7 -> the last three are 11 42 7 -> ids 3 4 1.
    # Truncating before dropping would keep [42, 99, 7] -> 4 1 only.
    x = from_spec(SEQ, "test")(Ragged.from_lists([[7, 3, 11, 99, 42, 99, 7, 99]]))
    np.testing.assert_array_equal(x, [[3, 4, 1]])


def test_sequence_of_empty_and_all_unknown_windows_is_all_padding():
    x = from_spec(SEQ, "test")(Ragged.from_lists([[], [1, 2, 99], []]))
    np.testing.assert_array_equal(x, np.zeros((3, 3), dtype=np.int32))


def test_a_batch_of_no_windows_has_no_rows():
    empty = Ragged.from_lists([])
    assert from_spec(DENSE, "test")(empty).shape == (0, 4)
    assert from_spec(SEQ, "test")(empty).shape == (0, 3)


def test_windows_from_the_geometry_module_vectorize_like_lists():
    lists = [[7, 3], [], [42, 42, 11, 7]]
    ragged = Ragged.from_lists(lists)
    windows = Windows(t0=np.arange(3, dtype=np.int64), codes=ragged.codes, offsets=ragged.offsets)
    for spec in (DENSE, SEQ):
        np.testing.assert_array_equal(from_spec(spec, "test")(windows), from_spec(spec, "test")(ragged))


@pytest.mark.parametrize("max_len", [1, 5, 57, 300])
def test_random_windows_match_the_reference(max_len):
    rng = np.random.default_rng(max_len)
    vocab = [int(c) for c in rng.permutation(np.arange(1, 200))[:120]]
    windows = [[int(c) for c in rng.integers(-3, 260, size=rng.poisson(57))] for _ in range(300)]
    windows[5] = []
    ragged = Ragged.from_lists(windows)
    dense = DenseBow({"vectorization": "dense_bow", "vocab": vocab, "input_dim": 120}, "test")
    np.testing.assert_array_equal(dense(ragged), reference_dense(windows, vocab, 120))
    seq = Sequence({"vectorization": "sequence", "vocab": vocab, "vocab_size": 120, "max_len": max_len}, "test")
    np.testing.assert_array_equal(seq(ragged), reference_sequence(windows, vocab, max_len))


@pytest.mark.parametrize("spec, message", [
    ({"vectorization": "tfidf", "vocab": [1]}, "'tfidf'"),
    ({"vocab": [1], "input_dim": 1}, "None"),
    ({**DENSE, "vocab": [7, 3, 7]}, "repeats a code"),
    ({**DENSE, "vocab": [1, True]}, "integer event codes"),
    ({**DENSE, "input_dim": 3}, "'input_dim' is 3"),
    ({**DENSE, "input_dim": 0}, "'input_dim' must be a positive integer"),
    ({**SEQ, "max_len": "3"}, "'max_len' must be a positive integer"),
    ({**SEQ, "vocab_size": 3}, "'vocab_size' is 3"),
    ({**SEQ, "vocab": [-1, 2]}, "must lie in"),
])
def test_bad_vectorization_blocks_are_refused_naming_the_model(spec, message):
    with pytest.raises(VectorizationError, match="model X") as raised:
        from_spec(spec, "model X")
    assert message in str(raised.value)


@pytest.mark.parametrize("lists, error", [([[1], [2, True]], TypeError), ([[1.0]], TypeError),
                                          ([["3"]], TypeError), ([[2 ** 63]], OverflowError)])
def test_window_lists_hold_int64_codes_only(lists, error):
    with pytest.raises(error):
        Ragged.from_lists(lists)
