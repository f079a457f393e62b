"""The run's pictures: loss and accuracy curves, the confusion matrix, activation histograms.

matplotlib's object API (``Figure``, no pyplot): no global state, no GUI backend, safe in any
process. Imported only when a picture is drawn.

Every text drawn (titles, class names, labels) passes through ``printable``: a name whose bytes
are not UTF-8 (a folder named so on disk) is drawn with those bytes escaped (``\\xff``), which
a font can render. Statistics that are not finite (activations that overflowed) are drawn as
gaps and written as "not finite", never formatted as numbers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from augkit.files import atomic_write
from augkit.train.config import printable


def _save(figure, path: Path) -> Path:  # noqa: ANN001  (matplotlib Figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return atomic_write(path, buffer.getvalue())


def plot_curves(rows: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train against val (``rows`` as in metrics.csv)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for axes, key, label in ((loss, "loss", "loss"), (accuracy, "acc", "accuracy")):
        axes.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", ms=3, label="train")
        axes.plot(epochs, [r[f"val_{key}"] for r in rows], "o-", ms=3, label="val")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if rows and all(r["train_loss"] > 0 for r in rows) and all(r["val_loss"] > 0 for r in rows):
        loss.set_yscale("log")
    if title:
        figure.suptitle(printable(title), fontsize=9)
    return _save(figure, path)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """The confusion matrix (rows: true class, columns: predicted), each row as fractions."""
    from matplotlib.figure import Figure

    n = len(classes)
    classes = [printable(c) for c in classes]
    totals = confusion.sum(axis=1, keepdims=True)
    fractions = confusion / np.maximum(totals, 1)
    side = min(12.0, 2.5 + 0.45 * n)
    figure = Figure(figsize=(side, side * 0.9), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 30:  # beyond that the numbers are unreadable; the colours still tell
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    axes.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                              color="white" if fractions[i, j] > 0.5 else "black")
    ticks = range(n)
    axes.set_xticks(ticks, classes, rotation=90 if n > 10 else 0, fontsize=8)
    axes.set_yticks(ticks, classes, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(printable(title) or "confusion matrix", fontsize=9)
    return _save(figure, path)


# ----------------------------------------------------------------------------- diagnostics

_HIST_COLUMNS = 10  # layers drawn per row of histograms at most (evenly spaced, first and last kept)


def _histogram(axes, row: dict) -> None:  # noqa: ANN001  (matplotlib Axes)
    """One layer's histogram (``row`` as in activations.jsonl: hist, range, std, saturated, dead)."""
    counts = np.asarray(row["hist"], dtype=float)
    edges = np.linspace(*row["range"], len(counts) + 1)
    fractions = counts / max(counts.sum(), 1.0)
    axes.stairs(fractions, edges, fill=True, alpha=0.8)
    notes = [f"std {row['std']:.2g}" if _finite(row["std"]) else "std not finite"]
    notes += [f"{short} {row[key]:.0%}" for key, short in (("saturated", "sat"), ("dead", "dead")) if row[key] and row[key] >= 0.005]
    tallest, second = np.sort(fractions)[-2:][::-1] if len(fractions) > 1 else (0.0, 0.0)
    if second > 0 and tallest > 3 * second:  # ReLU's zeros: one bin would flatten all the others
        axes.set_ylim(0, 1.5 * second)
        notes.append(f"peak {tallest:.0%} (cut)")
    axes.text(0.97, 0.95, "\n".join(notes), transform=axes.transAxes, ha="right", va="top", fontsize=7,
              bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 1})
    axes.set_yticks([])
    axes.tick_params(labelsize=7)


def _finite(value: float | None) -> bool:
    """Whether a statistic is a finite number (``LayerStats.to_dict`` gives None for NaN and Inf)."""
    return value is not None and math.isfinite(value)


def _columns(count: int) -> list[int]:
    if count <= _HIST_COLUMNS:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, _HIST_COLUMNS)})


def plot_probe(cases: Sequence[tuple[str, Sequence[dict]]], path: Path, title: str = "") -> Path:
    """The lecture's figure: per case (row) a histogram per layer (column), then std per layer.

    ``cases``: (label, layers), each layer a dict with hist, range, std, saturated, dead.
    """
    from matplotlib.figure import Figure

    shown = _columns(max(len(layers) for _, layers in cases))
    figure = Figure(figsize=(1.7 * len(shown) + 1.2, 1.35 * len(cases) + 2.9), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.35 * len(cases), 2.6])
    grid = np.atleast_2d(top.subplots(len(cases), len(shown), squeeze=False))
    for r, (label, layers) in enumerate(cases):
        for c, index in enumerate(shown):
            axes = grid[r, c]
            if index < len(layers):
                _histogram(axes, layers[index])
            if r == 0:
                axes.set_title(f"layer {index + 1}", fontsize=8)
            if c == 0:
                axes.set_ylabel(printable(label), fontsize=8)
    lines = bottom.subplots()
    for label, layers in cases:
        stds = [s["std"] if _finite(s["std"]) else math.nan for s in layers]  # a gap where they overflowed
        lines.plot(range(1, len(layers) + 1), stds, "o-", ms=3, label=printable(label))
    lines.set_xlim(0.5, max(len(layers) for _, layers in cases) + 0.5)  # every layer, overflowed ones too
    lines.set_xlabel("layer")
    lines.set_ylabel("std of the activations")
    lines.set_ylim(bottom=0)
    lines.grid(alpha=0.3)
    lines.legend(fontsize=7)
    if title:
        figure.suptitle(printable(title), fontsize=9)
    return _save(figure, path)


def plot_diagnosis(layers: Sequence[dict], path: Path, history: dict | None = None, title: str = "") -> Path:
    """A trained run's layers: histograms on the validation data and, when ``history`` holds the
    histograms recorded during training, fastai's "colorful dimension" plot: per layer, the
    histogram (y) at each recorded step (x), the colour log(1 + count).

    ``layers``: dicts with layer, hist, range, std, saturated, dead; ``history``: as
    ``read_activation_history`` returns it ({layer: {"steps", "hist", "range"}}).
    """
    from matplotlib.figure import Figure

    columns = min(len(layers), 4) or 1
    rows = math.ceil(len(layers) / columns) or 1
    timeline = [(row["layer"], history[row["layer"]]) for row in layers if history and row["layer"] in history]
    height = 1.9 * rows + (2.2 * math.ceil(len(timeline) / columns) if timeline else 0) + 0.6
    figure = Figure(figsize=(2.8 * columns + 0.6, height), layout="constrained")
    parts = figure.subfigures(2, 1, height_ratios=[1.9 * rows, 2.2 * math.ceil(len(timeline) / columns)]) if timeline else [figure]
    axes = parts[0].subplots(rows, columns, squeeze=False).ravel()
    for ax, row in zip(axes, layers):
        _histogram(ax, row)
        ax.set_title(f"{printable(row['layer'])} (validation)", fontsize=8)
    for ax in axes[len(layers):]:
        ax.set_axis_off()
    if timeline:
        panels = parts[1].subplots(math.ceil(len(timeline) / columns), columns, squeeze=False).ravel()
        for ax, (name, entry) in zip(panels, timeline):
            counts = np.log1p(np.asarray(entry["hist"], dtype=float).T)  # bins x steps
            steps = entry["steps"]
            ax.imshow(counts, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, *entry["range"]))  # fmt: skip
            ax.set_title(f"{printable(name)} during training", fontsize=8)
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in panels[len(timeline):]:
            ax.set_axis_off()
        parts[1].suptitle("activation histograms over training (colour: log(1 + count))", fontsize=8)
    if title:
        figure.suptitle(printable(title), fontsize=9)
    return _save(figure, path)


# ----------------------------------------------------------------------------- ablations


def plot_ablation(panels: Sequence[dict], path: Path) -> Path:
    """An ablation's picture, a row per study: per configuration (best first) its best validation
    accuracy and its final train/val gap as bars with the std over seeds, and its validation
    curve (mean over seeds). A configuration keeps one colour across the three.

    ``panels``: dicts with ``title``, ``chance`` (1 / classes, or None) and ``bars``, best first:
    dicts with label, acc, acc_std, gap, gap_std (NaN when every run failed) and curve.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    heights = [max(2.8, 0.22 * sum(b["label"].count("\n") + 1.5 for b in panel["bars"]) + 1.2) for panel in panels]
    figure = Figure(figsize=(13, sum(heights) + 0.3), layout="constrained")
    rows = figure.subfigures(len(panels), 1, height_ratios=heights, squeeze=False)[:, 0]
    for row, panel in zip(rows, panels):
        accuracy, gap, curves = row.subplots(1, 3, width_ratios=[1.3, 0.8, 1.1])
        bars = panel["bars"]
        palette = colormaps["tab10" if len(bars) <= 10 else "tab20"]
        colors = [palette(i % palette.N) for i in range(len(bars))]
        y = np.arange(len(bars))[::-1]  # the best on top
        best = bool(bars) and not math.isnan(bars[0]["acc"])
        edges = ["black" if i == 0 and best else "none" for i in range(len(bars))]
        labels = [("★ " if i == 0 and best else "") + printable(b["label"]) + (" (failed)" if math.isnan(b["acc"]) else "")
                  for i, b in enumerate(bars)]  # fmt: skip
        for axes, key, xlabel in ((accuracy, "acc", "best validation accuracy"), (gap, "gap", "final gap: train − val accuracy")):
            values = [0.0 if math.isnan(b[key]) else b[key] for b in bars]
            errors = [b[f"{key}_std"] for b in bars]
            axes.barh(y, values, xerr=errors, color=colors, edgecolor=edges, linewidth=1.2, capsize=3)
            for yy, value, error in zip(y, values, errors):
                if value:
                    axes.annotate(f"{value:.3f}", (value + math.copysign(error, value), yy), xytext=(3 if value > 0 else -3, 0),
                                  textcoords="offset points", ha="left" if value > 0 else "right", va="center", fontsize=7)  # fmt: skip
            axes.set_xlabel(f"{xlabel} (mean ± std over seeds)", fontsize=8)
            axes.set_yticks(y, labels if axes is accuracy else [], fontsize=8)
        accuracy.set_xlim(0, 1.15)
        gap.axvline(0, color="black", lw=0.8)
        low, high = gap.get_xlim()
        gap.set_xlim(min(low, 0) - 0.08 * (high - low), high + 0.15 * (high - low))
        for b, color in zip(bars, colors):
            if b["curve"]:
                curves.plot(range(1, len(b["curve"]) + 1), b["curve"], "-", color=color, lw=1.6)
        curves.set_xlabel("epoch", fontsize=8)
        curves.set_ylabel("val accuracy (mean of seeds)", fontsize=8)
        curves.xaxis.set_major_locator(MaxNLocator(integer=True))
        curves.set_ylim(0, 1.02)
        if panel.get("chance"):
            accuracy.axvline(panel["chance"], color="grey", ls="--", lw=0.8)
            curves.axhline(panel["chance"], color="grey", ls="--", lw=0.8)
            curves.annotate("chance", (0.01, panel["chance"]), xycoords=("axes fraction", "data"), xytext=(0, 2),
                            textcoords="offset points", color="grey", fontsize=7)  # fmt: skip
        for axes in (accuracy, gap, curves):
            axes.grid(alpha=0.3)
            axes.tick_params(labelsize=8)
        row.suptitle(printable(panel["title"]), fontsize=10)
    return _save(figure, path)
