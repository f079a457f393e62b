"""``evaluate_run``: accuracy, per-class accuracy and the confusion matrix of a trained run.

The model is rebuilt from the config saved in its checkpoint (``best.pt`` unless asked for
``last.pt``) and evaluated on the validation split of the data it was trained on, or of another
dataset with the same classes and image size (its val split, or the fraction the run carved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train import data as datalib
from augkit.train.checkpoint import BEST, LAST, checkpoint_config, load_checkpoint, load_weights
from augkit.train.config import MAX_THREADS, TrainConfig, check_range, check_utf8
from augkit.train.loop import evaluate_batches, resolve_device, uses_channels_last
from augkit.train.losses import create_loss
from augkit.train.models import create_model
from augkit.train.parts import Parts
from augkit.train.plots import plot_confusion
from augkit.train.threads import ThreadChoice, apply_threads, choose_threads, count_step_flops, free_cores

CONFUSION = "confusion.png"


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    plot: Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` on ``data`` (default: the run's own val split).

    Returns accuracy, loss, per-class accuracy, the confusion matrix (rows: true class), the
    class names and ``threads``, torch's CPU threads it ran with (``threads``, or chosen: see
    ``open_run``); draws the matrix to ``plot`` (default: RUN_DIR/confusion.png).
    """
    check_plot_name(plot)
    run = open_run(run_dir, data, checkpoint=checkpoint, device=device, batch_size=batch_size, threads=threads)
    parts = Parts(run.config, run.device, run.splits, run.model, run.normalizer, run.batches, run.batches,
                  None, None, None)  # type: ignore[arg-type]  # fmt: skip
    loss, accuracy, predicted, truth = evaluate_batches(run.model, parts, run.batches, create_loss(run.config))

    classes = run.classes
    n = len(classes)
    confusion = np.bincount(truth.numpy() * n + predicted.numpy(), minlength=n * n).reshape(n, n)
    totals = confusion.sum(axis=1)
    per_class = {c: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(classes)}
    target = plot if plot is not None else Path(run_dir) / CONFUSION
    title = confusion_title(run_dir, run.checkpoint, run.splits.source, accuracy, int(totals.sum()))
    plot_confusion(confusion, classes, target, title=title)
    return {
        "checkpoint": str(run.checkpoint),
        "data": run.splits.source,
        "images": int(totals.sum()),
        "accuracy": accuracy,
        "loss": loss,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": classes,
        "plot": str(target),
        "threads": run.threads.threads,
    }


def confusion_title(run_dir: str | Path, checkpoint: Path, source: str, accuracy: float, images: int) -> str:
    """confusion.png's title: the accuracy first, then the run and the data, whose path may be
    long (``plot_confusion`` wraps it to the figure, never cuts it off)."""
    return f"accuracy {accuracy:.4f} on {images} images: {Path(run_dir).name} ({checkpoint.name}) on {source}"


@dataclass
class OpenedRun:
    """A finished run's model, rebuilt from a checkpoint, and the validation batches to feed it."""

    checkpoint: Path
    config: TrainConfig
    splits: datalib.Splits
    classes: list[str]
    device: torch.device
    model: nn.Module
    normalizer: datalib.Normalizer
    batches: datalib.DeviceBatches
    threads: ThreadChoice  # torch's intra-op threads set for this process, and why


def open_run(
    run_dir: str | Path,
    data: str | None = None,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
) -> OpenedRun:
    """The run in ``run_dir``: its model from ``best.pt`` (or ``last.pt``) and the val batches of
    ``data`` (default: the data it was trained on), which must have the run's classes and size.

    Sets torch's intra-op threads of this process to ``threads``, or, when None, to the count
    ``augkit.train.threads`` chooses for a forward pass of one batch (1 for the small models).

    Raises:
        AugkitError: no such run or checkpoint, a checkpoint that is damaged or does not fit
            the model its config builds (``CheckpointError``), or data that does not fit the run.
    """
    free = free_cores()  # read before torch's threads first work: spinning, they would count as busy
    check_range("--threads", threads, 1, MAX_THREADS)
    run_dir = Path(run_dir)
    check_utf8(run_dir, "RUN_DIR", fix="rename the folder to a UTF-8 name")
    if not run_dir.is_dir():
        raise AugkitError(f"RUN_DIR {run_dir} does not exist; give the folder an `augkit train` run wrote")
    path = run_dir / {"best": BEST, "last": LAST}[checkpoint]
    if checkpoint == "best" and not path.is_file() and (run_dir / LAST).is_file():
        path = run_dir / LAST
    if not path.is_file():
        raise AugkitError(f"RUN_DIR {run_dir} holds no {path.name if checkpoint == 'last' else 'checkpoint (best.pt or last.pt)'}; "
                          f"give the folder of an `augkit train` run that finished an epoch")  # fmt: skip
    state = load_checkpoint(path)  # its structure checked; the weights are checked against the model below
    config = checkpoint_config(state, path)
    changes: dict[str, Any] = {"device": device, "train_subset": None, "threads": threads}
    if data is not None:
        changes.update(data=data, val_split=None)
    if batch_size is not None:
        changes["batch_size"] = batch_size
    config = config.replace(changes, source="the run's checkpoint")

    splits = datalib.open_splits(config)
    classes, shape = list(state["classes"]), tuple(state["shape"])
    if list(splits.classes) != classes:
        raise AugkitError(f"{splits.source} has classes {_short(splits.classes)}, the run was trained on {_short(classes)}")
    if tuple(splits.shape[:2]) == shape[:2] and splits.shape[2] != shape[2]:  # augkit.io.datasets' gray rule
        fix = (f"write a gray copy with `augkit preprocess {splits.source} OUT --gray` and evaluate on OUT" if shape[2] == 1
               else "evaluate on colour images (a dataset whose images are all stored gray reads as one channel)")
        raise AugkitError(f"{splits.source} has {_size(splits.shape)} images, the run was trained on {_size(shape)}; {fix}")
    if tuple(splits.shape) != shape:
        raise AugkitError(f"{splits.source} has {_size(splits.shape)} images, the run was trained on {_size(shape)}; "
                          f"preprocess it to that size first (augkit preprocess DATA OUT --size {shape[0]}x{shape[1]})")  # fmt: skip

    torch_device = resolve_device(config.device)
    height, width, channels = shape
    model = create_model(config, (channels, height, width), len(classes))
    step_flops = count_step_flops(model, (channels, height, width), config.batch_size, backward=False)
    chosen = apply_threads(choose_threads(step_flops, config.threads, free=free))
    load_weights(model, state, path)
    channels_last = uses_channels_last(config, torch_device)
    model.to(torch_device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    normalizer = datalib.fit_normalizer(config, splits, run_dir, write=False).to(torch_device)
    loader = datalib.Loader(
        splits.val_images, splits.val_labels, batch_size=config.batch_size, train=False,
        seed=config.seed, augment=None, workers=0, pin_memory=torch_device.type == "cuda",
    )  # fmt: skip
    batches = datalib.DeviceBatches(loader, normalizer, torch_device, channels_last=channels_last)
    return OpenedRun(path, config, splits, classes, torch_device, model, normalizer, batches, chosen)


def check_plot_name(plot: Path | None) -> None:
    """Refuse, before any work, a picture path (-o) that is not valid UTF-8: the commands print it."""
    if plot is not None:
        check_utf8(plot, "-o", fix="choose a UTF-8 name")


def _short(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" ... ({len(names)})" if len(names) > 6 else "")


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
