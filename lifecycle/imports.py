"""`make import6`: the upstream variants an F06 package needs, taken by `dvc import` from
the upstream's own git + DVC repository, so that each folder keeps where it came from (the
``.dvc`` import file records the repository and the revision DVC resolved) and `dvc update`
follows a new upstream version.

The lineage F05 -> F04 -> F03 -> F02 is read from the upstream's own ``params.yaml`` files
(``parent_variant``) at the asked revision, through DVC's file system over that repository,
before anything is imported: a variant it does not have, or F05 variants that do not share
one F02, is refused with nothing written.
"""
from __future__ import annotations

import sys

import yaml

from contract import layout
from f06_packaging.lineage import PARENT_PHASE
from lifecycle import tools
from lifecycle.project import LifecycleError, Project, check_variant_id


def _upstream_fs(repo: str, rev: str | None):
    """DVC's read-only file system over ``repo`` at ``rev``; refused when it is not a DVC
    repository or the revision does not exist there."""
    from dvc.api import DVCFileSystem
    from dvc.scm import CloneError, RevError

    where = f"UPSTREAM_REPO={repo}" + (f" UPSTREAM_REV={rev}" if rev else "")
    try:
        fs = DVCFileSystem(repo, rev=rev)
        dvc_dir = fs.repo.dvc_dir   # opening the repository at that revision is lazy
    except RevError:
        raise LifecycleError(f"{where}: revision {rev!r} does not exist in that repository; "
                             f"give a branch, tag or commit it has (or leave UPSTREAM_REV empty)") from None
    except CloneError:
        raise LifecycleError(f"{where}: not a git repository DVC can open; give the upstream's "
                             f"path or git URL") from None
    if dvc_dir is None:
        raise LifecycleError(f"{where}: not a DVC repository (no .dvc/ at that revision); give the "
                             f"upstream project's git + DVC repository")
    return fs


def _parent(fs, phase: str, variant: str, asked_by: str) -> str:
    folder = layout.variant_dir(phase, variant).as_posix()
    if not fs.isdir(folder):
        raise LifecycleError(f"{asked_by}: the upstream has no {layout.PHASE_LABEL[phase]} variant {variant} "
                             f"({folder}/ is not in that repository at that revision); check the variant "
                             f"ids and UPSTREAM_REV")
    params_file = f"{folder}/{layout.PARAMS_FILE}"
    if not fs.isfile(params_file):
        raise LifecycleError(f"{asked_by}: the upstream's {params_file} is missing, so the lineage of "
                             f"{variant} cannot be followed")
    parent = (yaml.safe_load(fs.read_text(params_file)) or {}).get("parent_variant")
    if not layout.is_variant_id(parent):
        raise LifecycleError(f"{asked_by}: the upstream's {params_file}: key 'parent_variant' must be a "
                             f"variant id like 'v401', got {parent!r}")
    return parent


def upstream_folders(fs, f05_variants: list[str]) -> list[tuple[str, str]]:
    """``(phase folder, variant)`` of every upstream folder the F05 variants derive from,
    F05 to F02, read from the upstream's params files; exactly one F02 or refused."""
    found, f02 = set(), {}
    for f05 in f05_variants:
        phase, current = layout.F05, f05
        found.add((phase, current))
        while phase in PARENT_PHASE:
            current = _parent(fs, phase, current, f"F05 {f05}")
            phase = PARENT_PHASE[phase]
            found.add((phase, current))
        if not fs.isdir(layout.variant_dir(phase, current).as_posix()):
            raise LifecycleError(f"F05 {f05}: the upstream has no F02 variant {current} "
                                 f"({layout.variant_dir(phase, current).as_posix()}/ is missing)")
        f02[f05] = current
    if len(set(f02.values())) != 1:
        paths = ", ".join(f"F05 {f05} -> F02 {source}" for f05, source in sorted(f02.items()))
        raise LifecycleError(f"PARENTS_F05 derive from {len(set(f02.values()))} F02 variants ({paths}); a package "
                             f"replays one event stream: import F05 variants that share one F02")
    return sorted(found)


def import_upstream(project: Project, repo: str, rev: str, parents: str) -> list[tuple[str, str]]:
    """`dvc import` every upstream folder the F05 ``parents`` (space-separated) need that is
    not imported yet; returns the folders imported."""
    if not repo:
        raise LifecycleError("UPSTREAM_REPO is empty: give the upstream's git + DVC repository "
                             "(a path or a git URL)")
    f05_variants = parents.split()
    if not f05_variants:
        raise LifecycleError('PARENTS_F05 is empty: name the F05 variants to import, e.g. PARENTS_F05="v501 v502"')
    for variant in f05_variants:
        check_variant_id(variant, "PARENTS_F05")
    folders = upstream_folders(_upstream_fs(repo, rev or None), f05_variants)
    executions = project.root / layout.EXECUTIONS
    todo = []
    for phase, variant in folders:
        target = layout.variant_dir(phase, variant)
        if (project.root / layout.import_file(phase, variant)).is_file():
            print(f"{target}: already imported ({layout.import_file(phase, variant)}); "
                  f"`dvc update {layout.import_file(phase, variant)}` follows the upstream")
        elif layout.variant_dir(phase, variant, executions).exists():
            raise LifecycleError(f"{target} already exists here and was not imported (a demo output or a "
                                 f"hand copy): remove it or import other variant ids; nothing was imported")
        else:
            todo.append((phase, variant))
    for phase, variant in todo:
        path = layout.variant_dir(phase, variant).as_posix()
        print(f"importing {layout.PHASE_LABEL[phase]} {variant} from {repo}", file=sys.stderr)
        (executions / phase).mkdir(parents=True, exist_ok=True)  # DVC writes the .dvc file there
        tools.dvc(project, "import", repo, path, "--out", path, *(("--rev", rev) if rev else ()))
    return todo
