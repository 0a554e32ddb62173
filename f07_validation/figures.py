"""The figures of a run (drawn by the score stage, shown by the report), as PNG bytes that
depend only on the data.

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

from contract.model_key import key_of
from f07_validation.metric_names import RATES
from f07_validation.scoring import shown_rate

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
                + "  ".join(f"{rate} {shown_rate(model[rate], 3)}" for rate in RATES), fontsize=9)
        figure.suptitle(f"{prediction_name}: windows with a reference", fontsize=11)
        return _png(figure)


_LAST_CALENDAR_S = 253_402_300_799  # 9999-12-31T23:59:59 UTC: matplotlib's dates end there


def timeline_png(timeline: pd.DataFrame, models: list[dict], bin_seconds: int) -> bytes:
    """One row per model (rows of metrics_per_model.csv) over replay time, from the
    binned timeline (at most a few hundred bins, so the figure's size does not depend on
    the replay's length): the mean predicted probability per bin with its min-max band
    and the threshold, the share of the reference's positive windows shaded, and a strip
    at the bottom marking bins that hold windows without a reference, ambiguous ones or
    non-finite outputs."""
    # A log whose t0s are no calendar time (milliseconds read as seconds, say) is drawn on
    # plain seconds: the score stage must still finish, so that the verdict can name it.
    calendar = timeline.empty or bool(timeline["bin_t0"].between(0, _LAST_CALENDAR_S - bin_seconds).all())

    def when(t0):
        return pd.to_datetime(t0, unit="s").to_numpy() if calendar else np.asarray(t0, dtype=float)

    with matplotlib.style.context("default"):
        figure = Figure(figsize=(11, 0.8 + 1.9 * len(models)), layout="constrained")
        all_axes = figure.subplots(len(models), 1, sharex=True, squeeze=False)[:, 0]
        by_model = dict(tuple(timeline.groupby("model", sort=False)))
        for axes, model in zip(all_axes, models):
            axes.set_title(f"{model['prediction_name']} ({model['objective']}) · "
                           f"{model['source_f05']} / {model['model_id']}", fontsize=9, loc="left")
            axes.set_ylim(-0.16, 1.05)
            axes.set_yticks([0, 0.5, 1])
            axes.set_ylabel("probability")
            mine = by_model.get(key_of(model))
            if mine is None:
                axes.text(0.5, 0.5, "no prediction logged", transform=axes.transAxes, ha="center")
                continue
            start, end = when(mine["bin_t0"].to_numpy()), when(mine["bin_t0"].to_numpy() + bin_seconds)
            windows = mine["windows"].to_numpy()
            x = np.stack([start, end], axis=1).ravel()

            def steps(values):
                return np.repeat(np.asarray(values, dtype=float), 2)

            axes.fill_between(x, 0, steps(mine["positive"] / windows), color="tab:green", alpha=0.25,
                              linewidth=0, label="reference: share of positive windows")
            for column, color, label in (("no_reference", "0.55", "no reference"),
                                         ("ambiguous", "tab:orange", "ambiguous reference"),
                                         ("non_finite", "tab:red", "non-finite output")):
                axes.fill_between(x, -0.14, -0.05, where=steps(mine[column] > 0) > 0, color=color,
                                  linewidth=0, label=label)
            axes.fill_between(x, steps(mine["min_probability"]), steps(mine["max_probability"]),
                              color="tab:blue", alpha=0.2, linewidth=0, label="predicted probability: min-max")
            axes.plot(x, steps(mine["mean_probability"]), linewidth=0.8, color="tab:blue",
                      label="predicted probability: mean")
            axes.axhline(model["threshold"], linestyle="--", linewidth=0.8, color="0.3", label="threshold")
        all_axes[-1].set_xlabel(f"window start t0 ({'UTC' if calendar else 's, not a calendar time'}), "
                                f"bins of {bin_seconds} s")
        if by_model:
            if calendar:
                locator = mdates.AutoDateLocator()
                all_axes[-1].xaxis.set_major_locator(locator)
                all_axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            plotted = next(axes for axes in all_axes if axes.get_legend_handles_labels()[0])
            figure.legend(*plotted.get_legend_handles_labels(), loc="outside lower center",
                          ncols=3, fontsize=8)
        return _png(figure)


def thresholds_png(thresholds: pd.DataFrame, models: list[dict]) -> bytes:
    """Three panels over every decision threshold (rows of thresholds.csv, one curve per
    value of its ``model`` column): precision against recall (windows), the ROC, and the
    failures warned against the false alarms per day. Each of ``models`` (``label``: its
    ``model`` value, ``declared`` and ``best_f1``: rows of the table) marks its declared
    threshold (o) and the one that maximises F1 (x), where defined; an optional ``color`` and
    ``linestyle`` tell overlaid variants apart."""
    panels = (("recall", "precision", "windows: precision / recall"),
              ("fpr", "recall", "windows: ROC (recall against false positive rate)"),
              ("false_alarms_per_day", "failure_recall", "failures warned against false alarms per day"))
    with matplotlib.style.context("default"):
        figure = Figure(figsize=(15, 4.8), layout="constrained")
        axes_row = figure.subplots(1, 3, squeeze=False)[0]
        by_model = dict(tuple(thresholds.groupby("model", sort=False)))
        for axes, (x, y, title) in zip(axes_row, panels):
            for index, model in enumerate(models):
                curve = by_model.get(model["label"])
                if curve is None:
                    continue
                color = model.get("color", f"C{index % 10}")
                curve = curve[[x, y]].dropna()  # undefined: no point (precision where nothing is positive)
                axes.plot(curve[x], curve[y], linewidth=1.2, color=color, linestyle=model.get("linestyle", "-"),
                          label=model["label"])
                for point, marker, size in ((model["declared"], "o", 6), (model["best_f1"], "x", 8)):
                    if point is not None and point[x] is not None and point[y] is not None:
                        axes.plot(point[x], point[y], marker, color=color, markersize=size)
            axes.set_xlabel(x.replace("_", " "))
            axes.set_ylabel(y.replace("_", " "))
            axes.set_title(title, fontsize=10)
            axes.set_ylim(-0.02, 1.02)
            if x != "false_alarms_per_day":
                axes.set_xlim(-0.02, 1.02)
            axes.grid(alpha=0.3)
        handles, labels = axes_row[0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8,
                          title="o declared threshold, x threshold of the highest window F1", title_fontsize=8)
        return _png(figure)
