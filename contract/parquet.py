"""Opening a parquet file that another stage or phase wrote, as every reader of this
project does: a file cut short (a copy or a write interrupted, a disk that filled) or not
parquet at all is an error the user can fix, one line naming the file, what is wrong and
how to get it back, not pyarrow's traceback.

The footer (schema, row groups) is read here, so a file that opens is one whose end was
written; the caller streams its batches from the object returned.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contract.errors import UserError


def damaged_package_fix(package_dir, package: str | None = None) -> str:
    """What to do about an unreadable file of a sealed package (F07 reads its replay and
    F04 datasets)."""
    rebuild = f" or rebuild it (`dvc repro seal_package@{package}`)" if package else " or rebuild it"
    return (f"verify the package (`python -m contract.seal verify {package_dir}`), then restore it "
            f"(`dvc checkout`){rebuild}")


def parquet_file(path: Path, where: str, fix: str, error: type[UserError] = UserError) -> pq.ParquetFile:
    """``path`` opened as parquet (``pre_buffer`` off: one row group is held at a time);
    an unreadable one raises ``error`` (the caller's family) naming ``where`` it belongs,
    the file and ``fix``."""
    try:
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as problem:
        raise error(f"{where}: {path} is not a readable parquet file ({problem}); it is truncated or "
                    f"not parquet: {fix}") from None
