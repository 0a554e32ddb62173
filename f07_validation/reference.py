"""The independent reference: every model scored on the F04 datasets' own windows by code
that shares nothing with the runtime it judges, compared with what the server answered.

Why: the in-process comparison made during the replay (``logs/equivalence.json``) runs
the server's own vectorizer and model wrapper beside it, so a wrong window cut, a
vocabulary shifted by one, padding on the wrong side or a wrong ``max_len`` give the same
wrong input on both sides and pass. The seeds say equivalence holds because F07 rebuilds
inputs from F05's saved vectorization; this module measures that claim. It reads

- the windows from the packaged F04 datasets (their ``OW_events``, as F03 cut them), not
  from the replay client's cut;
- each model's ``model_summary.json`` and ``model.h5`` from the package, loading the model
  here with Keras (``compile=False``);
- the model input built one window at a time by a plain implementation written from the
  F05 contract (``dense_bow_input``, ``sequence_input``), not the runtime's array code.

A logged prediction is matched to its F04 row by ``t0`` (the dataset's, or the one F06
recovered) or, without one, by OW content. Per model, |server - reference| must stay
within the tolerance on every compared window; the first mismatching windows are kept
(t0, events, both probabilities).

Decisions are judged too, since every metric of the report is computed from the logged
``y_pred``: the reference decides ``probability >= threshold`` with the threshold read
here from the model's ``model_summary.json`` (the F05 contract's default where it
declares none, and the result says so) and compares that decision with the logged one on
every compared window. And every row of the log (all of them, not a sample) must carry
the decision its own logged probability and that threshold give, null where the
probability is null.

When logged predictions miss the F04 windows (coverage, or the scored share, collapses),
the join is diagnosed (``diagnose_join``): an empty log, ``t0``s off the replay's time
grid, a constant offset from the F04 ``t0``s, another time unit; the verdict names it.

The same join measures coverage: every F04 window whose OW lies in the replay must have a
logged prediction from every model (``t0`` joins only: without a time nothing says which
F04 rows the replay should have reached).

Memory stays flat in the log's length: the log and the datasets are streamed by record
batches, and the join keeps one sorted key array per dataset (``t0``, or a 64-bit hash of
the OW content) plus one flag per key and model. Long replays compare a deterministic
sample: every k-th matched F04 row, k chosen so that at least ``sample_windows`` rows are
compared (all of them when there are fewer); the result says how it sampled.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from console.progress import progress
from contract.defaults import F05_DEFAULT_THRESHOLD
from contract.errors import UserError
from contract.parquet import damaged_package_fix, parquet_file
from contract.predictions import model_keys
from contract.row_stream import BATCH_ROWS
from contract import layout

FIRST_SHOWN = 5  # mismatching or missing windows named in a result
PREDICT_ROWS = 1_024
JOIN_T0, JOIN_T0_RECOVERED, JOIN_OW_CONTENT = "t0", "t0_recovered", "ow_content"


class ReferenceComparisonError(UserError):
    """The reference comparison cannot be made as configured or from these files; the
    message names the key or the file and the fix."""


# --------------------------------------------------------------------------- model inputs

def dense_bow_input(events: list[int], vocab: list[int], input_dim: int) -> np.ndarray:
    """F05 ``dense_bow``: position i counts the occurrences of ``vocab[i]`` in the OW;
    codes outside the vocabulary are ignored."""
    position = {code: i for i, code in enumerate(vocab)}
    counts = np.zeros(input_dim, dtype=np.float32)
    for code in events:
        if code in position:
            counts[position[code]] += 1
    return counts


def sequence_input(events: list[int], vocab: list[int], max_len: int) -> np.ndarray:
    """F05 ``sequence``: a code becomes 1 + its position in the vocabulary, unknown codes
    are dropped first, the last ``max_len`` are kept, zeros pad on the left."""
    position = {code: i for i, code in enumerate(vocab)}
    ids = [position[code] + 1 for code in events if code in position][-max_len:] if max_len else []
    return np.array([0] * (max_len - len(ids)) + ids, dtype=np.int32)


class ReferenceModel:
    """One packaged model as the reference sees it: its summary and ``model.h5`` read
    from the package, the input built per window from the summary's vectorization, the
    decision taken at the summary's threshold (``threshold_source`` says where it came from)."""

    def __init__(self, key: str, model_path: Path, summary_path: Path):
        self.key = key
        try:
            summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
            vectorization = summary["vectorization"]
            self.kind = vectorization["vectorization"]
            self.vocab = [int(code) for code in vectorization["vocab"]]
            self.width = int(vectorization["input_dim"] if self.kind == "dense_bow" else vectorization["max_len"])
            declared = summary.get("threshold")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ReferenceComparisonError(f"model {key}: cannot read its vectorization from {summary_path} "
                                 f"({error!r}); the package is incomplete") from None
        if self.kind not in ("dense_bow", "sequence"):
            raise ReferenceComparisonError(f"model {key}: {summary_path} names vectorization {self.kind!r}; the "
                                 "contract defines dense_bow and sequence")
        if declared is None:
            self.threshold = F05_DEFAULT_THRESHOLD
            self.threshold_source = (f"the F05 contract's default {F05_DEFAULT_THRESHOLD}: "
                                     f"{layout.MODEL_SUMMARY} declares no threshold")
        elif isinstance(declared, bool) or not isinstance(declared, (int, float)) or not 0 <= declared <= 1:
            raise ReferenceComparisonError(f"model {key}: {summary_path} declares threshold {declared!r}, not a "
                                           "number in [0, 1]; the package is corrupt: rebuild it")
        else:
            self.threshold = float(declared)
            self.threshold_source = f"{layout.MODEL_SUMMARY} of the package"
        import keras  # TensorFlow, loaded only by the stage that needs it

        self.model = keras.models.load_model(model_path, compile=False)

    def inputs(self, windows: list[list[int]]) -> np.ndarray:
        build = dense_bow_input if self.kind == "dense_bow" else sequence_input
        dtype = np.float32 if self.kind == "dense_bow" else np.int32
        if not windows:
            return np.zeros((0, self.width), dtype=dtype)
        return np.stack([build(events, self.vocab, self.width) for events in windows])

    def predict(self, windows: list[list[int]]) -> np.ndarray:
        """Probabilities (float64), NaN or inf left as the model gives them."""
        out = np.zeros(len(windows), dtype=np.float64)
        for start in range(0, len(windows), PREDICT_ROWS):
            chunk = windows[start:start + PREDICT_ROWS]
            out[start:start + len(chunk)] = np.asarray(
                self.model.predict_on_batch(self.inputs(chunk)), dtype=np.float64).reshape(-1)
        return out


# --------------------------------------------------------------------------- inputs of a run

@dataclass(frozen=True)
class ModelUnderTest:
    key: str           # objective/source_f05/model_id, as in the log
    objective: str
    model_path: Path
    summary_path: Path


@dataclass(frozen=True)
class ReferenceDataset:
    objective: str
    path: Path                     # the packaged F04 dataset
    recovered_t0: Path | None      # beside a dataset without t0, when F06 recovered it
    join_note: str                 # why this join (F06's words: recovery refused because ...)


@dataclass(frozen=True)
class ReplaySpan:
    """The replay's first and last instants and the OW length in seconds: an F04 window
    lies in the replay when ``first <= t0`` and ``t0 + ow_seconds <= last``. Its windows
    start on the package's time grid, ``origin + k * tu`` (tu: the time unit in seconds)."""

    first: int
    last: int
    ow_seconds: int
    origin: int
    tu: int

    def holds(self, t0: np.ndarray) -> np.ndarray:
        return (t0 >= self.first) & (t0 <= self.last - self.ow_seconds)  # no int64 temporary of t0's length


def run_inputs(manifest) -> tuple[list[ModelUnderTest], dict[str, ReferenceDataset], ReplaySpan]:
    """What the comparison reads for an F07 run, from its ``manifest`` (the models served)
    and the sealed package's metadata (datasets, the join F06 settled and why, the
    replay's span and the OW length)."""
    path = manifest.package_dir / layout.PACKAGE_METADATA
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        replay, temporal = metadata["replay"], metadata["temporal"]
        span = ReplaySpan(int(replay["first_segs"]), int(replay["last_segs"]),
                          int(round(float(temporal["OW"]["value"]) * float(temporal["Tu"]["value"]))),
                          int(temporal["origin_segs"]), int(float(temporal["Tu"]["value"])))
        datasets = {}
        for model in manifest.models:
            entry = metadata["datasets"][model.objective]
            recovered = entry.get("recovered_t0")
            datasets[model.objective] = ReferenceDataset(
                model.objective, manifest.package_dir / entry["path"],
                manifest.package_dir / recovered if recovered else None,
                entry.get("join_note") or ("the F04 dataset carries t0" if entry.get("has_t0") else ""))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReferenceComparisonError(f"{path}: cannot read the datasets, replay and temporal regime of the "
                                       f"package ({error!r}); rebuild the package (seal_package stage)") from None
    models = [ModelUnderTest(model.key, model.objective, model.model_path, model.summary_path)
              for model in manifest.models]
    return models, datasets, span


def content_hashes(lists) -> np.ndarray:
    """A 64-bit hash of each OW's exact content (codes in order; any integer width; a
    null list counts as empty), as int64."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    if lists.null_count:
        lists = lists.fill_null(pa.scalar([], lists.type))
    text = pc.binary_join(pc.cast(lists, pa.list_(pa.string())), " ")
    return pd.util.hash_array(text.to_numpy(zero_copy_only=False), categorize=False).view(np.int64)


def index_in(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``sorted_values``, -1 where it does not occur."""
    if len(sorted_values) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return np.where(sorted_values[at] == values, at, -1)


def every_kth_true(flags: np.ndarray, stride: int, chunk: int = BATCH_ROWS * 16) -> np.ndarray:
    """Positions of the 1st, (1+stride)th, (1+2·stride)th ... True of ``flags``: the same
    as ``np.flatnonzero(flags)[::stride]`` without the int64 array of every True position
    (31 MB per objective at upstream size), which made memory grow with the replay."""
    chosen, trues_before = [np.zeros(0, np.int64)], 0
    for start in range(0, len(flags), chunk):
        positions = np.flatnonzero(flags[start:start + chunk]) + start
        chosen.append(positions[(-trues_before) % stride::stride])
        trues_before += len(positions)
    return np.concatenate(chosen)


def _batches(file: pq.ParquetFile, columns: list[str]):
    return file.iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _int64_column(file: pq.ParquetFile, column: str) -> np.ndarray:
    """One integer column of a parquet file as int64, filled batch by batch into one
    array (no list of chunks and concatenated copy beside it)."""
    values = np.empty(file.metadata.num_rows, dtype=np.int64)
    start = 0
    for batch in _batches(file, [column]):
        values[start:start + batch.num_rows] = batch.column(column).to_numpy(zero_copy_only=False)
        start += batch.num_rows
    return values


class _Dataset:
    """One objective's F04 dataset reduced to its join keys: ``keys`` per row (t0 or a
    content hash) and ``unique``, the distinct keys sorted (``first_rows`` and ``per_row``
    map between the two)."""

    def __init__(self, spec: ReferenceDataset, fix: str):
        self.spec = spec
        where = f"F04 reference of objective {spec.objective}"
        self.file = dataset = parquet_file(spec.path, where, fix, ReferenceComparisonError)  # read again for the samples
        names = dataset.schema_arrow.names
        if "OW_events" not in names:
            raise ReferenceComparisonError(f"{spec.path} has no OW_events column; it is not an F04 dataset")
        if "t0" in names:
            self.join = JOIN_T0
            keys = _int64_column(dataset, "t0")
        elif spec.recovered_t0 is not None:
            self.join = JOIN_T0_RECOVERED
            keys = _int64_column(parquet_file(spec.recovered_t0, where, fix, ReferenceComparisonError), "t0")
        else:
            self.join = JOIN_OW_CONTENT
            hashes = [content_hashes(b.column("OW_events")) for b in _batches(dataset, ["OW_events"])]
            keys = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
        rows = dataset.metadata.num_rows
        if len(keys) != rows:
            raise ReferenceComparisonError(f"{spec.recovered_t0} holds {len(keys)} t0 values for the {rows} rows of "
                                 f"{spec.path}; rebuild the package (seal_package stage)")
        self.keys = keys
        if self.by_t0 and np.all(keys[1:] > keys[:-1]):
            # F04 rows in time order (as F03 writes them): the keys are already their own
            # sorted index, and row i is key i. Not building np.unique's arrays saves three
            # int64 arrays of the dataset's length (~90 MB at 3.9 M windows), which would
            # make this stage's memory grow with the replay.
            self.unique, self._first_row, self._row_key = keys, None, None
        else:
            self.unique, self._first_row, self._row_key = np.unique(keys, return_index=True, return_inverse=True)
        if self.by_t0 and len(self.unique) != len(keys):
            raise ReferenceComparisonError(f"{spec.path}: {len(keys) - len(self.unique)} t0 values occur twice; an F04 "
                                 "dataset has one row per window")

    def first_rows(self, at: np.ndarray) -> np.ndarray:
        """The first F04 row holding each key of ``at`` (indices in ``unique``): a content
        occurring in several rows is compared once (same input, same output)."""
        return at if self._first_row is None else self._first_row[at]

    def per_row(self, flags: np.ndarray) -> np.ndarray:
        """A flag per key (indexed like ``unique``) spread to a flag per F04 row."""
        return flags if self._row_key is None else flags[self._row_key]

    @property
    def by_t0(self) -> bool:
        return self.join != JOIN_OW_CONTENT

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Index in ``unique`` of each key, -1 where the dataset has no such key."""
        return index_in(self.unique, keys)


def _log_batches(file: pq.ParquetFile, log_path: Path, models: list[ModelUnderTest], with_events: bool,
                 with_answers: bool):
    """The prediction log by record batch: per model, the row positions of its rows."""
    columns = ["t0", "objective", "source_f05", "model_id"]
    columns += ["probability", "y_pred"] if with_answers else []
    columns += ["OW_events"] if with_events else []
    missing = sorted(set(columns) - set(file.schema_arrow.names))
    if missing:
        raise ReferenceComparisonError(f"{log_path} lacks columns {missing}: it is not a raw prediction log")
    with progress(desc=f"reference: {log_path.name}", total=file.metadata.num_rows, unit="row") as bar:
        for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            key = model_keys(batch)
            rows = {m.key: np.flatnonzero(pc.equal(key, m.key).to_numpy(zero_copy_only=False)) for m in models}
            yield batch, rows
            bar.update(batch.num_rows)


# --------------------------------------------------------------------------- the comparison

class _Decisions:
    """One model's logged decisions, judged on every row of the log: ``y_pred`` must be
    ``probability >= threshold`` where the probability is finite and null where it is
    not (``probability`` as logged, null read as NaN)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.rows = 0
        self.inconsistent = 0
        self.first: list[dict] = []

    def add(self, t0: np.ndarray, probability: np.ndarray, y_pred: np.ndarray, y_valid: np.ndarray) -> None:
        finite = np.isfinite(probability)
        wanted = probability >= self.threshold  # False where NaN: only read where finite
        wrong = np.where(finite, ~y_valid | (y_pred != wanted), y_valid)
        self.rows += len(t0)
        self.inconsistent += int(wrong.sum())
        for i in np.flatnonzero(wrong)[:FIRST_SHOWN - len(self.first)]:
            self.first.append({"t0": int(t0[i]), "probability": _number(probability[i]),
                               "y_pred": int(y_pred[i]) if y_valid[i] else None,
                               "expected": int(wanted[i]) if finite[i] else None})

    def summary(self) -> dict:
        return {"rows": self.rows, "inconsistent": self.inconsistent, "first_inconsistent": self.first}


class _JoinTrace:
    """What pass 1 keeps of one model's logged ``t0``s to explain a join that misses:
    how many lie off the replay's time grid (by residue), how many match no F04 key,
    and a sample spread over the whole log (every ``stride``-th of its rows). Bounded
    whatever the log's length."""

    def __init__(self, span: ReplaySpan, stride: int):
        self.span = span
        self.stride = stride
        self.off_grid = 0
        self.residues: dict[int, int] = {}
        self.unmatched = 0
        self._seen = 0
        self._sample: list[np.ndarray] = []
        self.first_t0: int | None = None
        self.last_t0: int | None = None

    def add(self, t0: np.ndarray, matched: np.ndarray) -> None:
        if len(t0) == 0:
            return
        self.first_t0 = int(t0.min()) if self.first_t0 is None else min(self.first_t0, int(t0.min()))
        self.last_t0 = int(t0.max()) if self.last_t0 is None else max(self.last_t0, int(t0.max()))
        residue = (t0 - self.span.origin) % self.span.tu
        off = residue != 0
        self.off_grid += int(off.sum())
        for value, count in zip(*np.unique(residue[off], return_counts=True)):
            self.residues[int(value)] = self.residues.get(int(value), 0) + int(count)
        self.unmatched += int((~matched).sum())
        # a copy: the slice alone is a view that keeps the batch's whole t0 array alive, so the
        # trace held 8 bytes per logged row (the reference stage's peak grew by 14% from N/4 to N)
        self._sample.append(t0[(-self._seen) % self.stride::self.stride].copy())
        self._seen += len(t0)

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self._sample) if self._sample else np.zeros(0, np.int64)


# a logged t0 read in another unit: the unit's name and how to bring it back to seconds
_UNITS = (("milliseconds", lambda t: t // 1_000, 1_000), ("microseconds", lambda t: t // 1_000_000, 1_000_000),
          ("nanoseconds", lambda t: t // 1_000_000_000, 1_000_000_000), ("minutes", lambda t: t * 60, 1))
_TRACE_SAMPLE = 256  # logged t0s per model kept to test an explanation on
_COLLAPSED = 0.5  # the join has collapsed when fewer than this share of the logged t0s match
_EXPLAINS = 0.9  # an explanation must bring at least this share of them onto F04 t0s
_OFFSET_SEARCH_S = 2 * 86_400  # offsets tried: up to two days either way (time zones, a day's shift)


def _share_found(keys: np.ndarray, candidates: np.ndarray) -> float:
    return float((index_in(keys, candidates) >= 0).mean()) if len(candidates) else 0.0


def _best_offset(keys: np.ndarray, sample: np.ndarray) -> tuple[int, float]:
    """The constant ``d`` for which most of ``sample + d`` are F04 keys. Each of 32 of the
    sampled t0s votes for its offsets to the keys within ``_OFFSET_SEARCH_S`` of it; the
    ten most voted are measured on the whole sample, the best share wins (the smaller
    shift on a tie)."""
    probes = sample[::max(1, len(sample) // 32)]
    votes = []
    for t0 in probes:
        lo, hi = np.searchsorted(keys, [t0 - _OFFSET_SEARCH_S, t0 + _OFFSET_SEARCH_S + 1])
        votes.append(keys[lo:hi] - t0)
    offsets, counts = np.unique(np.concatenate(votes), return_counts=True)
    if not len(offsets):
        return 0, 0.0
    shares = [(_share_found(keys, sample + int(d)), -abs(int(d)), int(d)) for d in offsets[np.argsort(-counts)[:10]]]
    share, _, best = max(shares)
    return best, share


def diagnose_join(trace: _JoinTrace, logged: int, keys: np.ndarray, objective: str) -> dict | None:
    """Why this model's logged ``t0``s miss the F04 ``t0``s (``keys``, sorted), from its
    ``trace``: ``{"cause", "detail", ...}`` with the numbers, or None when the join holds
    (every logged t0 on the grid, most of them F04 t0s: a few at the replay's ends that
    F04 has no row for are normal). Tried in order: an empty log; t0s off the replay's
    time grid; when the join has collapsed, another time unit, a constant offset, else
    the two ranges."""
    span = trace.span
    if logged == 0:
        return {"cause": "empty_log", "detail": "the prediction log holds no row of this model"}
    sample = trace.sample
    base = f"{trace.unmatched} of the {logged} logged t0s match no t0 of the F04 dataset of {objective}"
    collapsed = _share_found(keys, sample) < _COLLAPSED
    if trace.off_grid:
        residue = max(trace.residues, key=lambda r: (trace.residues[r], -r))
        by = residue if residue <= span.tu // 2 else residue - span.tu
        back = _share_found(keys, sample - by)
        shifted = f"; shifted by {-by:+d} s, {back:.0%} of them are F04 t0s" if back >= _EXPLAINS else ""
        return {"cause": "off_grid", "off_grid": trace.off_grid, "most_off_by_s": by,
                "detail": f"{trace.off_grid} of the {logged} logged t0s are off the replay's time grid "
                          f"(origin {span.origin} + k x {span.tu} s), most by {by:+d} s, and {trace.unmatched} "
                          f"match no t0 of the F04 dataset of {objective}{shifted}"}
    if not collapsed:
        return None
    for unit, to_seconds, divisor in _UNITS:
        if np.all(sample % divisor == 0) and _share_found(keys, to_seconds(sample)) >= _EXPLAINS:
            return {"cause": "time_unit", "unit": unit,
                    "detail": f"{base}: they are in {unit}, not epoch seconds ({sample[0]} is "
                              f"{to_seconds(sample[:1])[0]} in seconds)"}
    offset, share = _best_offset(keys, sample)
    if offset and share >= _EXPLAINS:
        steps = f" ({-offset // span.tu:+d} x Tu)" if offset % span.tu == 0 else ""
        return {"cause": "offset", "offset_s": -offset,
                "detail": f"{base}: they are the F04 t0s shifted by a constant {-offset:+d} s{steps} "
                          f"({share:.0%} of those sampled match once shifted back)"}
    f04 = f"{keys[0]}..{keys[-1]}" if len(keys) else "empty"
    return {"cause": "unexplained",
            "detail": f"{base} (no time unit, grid offset or constant shift explains them): logged t0s span "
                      f"{trace.first_t0}..{trace.last_t0}, F04 t0s {f04}"}


def compare_with_reference(log_path: Path, models: list[ModelUnderTest], datasets: dict[str, ReferenceDataset],
                           span: ReplaySpan, *, sample_windows: int | None, tolerance: float,
                           log_fix: str = "run the infer stage again",
                           package_fix: str = damaged_package_fix("<package_dir>")) -> dict:
    """The content of ``reference.json``: per objective how it was joined and sampled, per
    model the comparison of probabilities (``compared``, ``max_abs_diff``, ``mismatches``,
    ``first_mismatches``) and of decisions at the summary's threshold
    (``decision_mismatches``, ``first_decision_mismatches``; ``decision_borderline``: the
    windows whose reference probability is within the tolerance of the threshold, where
    either decision is right), the consistency of every logged decision with its logged
    probability (``decisions``), the coverage of the F04 windows in the replay, and when
    the join misses, its diagnosis.
    ``sample_windows``: compare every k-th matched F04 window, at least that many
    (None: all of them); ``tolerance``: the largest |server - reference| accepted;
    ``log_fix``, ``package_fix``: what to do about a log, a package file, missing or
    unreadable."""
    log_path = Path(log_path)
    if not log_path.is_file():
        raise ReferenceComparisonError(f"{log_path} is missing: {log_fix}")
    log = parquet_file(log_path, "the prediction log", log_fix, ReferenceComparisonError)
    for model in models:
        if model.objective not in datasets:
            raise ReferenceComparisonError(f"model {model.key}: no F04 dataset for objective {model.objective}")
    data = {objective: _Dataset(spec, package_fix) for objective, spec in datasets.items()}
    needs_events = any(not d.by_t0 for d in data.values())
    loaded = {m.key: ReferenceModel(m.key, m.model_path, m.summary_path) for m in models}

    # Pass 1 over the log: which F04 keys did each model get a prediction for.
    seen = {m.key: np.zeros(len(data[m.objective].unique), dtype=bool) for m in models}
    logged = {m.key: 0 for m in models}
    stride = max(1, log.metadata.num_rows // (len(models) * _TRACE_SAMPLE))
    traces = {m.key: _JoinTrace(span, stride) for m in models}
    for batch, rows in _log_batches(log, log_path, models, needs_events, with_answers=False):
        t0 = batch.column("t0").to_numpy(zero_copy_only=False).astype(np.int64)
        hashes = content_hashes(batch.column("OW_events")) if needs_events else None
        for model in models:
            mine = rows[model.key]
            logged[model.key] += len(mine)
            dataset = data[model.objective]
            at = dataset.locate(t0[mine] if dataset.by_t0 else hashes[mine])
            seen[model.key][at[at >= 0]] = True
            if dataset.by_t0:
                traces[model.key].add(t0[mine], at >= 0)

    # The sample: every k-th F04 key a model of its objective was matched to.
    objectives, samples = {}, {}
    for objective, dataset in data.items():
        mine = [m for m in models if m.objective == objective]
        is_matched = np.logical_or.reduce([seen[m.key] for m in mine]) if mine else np.zeros(0, bool)
        matched = int(is_matched.sum())
        stride = 1
        if sample_windows is not None and matched > sample_windows:
            stride = matched // sample_windows
        chosen = every_kth_true(is_matched, stride)
        samples[objective] = chosen
        objectives[objective] = {
            "join": dataset.join,
            "join_note": dataset.spec.join_note,
            "rows": int(len(dataset.keys)),
            "distinct_contents": None if dataset.by_t0 else int(len(dataset.unique)),
            "matched": matched,
            "compared": int(len(chosen)),
            "sampled": bool(stride > 1),
            "stride": int(stride),
            "in_replay": int(span.holds(dataset.keys).sum()) if dataset.by_t0 else None,
        }

    # The reference probabilities of the sample, from the F04 rows' own OW events.
    reference, events = _score_samples(data, samples, models, loaded)

    # Pass 2 over the log, every row: each decision against its own probability; at the
    # sampled keys, the server's probability and decision against the reference's.
    compared = {m.key: np.zeros(len(samples[m.objective]), dtype=bool) for m in models}
    max_diff = {m.key: 0.0 for m in models}
    bad = {m.key: 0 for m in models}
    first_bad = {m.key: [] for m in models}
    decided_wrong = {m.key: 0 for m in models}
    borderline = {m.key: 0 for m in models}
    first_decided_wrong = {m.key: [] for m in models}
    decisions = {m.key: _Decisions(loaded[m.key].threshold) for m in models}
    for batch, rows in _log_batches(log, log_path, models, needs_events, with_answers=True):
        t0 = batch.column("t0").to_numpy(zero_copy_only=False).astype(np.int64)
        probability = batch.column("probability").to_numpy(zero_copy_only=False).astype(np.float64)
        y_column = batch.column("y_pred")
        y_valid = y_column.is_valid().to_numpy(zero_copy_only=False)
        y_pred = y_column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int8)
        hashes = content_hashes(batch.column("OW_events")) if needs_events else None
        for model in models:
            mine, dataset, sample = rows[model.key], data[model.objective], samples[model.objective]
            decisions[model.key].add(t0[mine], probability[mine], y_pred[mine], y_valid[mine])
            at = dataset.locate(t0[mine] if dataset.by_t0 else hashes[mine])
            slot = index_in(sample, at)
            hit = (at >= 0) & (slot >= 0)
            if not hit.any():
                continue
            slot, served, mine = slot[hit], probability[mine][hit], mine[hit]
            expected = reference[model.key][slot]
            compared[model.key][slot] = True
            finite_s, finite_r = np.isfinite(served), np.isfinite(expected)
            diff = np.where(finite_s & finite_r, np.abs(served - expected), 0.0)
            wrong = (finite_s != finite_r) | (diff > tolerance)
            if (finite_s & finite_r).any():
                max_diff[model.key] = max(max_diff[model.key], float(diff.max()))
            bad[model.key] += int(wrong.sum())
            for i in np.flatnonzero(wrong)[:FIRST_SHOWN - len(first_bad[model.key])]:
                first_bad[model.key].append({
                    "t0": int(t0[mine[i]]),
                    "events": events[model.objective][int(slot[i])],
                    "server": _number(served[i]),
                    "reference": _number(expected[i]),
                })
            # the decision: null (no decision) where the probability is not finite
            threshold = loaded[model.key].threshold
            server_decides, server_decision = y_valid[mine], y_pred[mine]
            reference_decision = (expected >= threshold).astype(np.int8)
            # both decide, and the reference is within the tolerance of the threshold: either is right
            near = finite_r & server_decides & (np.abs(expected - threshold) <= tolerance)
            differ = (server_decides != finite_r) | (finite_r & (server_decision != reference_decision))
            borderline[model.key] += int((differ & near).sum())
            differ &= ~near
            decided_wrong[model.key] += int(differ.sum())
            for i in np.flatnonzero(differ)[:FIRST_SHOWN - len(first_decided_wrong[model.key])]:
                first_decided_wrong[model.key].append({
                    "t0": int(t0[mine[i]]),
                    "server_probability": _number(served[i]),
                    "reference_probability": _number(expected[i]),
                    "server_decision": int(server_decision[i]) if server_decides[i] else None,
                    "reference_decision": int(reference_decision[i]) if finite_r[i] else None,
                })

    result_models = {}
    for model in models:
        dataset = data[model.objective]
        coverage = {"measured": False, "in_replay": None, "missing": None, "first_missing_t0": [],
                    "reason": f"the F04 dataset of {model.objective} has no t0 ({dataset.spec.join_note}): "
                              "which of its windows the replay should reach is unknown"}
        if dataset.by_t0:
            row_seen = dataset.per_row(seen[model.key])
            in_replay = span.holds(dataset.keys)
            missing = in_replay & ~row_seen
            coverage = {"measured": True, "in_replay": int(in_replay.sum()),
                        "missing": int(missing.sum()),
                        "first_missing_t0": [int(t) for t in np.sort(dataset.keys[missing])[:FIRST_SHOWN]],
                        "reason": ""}
        diagnosis = (diagnose_join(traces[model.key], logged[model.key], dataset.unique, model.objective)
                     if dataset.by_t0 or logged[model.key] == 0 else None)
        result_models[model.key] = {
            "objective": model.objective,
            "logged": logged[model.key],
            "matched": int(seen[model.key].sum()),
            "sample": int(len(samples[model.objective])),
            "compared": int(compared[model.key].sum()),
            "max_abs_diff": max_diff[model.key],
            "mismatches": bad[model.key],
            "first_mismatches": first_bad[model.key],
            "reference_non_finite": int((~np.isfinite(reference[model.key])).sum()),
            "threshold": loaded[model.key].threshold,
            "threshold_source": loaded[model.key].threshold_source,
            "decision_mismatches": decided_wrong[model.key],
            "decision_borderline": borderline[model.key],
            "first_decision_mismatches": first_decided_wrong[model.key],
            "decisions": decisions[model.key].summary(),
            "coverage": coverage,
            "join_diagnosis": diagnosis,
        }
    return {"tolerance": tolerance, "sample_windows": sample_windows,
            "replay_span": {"first": span.first, "last": span.last, "ow_seconds": span.ow_seconds,
                            "origin": span.origin, "tu": span.tu},
            "objectives": objectives, "models": result_models}


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _score_samples(data: dict[str, _Dataset], samples: dict[str, np.ndarray], models: list[ModelUnderTest],
                   loaded: dict[str, ReferenceModel]):
    """Per model the reference probability of each sampled key, and per objective the
    sampled windows' events (for naming a mismatch)."""
    reference, events = {}, {}
    for objective, dataset in data.items():
        rows = np.sort(dataset.first_rows(samples[objective]))
        # sample is sorted by key; rows come back in row order: map each row to its slot.
        slot_of_row = {int(row): slot for slot, row in enumerate(dataset.first_rows(samples[objective]))}
        windows: list[list[int] | None] = [None] * len(rows)
        start = 0
        for batch in _batches(dataset.file, ["OW_events"]):
            stop = start + batch.num_rows
            lo, hi = np.searchsorted(rows, [start, stop])
            if hi > lo:
                taken = batch.column("OW_events").take(pa.array(rows[lo:hi] - start)).to_pylist()
                for row, ow in zip(rows[lo:hi], taken):
                    windows[slot_of_row[int(row)]] = [int(code) for code in (ow or [])]
            start = stop
        events[objective] = windows
        for model in (m for m in models if m.objective == objective):
            reference[model.key] = loaded[model.key].predict(windows)
    return reference, events


def describe_mismatch(first: dict) -> str:
    events = first["events"]
    shown = " ".join(map(str, events[:12])) + (" ..." if len(events) > 12 else "")
    return f"t0 {first['t0']} [{shown}]: server {first['server']}, reference {first['reference']}"


def compare_run(run) -> dict:
    """The comparison of an F07 run (a ``DeployRun``): the prediction log its infer stage
    wrote (complete, or partial after a runtime fault) against its manifest's models on
    its package's F04 datasets, as ``deployrun.<v>.reference`` says."""
    models, datasets, span = run_inputs(run.manifest)
    return compare_with_reference(run.predictions_path, models, datasets, span,
                                  sample_windows=run.settings.reference_sample,
                                  tolerance=run.settings.reference_tolerance, log_fix=run.stage_fix("infer"),
                                  package_fix=run.package_fix)


def describe(result: dict) -> str:
    """A line per model for the stage's output."""
    lines = []
    for key, model in result["models"].items():
        objective = result["objectives"][model["objective"]]
        how = f"sample, 1 in {objective['stride']}" if objective["sampled"] else "all"
        coverage = model["coverage"]
        missing = f"{coverage['missing']} F04 windows of the replay missing" if coverage["measured"] \
            else "coverage not measured"
        decisions = model["decisions"]
        lines.append(f"  {key}: {model['compared']} windows compared ({how}, join {objective['join']}), "
                     f"{model['mismatches']} differ, max |diff| {model['max_abs_diff']:.3g}, "
                     f"{model['decision_mismatches']} decisions differ at threshold {model['threshold']}; "
                     f"{decisions['inconsistent']} of {decisions['rows']} logged decisions disagree with their "
                     f"probability; {missing}")
        if model["join_diagnosis"]:
            lines.append(f"    join: {model['join_diagnosis']['detail']}")
    return "\n".join(lines)
