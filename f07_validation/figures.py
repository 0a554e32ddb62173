"""The report's figures, as PNG bytes that depend only on the data.

They are DVC-tracked, so a re-run must give the same bytes: figures are drawn on a bare
`Figure` (no pyplot, so no global state and no GUI backend), under matplotlib's default
style (a user's matplotlibrc cannot change them) and saved without the "Software" tag
that names the matplotlib version. Agg writes no time stamp in a PNG.
"""

from __future__ import annotations

import io

import matplotlib.dates as mdates
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from contract.model_key import KEY_COLUMNS
from f07_validation.matching import AMBIGUOUS, NO_REFERENCE

DPI = 100
CLASS_TICKS = ["0 (negative)", "1 (positive)"]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # bbox "tight": constrained layout alone clips the bottom label of imshow panels
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None},
                   bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def confusion_png(prediction_name: str, models: list[dict]) -> bytes:
    """One panel per model of `prediction_name` (rows of metrics_per_model.csv): the
    2x2 counts over windows with a reference, rows = actual, columns = predicted."""
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(3.6 * len(models), 3.9), layout="constrained")
        for axes, model in zip(figure.subplots(1, len(models), squeeze=False)[0], models):
            counts = np.array([[model["TN"], model["FP"]], [model["FN"], model["TP"]]])
            axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, counts.max()))
            for (row, column), count in np.ndenumerate(counts):
                dark = count > counts.max() / 2
                axes.text(column, row, str(count), ha="center", va="center", fontsize=15,
                          color="white" if dark else "black")
            axes.set_xticks([0, 1], CLASS_TICKS)
            axes.set_yticks([0, 1], CLASS_TICKS, rotation=90, va="center")
            axes.set_xlabel("predicted (y_pred)")
            axes.set_ylabel("actual (F04 label)")
            axes.set_title(
                f"{model['objective']} · {model['source_f05']} / {model['model_id']}\n"
                f"precision {model['precision']:.3f}  recall {model['recall']:.3f}  "
                f"f1 {model['f1']:.3f}", fontsize=9)
        figure.suptitle(f"{prediction_name}: windows with a reference", fontsize=11)
        return _png(figure)


def _window_steps(t0: np.ndarray, tu_seconds: int, values: np.ndarray, gap) -> tuple:
    """Each window drawn over its own [t0, t0+Tu): three points per window, the third
    carrying `gap`, so that fills and lines never bridge windows that were not emitted."""
    starts = pd.to_datetime(t0, unit="s").to_numpy()
    ends = pd.to_datetime(t0 + tu_seconds, unit="s").to_numpy()
    x = np.stack([starts, ends, ends], axis=1).ravel()
    y = np.stack([values, values, np.full(len(values), gap, dtype=values.dtype)], axis=1).ravel()
    return x, y


def timeline_png(frame: pd.DataFrame, models: list[dict], tu_seconds: int) -> bytes:
    """One row per model (rows of metrics_per_model.csv) over replay time: the predicted probability and threshold,
    the reference's positive windows shaded, and a strip at the bottom marking windows
    without a reference, ambiguous ones and non-finite outputs."""
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(11, 0.8 + 1.9 * len(models)), layout="constrained")
        all_axes = figure.subplots(len(models), 1, sharex=True, squeeze=False)[:, 0]
        by_model = dict(tuple(frame.groupby(KEY_COLUMNS, sort=False)))
        for axes, model in zip(all_axes, models):
            axes.set_title(f"{model['prediction_name']} ({model['objective']}) · "
                           f"{model['source_f05']} / {model['model_id']}", fontsize=9, loc="left")
            axes.set_ylim(-0.16, 1.05)
            axes.set_yticks([0, 0.5, 1])
            axes.set_ylabel("probability")
            mine = by_model.get(tuple(model[column] for column in KEY_COLUMNS))
            if mine is None:
                axes.text(0.5, 0.5, "no prediction logged", transform=axes.transAxes, ha="center")
                continue
            mine = mine.sort_values("t0", kind="stable")
            t0 = mine["t0"].to_numpy(dtype=np.int64)
            status = mine["ref_status"].to_numpy()
            strips = [
                ((mine["label"] == 1).fillna(False).to_numpy(), 0, 1, "tab:green", 0.25,
                 "reference: positive window"),
                (status == NO_REFERENCE, -0.14, -0.05, "0.55", 1, "no reference"),
                (status == AMBIGUOUS, -0.14, -0.05, "tab:orange", 1, "ambiguous reference"),
                (~mine["finite"].to_numpy(), -0.14, -0.05, "tab:red", 1, "non-finite output"),
            ]
            for mask, low, high, color, alpha, label in strips:
                x, where = _window_steps(t0, tu_seconds, mask, False)
                axes.fill_between(x, low, high, where=where, color=color, alpha=alpha,
                                  linewidth=0, label=label)
            x, probability = _window_steps(t0, tu_seconds, mine["probability"].to_numpy(), np.nan)
            axes.plot(x, probability, linewidth=0.8, color="tab:blue", label="predicted probability")
            axes.axhline(model["threshold"], linestyle="--", linewidth=0.8, color="0.3",
                         label="threshold")
        all_axes[-1].set_xlabel("window start t0 (UTC)")
        if by_model:
            locator = mdates.AutoDateLocator()
            all_axes[-1].xaxis.set_major_locator(locator)
            all_axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            plotted = next(axes for axes in all_axes if axes.get_legend_handles_labels()[0])
            figure.legend(*plotted.get_legend_handles_labels(), loc="outside lower center",
                          ncols=3, fontsize=8)
        return _png(figure)
