"""The F07 report: `report/report.html`, rendered from `reports/report.html.j2`, and the
figures it shows (`report/figures/`).

The page is self-contained: its figures are embedded as data URIs, so it shows
everything wherever it is copied. The PNGs are also written to report/figures/ because
the seed lists them and `dvc plots` can show them as images.

The page is DVC-tracked and must be byte-identical on a re-run, yet it should show the
runtime throughput, which is wall-clock. So the throughput lives in an untracked sidecar,
`report/runtime.js` (`window.F07_RUNTIME = {...};`, copied from the untracked
`logs/timing.json`), which the page loads and a small inline script displays. The sidecar
is always written, `null` when there is no timing.json, because a `<script src>` that is
missing is a console error in the browser; the page's static text says "not measured in
this copy", which is what a reader sees when runtime.js is absent (a fresh git clone) or
null.
"""

from __future__ import annotations

import base64
import json
import posixpath
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from contract import layout
from contract.files import atomic_path
from f07_validation.deployrun import DeployRun, DeployRunError, read_json
from f07_validation.evaluation import read_evaluation
from f07_validation.metric_names import MODEL_COLUMNS, RATES
from f07_validation.scoring import undefined_reasons
from f07_validation.timefmt import utc_iso

# The template lives in the repository's reports/, found from this file so that the stage
# works from any working directory (tests run it in a temporary tree).
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "reports"
TEMPLATE = "report.html.j2"
TEMPORAL_PARAMETERS = [("Tu", "s"), ("OW", "Tu"), ("LT", "Tu"), ("PW", "Tu")]


def read_metrics(run: DeployRun) -> tuple[pd.DataFrame, dict]:
    """What the score stage wrote: metrics_per_model.csv (names kept as text, floats
    read back exactly) and scoring.json."""
    fix = "run the score stage first (`dvc repro score@<variant>`)"
    path = run.path(layout.METRICS_PER_MODEL)
    if not path.exists():
        raise DeployRunError(f"{path} is missing: {fix}")
    names = {column: str for column in MODEL_COLUMNS if column != "threshold"}
    per_model = pd.read_csv(path, dtype=names, keep_default_na=False, na_values={rate: [""] for rate in RATES},
                            float_precision="round_trip")  # an empty rate is undefined (NaN here)
    return per_model, read_json(run.path(layout.SCORING), fix)


def with_reasons(per_model: pd.DataFrame) -> list[dict]:
    """The rows of metrics_per_model.csv, each with ``undefined``: why each of its
    undefined rates is (scoring.undefined_reasons), for the pages."""
    return [{**row, "undefined": undefined_reasons(row)} for row in per_model.to_dict("records")]


def in_report(relative: str) -> str:
    """A run-relative path as the page links it: relative to the report's folder."""
    return posixpath.relpath(relative, layout.REPORT_DIR)


def prediction_names(models: list[dict]) -> list[str]:
    """Each prediction_name once, in manifest order (one confusion figure each)."""
    return list(dict.fromkeys(model["prediction_name"] for model in models))


def make_figures(run: DeployRun, per_model: pd.DataFrame) -> dict[str, bytes]:
    """Run-relative `report/figures/<name>.png` -> PNG bytes: the figures the score stage
    drew (one confusion figure per prediction_name, its models as panels, and the
    timeline), copied so the seed's files are there and the page embeds them."""
    fix = "run the score stage first (`dvc repro score@<variant>`)"
    wanted = [layout.confusion_figure(name) for name in prediction_names(per_model.to_dict("records"))]
    figures = {}
    for target in wanted + [layout.TIMELINE_FIGURE]:
        path = run.path(layout.metrics_image(target))
        if not path.is_file():
            raise DeployRunError(f"{path} is missing: {fix}")
        figures[target] = path.read_bytes()
    evaluated = run.path(layout.evaluation_image(layout.THRESHOLDS_FIGURE))
    if evaluated.is_file():  # the evaluate stage's curves, when it has run
        figures[layout.THRESHOLDS_FIGURE] = evaluated.read_bytes()
    return figures


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_context(run: DeployRun, per_model: pd.DataFrame, scoring: dict,
                   figures: dict[str, bytes]) -> dict:
    """Everything the template shows, already in display order; nothing wall-clock."""
    package = run.package_metadata()
    temporal = run.manifest.temporal
    models = with_reasons(per_model)
    return {
        "variant": run.variant,
        "parent_f06": run.manifest.parent_variant_f06,
        "package_dir": run.package_dir_label,
        "package_digest": run.manifest.package_digest,
        "seal": package["seal"],
        "lineage": package["lineage"],
        "upstream_sources": package.get("upstream_sources") or {},   # absent in packages sealed before issue 26
        "temporal": [{"name": name, "unit": unit, **temporal[name]} for name, unit in TEMPORAL_PARAMETERS],
        "origin_segs": temporal["origin_segs"],
        "origin_utc": utc_iso(temporal["origin_segs"]),
        "window_strategy": temporal["window_strategy"],
        "models": models,
        "objectives": scoring["objectives"],
        "first_utc": utc_iso(scoring["first_t0"]) if scoring["first_t0"] is not None else None,
        "last_utc": utc_iso(scoring["last_t0"]) if scoring["last_t0"] is not None else None,
        "held_out": scoring["held_out"],
        "held_out_reason": scoring["held_out_reason"],
        "confusion_figures": [
            {"prediction_name": name, "path": in_report(layout.confusion_figure(name)),
             "uri": data_uri(figures[layout.confusion_figure(name)])}
            for name in prediction_names(models)
        ],
        "timeline_uri": data_uri(figures[layout.TIMELINE_FIGURE]),
        "run_summary": run.read_log_json(layout.RUN_SUMMARY),
        "equivalence": run.read_log_json(layout.EQUIVALENCE),
        "reference": run.read_optional_json(layout.REFERENCE),
        "join_notes": {objective: (package.get("datasets") or {}).get(objective, {}).get("join_note", "")
                       for objective in scoring["objectives"]},
        "verdict": run.read_optional_json(layout.VERDICT),
        # failure-level evaluation (the evaluate stage), None until it has run
        "evaluation": read_evaluation(run),
        "thresholds_uri": data_uri(figures[layout.THRESHOLDS_FIGURE]) if layout.THRESHOLDS_FIGURE in figures else None,
    }


def shown(value, reason: str | None, digits: int = 4) -> str:
    """The pages' `shown` filter: a value with ``digits`` decimals, or, where ``reason``
    says why it is undefined, "undefined" and the reason (never a 0)."""
    if reason is not None:
        return Markup('<span class="undefined">undefined</span><br><small>{}</small>').format(reason)
    if value is None or pd.isna(value):
        raise ValueError("an undefined value reached a page without the reason why")
    return f"{value:.{digits}f}"


def render_html(context: dict, template_dir: Path, template: str = TEMPLATE) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["shown"] = shown
    return environment.get_template(template).render(context)


def runtime_js(timing: dict | None) -> str:
    return f"window.F07_RUNTIME = {json.dumps(timing, sort_keys=True, allow_nan=False)};\n"


def write_report(run: DeployRun, per_model: pd.DataFrame, scoring: dict,
                 template_dir: Path = TEMPLATE_DIR) -> None:
    """Replace `report/` with report.html, runtime.js and figures/, all or nothing. The
    staging folder has the report folder's name, so its parent stands for the run folder
    and the layout's paths apply to it."""
    figures = make_figures(run, per_model)
    html = render_html(report_context(run, per_model, scoring, figures), template_dir)
    timing = run.read_optional_json(layout.RUN_TIMING)
    with atomic_path(run.path(layout.REPORT_DIR)) as out:
        staged = out.parent
        (staged / layout.FIGURES_DIR).mkdir(parents=True)
        for relpath, png in figures.items():
            (staged / relpath).write_bytes(png)
        (staged / layout.REPORT_HTML).write_text(html, encoding="utf-8")
        (staged / layout.RUNTIME_JS).write_text(runtime_js(timing), encoding="utf-8")
