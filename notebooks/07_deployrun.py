# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (F06/F07 project .venv)
#     language: python
#     name: f06-f07
# ---

# %% [markdown]
# # F07 deploy & runtime validation, step by step
#
# The same steps as the DVC stages `settings`, `serve`, `infer`, `score`, `reference`, `verdict` and `report`,
# through the same functions (`f07_validation.steps`): a run of this notebook writes the
# same bytes as `make script7-run`, and refuses what the stages refuse, with the same
# message. Each section shows what the step observed or wrote. The F06 package it deploys
# must be built first (`make script6-run` or `make nb6-run`).
#
# Run it with `make nb7-run VARIANT=v701` (papermill; the executed copy goes to
# `notebooks/executed/07_deployrun/<variant>/`), or open it in Jupyter with the project's
# kernel (installed by `make setup`) from the project root.

# %% tags=["parameters"]
VARIANT = "v701"

# %% [markdown]
# ## Setup
# TensorFlow's start-up noise filtered first; a refused step shows the stages' one-line
# `error: ...` message, anything else its traceback.

# %%
import console.quiet_tensorflow  # noqa: F401  (first: before anything imports TensorFlow)

import json

import pandas as pd
import pyarrow.parquet as pq
import yaml
from IPython.display import Image, Markdown, display

from console.notebook import show_user_errors
from contract import layout
from contract.errors import UserError
from contract.params import variant_params
from f07_validation import steps
from f07_validation.reference import describe as describe_reference
from f07_validation.verdict import describe

show_user_errors(UserError)
pd.set_option("display.max_colwidth", 120)
SAMPLE_ROWS = 10

# %% [markdown]
# ## 1. The variant's parameters
# `deployrun.<VARIANT>` of `params.yaml`, after the whole file is checked against its schema.

# %%
print(yaml.safe_dump({f"{steps.SECTION}.{VARIANT}": variant_params(steps.SECTION, VARIANT)}, sort_keys=False))

# %% [markdown]
# As serve, infer and reference use them (`settings` stage): every key written out with its default,
# the gates left out. DVC tracks their parameters in this file.

# %%
print(steps.settings(VARIANT).read_text(encoding="utf-8"))

# %% [markdown]
# ## 2. Serve (`serve` stage)
# The manifest built from the sealed package; a real server process started on it, which
# verifies the seal, loads and warms up every model and reports ready; its `GET /models`
# must agree with the manifest. Then the server is stopped: `infer` starts its own.

# %%
served = steps.serve(VARIANT)
run = steps.run_of(VARIANT)
manifest = json.loads(run.manifest_path.read_text(encoding="utf-8"))
display(Markdown(f"**Manifest** `{run.manifest_path}`: package `{manifest['package_dir']}`, "
                 f"digest `{manifest['package_digest']}`, batch size {manifest['batch_size']}"))
display(pd.DataFrame([{k: v for k, v in model.items() if k != "vectorization"} for model in manifest["models"]]))
display(pd.DataFrame([{"key": key, "value": entry["value"], "source": entry.get("source")}
                      for key, entry in manifest["temporal"].items() if isinstance(entry, dict)]))
display(Markdown("**`GET /ready`** as the server answered"))
print(json.dumps(served.ready, indent=2, sort_keys=True))
display(Markdown("**`GET /models`** as the server answered"))
print(json.dumps(served.models, indent=2, sort_keys=True))
display(Markdown(f"**`{layout.SERVE_RECORD}`** (what the verdict judges)"))
print(json.dumps(served.record, indent=2, sort_keys=True))

# %% [markdown]
# ## 3. Infer (`infer` stage)
# The replay sent through a fresh server process in batches, as a black-box HTTP client;
# every raw prediction logged as it arrives.

# %%
summary = steps.infer(VARIANT)
print(json.dumps(summary, indent=2, sort_keys=True))
log = pq.ParquetFile(run.predictions_path)
print(f"{run.predictions_path}: {log.metadata.num_rows} rows; a sample:")
display(next(log.iter_batches(batch_size=SAMPLE_ROWS)).to_pandas())
display(Markdown(f"**`{layout.EQUIVALENCE}`**"))
print(run.path(layout.EQUIVALENCE).read_text(encoding="utf-8"))

# %% [markdown]
# ## 4. Score (`score` stage)
# Every model's predictions against its F04 reference labels.

# %%
scoring = steps.score(VARIANT)
display(scoring.per_model)
print(json.dumps(scoring.summary, indent=2, sort_keys=True, default=str))

# %% [markdown]
# ## 4b. Failures warned, lead times, false alarms (`evaluate` stage)
# The replay's failures from its F02 events and each objective's `prediction_objective`;
# per model which failures it warned and how early, its alarm episodes and false alarms
# per day, and every figure across decision thresholds.

# %%
evaluation = steps.evaluate(VARIANT)
display(evaluation.failures)
print(json.dumps(evaluation.headline, indent=2, sort_keys=True))

# %% [markdown]
# ## 5. Independent reference (`reference` stage)
# Each model run in-process on the F04 datasets' own windows, its inputs built from the F05
# contract, compared with what the server answered for the same windows; and how many F04
# windows the replay covered.

# %%
compared = steps.reference(VARIANT)
print(describe_reference(compared))

# %% [markdown]
# ## 6. Verdict (`verdict` stage)
# Every check, measured from what the earlier steps observed; a failed check is a result
# (the verdict says FAILED), not an error.

# %%
verdict = steps.verdict(VARIANT)
print(describe(verdict))
display(pd.DataFrame(verdict["checks"]))

# %% [markdown]
# ## 7. Report (`report` stage)
# The HTML report with its figures, and the phase record.

# %%
steps.report(VARIANT)
print(f"report: {run.path(layout.REPORT_HTML)}")
for figure in sorted(run.path(layout.FIGURES_DIR).glob("*.png")):
    display(Markdown(f"`{figure.relative_to(run.root)}`"))
    display(Image(filename=str(figure)))
print(run.path(layout.RUN_METADATA).read_text(encoding="utf-8"))
