"""The run's pictures: loss and accuracy curves, the confusion matrix, activation histograms,
an ablation's comparison.

matplotlib's object API (``Figure``, no pyplot): no global state, no GUI backend, safe in any
process. Imported only when a picture is drawn. Each picture has a ``draw_*`` function that
returns the Figure (what the tests measure) and a ``plot_*`` function that writes it as PNG.

No picture clips or overlaps its own text: titles, which carry paths and pipelines of any
length, are wrapped by their measured width (``augkit.preview.wrap_text``) to the figure's,
dense tick labels thin out or shrink, and the layout engine ("constrained") makes room for
the rest; tests/test_pictures.py checks every text's box at several sizes.

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
from typing import TYPE_CHECKING

import numpy as np

from augkit.files import atomic_write
from augkit.preview import text_width, wrap_text
from augkit.train.config import TrainConfig, printable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
TITLE_PT = 9
CLUSTER_GAP = 0.05  # an ablation's accuracies this far below the next better one are drawn off the axis
NAME_CHARS = 28  # class names longer than this are shortened in the middle ("a_very_lo…_name")


def _save(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write(path, buffer.getvalue())


def _wrapped(text: str, width_in: float, size: float = TITLE_PT) -> str:
    """``text`` (made printable) wrapped to ``width_in`` inches at font ``size``."""
    return "\n".join(wrap_text(printable(text), width_in * 72, size))


def _suptitle(figure, text: str, size: float = TITLE_PT, *, left: bool = False) -> None:  # noqa: ANN001  (Figure or SubFigure)
    """A title across ``figure``, wrapped to its width (less the layout's padding); centred, or
    from the left edge (a heading)."""
    if text:
        width = figure.get_figwidth() if hasattr(figure, "get_figwidth") else figure.figure.get_figwidth()
        where = {"x": 0.01, "ha": "left"} if left else {}
        figure.suptitle(_wrapped(text, width - 0.3, size), fontsize=size, parse_math=False, **where)


def _title_lines(text: str, width_in: float, size: float = TITLE_PT) -> int:
    """How many lines ``_suptitle`` wraps ``text`` to across a figure ``width_in`` inches wide."""
    return len(wrap_text(printable(text), (width_in - 0.3) * 72, size)) if text else 0


def _short(name: str) -> str:
    name = printable(name)
    if len(name) <= NAME_CHARS:
        return name
    half = (NAME_CHARS - 1) // 2
    return f"{name[:half]}…{name[-half:]}"


# ----------------------------------------------------------------------------- a run


def describe_tricks(config: TrainConfig) -> str:
    """The tricks a run used, in a line for a title: model and widths, activation, init,
    normalisation, regularisation, augmentation, input preprocessing, optimiser."""
    if config.model == "mlp":
        model = f"mlp {'x'.join(map(str, config.hidden))}"
    else:
        model = f"{config.model} {'-'.join(map(str, config.channels))}"
    activation = {"leaky_relu": f"leaky_relu({config.leaky_slope:g})", "maxout": f"maxout({config.maxout_pieces})"}.get(
        config.activation, config.activation)  # fmt: skip
    init = f"{config.init}({config.init_std:g})" if config.init in ("normal", "uniform", "constant") else config.init
    parts = [model, activation, f"init {init}", "batchnorm" if config.batchnorm else "no batchnorm"]
    parts.append(f"dropout {config.dropout:g}" if config.dropout else "no dropout")
    if config.weight_decay:
        parts.append(f"L2 {config.weight_decay:g}")
    if config.l1:
        parts.append(f"L1 {config.l1:g}")
    parts.append(f"augment {config.augment}" if config.augment else "no augmentation")
    if config.mixup or config.cutmix:
        mixes = [f"{name} {alpha:g}" for name, alpha in (("mixup", config.mixup), ("cutmix", config.cutmix)) if alpha]
        parts.append(" / ".join(mixes) + (f" p {config.mix_prob:g}" if config.mix_prob < 1 else ""))
    standardized = {"channel": "standardized", "pixel": "per-pixel standardized", "none": "not standardized"}
    parts.append("mean image" if config.mean_image else standardized[config.standardize])
    if config.loss != "cross_entropy":
        parts.append(f"{config.loss} loss")
    if config.label_smoothing:
        parts.append(f"label smoothing {config.label_smoothing:g}")
    if config.clip_grad:
        parts.append(f"clip {config.clip_grad:g}")
    parts.append(f"{config.optimizer} lr {config.lr:g} {config.schedule}")
    return ", ".join(parts)


def draw_curves(rows: Sequence[dict[str, float]], title: str = "") -> Figure:
    """Loss, error rate and the generalisation gap per epoch (``rows`` as in metrics.csv:
    epoch, train_loss, val_loss, train_acc, val_acc).

    The error rate (1 - accuracy) on a log axis tells 98% from 99% apart, which an accuracy
    axis from 0.6 to 1 does not; the gap panel is train - val accuracy, with the training
    accuracy as the epoch measured it (in train mode: dropout and augmentation on), on a
    symmetric log axis when it spans decades (``_log_scale``).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    figure = Figure(figsize=(12, 3.8), layout="constrained")
    loss, error, gap = figure.subplots(1, 3)
    errors = {split: [1 - r[f"{split}_acc"] for r in rows] for split in ("train", "val")}
    for split in ("train", "val"):
        loss.plot(epochs, [r[f"{split}_loss"] for r in rows], "o-", ms=3, label=split)
        error.plot(epochs, errors[split], "o-", ms=3, label=split)
    gaps = [r["train_acc"] - r["val_acc"] for r in rows]
    gap.plot(epochs, gaps, "o-", ms=3, color="tab:red", label="train − val")
    gap.axhline(0, color="black", lw=0.8)
    if rows and all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in rows):
        loss.set_yscale("log")
    _log_scale(error, [e for split in errors.values() for e in split])
    _log_scale(gap, gaps)
    loss.set_ylabel("loss")
    error.set_ylabel("error rate (1 − accuracy)")
    gap.set_ylabel("train − val accuracy")
    loss.set_title("loss", fontsize=9)
    error.set_title("error rate", fontsize=9)
    gap.set_title("generalisation gap (> 0: train ahead)", fontsize=9)
    for axes in (loss, error, gap):
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3, which="both" if axes.get_yscale() == "log" else "major")
        axes.legend(fontsize=8)
    _suptitle(figure, title)
    return figure


def _log_scale(axes, values: Sequence[float]) -> None:  # noqa: ANN001
    """A log y axis for ``values`` that span decades (0.3 at epoch 1, 0.003 at the end), so the
    end is not flattened into the floor: "log" when all are positive; "symlog" when some are 0
    or negative (a training set learnt to 100%, a gap below zero), linear below the smallest
    nonzero magnitude's decade; linear when they span less than a decade."""
    magnitudes = [abs(v) for v in values if v and math.isfinite(v)]
    if not magnitudes or max(magnitudes) < 10 * min(magnitudes):
        return
    if all(v > 0 for v in values):
        axes.set_yscale("log")
    else:
        axes.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(min(magnitudes))), linscale=0.5)
        axes.margins(y=0.1)  # the extreme points off the frame


def plot_curves(rows: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """``draw_curves`` written to ``path`` (PNG)."""
    return _save(draw_curves(rows, title), path)


def draw_confusion(confusion: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix (rows: true class, columns: predicted), each row as fractions.

    Counts are written in the cells while they fit; class names shrink, then thin out (every
    k-th), as the classes grow; long names are shortened in the middle.
    """
    from matplotlib.figure import Figure

    n = len(classes)
    names = [_short(c) for c in classes]
    totals = confusion.sum(axis=1, keepdims=True)
    fractions = confusion / np.maximum(totals, 1)
    side = min(12.0, 3.0 + 0.45 * n)
    figure = Figure(figsize=(side + 0.8, side * 0.9 + 0.4), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    cell = side * 0.6 * 72 / n  # points per cell, about (the layout decides the exact size)
    digits = len(str(int(confusion.max()))) if confusion.size else 1
    count_pt = min(9.0, cell * 0.85 / (0.64 * digits))  # a digit is about 0.64 em wide (DejaVu Sans)
    if count_pt >= 4:  # smaller is unreadable; the colours still tell
        for i, j in zip(*np.nonzero(confusion)):
            axes.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=count_pt,
                      color="white" if fractions[i, j] > 0.5 else "black")  # fmt: skip
    label_pt = min(9.0, cell * 0.8)
    every = max(1, math.ceil(5.0 / label_pt))  # below 5 pt: a name every k-th cell, at 5 pt
    ticks = list(range(0, n, every))
    label_pt = max(label_pt, 5.0)
    upright = max((text_width(names[t], label_pt) for t in ticks), default=0) < 0.8 * cell * every
    axes.set_xticks(ticks, [names[t] for t in ticks], rotation=0 if upright else 90, fontsize=label_pt)
    axes.set_yticks(ticks, [names[t] for t in ticks], fontsize=label_pt)
    axes.set_xlabel("predicted" + (f" (one class in {every} named)" if every > 1 else ""))
    axes.set_ylabel("true")
    _suptitle(figure, title or "confusion matrix")
    return figure


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """``draw_confusion`` written to ``path`` (PNG)."""
    return _save(draw_confusion(confusion, classes, title), path)


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


def draw_probe(cases: Sequence[tuple[str, Sequence[dict]]], title: str = "") -> Figure:
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
                axes.set_ylabel(_wrapped(label, 1.3, 8), fontsize=8)
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
    _suptitle(figure, title)
    return figure


def plot_probe(cases: Sequence[tuple[str, Sequence[dict]]], path: Path, title: str = "") -> Path:
    """``draw_probe`` written to ``path`` (PNG)."""
    return _save(draw_probe(cases, title), path)


def draw_diagnosis(layers: Sequence[dict], history: dict | None = None, title: str = "") -> Figure:
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
    width = max(2.8 * columns + 0.6, 5.6 if title else 0)  # a run's title (its tricks) needs a few lines' width
    title_in = _title_lines(title, width) * TITLE_PT * 1.4 / 72  # the title's lines, added: the panels keep their size
    height = 1.9 * rows + (2.2 * math.ceil(len(timeline) / columns) if timeline else 0) + 0.6 + title_in
    panel_in = width / columns - 0.2  # a panel's width, less its share of the padding
    figure = Figure(figsize=(width, height), layout="constrained")
    parts = figure.subfigures(2, 1, height_ratios=[1.9 * rows, 2.2 * math.ceil(len(timeline) / columns)]) if timeline else [figure]
    axes = parts[0].subplots(rows, columns, squeeze=False).ravel()
    for ax, row in zip(axes, layers):
        _histogram(ax, row)
        ax.set_title(_wrapped(f"{row['layer']} (validation)", panel_in, 8), fontsize=8)
    for ax in axes[len(layers):]:
        ax.set_axis_off()
    if timeline:
        panels = parts[1].subplots(math.ceil(len(timeline) / columns), columns, squeeze=False).ravel()
        for ax, (name, entry) in zip(panels, timeline):
            counts = np.log1p(np.asarray(entry["hist"], dtype=float).T)  # bins x steps
            steps = entry["steps"]
            ax.imshow(counts, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(steps[0], steps[-1] if len(steps) > 1 else steps[0] + 1, *entry["range"]))  # fmt: skip
            ax.set_title(_wrapped(f"{name} during training", panel_in, 8), fontsize=8)
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in panels[len(timeline):]:
            ax.set_axis_off()
        _suptitle(parts[1], "activation histograms over training (colour: log(1 + count))", 8)
    _suptitle(figure, title)
    return figure


def plot_diagnosis(layers: Sequence[dict], path: Path, history: dict | None = None, title: str = "") -> Path:
    """``draw_diagnosis`` written to ``path`` (PNG)."""
    return _save(draw_diagnosis(layers, history, title), path)


# ----------------------------------------------------------------------------- ablations


def draw_ablation(panels: Sequence[dict]) -> Figure:
    """An ablation's picture, a row per study: per configuration (best first) its best validation
    accuracy (a dot, on an axis zoomed to the data, so 0.978 and 0.981 stand apart) and its
    final train/val gap (a bar), each with the std over seeds when there are several, and its
    validation curve (mean over seeds) with a legend. A configuration keeps one colour across
    the three; the values are written beside each panel, never over an error bar; ★ marks the
    best, and every configuration tied with another (the same mean to 4 decimals) says "tie".

    ``panels``: dicts with ``title``, ``chance`` (1 / classes, or None), ``seeds`` (seeds per
    configuration; default 1) and ``bars``, best first: dicts with label, acc, acc_std, gap,
    gap_std (NaN when every run failed), curve, and optionally rank (1 = best; default the
    position) and tie (default False).
    """
    from matplotlib.figure import Figure

    heights = [max(3.0, 0.26 * sum(b["label"].count("\n") + 1.5 for b in panel["bars"]) + 1.6) for panel in panels]
    figure = Figure(figsize=(15, sum(heights) + 0.3), layout="constrained")
    rows = figure.subfigures(len(panels), 1, height_ratios=heights, squeeze=False)[:, 0]
    for row, panel in zip(rows, panels):
        _ablation_row(row, panel)
    return figure


def plot_ablation(panels: Sequence[dict], path: Path) -> Path:
    """``draw_ablation`` written to ``path`` (PNG)."""
    return _save(draw_ablation(panels), path)


def _ablation_row(row, panel: dict) -> None:  # noqa: ANN001  (a SubFigure)
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    accuracy, gap, curves = row.subplots(1, 3, width_ratios=[1.25, 0.85, 1.0])
    bars = panel["bars"]
    seeds = panel.get("seeds", 1)
    spread = seeds > 1
    palette = colormaps["tab10" if len(bars) <= 10 else "tab20"]
    colors = [palette(i % palette.N) for i in range(len(bars))]
    y = np.arange(len(bars))[::-1]  # the best on top
    finished = [not math.isnan(b["acc"]) for b in bars]
    ranks = [b.get("rank", i + 1) for i, b in enumerate(bars)]
    ties = [b.get("tie", False) for b in bars]
    best = [done and rank == 1 for done, rank in zip(finished, ranks)]
    names = [("★ " if top else "") + printable(b["label"]) + ("" if done else " (failed)")
             for b, done, top in zip(bars, finished, best)]  # fmt: skip

    # The axis spans the best configurations' cluster; one far below (at chance) would squeeze
    # 0.978 and 0.981 into one point, so it is drawn as ◀ at the left edge, its value beside.
    cut = _top_cluster([b["acc"] for b, done in zip(bars, finished) if done])
    shown = [done and b["acc"] >= cut for b, done in zip(bars, finished)]
    for yy, b, color, visible, top in zip(y, bars, colors, shown, best):
        if visible:
            accuracy.errorbar(b["acc"], yy, xerr=b["acc_std"] if spread else None, fmt="o", ms=7, color=color, capsize=4,
                              mec="black" if top else color, mew=1.2)  # fmt: skip
    _zoom(accuracy, [(b["acc"] - b["acc_std"], b["acc"] + b["acc_std"]) for b, visible in zip(bars, shown) if visible], "x")
    low, high = accuracy.get_xlim()
    for yy, color, visible, done in zip(y, colors, shown, finished):
        if done and not visible:
            accuracy.plot(low + 0.03 * (high - low), yy, "<", ms=8, color=color)
    accuracy.set_ylim(-0.6, len(bars) - 0.4)
    accuracy.set_yticks(y, names, fontsize=8)
    values = [_mean_std(b["acc"], b["acc_std"], 4, spread) + (" tie" if tie else "") for b, tie in zip(bars, ties)]
    _right_labels(accuracy, y, values)

    gaps = [b["gap"] if done else 0.0 for b, done in zip(bars, finished)]
    gap.barh(y, gaps, xerr=[b["gap_std"] for b in bars] if spread else None, color=colors,
             edgecolor=["black" if top else "none" for top in best], linewidth=1.2, capsize=3)  # fmt: skip
    gap.axvline(0, color="black", lw=0.8)
    gap.set_ylim(-0.6, len(bars) - 0.4)
    gap.set_yticks(y, [])
    _right_labels(gap, y, [_mean_std(b["gap"], b["gap_std"], 3, spread) for b in bars])

    for b, color, name in zip(bars, colors, names):
        if b["curve"]:
            curves.plot(range(1, len(b["curve"]) + 1), b["curve"], "-", color=color, lw=1.6, label=name)
    _zoom(curves, [(v, v) for b in bars for v in b["curve"]], "y")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    if any(b["curve"] for b in bars):
        curves.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, title="configuration",
                      title_fontsize=7)  # fmt: skip

    over = f"mean ± std over {seeds} seeds" if spread else "1 seed"
    below = "; ◀: far below, off the axis" if sum(shown) < sum(finished) else ""
    accuracy.set_xlabel(f"best validation accuracy\n({over}{below})", fontsize=8)
    gap.set_xlabel(f"final gap: train − val accuracy\n({over})", fontsize=8)
    curves.set_xlabel("epoch", fontsize=8)
    curves.set_ylabel(f"val accuracy{f' (mean of {seeds} seeds)' if spread else ''}", fontsize=8)
    chance = panel.get("chance")
    for axes, line in ((accuracy, accuracy.axvline), (curves, curves.axhline)):
        low, high = axes.get_xlim() if axes is accuracy else axes.get_ylim()
        if chance and low <= chance <= high:
            line(chance, color="grey", ls="--", lw=0.8, label="_chance")
    for axes in (accuracy, gap):  # narrow panels: matplotlib's default ticks can run into each other
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4))
    for axes in (accuracy, gap, curves):
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=8)
    _suptitle(row, panel["title"], 10, left=True)  # the row's heading, over its first panel's labels


def _top_cluster(accuracies: Sequence[float]) -> float:
    """The lowest of ``accuracies`` in the best one's cluster: from the best down, each within
    ``CLUSTER_GAP`` of the one before it (-inf when there are none)."""
    ordered = sorted(accuracies, reverse=True)
    low = ordered[0] if ordered else -math.inf
    for value in ordered[1:]:
        if low - value > CLUSTER_GAP:
            break
        low = value
    return low


def _zoom(axes, spans: Sequence[tuple[float, float]], which: str) -> None:  # noqa: ANN001
    """Limit ``axes`` (its x or y) to the accuracies in ``spans`` with a margin, within [0, 1]:
    differences of a few thousandths must show."""
    values = [v for span in spans for v in span if math.isfinite(v)]
    if not values:
        return
    low, high = min(values), max(values)
    margin = max(0.12 * (high - low), 0.003)
    limits = (max(0.0, low - margin), min(1.0 + margin / 3, high + margin))
    (axes.set_xlim if which == "x" else axes.set_ylim)(*limits)


def _mean_std(mean: float, std: float, digits: int, spread: bool) -> str:
    if math.isnan(mean):
        return "failed"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if spread else "")


def _right_labels(axes, y: np.ndarray, labels: Sequence[str]) -> None:  # noqa: ANN001
    """``labels`` beside the right edge of ``axes``, one per row ``y``: the values, where no
    marker or error bar can be."""
    right = axes.secondary_yaxis("right")
    right.set_yticks(y, labels, fontsize=8)
    right.tick_params(length=0)
