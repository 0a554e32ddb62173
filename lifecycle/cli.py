"""The command line behind the Makefile's lifecycle targets (`make variant6`, `check7`…):
``python -m lifecycle <command> [options]``, run from the project root.

Empty option values mean "not given" (make passes every variable, set or not). Any
error is one message naming the variant, the key and the fix, and a non-zero exit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract import dvc_deps
from contract.defaults import DEFAULT_BATCH_SIZE, DEFAULT_HOST, DEFAULT_LOG_CSV_COMPRESSION, DEFAULT_PORT
from contract.errors import UserError
from contract import layout
from contract.files import write_text_atomic
from contract.layout import LOG_CSV_COMPRESSIONS
from lifecycle import actions, define, deps, imports, notebooks
from lifecycle.checks import CHECKS
from lifecycle.project import F06, F07, PHASES, Phase, Project


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lifecycle",
                                     description="The F06/F07 variant lifecycle behind the Makefile targets.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help: str, variant: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        if variant:
            sub.add_argument("--variant", required=True, help="the variant id, e.g. v601")
        return sub

    sub = command("variant6", "define an F06 package variant in params.yaml")
    sub.add_argument("--parents", default="", help='PARENTS_F05: F05 variants, e.g. "v501 v502"')
    sub.add_argument("--models", default="", help=f"MODELS, e.g. '{define.MODELS_EXAMPLE}'")
    for key in ("tu", "ow", "lt", "pw"):
        sub.add_argument(f"--{key}", default="", help=f"{key.upper()} (empty: inherit from F03)")
    sub.add_argument("--start", default="", help="replay start: epoch seconds or ISO-8601 (empty: whole stream)")
    sub.add_argument("--end", default="", help="replay end: epoch seconds or ISO-8601 (empty: whole stream)")

    sub = command("variant7", "define an F07 deploy-run variant in params.yaml")
    sub.add_argument("--parent", default="", help="PARENT: the F06 variant to deploy")
    sub.add_argument("--host", default="", help=f"default {DEFAULT_HOST}")
    sub.add_argument("--port", default="", help=f"default {DEFAULT_PORT} (0: a free port)")
    sub.add_argument("--batch-size", default="", help=f"default {DEFAULT_BATCH_SIZE}")
    sub.add_argument("--log-csv-compression", default="",
                     help=f"the log's CSV copy: {' or '.join(LOG_CSV_COMPRESSIONS)} "
                          f"(default {DEFAULT_LOG_CSV_COMPRESSION})")
    sub.add_argument("--baseline", default="",
                     help="BASELINE: an F07 variant whose models' f1 and recall this one may not fall below "
                          "by more than the default max_drop (empty: no baseline)")

    sub = commands.add_parser("import6", help="dvc import the upstream F02-F05 folders some F05 variants need")
    sub.add_argument("--repo", default="", help="UPSTREAM_REPO: the upstream git + DVC repository (path or git URL)")
    sub.add_argument("--rev", default="", help="UPSTREAM_REV: a branch, tag or commit (empty: its default branch)")
    sub.add_argument("--parents", default="", help='PARENTS_F05: F05 variants, e.g. "v501 v502"')

    sub = commands.add_parser("compare7", help="render an HTML page of two or more F07 variants side by side, and a "
                                 "dvc.yaml whose plots overlay their threshold curves (dvc plots show)")
    sub.add_argument("--variants", required=True, help='VARIANTS: the F07 variants, e.g. "v701 v702"')

    commands.add_parser("deps", help="rewrite dvc_deps.yaml (the per-variant DVC dependency lists) from params.yaml")
    for phase in PHASES.values():
        n = phase.number
        command(f"run{n}", f"dvc repro the {phase.label} stages of a variant")
        command(f"nb{n}", f"execute the {phase.label} notebook for a variant (papermill), the same steps as run{n}")
        command(f"check{n}", f"validate a built {phase.label} variant")
        sub = command(f"publish{n}", f"check, dvc push and git commit an {phase.label} variant")
        if phase is F07:
            sub.add_argument("--force", action="store_true", help="publish even though the verdict did not pass")
        command(f"remove{n}", f"remove an {phase.label} variant: params entry, dvc.lock entries, outputs")
        command(f"clean{n}", f"delete the {phase.label} outputs `dvc checkout` brings back from the DVC cache, keeping the rest", variant=False)
    return parser


def _define(args, project: Project, phase: Phase) -> int:
    if phase is F06:
        temporal = {"Tu": args.tu, "OW": args.ow, "LT": args.lt, "PW": args.pw}
        entry = define.packaging_entry(project, args.variant, args.parents, args.models, temporal,
                                       args.start, args.end)
    else:
        entry = define.deployrun_entry(project, args.variant, args.parent, args.host, args.port, args.batch_size,
                                       args.log_csv_compression, args.baseline)
    define.add_variant(project, phase, args.variant, entry)
    deps.write(project)
    print(f"added {phase.section}.{args.variant} to params.yaml; "
          f"next: make script{phase.number}-run VARIANT={args.variant}")
    return 0


def _check(args, project: Project, phase: Phase) -> int:
    result = CHECKS[phase.number](project, args.variant)
    print(result.describe(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _notebook(args, project: Project, phase: Phase) -> int:
    notebooks.run_notebook(project, phase, args.variant)
    return 0


# command name = verb + phase number (variant6, check7…)
_VERBS = {
    "variant": _define,
    "run": lambda args, project, phase: actions.run(project, phase, args.variant),
    "nb": _notebook,
    "check": _check,
    "publish": lambda args, project, phase: actions.publish(project, phase, args.variant,
                                                            force=getattr(args, "force", False)),
    "remove": lambda args, project, phase: actions.remove(project, phase, args.variant),
    "clean": lambda args, project, phase: actions.clean(project, phase),
    "compare": lambda args, project, phase: _compare(args, project),
}


def _compare(args, project: Project) -> int:
    # here, not at the top: pandas, Jinja2 and matplotlib, which no other command needs
    from f07_validation.compare import compare_variants
    from f07_validation.report import TEMPLATE_DIR

    files, single = compare_variants(args.variants.split(), project.executions, TEMPLATE_DIR)
    for path, text in files.items():
        write_text_atomic(path, text)
        print(f"wrote {path}")
    if single:
        print(f"not overlaid, evaluated in one variant only: {', '.join(single)}")
    print("see the variants overlaid: dvc plots show (or --json); commit that dvc.yaml for dvc plots diff <rev>")
    return 0


def _deps(project: Project) -> int:
    changed = deps.write(project)
    print(f"{'rewrote' if changed else 'unchanged:'} {project.root / dvc_deps.FILE}")
    return 0


def _import(args, project: Project) -> int:
    imported = imports.import_upstream(project, args.repo, args.rev, args.parents)
    print(f"imported {len(imported)} upstream folder(s); next: make variant6 PARENTS_F05=\"{args.parents}\" ...")
    return 0


def main(argv=None, root=None) -> int:
    args = _parser().parse_args(argv)
    try:
        project = Project(Path(".") if root is None else root)  # relative paths in messages
        if args.command == "deps":
            return _deps(project)
        if args.command == "import6":
            return _import(args, project)
        return _VERBS[args.command[:-1]](args, project, PHASES[args.command[-1]]) or 0
    except UserError as error:  # anything else is a bug and keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
