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
# # F06 packaging, step by step
#
# The same steps as the DVC stages `lineage`, `select_models`, `materialize_replay` and
# `seal_package`, through the same functions (`f06_packaging.steps`): a run of this notebook
# writes the same bytes as `make script6-run`, and refuses what the stages refuse, with the
# same message. Each section shows what the step resolved or wrote.
#
# Run it with `make nb6-run VARIANT=v601` (papermill; the executed copy goes to
# `notebooks/executed/06_packaging/<variant>/`), or open it in Jupyter with the project's
# kernel (installed by `make setup`) from the project root. The variant is defined in
# `params.yaml` (`make variant6`).

# %% tags=["parameters"]
VARIANT = "v601"

# %% [markdown]
# ## Setup
# TensorFlow's start-up noise filtered first; a refused step shows the stages' one-line
# `error: ...` message, anything else its traceback.

# %%
import console.quiet_tensorflow  # noqa: F401  (first: before anything imports TensorFlow)

import pandas as pd
import yaml
from IPython.display import Markdown, display

from console.notebook import show_user_errors
from contract import layout
from contract.errors import UserError
from contract.params import variant_params
from contract.seal import verify_seal
from f06_packaging import steps

show_user_errors(UserError)
pd.set_option("display.max_colwidth", 120)


def utc(seconds):
    return None if seconds is None else pd.Timestamp(seconds, unit="s", tz="UTC")


# %% [markdown]
# ## 1. The variant's parameters
# `packaging.<VARIANT>` of `params.yaml`, after the whole file is checked against its schema.

# %%
print(yaml.safe_dump({f"{steps.SECTION}.{VARIANT}": variant_params(steps.SECTION, VARIANT)}, sort_keys=False))

# %% [markdown]
# ## 2. Lineage (`lineage` stages)
# The digest of every upstream folder the variant derives from, as `dvc_deps.yaml` lists
# them: the F06 stages depend on these digests, never on another variant's upstream.

# %%
digests = steps.lineage(VARIANT)
display(pd.DataFrame([{"digest file": str(path), "bytes": path.stat().st_size} for path in digests]))

# %% [markdown]
# ## 3. The plan: resolved lineage and temporal regime
# What every F06 stage resolves first: each F05 run traced to its F04 objective, F03
# windows and F02 events, and the regime in force with where each value comes from.

# %%
plan = steps.plan(VARIANT)
lineage = plan.lineage
display(Markdown("**Lineage** (F05 → F04 → F03 → F02)"))
display(pd.DataFrame([{"F05": f05, "model family": modeling.model_family, "F04": modeling.objective.id,
                       "prediction": modeling.objective.prediction_name,
                       "F03": modeling.objective.windows.variant.id,
                       "F02": modeling.objective.windows.events.variant.id}
                      for f05, modeling in sorted(lineage.modeling.items())]))
display(Markdown("**Temporal regime**"))
display(pd.DataFrame([{"key": key, "value": value.value, "source": value.source}
                      for key, value in plan.regime.items()]).set_index("key"))
first, last = lineage.f02.span
print(f"window grid origin: {plan.origin} ({utc(plan.origin)}); "
      f"F02 {lineage.f02.variant.id} spans {utc(first)} to {utc(last)}")

# %% [markdown]
# ## 4. Selected models (`select_models` stage)
# The explicitly chosen F05 models, copied byte for byte into `models/`, with what their
# `model_summary.json` says.

# %%
plan = steps.select_models(VARIANT)
display(pd.DataFrame([{"objective": m.objective.id, "source F05": m.files.source_f05, "model id": m.files.model_id,
                       "trial": m.files.trial, "family": m.files.summary.model_family,
                       "threshold": m.files.summary.threshold,
                       "vectorization": m.files.summary.vectorization.get("vectorization"),
                       "input shape": m.files.summary.expected_input_shape, "in the package": m.package_dir}
                      for m in plan.models]))
models_dir = steps.package_dir(VARIANT) / layout.PACKAGE_MODELS
display(pd.DataFrame([{"file": path.relative_to(models_dir).as_posix(), "bytes": path.stat().st_size}
                      for path in sorted(models_dir.rglob("*")) if path.is_file()]))

# %% [markdown]
# ## 5. Replay (`materialize_replay` stage)
# The F02 rows inside the time range, unchanged.

# %%
plan, rows = steps.materialize_replay(VARIANT)
replay_path = steps.package_dir(VARIANT) / layout.REPLAY
requested = plan.replay.requested
print(f"{replay_path}: {rows} rows of F02 {plan.replay.source.variant.id}, {replay_path.stat().st_size} bytes")
print(f"time range asked: start {requested['start']} ({utc(requested['start']) or 'open'}), "
      f"end {requested['end']} ({utc(requested['end']) or 'open'})")

# %% [markdown]
# ## 6. The seal (`seal_package` stage)
# Every packaged model probed (loaded, fed its own reference windows, finite answers),
# the reference datasets, the effective params, and the metadata with the seal.
# The seal is then verified again from the files.

# %%
metadata = steps.seal_package(VARIANT)
seal = metadata["seal"]
print(f"sealed {steps.package_dir(VARIANT)}: digest {seal['digest']} over {len(seal['files'])} files")
display(Markdown("**Probes**"))
display(pd.DataFrame([{"objective": m["objective"], "source F05": m["source_f05"], "model id": m["model_id"],
                       **m["probe"]} for m in metadata["models"]]))
display(Markdown("**Replay**"))
summary = metadata["replay"]
display(pd.DataFrame([{**{k: v for k, v in summary.items() if k != "time_range"},
                       "first": utc(summary["first_segs"]), "last": utc(summary["last_segs"])}]))
display(Markdown("**Reference datasets**"))
display(pd.DataFrame([{"objective": objective, **{k: v for k, v in dataset.items() if k != "objective"}}
                      for objective, dataset in metadata["datasets"].items()]))
display(Markdown("**Sealed files**"))
display(pd.DataFrame(sorted(seal["files"].items()), columns=["file", "sha256"]))
check = verify_seal(steps.package_dir(VARIANT))
print(check.describe())
assert check.ok, "the package just sealed does not verify"
