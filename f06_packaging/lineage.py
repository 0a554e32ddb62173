"""The upstream folders an F06 variant derives from, which are its only upstream DVC
dependencies.

DVC cannot interpolate a list into a stage's deps, and an F06 variant derives from a list
of upstream variants (its F05 runs, their F04 objectives, F03 windows and the one F02).
So the list is written out in ``dvc_deps.yaml`` (``contract.dvc_deps``), one entry per
(F06 variant, upstream folder); the ``lineage`` stage turns each entry into a digest file
inside the variant's folder (``lineage/<phase>_<variant>.json``, not sealed), and the F06
stages depend on that folder. Adding or changing an unrelated upstream variant then
changes no digest of this variant, and leaves it and its F07 runs up to date.

The list is resolved from each upstream variant's ``params.yaml`` (``parent_variant``)
and, for a demo variant not built yet, from the ``demo:`` section of the project's
params.yaml, so that it can be written before the upstream exists (a fresh clone).
Every F06 stage checks the list against the plan it builds and refuses to run on a stale
one, naming the command that rewrites it.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from contract import dvc_deps, layout
from contract.errors import UserError
from contract.files import write_json_atomic
from contract.seal import sha256_file
from f06_packaging.plan import PackagePlan, build_plan

# which demo: section describes each upstream phase (demo/dvc.yaml builds them)
DEMO_SECTIONS = {layout.F02: "f02", layout.F03: "f03", layout.F04: "f04", layout.F05: "f05"}
PARENT_PHASE = {layout.F05: layout.F04, layout.F04: layout.F03, layout.F03: layout.F02}
NOT_DIGESTED = {".gitignore", layout.TIMING}


class LineageError(UserError):
    """The upstream lineage of an F06 variant cannot be resolved, or dvc_deps.yaml does not
    list it as it is; the message names the variant, the key and the fix."""


def _parent(executions: Path, demo: dict, phase: str, variant: str, asked_by: str) -> str:
    params_file = layout.variant_dir(phase, variant, executions) / layout.PARAMS_FILE
    if params_file.is_file():
        parent = (yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}).get("parent_variant")
    else:
        parent = ((demo.get(DEMO_SECTIONS[phase]) or {}).get(variant) or {}).get("parent_variant")
        if parent is None:
            raise LineageError(f"{asked_by}: {layout.PHASE_LABEL[phase]} variant {variant} has no {params_file} "
                               f"and no demo.{DEMO_SECTIONS[phase]}.{variant} entry in params.yaml; build or "
                               f"pull the upstream first (`dvc repro` or `dvc pull`)")
    if not layout.is_variant_id(parent):
        raise LineageError(f"{asked_by}: {params_file}: key 'parent_variant' must be a variant id like 'v401', "
                           f"got {parent!r}")
    return parent


def upstream_of(variant: str, entry: dict, executions=layout.EXECUTIONS, demo: dict | None = None
                ) -> list[tuple[str, str]]:
    """``(phase folder, upstream variant)`` of every upstream folder the F06 ``variant``
    (its ``packaging`` entry) derives from, sorted; the replay's F02 included."""
    where = f"packaging.{variant}"
    parents = entry.get("parent_variants_f05") if isinstance(entry, dict) else None
    if not isinstance(parents, list) or not all(layout.is_variant_id(p) for p in parents):
        raise LineageError(f"{where}.parent_variants_f05 must list F05 variant ids, got {parents!r}")
    found = set()
    for f05 in parents:
        phase, current = layout.F05, f05
        found.add((phase, current))
        while phase in PARENT_PHASE:
            current = _parent(Path(executions), demo or {}, phase, current, f"{where} (F05 {f05})")
            phase = PARENT_PHASE[phase]
            found.add((phase, current))
    source = ((entry.get("replay") or {}).get("source") or {}).get("dataset_id")
    if layout.is_variant_id(source):
        found.add((layout.F02, source))
    return sorted(found)


def entries(variant: str, entry: dict, executions=layout.EXECUTIONS, demo: dict | None = None) -> dict:
    """dvc_deps.yaml's ``lineage`` entries of the F06 ``variant``."""
    return {dvc_deps.lineage_key(variant, phase, upstream): {"variant": variant, "phase": phase, "upstream": upstream}
            for phase, upstream in upstream_of(variant, entry, executions, demo)}


def declared(variant: str, deps_file=layout.DVC_DEPS_FILE) -> list[tuple[str, str]]:
    """What dvc_deps.yaml lists for ``variant``, sorted."""
    return sorted((item["phase"], item["upstream"]) for item in dvc_deps.read(deps_file)["lineage"].values()
                  if item.get("variant") == variant)


def check_declared(variant: str, plan_lineage, deps_file=layout.DVC_DEPS_FILE) -> None:
    """Refuse to build ``variant`` when dvc_deps.yaml does not list exactly the upstream
    folders its plan reads: the stage's DVC dependencies would be wrong. Without the file
    there is nothing to check: DVC cannot have run the stage (dvc.yaml reads it)."""
    if not Path(deps_file).is_file():
        return
    actual = sorted({(layout.F05, m) for m in plan_lineage.modeling}
                    | {(layout.F04, o) for o in plan_lineage.objectives}
                    | {(layout.F03, w) for w in plan_lineage.window_sets}
                    | {(layout.F02, e) for e in plan_lineage.event_streams})
    listed = declared(variant, deps_file)
    if listed != actual:
        raise LineageError(f"{deps_file} lists the upstream of packaging.{variant} as "
                           f"{[f'{p}/{v}' for p, v in listed] or 'nothing'}, but its plan reads "
                           f"{[f'{p}/{v}' for p, v in actual]}: the stage's DVC dependencies would be wrong; "
                           f"rewrite it with `python -m lifecycle deps` (make deps) and run again")


def checked_plan(variant: str, params: dict, executions=layout.EXECUTIONS,
                 deps_file=layout.DVC_DEPS_FILE) -> PackagePlan:
    """The F06 variant's plan, once dvc_deps.yaml is known to list exactly the upstream
    folders it reads: what every F06 stage starts with."""
    plan = build_plan(variant, params, executions)
    check_declared(variant, plan.lineage, deps_file)
    return plan


def import_source(phase: str, upstream: str, executions=layout.EXECUTIONS) -> dict | None:
    """Where an upstream folder brought in by `dvc import` (`make import6`) came from, as its
    ``.dvc`` import file records it: the repository, the revision asked (None: its default
    branch) and the commit DVC resolved. None for a folder built here or copied by hand
    (also when a hand copy is tracked by `dvc add`: its ``.dvc`` file names no repository).

    The digest is rewritten when the folder's bytes change; a `dvc update` that moves the
    revision but brings the same bytes leaves it, and so the package, as they were: the
    revision named is then the one these bytes were first imported at."""
    path = layout.import_file(phase, upstream, executions)
    if not path.is_file():
        return None
    deps = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("deps") or [{}]
    repo = deps[0].get("repo") if isinstance(deps[0], dict) else None
    if not isinstance(repo, dict) or not repo.get("url"):
        return None
    return {"repo": repo["url"], "rev": repo.get("rev"), "rev_lock": repo.get("rev_lock")}


def digest(phase: str, upstream: str, executions=layout.EXECUTIONS) -> dict:
    """sha256 of every file of an upstream variant folder: what an F06 variant's stages
    depend on. DVC's own ``.gitignore`` files and wall-clock ``timing.json`` are left out.
    An imported folder also names its source (``import_source``)."""
    folder = layout.variant_dir(phase, upstream, executions)
    if not folder.is_dir():
        raise LineageError(f"{layout.PHASE_LABEL[phase]} variant {upstream}: {folder} does not exist; build or "
                           f"pull the upstream first (`dvc repro` or `dvc pull`)")
    files = {path.relative_to(folder).as_posix(): sha256_file(path)
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name not in NOT_DIGESTED}
    source = import_source(phase, upstream, executions)
    return {"phase": phase, "variant": upstream, "files": files, **({"source": source} if source else {})}


def write_digest(variant: str, phase: str, upstream: str, executions=layout.EXECUTIONS) -> Path:
    target = layout.variant_dir(layout.F06, variant, executions) / layout.lineage_digest(phase, upstream)
    write_json_atomic(target, digest(phase, upstream, executions))
    return target


NOT_IMPORTED = {"repo": None, "rev": None, "rev_lock": None}  # a folder built here or copied by hand


def recorded_sources(package_dir) -> dict:
    """Per upstream folder of a package (``<phase>/<variant>``), from the digests its
    ``lineage@`` stages wrote: the sha256 of that digest file (what this project computed
    over the folder's files) and, for an imported folder, its repository and revision. The
    F06 metadata carries it, so the seal covers where every upstream byte came from."""
    sources = {}
    for path in sorted((Path(package_dir) / layout.LINEAGE_DIR).glob("*.json")):
        recorded = json.loads(path.read_text(encoding="utf-8"))
        sources[f"{recorded['phase']}/{recorded['variant']}"] = {
            "digest_sha256": sha256_file(path), **(recorded.get("source") or NOT_IMPORTED)}
    return sources
