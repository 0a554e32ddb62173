"""The default DVC remote is shared by clones: what one clone pushes, another clone of the
git repo pulls, and it comes out complete (`dvc status` clean) and sealed.

The committed .dvc/config names a folder under the user's ~/.cache, outside every clone;
HOME points at a temporary folder here so the test never writes to the real one."""
from __future__ import annotations

import sys

from tests.conftest import run

PACKAGE = "executions/06_packaging/v601"
UP_TO_DATE = "Data and pipelines are up to date."


def test_a_push_from_one_clone_is_pulled_by_another(project_copy, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (project_copy / ".dvc" / "config.local").unlink()  # the committed default remote, as a fresh clone has it
    storage = home / ".cache" / "mlops4ofp-f06-f07" / "dvc-storage"
    clone = tmp_path / "elsewhere" / "clone"
    run(["git", "clone", "-q", str(project_copy), str(clone)], tmp_path)

    # Before the push the remote holds nothing: the clone cannot get the data.
    refused = run([sys.executable, "-m", "dvc", "pull"], clone, check=False)
    assert refused.returncode != 0 and "missing" in (refused.stdout + refused.stderr).lower()
    assert UP_TO_DATE not in run([sys.executable, "-m", "dvc", "status"], clone).stdout

    run([sys.executable, "-m", "dvc", "push"], project_copy)
    assert any((storage / "files" / "md5").iterdir()), f"nothing pushed to {storage}"
    assert not str(storage).startswith(str(project_copy))

    run([sys.executable, "-m", "dvc", "pull"], clone)
    assert run([sys.executable, "-m", "dvc", "status"], clone).stdout.strip() == UP_TO_DATE
    verified = run([sys.executable, "-m", "contract.seal", "verify", PACKAGE], clone, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
