"""Opening a parquet file that another stage or phase wrote, as every reader of this
project does: a file cut short (a copy or a write interrupted, a disk that filled), not
parquet at all, or damaged inside (bytes overwritten in a data page) is an error the user
can fix, one line naming the file, what is wrong and how to get it back, not pyarrow's
traceback.

The footer (schema, row groups) is read on opening, so a file that opens is one whose end
was written. Its data pages are decoded only as the caller streams batches or row groups,
deep in a stage: the object returned turns a failure there into the caller's error, so
that no reader has to.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from contract.errors import UserError

# How this project writes the parquet files other stages read (the replay, the recovered
# t0, the prediction log): with a CRC of each page, verified on reading (``parquet_file``),
# so that damaged bytes that still decode (a float's digits, an event code) are an error,
# not a wrong verdict. bench/bench_page_checksums.py, 1 M log rows: write 0.99-1.22x over
# three runs (at most +0.1 s a million rows), read 0.88-0.92x, bytes +0.02%. Upstream's
# files carry no CRC: nothing is verified there.
WRITER_OPTIONS = {"write_page_checksum": True}

# what pyarrow raises on bytes it cannot decode: ArrowInvalid, ArrowIOError (an OSError),
# ArrowNotImplementedError (a mangled encoding or codec id)
UNREADABLE = (pa.ArrowException, OSError)


def damaged_package_fix(package_dir, package: str | None = None) -> str:
    """What to do about an unreadable file of a sealed package (F07 reads its replay and
    F04 datasets)."""
    rebuild = f" or rebuild it (`dvc repro seal_package@{package}`)" if package else " or rebuild it"
    return (f"verify the package (`python -m contract.seal verify {package_dir}`), then restore it "
            f"(`dvc checkout`){rebuild}")


@contextmanager
def _unreadable_as(error: type[UserError], where: str, path: Path, what: str, fix: str):
    try:
        yield
    except MemoryError:  # pa.ArrowMemoryError: the machine's limit, not the file's fault
        raise
    except UNREADABLE as problem:
        reason = " ".join(str(problem).split())  # pyarrow's message can span lines
        raise error(f"{where}: {path} is not a readable parquet file ({reason}); {what}: {fix}") from None


class CheckedParquetFile(pq.ParquetFile):
    """A ``pq.ParquetFile`` whose reads (``iter_batches``, ``read_row_group(s)``, ``read``)
    raise the caller's ``error`` naming ``where``, the file and ``fix`` when a data page
    does not decode or does not match its CRC."""

    def __init__(self, path: Path, where: str, fix: str, error: type[UserError]):
        super().__init__(path, pre_buffer=False, page_checksum_verification=True)
        self._damaged = lambda: _unreadable_as(error, where, path, "it is damaged inside (its footer reads, "
                                                                   "its data does not)", fix)

    def iter_batches(self, *args, **kwargs):
        with self._damaged():
            batches = super().iter_batches(*args, **kwargs)
        return self._checked(batches)

    def _checked(self, batches):
        with self._damaged():
            yield from batches

    def read_row_group(self, *args, **kwargs) -> pa.Table:
        with self._damaged():
            return super().read_row_group(*args, **kwargs)

    def read_row_groups(self, *args, **kwargs) -> pa.Table:
        with self._damaged():
            return super().read_row_groups(*args, **kwargs)

    def read(self, *args, **kwargs) -> pa.Table:
        with self._damaged():
            return super().read(*args, **kwargs)


def parquet_file(path: Path, where: str, fix: str, error: type[UserError] = UserError) -> CheckedParquetFile:
    """``path`` opened as parquet (``pre_buffer`` off: one row group is held at a time);
    an unreadable one raises ``error`` (the caller's family) naming ``where`` it belongs,
    the file and ``fix``: on opening when its footer does not read, on reading when a data
    page does not."""
    with _unreadable_as(error, where, path, "it is truncated or not parquet", fix):
        return CheckedParquetFile(path, where, fix, error)
