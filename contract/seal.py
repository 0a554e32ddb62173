"""The seal of an F06 package: proof that a package is byte for byte what was packaged.

Every file of the package gets a sha256, and one digest covers all of them plus the
metadata itself. The metadata file cannot hold its own hash, so its body (the JSON
without the ``seal`` key, in canonical form) is hashed instead: editing the lineage, the
regime or a threshold in ``06_packaging_metadata.json`` breaks the seal just as editing a
model does. ``.gitignore`` files that DVC writes beside its outputs, ``timing.json``
(wall-clock figures, kept out of every hash on purpose) and ``lineage/`` (the digests of
the upstream folders, which tell DVC when to rebuild, not what was packaged) are not part
of the package.

Standard library only (and the layout): the server verifies the seal before it loads anything.

    python -m contract.seal verify executions/06_packaging/v601
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from contract.layout import LINEAGE_DIR, PACKAGE_METADATA, TIMING

NOT_SEALED = {PACKAGE_METADATA, ".gitignore", TIMING}
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _body_sha256(metadata: dict) -> str:
    body = {key: value for key, value in metadata.items() if key != "seal"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _digest(files: dict[str, str], metadata_sha256: str) -> str:
    lines = [f"{sha}  {path}\n" for path, sha in sorted(files.items())]
    lines.append(f"{metadata_sha256}  {PACKAGE_METADATA}#body\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def package_files(package_dir: Path) -> dict[str, str]:
    """sha256 of every file under the package, keyed by its POSIX path relative to it."""
    package_dir = Path(package_dir)
    return {
        path.relative_to(package_dir).as_posix(): sha256_file(path)
        for path in sorted(package_dir.rglob("*"))
        if path.is_file() and path.name not in NOT_SEALED
        and path.relative_to(package_dir).parts[0] != LINEAGE_DIR
    }


def seal_package(package_dir, metadata: dict) -> dict:
    """Return ``metadata`` with its ``seal`` filled from the files now in ``package_dir``."""
    files = package_files(Path(package_dir))
    unsealed = {key: value for key, value in metadata.items() if key != "seal"}
    body = _body_sha256(unsealed)
    return {**unsealed, "seal": {
        "algorithm": "sha256",
        "files": files,
        "metadata_sha256": body,
        "digest": _digest(files, body),
    }}


@dataclass
class SealCheck:
    package_dir: str
    digest: str | None = None
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.problems)

    def describe(self) -> str:
        if self.ok:
            return f"seal verified: {self.package_dir} (digest {self.digest})"
        lines = [f"seal does NOT verify: {self.package_dir}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  changed: {p}" for p in self.changed]
        lines += [f"  missing: {p}" for p in self.missing]
        lines += [f"  extra:   {p}" for p in self.extra]
        lines.append("  rebuild the package (dvc repro the seal_package stage) "
                     "or restore it (dvc checkout)")
        return "\n".join(lines)


def verify_seal(package_dir) -> SealCheck:
    """Recompute every hash and compare with the seal recorded in the metadata."""
    package_dir = Path(package_dir)
    check = SealCheck(package_dir=str(package_dir))
    metadata_path = package_dir / PACKAGE_METADATA
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        seal = metadata["seal"]
        recorded, recorded_body, recorded_digest = seal["files"], seal["metadata_sha256"], seal["digest"]
    except FileNotFoundError:
        check.problems.append(f"{PACKAGE_METADATA} is missing: this folder is not a sealed package")
        return check
    except (ValueError, KeyError, TypeError) as error:
        check.problems.append(f"{PACKAGE_METADATA} has no readable seal ({error!r})")
        return check
    check.digest = recorded_digest
    actual = package_files(package_dir)
    check.changed = sorted(p for p in recorded if p in actual and actual[p] != recorded[p])
    check.missing = sorted(p for p in recorded if p not in actual)
    check.extra = sorted(p for p in actual if p not in recorded)
    if _body_sha256(metadata) != recorded_body:
        check.changed.append(f"{PACKAGE_METADATA} (its content, outside the seal)")
    if _digest(recorded, recorded_body) != recorded_digest:
        check.problems.append("the recorded digest does not match the recorded file hashes")
    return check


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contract.seal", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify a package's seal; exit 1 naming each difference")
    verify.add_argument("package_dir")
    args = parser.parse_args(argv)
    check = verify_seal(args.package_dir)
    print(check.describe(), file=sys.stdout if check.ok else sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
