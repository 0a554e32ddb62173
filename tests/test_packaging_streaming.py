"""F06 in bounded memory: the t0 recovery and the probe read the reference a chunk at a
time. Small chunks here make every boundary case happen on a small upstream."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract.windows import EventRows, Regime, f03_windows
from f06_packaging import reference
from f06_packaging.probe import probe_windows
from tests.test_packaging import package, packaging_params
from tests.upstream_builder import make_upstream


def _random_rows(rng, dense: bool) -> EventRows:
    n = int(rng.integers(1, 300))
    steps = np.arange(n) if dense else np.sort(rng.choice(np.arange(3 * n), n, replace=False))
    events = [sorted(rng.choice(np.arange(1, 20), size=int(rng.integers(1, 3)), replace=False).tolist())
              if rng.random() < 0.2 else [] for _ in range(n)]
    return EventRows.from_lists(1_000 + 10 * steps, events)


@pytest.mark.parametrize("strategy", ["synchro", "asynOW", "withinPW", "asynPW"])
def test_window_chunks_concatenate_to_f03_windows(strategy):
    """Rows one per Tu and rows with gaps (where a chunk's rows end before its horizon),
    every strategy, NaN codes dropped, chunks of 1 to more than the data."""
    rng = np.random.default_rng(17)
    for trial in range(30):
        rows = _random_rows(rng, dense=trial % 2 == 0)
        regime = Regime(10, int(rng.integers(1, 8)), int(rng.integers(0, 3)), int(rng.integers(1, 6)),
                        int(rows.segs[0]))
        whole, whole_pw = f03_windows(rows, regime, strategy, (3,))
        for chunk in (1, 3, 7, 1_000):
            parts = list(reference.f03_window_chunks(rows, regime, strategy, (3,), chunk))
            assert np.array_equal(np.concatenate([p.t0 for p, _ in parts] or [np.zeros(0, np.int64)]), whole.t0)
            assert np.array_equal(np.concatenate([p.codes for p, _ in parts] or [np.zeros(0, np.int64)]),
                                  whole.codes)
            assert np.array_equal(np.concatenate([q.codes for _, q in parts] or [np.zeros(0, np.int64)]),
                                  whole_pw.codes)


def _objective(root):
    from f06_packaging.plan import build_plan
    return build_plan("v601", packaging_params(), root).objectives["v401"]


def test_recovery_in_chunks_gives_the_whole_recomputation(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    objective = _objective(root)
    t0_small, note = reference.recover_t0(objective, chunk=5)
    t0_large, _ = reference.recover_t0(objective)
    assert "every OW matches" in note
    assert np.array_equal(t0_small, t0_large) and len(t0_small) == pq.ParquetFile(objective.dataset_path).metadata.num_rows


def test_recovered_t0_is_written_in_row_groups_a_reader_takes_at_a_time(tmp_path, monkeypatch):
    """A reader decodes a whole row group of a column: the recovered t0 in one group of
    every row made the F07 reference stage's peak grow with the replay. Groups of
    BATCH_ROWS (5 here, so that a small upstream has several)."""
    root = make_upstream(tmp_path / "executions", with_t0=False)
    objective = _objective(root)
    monkeypatch.setattr(reference, "BATCH_ROWS", 5, raising=False)
    joined = reference.reference_join(objective, tmp_path / "package")
    written = pq.ParquetFile(tmp_path / "package" / "recovered_t0.parquet").metadata
    assert joined["join"] == "t0_recovered" and written.num_rows == joined["rows"] > 5
    assert written.num_row_groups == -(-joined["rows"] // 5)
    assert max(written.row_group(i).num_rows for i in range(written.num_row_groups)) == 5


def _rewrite_ow(path, edit):
    table = pq.read_table(path)
    lists = edit(table.column("OW_events").to_pylist())
    index = table.column_names.index("OW_events")
    pq.write_table(table.set_column(index, "OW_events", pa.array(lists, pa.list_(pa.int32()))), path)


def test_recovery_in_chunks_names_the_first_differing_row_past_a_chunk_boundary(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    objective = _objective(root)
    _rewrite_ow(objective.dataset_path, lambda lists: lists[:23] + [lists[23] + [999]] + lists[24:])
    t0, note = reference.recover_t0(objective, chunk=5)
    assert t0 is None and note.endswith("(first difference at row 23)")


def test_recovery_in_chunks_counts_a_missing_last_row(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    objective = _objective(root)
    rows = pq.ParquetFile(objective.dataset_path).metadata.num_rows
    table = pq.read_table(objective.dataset_path)
    pq.write_table(table.slice(0, rows - 1), objective.dataset_path)
    t0, note = reference.recover_t0(objective, chunk=4)
    assert t0 is None and f"the F04 dataset has {rows - 1} rows" in note and f"gives {rows} windows" in note


def test_probe_reads_the_chosen_rows_across_batches(tmp_path, monkeypatch):
    """The probe keeps an empty window, then rows spread over the whole reference, the
    same rows whatever the batch the reader happens to use."""
    root = make_upstream(tmp_path / "executions", with_t0=False)
    from f06_packaging.plan import build_plan
    model = build_plan("v601", packaging_params(), root).models[0]
    monkeypatch.setattr("f06_packaging.probe.PROBE_WINDOWS", 7)
    monkeypatch.setattr("f06_packaging.probe.BATCH_ROWS", 10)
    windows = probe_windows(model)
    lists = pq.read_table(model.objective.dataset_path).column("OW_events").to_pylist()
    chosen = np.unique(np.linspace(0, len(lists) - 1, num=7).astype(int))
    assert windows.lists() == [[]] + [lists[i] for i in chosen]


def test_replay_summary_counts_every_row_and_event(tmp_path):
    root = make_upstream(tmp_path / "executions", with_t0=False)
    out = package(root, packaging_params())
    summary = json.loads((out / "06_packaging_metadata.json").read_text())["replay"]
    source = pq.read_table(out / "replay/replay_events.parquet")
    assert summary["rows"] == source.num_rows
    assert summary["events"] == sum(len(e) for e in source.column("events").to_pylist())
    assert (summary["first_segs"], summary["last_segs"]) == (source["segs"][0].as_py(), source["segs"][-1].as_py())
