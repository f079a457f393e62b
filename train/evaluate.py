"""``evaluate_run``: accuracy, per-class accuracy and the confusion matrix of a trained run.

The model is rebuilt from the config saved in its checkpoint (``best.pt`` unless asked for
``last.pt``) and evaluated on the validation split of the data it was trained on, or of another
dataset with the same classes and image size (its val split, or the fraction the run carved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train import data as datalib
from augkit.train.checkpoint import BEST, LAST, load_checkpoint, unwrapped
from augkit.train.config import TrainConfig
from augkit.train.loop import Parts, evaluate_batches, resolve_device, uses_channels_last
from augkit.train.models import create_model
from augkit.train.plots import plot_confusion

CONFUSION = "confusion.png"


def evaluate_run(
    run_dir: str | Path,
    data: str | None = None,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    plot: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the run in ``run_dir`` on ``data`` (default: the run's own val split).

    Returns accuracy, loss, per-class accuracy, the confusion matrix (rows: true class) and the
    class names; draws the matrix to ``plot`` (default: RUN_DIR/confusion.png).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AugkitError(f"RUN_DIR {run_dir} does not exist; give the folder an `augkit train` run wrote")
    name = {"best": BEST, "last": LAST}[checkpoint]
    path = run_dir / name
    if checkpoint == "best" and not path.is_file() and (run_dir / LAST).is_file():
        path = run_dir / LAST
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"], source=str(path))
    changes: dict[str, Any] = {"device": device, "train_subset": None}
    if data is not None:
        changes.update(data=data, val_split=None)
    if batch_size is not None:
        changes["batch_size"] = batch_size
    config = config.replace(changes, source="evaluate")

    splits = datalib.open_splits(config)
    classes, shape = list(state["classes"]), tuple(state["shape"])
    if list(splits.classes) != classes:
        raise AugkitError(f"{splits.source} has classes {_short(splits.classes)}, the run was trained on {_short(classes)}")
    if tuple(splits.shape) != shape:
        raise AugkitError(f"{splits.source} has {_size(splits.shape)} images, the run was trained on {_size(shape)}; "
                          f"preprocess it to that size first (augkit preprocess DATA OUT --size {shape[0]}x{shape[1]})")  # fmt: skip

    torch_device = resolve_device(config.device)
    height, width, channels = shape
    model = create_model(config, (channels, height, width), len(classes))
    unwrapped(model).load_state_dict(state["model"])
    channels_last = uses_channels_last(config, torch_device)
    model.to(torch_device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    normalizer = datalib.fit_normalizer(config, splits, run_dir).to(torch_device)
    loader = datalib.make_loader(
        splits.val_images, splits.val_labels, batch_size=config.batch_size, train=False,
        seed=config.seed, augment=None, workers=0, pin_memory=torch_device.type == "cuda",
    )  # fmt: skip
    batches = datalib.DeviceBatches(loader, normalizer, torch_device, channels_last=channels_last)
    parts = Parts(config, torch_device, splits, model, normalizer, batches, batches, None, None, None)  # type: ignore[arg-type]
    loss, accuracy, predicted, truth = evaluate_batches(model, parts, batches, nn.CrossEntropyLoss())

    n = len(classes)
    confusion = np.bincount(truth.numpy() * n + predicted.numpy(), minlength=n * n).reshape(n, n)
    totals = confusion.sum(axis=1)
    per_class = {c: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, c in enumerate(classes)}
    target = plot if plot is not None else run_dir / CONFUSION
    plot_confusion(confusion, classes, target, title=f"{run_dir.name} ({path.name}) on {splits.source}: accuracy {accuracy:.4f}")
    return {
        "checkpoint": str(path),
        "data": splits.source,
        "images": int(totals.sum()),
        "accuracy": accuracy,
        "loss": loss,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": classes,
        "plot": str(target),
    }


def _short(names: list[str]) -> str:
    return ", ".join(names[:6]) + (f" ... ({len(names)})" if len(names) > 6 else "")


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
