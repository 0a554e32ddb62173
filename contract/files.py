"""How this project writes files: stable bytes, and never a half-written output.

Every tracked output must come out byte-identical on a re-run (that is what lets
`dvc repro` stop early), and a stage that fails must not leave a file that looks
complete. So JSON has one canonical form, and every file or folder is written beside its
destination under a temporary name and renamed into place only once it is whole; what
a killed writer left under such a name is removed by the next write of that file.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path


def dump_json(data) -> str:
    """The one JSON form of every file this project writes: sorted keys, stable bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def remove_stale_temporaries(folder, name: str | None = None) -> None:
    """Remove what interrupted atomic writes left in ``folder`` (their scratch
    ``.<name>.<random>.tmp``, file or folder; of ``name`` only, when given). A process
    killed mid-write (SIGKILL, the machine stopping) runs no cleanup, and its scratch
    would otherwise stay inside a tracked output for good, changing its bytes."""
    folder = Path(folder)
    pattern = f".{glob.escape(name)}.*.tmp" if name else ".*.tmp"
    for stale in folder.glob(pattern) if folder.is_dir() else ():
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    # created as every other output file is (0666 less the umask), not as tempfile's
    # private 0600: one rule for JSON, parquet, CSV and HTML alike
    scratch = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(scratch, "x", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def write_json_atomic(path, data) -> None:
    write_text_atomic(path, dump_json(data))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` (file or folder) and move it into place
    when the block succeeds; on failure remove it and leave ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = scratch / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(target, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
