"""The run's pictures: loss and accuracy curves, and the confusion matrix.

matplotlib's object API (``Figure``, no pyplot): no global state, no GUI backend, safe in any
process. Imported only when a picture is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from augkit.files import atomic_write


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
        figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    """The confusion matrix (rows: true class, columns: predicted), each row as fractions."""
    from matplotlib.figure import Figure

    n = len(classes)
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
    axes.set_title(title or "confusion matrix", fontsize=9)
    return _save(figure, path)
