"""Where every artifact lives: the phase folders, the variant folders and every file name
of F02-F07. The one module that spells them; everything else asks it.

    executions/<NN_phase>/<variant>/

Upstream phases (F02-F05) name their main files after the phase
(``<NN_phase>_dataset.parquet``, ``<NN_phase>_metadata.json``); F06 and F07 write the files
below. Paths inside a variant folder are POSIX strings relative to it, because they are
also written into metadata and manifests (never an absolute path in a tracked output).

A variant id is ``v`` followed by digits: it becomes a folder name, a DVC stage key
(``serve@v701``) and a params path, so it can never name a path (``../v601``).
"""
from __future__ import annotations

import re
from pathlib import Path

from contract.errors import UserError

EXECUTIONS = Path("executions")
PARAMS_FILE = "params.yaml"   # the project's parameters, and each variant's effective ones
PIPELINE_FILE = "dvc.yaml"    # the stages; DVC reads every one in the workspace (compare7 writes plots-only ones)
DVC_DEPS_FILE = "dvc_deps.yaml"   # generated per-variant dependency lists that dvc.yaml reads (vars)
VARIANT_ID = re.compile(r"v[0-9]+")  # the whole id: is_variant_id uses fullmatch

# ------------------------------------------------------------------ phases
F02, F03, F04, F05 = "02_prepareeventsds", "03_preparewindowsds", "04_targetengineering", "05_modeling"
F06, F07 = "06_packaging", "07_deployrun"
# `make compare7`: F07 variants side by side, a page each (git-ignored) and a folder each holding
# a plots-only PIPELINE_FILE that DVC reads (not git-ignored: DVC skips what git ignores)
COMPARISONS = "07_comparison"
PHASE_LABEL = {F02: "F02", F03: "F03", F04: "F04", F05: "F05", F06: "F06", F07: "F07"}
UPSTREAM_PHASES = (F02, F03, F04, F05)
SECTIONS = {"packaging": F06, "deployrun": F07}   # params.yaml section -> phase folder

# ------------------------------------------------------------------ upstream files
DATASET = "dataset.parquet"               # <phase>_dataset.parquet
METADATA = "metadata.json"                # <phase>_metadata.json
EVENT_CATALOG = "event_catalog.json"      # F02: <phase>_event_catalog.json
F05_MODELS = "models"                     # F05: models/<model_id>/ (official)
F05_EXPERIMENTS = "experiments"           # F05: experiments/<trial id>/
MODEL_FILE = "model.h5"
MODEL_SUMMARY = "model_summary.json"
MODEL_FILES = (MODEL_FILE, MODEL_SUMMARY)
EXPERIMENT_METRICS = "metrics.json"       # F05: experiments/<trial id>/metrics.json

# ------------------------------------------------------------------ F06 package
PACKAGE_MODELS = "models"                 # models/<objective>/<source_f05>__<model_id>/
PACKAGE_DATASETS = "datasets"             # datasets/<objective>/<F04 dataset>
REPLAY_DIR = "replay"
REPLAY = f"{REPLAY_DIR}/replay_events.parquet"
PACKAGE_METADATA = f"{F06}_{METADATA}"    # 06_packaging_metadata.json, holds the seal
TIMING = "timing.json"                    # wall-clock figures: never tracked, never sealed
LINEAGE_DIR = "lineage"                   # digests of the upstream folders it derives from: not sealed

# ------------------------------------------------------------------ F07 run
MANIFEST = "manifest.json"
# An MLServer model repository exported from a package (f07_validation.mlserver_export):
# MANIFEST and MLSERVER_SETTINGS at its top, a folder per model holding its
# MLSERVER_MODEL_SETTINGS, the package linked as MLSERVER_PACKAGE_LINK, and the
# deployment beside it: the KServe manifests and the container recipe.
MLSERVER_SETTINGS = "settings.json"
MLSERVER_MODEL_SETTINGS = "model-settings.json"
MLSERVER_PACKAGE_LINK = "package"
KSERVE_DIR = "kserve"
KSERVE_SERVING_RUNTIME = f"{KSERVE_DIR}/servingruntime.yaml"
KSERVE_INFERENCE_SERVICE = f"{KSERVE_DIR}/inferenceservice.yaml"
CONTAINERFILE = "Containerfile"
SERVE_RECORD = "serve.json"
LOGS_DIR = "logs"
PREDICTIONS = f"{LOGS_DIR}/raw_predictions.parquet"
# What a replay cut short by a runtime fault logged: never under the complete log's name.
PREDICTIONS_PARTIAL = f"{LOGS_DIR}/raw_predictions.partial.parquet"
# The CSV copy of the log, written in the same pass, per deployrun.<variant>.log_csv_compression
# (the keys are the values allowed; contract.defaults holds the default): the name says how
# it is compressed, so no reader guesses, and a file of the other setting is never current.
PREDICTIONS_CSV = {"none": f"{LOGS_DIR}/raw_predictions.csv", "gzip": f"{LOGS_DIR}/raw_predictions.csv.gz"}
PREDICTIONS_CSV_PARTIAL = {"none": f"{LOGS_DIR}/raw_predictions.partial.csv",
                           "gzip": f"{LOGS_DIR}/raw_predictions.partial.csv.gz"}
LOG_CSV_COMPRESSIONS = tuple(PREDICTIONS_CSV)
RUN_SUMMARY = f"{LOGS_DIR}/run_summary.json"
EQUIVALENCE = f"{LOGS_DIR}/equivalence.json"
RUN_TIMING = f"{LOGS_DIR}/{TIMING}"
METRICS_DIR = "metrics"
METRICS_PER_MODEL = f"{METRICS_DIR}/metrics_per_model.csv"
SCORING = f"{METRICS_DIR}/scoring.json"
METRICS_TIMELINE = f"{METRICS_DIR}/timeline.csv"   # predictions binned over replay time
METRICS_IMAGES = f"{METRICS_DIR}/plots/images"   # the score stage's figures (dvclive images)
# the evaluate stage's files, in metrics/ beside the score stage's (each file has one owner stage)
FAILURES = f"{METRICS_DIR}/failures.csv"            # one row per failure and model of its objective
EVALUATION = f"{METRICS_DIR}/evaluation.json"       # failures, episodes, lead times, curves' summary
THRESHOLDS = f"{METRICS_DIR}/thresholds.csv"        # every model's figures across thresholds
CURVES_DIR = f"{METRICS_DIR}/plots/curves"          # DVC plots: <curve>/<model>.csv
CURVE_KINDS = ("pr", "roc", "alarms")               # a folder each: one plot template per folder
EVALUATION_IMAGES = f"{METRICS_DIR}/plots/evaluation"   # the evaluate stage's figures
# DVC metrics (`dvc metrics show`, `dvc metrics diff`): one small JSON per model, in a folder
# per stage that dvc.yaml declares as a metric (DVC lists a folder's files), so the table
# grows in rows with the models and each of its columns is one metric name
WINDOW_HEADLINES = f"{METRICS_DIR}/window_level"    # score: precision, recall, f1
FAILURE_HEADLINES = f"{METRICS_DIR}/failure_level"  # evaluate: failure recall, lead time p50, false alarms/day
LATENCY = f"{METRICS_DIR}/{TIMING}"                 # per-batch latency percentiles: wall clock, untracked
REFERENCE = "reference.json"              # the server against the independent reference
VERDICT = "verdict.json"
VERDICT_METRICS = "verdict_metrics.json"  # passed (1/0) and failed checks, for dvc metrics show (not in
                                          # metrics/, which the score stage replaces whole)
REPORT_DIR = "report"
REPORT_HTML = f"{REPORT_DIR}/report.html"
FIGURES_DIR = f"{REPORT_DIR}/figures"
TIMELINE_FIGURE = f"{FIGURES_DIR}/timeline.png"
THRESHOLDS_FIGURE = f"{FIGURES_DIR}/thresholds.png"   # the evaluate stage's curves, copied
RUNTIME_JS = f"{REPORT_DIR}/runtime.js"   # untracked, beside the report
RUN_METADATA = f"{F07}_{METADATA}"        # 07_deployrun_metadata.json


def is_variant_id(value) -> bool:
    return isinstance(value, str) and VARIANT_ID.fullmatch(value) is not None


def import_file(phase: str, variant: str, root=EXECUTIONS) -> Path:
    """The ``.dvc`` file `dvc import` writes beside an upstream variant folder it imported
    (``<root>/<phase>/<variant>.dvc``): it records the source repository and revision."""
    folder = variant_dir(phase, variant, root)
    return folder.with_name(f"{folder.name}.dvc")


def phase_file(phase: str, suffix: str) -> str:
    """An upstream phase's own file name: ``<NN_phase>_<suffix>``."""
    return f"{phase}_{suffix}"


def variant_dir(phase: str, variant: str, root=EXECUTIONS) -> Path:
    """``<root>/<phase>/<variant>``; ``phase`` is a phase folder or a params.yaml section.
    A variant that is not a variant id is refused (it would name another path)."""
    if not is_variant_id(variant):
        raise UserError(f"{variant!r} is not a variant id: use 'v' followed by digits, e.g. v701 "
                        f"(a variant id is a folder name, never a path)")
    return Path(root) / SECTIONS.get(phase, phase) / variant


def package_model_dir(objective: str, source_f05: str, model_id: str) -> str:
    """A model inside an F06 package: by objective, then F05 and model id, so two F05
    runs that share a model_id both stay."""
    return f"{PACKAGE_MODELS}/{objective}/{source_f05}__{model_id}"


def package_dataset(objective: str) -> str:
    """An objective's F04 reference dataset inside an F06 package, byte for byte."""
    return f"{PACKAGE_DATASETS}/{objective}/{phase_file(F04, DATASET)}"


def package_recovered_t0(objective: str) -> str:
    """Beside a reference dataset without ``t0``: the ``t0`` F06 recovered for its rows."""
    return f"{PACKAGE_DATASETS}/{objective}/recovered_t0.parquet"


def lineage_digest(phase: str, upstream: str) -> str:
    """Inside an F06 variant folder: the digest of one upstream variant folder it derives from."""
    return f"{LINEAGE_DIR}/{phase}_{upstream}.json"


def confusion_figure(prediction_name: str) -> str:
    return f"{FIGURES_DIR}/confusion_{prediction_name}.png"


def curve_file(kind: str, model_file_name: str) -> str:
    """A DVC plot's data: ``CURVES_DIR/<kind>/<model>.csv``, ``kind`` one of CURVE_KINDS."""
    return f"{CURVES_DIR}/{kind}/{model_file_name}.csv"


def headline_file(folder: str, model: str) -> str:
    """A model's DVC metric file in a headline folder (WINDOW_HEADLINES or
    FAILURE_HEADLINES): ``<folder>/<model>.json``, ``model`` its short key (a file name)."""
    return f"{folder}/{model}.json"


def evaluation_image(figure: str) -> str:
    """Where the evaluate stage draws a report figure before the report copies it."""
    return f"{EVALUATION_IMAGES}/{figure.rsplit('/', 1)[-1]}"


def metrics_image(figure: str) -> str:
    """Where the score stage draws a report figure (``confusion_figure(...)``,
    ``TIMELINE_FIGURE``) before the report copies it: same file name, in METRICS_IMAGES."""
    return f"{METRICS_IMAGES}/{figure.rsplit('/', 1)[-1]}"


def _comparison(variants, root) -> Path:
    """``<root>/07_comparison/<v1>_<v2>...``: what `make compare7` writes for these variants."""
    for variant in variants:
        variant_dir(F07, variant, root)  # refuses what is not a variant id
    return Path(root) / COMPARISONS / "_".join(variants)


def comparison_page(variants, root=EXECUTIONS) -> Path:
    """``<root>/07_comparison/<v1>_<v2>....html``: the page `make compare7` renders."""
    folder = _comparison(variants, root)
    return folder.with_name(f"{folder.name}.html")


def comparison_plots(variants, root=EXECUTIONS) -> Path:
    """``<root>/07_comparison/<v1>_<v2>.../dvc.yaml``: the top-level DVC plots `make compare7`
    writes, each overlaying the variants' curve files, which `dvc plots show` draws."""
    return _comparison(variants, root) / PIPELINE_FILE


def comparisons_of(variant: str, root=EXECUTIONS) -> list[Path]:
    """What `make compare7` wrote that names ``variant`` (pages and plot folders under
    ``<root>/07_comparison/``): gone with the variant, else its dvc.yaml names curve files
    that no longer exist and `dvc plots show` fails on them."""
    folder = Path(root) / COMPARISONS
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir()
                  if variant in (path.stem if path.is_file() else path.name).split("_"))


# ------------------------------------------------------------------ phase notebooks
NOTEBOOKS = Path("notebooks")     # <phase>.py (jupytext percent: the source) paired with <phase>.ipynb
EXECUTED_NOTEBOOKS = NOTEBOOKS / "executed"   # git-ignored, outside every DVC dependency and the seal


def phase_notebook(phase: str) -> Path:
    """A phase's notebook source (``notebooks/06_packaging.py``), run by `make nb6-run`."""
    return NOTEBOOKS / f"{phase}.py"


def executed_notebook(phase: str, variant: str) -> Path:
    """Where `make nb<N>-run` saves a phase notebook executed for ``variant``, outputs shown."""
    return variant_dir(phase, variant, EXECUTED_NOTEBOOKS) / f"{phase}.executed.ipynb"
