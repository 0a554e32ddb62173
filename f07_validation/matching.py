"""Give each logged prediction its reference label from its objective's F04 dataset.

CONTRACT: a prediction has a reference when its window is in the F04 dataset, matched by
`t0` when the dataset has that column, otherwise by OW content. Real upstream F04 files
carry no `t0`, and the same OW content can occur in several windows with different
labels; such a content cannot give a label, so those predictions are counted as
ambiguous and kept out of the confusion matrix rather than guessed.

OW contents are compared exactly (same codes, same order) through a text key built by
Arrow in one vectorised pass (`"3 17 17"`; `""` for an empty window), which also makes
int32 (F04) and int64 (log) lists compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from f07_validation.deployrun import DeployRunError

JOIN_T0 = "t0"
JOIN_T0_RECOVERED = "t0_recovered"  # F06 recomputed F03 and every row's OW matched
JOIN_OW_CONTENT = "ow_content"
BY_T0 = (JOIN_T0, JOIN_T0_RECOVERED)

REFERENCED = "referenced"
NO_REFERENCE = "no_reference"
AMBIGUOUS = "ambiguous"


def ow_content_keys(lists: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Exact text key of each OW event list (codes in order, space-separated)."""
    as_text = pc.cast(lists, pa.list_(pa.string()))
    return pc.binary_join(as_text, " ")


@dataclass(frozen=True)
class Reference:
    """An objective's F04 labels, keyed the way predictions are matched to them."""

    objective: str
    join: str  # JOIN_T0, JOIN_T0_RECOVERED or JOIN_OW_CONTENT
    # by t0: columns t0, label, ref_ow_key (one row per window).
    # JOIN_OW_CONTENT: columns ow_key, label (NA when ambiguous), ambiguous (one row per content).
    table: pd.DataFrame
    rows: int
    positives: int
    ambiguous_contents: int


def load_reference(path: Path, objective: str, input_column: str, label_column: str,
                   recovered_t0: Path | None = None) -> Reference:
    """Read an F04 dataset and index it for matching; refuses labels other than 0/1 and
    (in t0 mode) a `t0` that occurs twice, since either would make a metric meaningless.
    A dataset without `t0` takes the one F06 recovered for it (`recovered_t0`), when F06
    could prove it row by row."""
    if not path.exists():
        raise DeployRunError(
            f"{path} (reference of objective {objective}) is missing: the package is "
            f"incomplete; check it with `python -m contract.seal verify <package_dir>`"
        )
    schema = pq.read_schema(path)
    has_t0 = "t0" in schema.names
    missing = sorted({input_column, label_column} - set(schema.names))
    if missing:
        raise DeployRunError(
            f"{path} (reference of objective {objective}) lacks columns {missing}; the "
            f"manifest names input_column={input_column!r}, label_column={label_column!r}"
        )
    columns = [input_column, label_column] + (["t0"] if has_t0 else [])
    table = pq.read_table(path, columns=columns)
    if table[input_column].null_count or table[label_column].null_count:
        raise DeployRunError(f"{path} has null {input_column} or {label_column} values")
    labels = table[label_column].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise DeployRunError(
            f"{path} column {label_column} holds values other than 0/1: "
            f"{sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]}"
        )
    labels = labels.astype(np.int8)
    keys = ow_content_keys(table[input_column]).to_numpy(zero_copy_only=False)
    rows, positives = len(labels), int(labels.sum())
    join = JOIN_T0
    if not has_t0 and recovered_t0 is not None:
        t0 = pq.read_table(recovered_t0, columns=["t0"])["t0"].to_numpy()
        if len(t0) != rows:
            raise DeployRunError(f"{recovered_t0} holds {len(t0)} t0 values for the {rows} rows of {path}; "
                                 "rebuild the package (seal_package stage)")
        table = table.append_column("t0", pa.array(t0, pa.int64()))
        has_t0, join = True, JOIN_T0_RECOVERED
    if has_t0:
        t0 = table["t0"].to_numpy().astype(np.int64)
        duplicated = pd.Series(t0).duplicated()
        if duplicated.any():
            raise DeployRunError(
                f"{path} has {int(duplicated.sum())} repeated t0 values (first: "
                f"{int(t0[duplicated.to_numpy()][0])}); an F04 dataset has one row per window"
            )
        frame = pd.DataFrame({"t0": t0, "label": labels, "ref_ow_key": keys})
        return Reference(objective, join, frame, rows, positives, 0)
    by_content = (
        pd.DataFrame({"ow_key": keys, "label": labels})
        .groupby("ow_key", sort=True)["label"]
        .agg(["min", "max"])
    )
    ambiguous = by_content["min"] != by_content["max"]
    frame = pd.DataFrame({
        "ow_key": by_content.index.to_numpy(),
        "label": pd.array(by_content["min"].to_numpy(), dtype="Int8"),
        "ambiguous": ambiguous.to_numpy(),
    })
    frame.loc[frame["ambiguous"], "label"] = pd.NA
    return Reference(objective, JOIN_OW_CONTENT, frame, rows, positives, int(ambiguous.sum()))


def match_references(predictions: pa.Table, references: dict[str, Reference]) -> pd.DataFrame:
    """The prediction log (one row per window and model, in log order) with
    `ref_status` (REFERENCED / NO_REFERENCE / AMBIGUOUS), `label` (Int8, NA unless
    referenced) and `ow_mismatch` (t0 mode only: the window at that t0 in F04 has other
    OW events, i.e. the package's regime does not reproduce F03's windows). Rows of an
    objective without a reference stay NO_REFERENCE; callers check the log's models first."""
    ow_key = ow_content_keys(predictions["OW_events"]).to_numpy(zero_copy_only=False)
    frame = predictions.drop_columns(["OW_events"]).to_pandas(
        types_mapper={pa.int8(): pd.Int8Dtype()}.get
    )
    frame["ow_key"] = ow_key
    frame["label"] = pd.Series(pd.NA, index=frame.index, dtype="Int8")
    frame["ref_status"] = NO_REFERENCE
    frame["ow_mismatch"] = False
    for objective, reference in references.items():
        rows = frame.index[frame["objective"] == objective]
        if reference.join in BY_T0:
            found = frame.loc[rows, ["t0", "ow_key"]].merge(
                reference.table, on="t0", how="left", validate="many_to_one"
            )
            has_ref = found["label"].notna().to_numpy()
            mismatch = has_ref & (found["ow_key"].to_numpy() != found["ref_ow_key"].to_numpy())
            frame.loc[rows, "ow_mismatch"] = mismatch
            ambiguous = np.zeros(len(rows), dtype=bool)
        else:
            found = frame.loc[rows, ["ow_key"]].merge(
                reference.table, on="ow_key", how="left", validate="many_to_one"
            )
            ambiguous = found["ambiguous"].eq(True).to_numpy()
            has_ref = found["label"].notna().to_numpy()
        frame.loc[rows, "label"] = found["label"].astype("Int8").array
        frame.loc[rows, "ref_status"] = np.where(
            ambiguous, AMBIGUOUS, np.where(has_ref, REFERENCED, NO_REFERENCE)
        )
    return frame
