"""A virtual environment holding exactly the distributions ``pip install -r
requirements-runtime.txt`` installs, built in about a second without a registry.

pip would download and unpack ~600 MB (TensorFlow) per test run. These are the same
pinned distributions already installed in the environment running the tests, so the new
venv's ``site-packages`` gets a symlink for every file their ``RECORD`` lists: the pinned
requirements and, recursively, each one's own requirements (markers evaluated, extras not
followed, as pip does), and nothing else. A file is linked one by one, never a whole
folder, because folders are shared: ``google/`` holds protobuf's code beside packages that
are not in the runtime. No ``--system-site-packages``, no ``.pth`` to the test
environment: an import of anything outside the runtime fails there as in a fresh install.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def pinned_requirements(path: Path) -> list[Requirement]:
    """The requirements of a pinned requirements file (comments and blank lines skipped)."""
    requirements = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if line.startswith("-"):
                raise ValueError(f"{path}: {line!r}: only pinned requirements are expected here")
            requirements.append(Requirement(line))
    return requirements


def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements need, by canonical name; raises if
    one is missing or installed at a version its requirement excludes."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if name in found:
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{requirement} is not installed in {sys.prefix}; "
                               "run `make setup`") from None
        if not requirement.specifier.contains(distribution.version, prereleases=True):
            raise RuntimeError(f"{requirement}: {sys.prefix} has {distribution.version}; "
                               "run `make setup`")
        found[name] = distribution
        pending += [Requirement(text) for text in distribution.requires or ()]
    return found


def link_venv(target: Path, requirements_file: Path) -> Path:
    """A venv at ``target`` holding exactly the closure of ``requirements_file``, linked
    from this interpreter's environment; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = Path(sysconfig.get_path("purelib")).resolve()
    for distribution in closure(pinned_requirements(requirements_file)).values():
        for file in distribution.files or ():
            source = Path(distribution.locate_file(file)).resolve()
            if not source.is_relative_to(ours) or not source.exists():
                continue  # scripts under bin/, files RECORD lists but that are gone
            link = site / source.relative_to(ours)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(source, link)
    return python
