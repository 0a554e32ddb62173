"""The independent reference (f07_validation/reference.py) against real server processes.

A small sealed package of three real Keras models (one per family) whose F04 datasets are
cut from the replay's own events, served by a real ``runtime.server`` process and
replayed through HTTP into a real prediction log. A correct server matches the reference
on every window; a server with a fault injected (tests/server_faults: a vocabulary
shifted by one in the runtime's vectorizer, answers in reversed window order) fails it,
naming the model and the windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from contract.layout import package_dataset
from contract.manifest import load_manifest
from contract.config import ConfigError, validate_params
from contract.defaults import DEFAULT_REFERENCE_SAMPLE, DEFAULT_REFERENCE_TOLERANCE
from f07_validation.reference import (JOIN_OW_CONTENT, JOIN_T0, compare_with_reference, dense_bow_input,
                                      every_kth_true, run_inputs, sequence_input)
from tests.validated_package import (CNN, DENSE, EMBEDDING, ORIGIN, REGIME, build_validated_package,
                                     serve_and_log)


def compare(manifest_path: Path, log: Path, sample_windows: int | None = DEFAULT_REFERENCE_SAMPLE, **override):
    models, datasets, span = run_inputs(load_manifest(manifest_path))
    for objective, changes in override.items():
        datasets[objective] = type(datasets[objective])(**{**datasets[objective].__dict__, **changes})
    return compare_with_reference(log, models, datasets, span, sample_windows=sample_windows,
                                  tolerance=DEFAULT_REFERENCE_TOLERANCE)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One correct run, shared: (manifest path, log path)."""
    root = tmp_path_factory.mktemp("reference") / "executions"
    manifest = build_validated_package(root)
    with pytest.MonkeyPatch.context() as patch:
        return manifest, serve_and_log(manifest, patch)


# --------------------------------------------------------------------------- the contract, by hand

@pytest.mark.parametrize("cut, damage", [("07_deployrun/v701/logs/raw_predictions.parquet", "truncate"),
                                         ("07_deployrun/v701/logs/raw_predictions.parquet", "damage_inside"),
                                         ("06_packaging/v601/datasets/v402/04_targetengineering_dataset.parquet",
                                          "truncate")])
def test_a_truncated_or_damaged_log_or_f04_dataset_is_one_error_line_naming_it_and_the_fix(served, tmp_path, cut,
                                                                                          damage, monkeypatch):
    """Through the reference stage, on a copy of the served run (a damaged log fails once its
    progress bar has started: the bar is off, so that stderr is the error line alone)."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    import shutil

    import yaml

    from tests import f07_synthetic
    manifest, _ = served
    shutil.copytree(manifest.parents[2], tmp_path / "executions")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"deployrun": {"v701": {"parent_variant_f06": "v601"}}}))
    assert f07_synthetic.run_f07_stage("settings", tmp_path).returncode == 0  # the run's params.yaml
    getattr(f07_synthetic, damage)(tmp_path / "executions" / cut)
    line = f07_synthetic.one_error_line(f07_synthetic.run_f07_stage("reference", tmp_path))
    what = "truncated or not parquet" if damage == "truncate" else "damaged inside"
    assert f"{cut} is not a readable parquet file" in line and what in line, line
    assert ("run `dvc repro infer@v701` first" if "07_deployrun" in cut else
            "`dvc repro seal_package@v601`") in line, line


def test_inputs_are_built_as_the_f05_contract_says():
    vocab = [7, 3, 9]
    assert dense_bow_input([3, 3, 5, 9, 3], vocab, 4).tolist() == [0, 3, 1, 0]  # 5 unknown, col 3 unused
    assert dense_bow_input([], vocab, 3).tolist() == [0, 0, 0]
    # ids 1 + position: 7->1, 3->2, 9->3; 5 dropped before the last max_len are kept; zeros on the left
    assert sequence_input([9, 5, 7, 3, 3], vocab, 3).tolist() == [1, 2, 2]
    assert sequence_input([5, 3], vocab, 4).tolist() == [0, 0, 0, 2]
    assert sequence_input([], vocab, 2).tolist() == [0, 0]


def test_reference_settings_are_checked_naming_the_key():
    def entry(reference):
        return {"deployrun": {"v701": {"parent_variant_f06": "v601", "reference": reference}}}

    validate_params(entry({"sample_windows": None, "tolerance": 1e-4}))
    for bad, problem in (({"sample_windows": 0}, "sample_windows: 0 is out of range"),
                         ({"tolerance": -1}, "tolerance: -1 is out of range"),
                         ({"tolerence": 1e-3}, "tolerence: unknown key")):
        with pytest.raises(ConfigError, match=f"deployrun.v701.reference.{problem}"):
            validate_params(entry(bad))


# --------------------------------------------------------------------------- a correct server

def test_a_correct_server_matches_the_reference_on_every_f04_window(served):
    manifest, log = served
    result = compare(manifest, log)
    windows = pq.read_metadata(manifest.parents[2] / "06_packaging" / "v601" / package_dataset("v401")).num_rows
    assert windows > 150
    for objective in ("v401", "v402"):
        summary = result["objectives"][objective]
        assert summary["join"] == JOIN_T0 and not summary["sampled"]
        assert summary["matched"] == summary["compared"] == summary["in_replay"] == windows
    for key in (DENSE, EMBEDDING, CNN):
        model = result["models"][key]
        assert model["compared"] == windows and model["mismatches"] == 0, model
        assert model["max_abs_diff"] <= 1e-5
        assert model["coverage"] == {"measured": True, "in_replay": windows, "missing": 0,
                                     "first_missing_t0": [], "reason": ""}


def test_a_long_replay_is_compared_on_a_deterministic_sample_that_says_so(served):
    manifest, log = served
    first = compare(manifest, log, sample_windows=40)
    again = compare(manifest, log, sample_windows=40)
    assert first == again
    summary = first["objectives"]["v401"]
    assert summary["sampled"] and summary["stride"] == summary["matched"] // 40
    assert 40 <= summary["compared"] < summary["matched"]
    assert first["models"][EMBEDDING]["compared"] == summary["compared"]


def test_the_sample_is_every_kth_match_across_chunk_boundaries():
    flags = np.random.default_rng(3).random(10_007) < 0.6
    for stride in (1, 2, 7, 193):
        assert every_kth_true(flags, stride, chunk=977).tolist() == np.flatnonzero(flags)[::stride].tolist()
    assert every_kth_true(np.zeros(0, bool), 5).tolist() == []


def test_f04_rows_out_of_time_order_are_joined_by_their_t0_all_the_same(served, tmp_path):
    """F03 writes windows in time order, and the join then uses the t0 column as its own
    index; rows in another order take the general path and must give the same result."""
    manifest, log = served
    package = manifest.parents[2] / "06_packaging" / "v601"
    table = pq.read_table(package / package_dataset("v402"))
    shuffled = tmp_path / "f04.parquet"
    pq.write_table(table.take(np.random.default_rng(5).permutation(table.num_rows)), shuffled)
    in_order, out_of_order = compare(manifest, log), compare(manifest, log, v402={"path": shuffled})
    assert out_of_order["objectives"]["v402"]["join"] == JOIN_T0
    assert out_of_order["models"][CNN] == in_order["models"][CNN]
    assert in_order["models"][CNN]["compared"] > 100 and in_order["models"][CNN]["mismatches"] == 0


def test_a_dataset_without_t0_is_matched_by_content_and_coverage_is_not_measured(served, tmp_path):
    manifest, log = served
    package = manifest.parents[2] / "06_packaging" / "v601"
    without_t0 = tmp_path / "f04.parquet"
    pq.write_table(pq.read_table(package / package_dataset("v402")).drop_columns(["t0"]), without_t0)
    result = compare(manifest, log, v402={"path": without_t0, "join_note": "t0 not recoverable: rows differ"})
    summary = result["objectives"]["v402"]
    assert summary["join"] == JOIN_OW_CONTENT and summary["compared"] == summary["distinct_contents"]
    model = result["models"][CNN]
    assert model["compared"] == summary["compared"] > 100 and model["mismatches"] == 0
    assert not model["coverage"]["measured"] and "rows differ" in model["coverage"]["reason"]


# --------------------------------------------------------------------------- faults it must catch

def test_a_vocabulary_shifted_in_the_runtimes_vectorizer_fails_the_reference(tmp_path, monkeypatch):
    """The fault sits in runtime.vectorize, which the runtime's own in-process
    comparison shares: only an independent input build can see it."""
    manifest = build_validated_package(tmp_path / "executions")
    log = serve_and_log(manifest, monkeypatch, {"kind": "vocab_shift", "family": "sequence"})
    result = compare(manifest, log)
    assert result["models"][DENSE]["mismatches"] == 0
    for key in (EMBEDDING, CNN):
        model = result["models"][key]
        assert model["mismatches"] > 0 and model["max_abs_diff"] > 1e-5, model
        first = model["first_mismatches"][0]
        assert set(first) == {"t0", "events", "server", "reference"} and first["server"] != first["reference"]


def test_a_server_answering_in_another_window_order_fails_the_reference(tmp_path, monkeypatch):
    manifest = build_validated_package(tmp_path / "executions")
    log = serve_and_log(manifest, monkeypatch, {"kind": "reorder"})
    result = compare(manifest, log)
    for key in (DENSE, EMBEDDING, CNN):
        assert result["models"][key]["mismatches"] > 0, key


def test_a_replay_that_misses_f04_windows_of_its_range_fails_coverage(tmp_path, monkeypatch):
    manifest = build_validated_package(tmp_path / "executions", replay_rows=1200)
    log = serve_and_log(manifest, monkeypatch)
    result = compare(manifest, log)
    for key in (DENSE, EMBEDDING, CNN):
        coverage = result["models"][key]["coverage"]
        assert coverage["measured"] and coverage["missing"] > 40, coverage
        assert coverage["first_missing_t0"][0] >= ORIGIN + 1200 - REGIME.ow_seconds
        assert result["models"][key]["mismatches"] == 0


def test_the_join_trace_holds_its_sample_not_the_log():
    """Pass 1 keeps a bounded trace of each model's logged t0s (to explain a join that
    misses): every stride-th one, whatever the log's length. Fed 200 batches of 50,000
    t0s (80 MB), it must hold its few hundred values, not the batches (a slice is a view
    that keeps its batch alive: the reference stage's peak grew with the log)."""
    import tracemalloc

    from f07_validation.reference import ReplaySpan, _JoinTrace

    span = ReplaySpan(first=0, last=10 ** 9, ow_seconds=60, origin=0, tu=10)
    trace = _JoinTrace(span, stride=40_000)
    tracemalloc.start()
    try:
        for batch in range(200):
            t0 = np.arange(batch * 50_000, (batch + 1) * 50_000, dtype=np.int64) * 10
            trace.add(t0, np.ones(len(t0), dtype=bool))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(trace.sample, np.arange(0, 200 * 50_000, 40_000) * 10)
    assert held < 2 * 1024 ** 2, f"the trace holds {held / 1024 ** 2:.0f} MiB after 200 batches"
