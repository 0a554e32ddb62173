"""Two or more F07 variants side by side (`make compare7 VARIANTS="v701 v702"`): their
verdicts, window-level and failure-level metrics, threshold curves overlaid, and what
differs in their parameters and packages, as one self-contained HTML page.

It reads only the small files the stages wrote (verdict.json, metrics/, the manifest, the
run's and the package's params.yaml), never a log, and writes nothing but the page and a
plots-only dvc.yaml, so it can run at any time; a variant whose evaluate stage has not run
shows as not evaluated.

DVC overlays the revisions of one file (`dvc plots diff`), never two foreach variants'
files, unless a top-level plot takes its ``y`` from several files: the dvc.yaml holds one
such plot per curve kind and model that two or more variants evaluated, so `dvc plots
show` draws the variants on one plot and `dvc plots diff <rev>` both across revisions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import yaml

from contract import layout
from contract.errors import UserError
from contract.manifest import load_manifest
from f07_validation.deployrun import DeployRunError, read_json
from f07_validation.evaluation import CURVE_TEMPLATE, CURVES, curve_file_name
from f07_validation.report import data_uri, render_html, with_reasons
from f07_validation.metric_names import RATES

TEMPLATE = "compare.html.j2"
WINDOW_COLUMNS = ["TP", "FP", "FN", "precision", "recall", "f1"]
LINE_STYLES = ("-", "--", ":", "-.")
CURVE_TITLES = {"pr": "Precision against recall", "roc": "ROC",
                "alarms": "Failures warned against false alarms per day"}


def _flatten(tree, prefix: str = "") -> dict[str, str]:
    """``{"a.b": value}`` for every leaf, values as compact JSON (lists stay whole)."""
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(tree, sort_keys=True)}


def _yaml(path: Path) -> dict:
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def read_variant(variant: str, executions: Path) -> dict:
    """What the page shows of one F07 variant (``executions/07_deployrun/<variant>/``)."""
    root = layout.variant_dir(layout.F07, variant, executions)
    if not (root / layout.MANIFEST).is_file():
        raise DeployRunError(f"F07 variant {variant} has no {root / layout.MANIFEST}: build it first "
                             f"(`make script7-run VARIANT={variant}`)")
    manifest = load_manifest(root / layout.MANIFEST)
    per_model = root / layout.METRICS_PER_MODEL
    if not per_model.is_file():
        raise DeployRunError(f"{per_model} is missing: run `dvc repro score@{variant}` first")
    window = pd.read_csv(per_model, dtype={"objective": str, "source_f05": str, "model_id": str},
                         keep_default_na=False, na_values={rate: [""] for rate in RATES})  # "": undefined
    window["model"] = window["objective"] + "/" + window["source_f05"] + "/" + window["model_id"]
    evaluation = root / layout.EVALUATION
    thresholds = root / layout.THRESHOLDS
    evaluated = evaluation.is_file() and thresholds.is_file()
    package = manifest.package_dir
    return {
        "variant": variant,
        "parent_f06": manifest.parent_variant_f06,
        "package_digest": manifest.package_digest,
        "verdict": read_json(root / layout.VERDICT, "rerun its verdict stage") if (root / layout.VERDICT).is_file()
        else None,
        "window": with_reasons(window),
        "evaluation": read_json(evaluation, f"rerun `dvc repro evaluate@{variant}`") if evaluated else None,
        "thresholds": pd.read_csv(thresholds) if evaluated else None,
        "parameters": _flatten({
            "deployrun": _yaml(root / layout.PARAMS_FILE),
            "packaging": _yaml(package / layout.PARAMS_FILE),
            "package": {"digest": manifest.package_digest,
                        "models": {model.key: {"threshold": model.threshold, "model_family": model.model_family}
                                   for model in manifest.models}},
        }),
    }


def differences(variants: list[dict]) -> tuple[list[dict], int]:
    """The parameter paths whose values differ between the variants (absent counts as a
    value), and how many are the same in all."""
    keys = sorted(set().union(*(item["parameters"] for item in variants)))
    rows, same = [], 0
    for key in keys:
        values = [item["parameters"].get(key, "(absent)") for item in variants]
        if len(set(values)) > 1:
            rows.append({"key": key, "values": values})
        else:
            same += 1
    return rows, same


def overlaid_curves(variants: list[dict]) -> str | None:
    """Every evaluated variant's threshold curves in one figure, labelled `<variant> · <model>`."""
    from f07_validation.figures import thresholds_png  # matplotlib: only where drawn

    frames, models, colors = [], [], {}
    for position, item in enumerate(variants):
        if item["evaluation"] is None:
            continue
        table = item["thresholds"].copy()
        table["model"] = item["variant"] + " · " + table["model"]
        frames.append(table)
        # a model keeps its colour across variants; each variant has its line style
        models += [{"label": f"{item['variant']} · {key}", **model,
                    "color": colors.setdefault(key, f"C{len(colors) % 10}"),
                    "linestyle": LINE_STYLES[position % len(LINE_STYLES)]}
                   for key, model in item["evaluation"]["models"].items()]
    return data_uri(thresholds_png(pd.concat(frames, ignore_index=True), models)) if frames else None


def dvc_plots(variants: list[dict], executions: Path) -> tuple[str, list[str]]:
    """The plots-only dvc.yaml of these variants, and the models evaluated in one variant
    only (not drawn). A plot per curve kind and model evaluated in two or more variants,
    ``y`` taking that model's curve file of each (paths relative to the dvc.yaml, as DVC
    reads them); refused when a curve file the evaluation implies is missing, or when no
    model is left to overlay."""
    names = [item["variant"] for item in variants]
    plots_file = layout.comparison_plots(names, executions)
    evaluated = {item["variant"]: item["evaluation"]["models"] for item in variants if item["evaluation"]}
    keys = sorted(set().union(*evaluated.values()))
    shared = {key: [name for name in names if key in evaluated.get(name, {})] for key in keys}
    single = [f"{key} ({holders[0]})" for key, holders in shared.items() if len(holders) == 1]
    shared = {key: holders for key, holders in shared.items() if len(holders) > 1}
    if not shared:
        held = "; ".join(f"{name}: {', '.join(sorted(evaluated[name])) or 'no model'}" if name in evaluated
                         else f"{name}: not evaluated (run `dvc repro evaluate@{name}`)" for name in names)
        raise DeployRunError(f"compare7 has no threshold curve to overlay: no model was evaluated in two or "
                             f"more of {', '.join(names)} ({held}); compare variants that share a model")
    plots, missing = [], []
    for kind, (x, y) in CURVES.items():
        for key, holders in shared.items():
            files = {}
            for name in holders:
                curve = layout.variant_dir(layout.F07, name, executions) / layout.curve_file(kind, curve_file_name(key))
                if not curve.is_file():
                    missing.append(f"{curve} (run `dvc repro evaluate@{name}`)")
                files[Path(os.path.relpath(curve, plots_file.parent)).as_posix()] = y
            plots.append({f"{'_'.join(holders)}/{kind}/{curve_file_name(key)}": {
                "title": f"{CURVE_TITLES[kind]}: {key}, {' vs '.join(holders)}",
                "template": CURVE_TEMPLATE, "x": x, "y": files}})
    if missing:
        raise DeployRunError(f"compare7 cannot overlay a curve its variant's evaluation lists: missing "
                             f"{'; '.join(missing)}")
    header = (f"# `make compare7 VARIANTS=\"{' '.join(names)}\"` wrote this: each plot overlays the variants'\n"
              f"# curve files (`dvc plots show`, `dvc plots diff <rev>`). Rewritten by compare7; do not edit.\n")
    return header + yaml.safe_dump({"plots": sorted(plots, key=lambda plot: next(iter(plot)))},
                                   sort_keys=True, width=1_000), single


def compare_variants(variants: list[str], executions: Path, template_dir: Path) -> tuple[dict[Path, str], list[str]]:
    """What `make compare7` writes, path -> text (the page and the plots-only dvc.yaml, all
    computed before any is written), and the models evaluated in one variant only."""
    if len(variants) < 2 or len(set(variants)) != len(variants):
        raise UserError(f"compare7 needs two or more different F07 variants, got {variants}: "
                        f'e.g. make compare7 VARIANTS="v701 v702"')
    read = [read_variant(variant, executions) for variant in variants]
    plots, single = dvc_plots(read, executions)
    rows, same = differences(read)
    curves = overlaid_curves(read)
    for item in read:
        del item["thresholds"]  # drawn; the page shows the figure
    page = render_html({"variants": read, "differences": rows, "same": same, "curves_uri": curves,
                        "window_columns": WINDOW_COLUMNS, "rates": RATES}, template_dir, TEMPLATE)
    return {layout.comparison_page(variants, executions): page,
            layout.comparison_plots(variants, executions): plots}, single
