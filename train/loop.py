"""The training loop: ``train(config, run_dir)``, one function read top to bottom.

Each optimisation step, in a fixed order: forward (bf16 autocast with --amp on CUDA), loss
(+ L1 penalty), zero_grad, backward, clip, optimiser step, scheduler step, record. Each epoch:
train, evaluate on val, then write ``last.pt`` (and ``best.pt``), ``metrics.csv`` and, at the
end, ``summary.json`` and ``curves.png``. Everything a run needs is built first by ``build``,
so a mistake in the config or the data stops the run before any training.

RUN_DIR after a run:
    config.yaml    the resolved config: ``augkit train --config RUN_DIR/config.yaml`` runs it again
    stats.json     the training split's statistics used to standardise (when computed here)
    last.pt        the state after the latest epoch: ``--resume RUN_DIR`` continues from it
    best.pt        the state after the epoch with the best validation accuracy
    metrics.csv    one row per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds, ...
    summary.json   best_val_acc, best_epoch, final_val_acc, epochs, seconds, images_per_second, device, ...
    curves.png     loss and accuracy, train against val
    activations.jsonl  per-layer statistics every N steps, with --watch-activations N
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import augkit
from augkit.errors import AugkitError, RunError
from augkit.files import atomic_write
from augkit.train import data as datalib
from augkit.train.checkpoint import BEST, LAST, load_checkpoint, rng_state, save_checkpoint, set_rng_state, unwrapped
from augkit.train.config import TrainConfig
from augkit.train.distributed import Distributed, check_batch_size
from augkit.train.hooks import ACTIVATIONS_FILE, ActivationWatcher
from augkit.train.models import count_parameters, create_model
from augkit.train.optim import create_optimizer, create_scheduler, l1_penalty
from augkit.train.plots import plot_curves

CONFIG, METRICS, SUMMARY, CURVES = "config.yaml", "metrics.csv", "summary.json", "curves.png"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_second")


# ----------------------------------------------------------------------------- building a run


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, then MPS, then CPU. Asking for a device that is not there is a user error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AugkitError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AugkitError("--device cuda: CUDA is not available here (no GPU, or a CPU-only torch); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AugkitError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise AugkitError("--device mps: MPS is not available here; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise AugkitError(f"unsupported device {name!r}; choose auto, cpu, cuda, cuda:N or mps")
    return device


def uses_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Convolutions run in channels-last memory order: faster with cuDNN, and on the CPU too
    (5.4 against 7.2 ms a step for the default CNN on 2 cores)."""
    return device.type in ("cuda", "cpu") and config.model != "mlp"


@dataclass
class Parts:
    """Everything a run is made of, built and checked before the first step."""

    config: TrainConfig
    device: torch.device
    splits: datalib.Splits
    model: nn.Module
    normalizer: datalib.Normalizer
    train_batches: datalib.DeviceBatches  # normalised batches on the device
    val_batches: datalib.DeviceBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    distributed: Distributed | None = None  # this process's place in a torchrun run

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0, or the only process)."""
        return self.distributed is None or self.distributed.main

    @property
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA with --amp: no loss scaling needed (bf16 has float32's range)."""
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def build(
    config: TrainConfig, run_dir: Path, *, device: torch.device | None = None, distributed: Distributed | None = None
) -> Parts:
    """Data, model, optimiser and schedule for ``config``; every user error surfaces here.

    ``device`` defaults to ``config.device`` resolved; a distributed run passes its process's.
    """
    device = resolve_device(config.device) if device is None else device
    check_batch_size(config.batch_size, distributed)
    splits = datalib.open_splits(config)
    height, width, channels = splits.shape
    torch.manual_seed(config.seed)  # the model's initial weights, then dropout, follow from the seed
    model = create_model(config, (channels, height, width), len(splits.classes)).to(device)
    if distributed is not None and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # statistics over the global batch
    main = distributed is None or distributed.main
    normalizer = datalib.fit_normalizer(config, splits, run_dir, write=main).to(device)
    augment = datalib.load_augment(config.augment, config.seed)
    pin = device.type == "cuda"
    train_loader = datalib.Loader(
        splits.train_images, splits.train_labels, batch_size=config.batch_size, train=True,
        seed=config.seed, augment=augment, workers=config.workers, pin_memory=pin, distributed=distributed,
    )  # fmt: skip
    val_loader = datalib.Loader(
        splits.val_images, splits.val_labels, batch_size=config.batch_size, train=False,
        seed=config.seed, augment=None, workers=0, pin_memory=pin, distributed=distributed,
    )  # fmt: skip
    channels_last = uses_channels_last(config, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_batches = datalib.DeviceBatches(train_loader, normalizer, device, channels_last=channels_last)
    val_batches = datalib.DeviceBatches(val_loader, normalizer, device, channels_last=channels_last)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, len(train_loader))
    if config.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise AugkitError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    # bf16 needs no loss scaling; the scaler is kept (disabled) so checkpoints have one shape.
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    return Parts(config, device, splits, model, normalizer, train_batches, val_batches, optimizer, scheduler, scaler,
                 distributed)  # fmt: skip


# ----------------------------------------------------------------------------- the loop


class NonFiniteLoss(RunError):
    """The loss became NaN or Inf: training stops at once, keeping the last good checkpoint."""


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    distributed: Distributed | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (or continue the run there with ``resume``); returns the summary.

    ``distributed``: this process's place in a torchrun run (see augkit.train.distributed);
    every process calls ``train`` alike, and only rank 0 writes and logs.
    """
    device = resolve_device(config.device)
    if distributed is None:
        return _train(config, Path(run_dir), device, resume, quiet, log, None)
    device = distributed.start(device)
    try:
        run_dir = Path(distributed.broadcast(str(run_dir)))  # rank 0's, if each process named its own
        if not distributed.main:
            quiet, log = True, lambda message: None
        return _train(config, run_dir, device, resume, quiet, log, distributed)
    finally:
        distributed.stop()


def _train(
    config: TrainConfig, run_dir: Path, device: torch.device, resume: bool, quiet: bool,
    log: Callable[[str], None], distributed: Distributed | None,
) -> dict[str, Any]:  # fmt: skip
    main = distributed is None or distributed.main
    problem = None
    if main:
        try:
            _check_run_dir(run_dir, resume)
        except AugkitError as error:
            problem = str(error)
    if distributed is not None:
        problem = distributed.broadcast(problem)  # every process stops, not only rank 0
    if problem is not None:
        raise AugkitError(problem)
    created = not run_dir.exists()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        parts = build(config, run_dir, device=device, distributed=distributed)
    except AugkitError:
        if created and main:  # a mistake in the input leaves nothing behind: the same -o works once fixed
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    model, optimizer = parts.model, parts.optimizer
    if main:
        config.save(run_dir / CONFIG)

    history: list[dict[str, float]] = []
    best = {"val_acc": -1.0, "epoch": 0}
    start_epoch = 0
    if resume:
        start_epoch, history, best = _restore(parts, run_dir / LAST)
        log(f"resuming {run_dir} after epoch {start_epoch} of {config.epochs}")

    _describe(parts, log)
    step_model = model
    if distributed is not None:  # gradients averaged across the processes after each backward
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        step_model = torch.compile(step_model)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # The plain model: its hooks fire inside DistributedDataParallel and torch.compile too.
    watcher = ActivationWatcher(model, config.watch_activations if main else 0, run_dir / ACTIVATIONS_FILE, log=log)
    tensorboard = _tensorboard(run_dir) if config.tensorboard and main else None
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            trained = _train_epoch(parts, step_model, criterion, epoch, run_dir, history, quiet, watcher)
            val_loss, val_acc, _, _ = evaluate_batches(model, parts, parts.val_batches, criterion)
            row = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": trained["loss"],
                "train_acc": trained["acc"],
                "val_loss": val_loss,
                "val_acc": val_acc,
                "seconds": time.perf_counter() - started,
                "images_per_second": trained["images"] / trained["seconds"],
            }
            history.append(row)
            is_best = val_acc > best["val_acc"]
            if is_best:
                best = {"val_acc": val_acc, "epoch": epoch + 1}
            if main:
                state = _state(parts, epoch + 1, history, best)
                save_checkpoint(run_dir / LAST, state)
                if is_best:
                    save_checkpoint(run_dir / BEST, state)
                _write_metrics(run_dir / METRICS, history)
            if tensorboard is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
                    tensorboard.add_scalar(key, row[key], epoch + 1)
            if not quiet:
                log(f"epoch {epoch + 1:>3}/{config.epochs}  lr {lr:.4g}  train loss {row['train_loss']:.4f} "
                    f"acc {row['train_acc']:.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
                    f"{row['seconds']:.1f}s  {row['images_per_second']:.0f} img/s")  # fmt: skip
    finally:
        parts.train_batches.close()  # stop augmentation workers now (not at garbage collection)
    if tensorboard is not None:
        tensorboard.close()
    summary = _summary(history, best, parts)
    if not main:
        return summary
    atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if history:
        plot_curves(history, run_dir / CURVES, title=f"{run_dir.name}: {config.model}, {config.activation}, {config.init}")
    return summary


# Losses stay on the device and are read every SYNC_EVERY steps and at the end of an epoch:
# each read is a CPU-GPU sync point, and even on the CPU reading every step cost more than
# 10% of a small model's step (bench/train_overhead.py). The NaN check still names the exact
# step: it looks at every loss since the last read.
SYNC_EVERY = 25


def _train_epoch(
    parts: Parts, step_model: nn.Module, criterion: nn.Module, epoch: int, run_dir: Path,
    history: list[dict[str, float]], quiet: bool, watcher: ActivationWatcher,
) -> dict[str, float]:  # fmt: skip
    """One epoch of optimisation steps: its mean loss, accuracy, images and seconds."""
    config, model, optimizer, scheduler, device = parts.config, parts.model, parts.optimizer, parts.scheduler, parts.device
    started = time.perf_counter()
    model.train()
    steps = len(parts.train_batches)
    losses: list[torch.Tensor] = []  # one device scalar per step, stacked when read
    correct: list[torch.Tensor] = []
    seen = checked = 0
    with _bar(steps, f"epoch {epoch + 1}/{config.epochs}", quiet) as bar, watcher:
        for step, (inputs, targets) in enumerate(parts.train_batches.batches(epoch)):
            global_step = epoch * steps + step
            watcher.before_step(global_step)  # arms the activation hooks every --watch-activations steps
            with parts.autocast:
                logits = step_model(inputs)
                loss = criterion(logits.float(), targets)
            penalty = l1_penalty(model, config.l1)
            optimizer.zero_grad(set_to_none=True)
            (loss if penalty is None else loss + penalty).backward()
            watcher.after_backward(global_step, epoch + 1)
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
            correct.append((logits.argmax(dim=1) == targets).sum())
            seen += len(targets)
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                _check_finite(torch.stack(losses[checked:]), checked, epoch, parts, run_dir, history)
                checked = step + 1
                if not bar.disable:
                    bar.update(step + 1 - bar.n)
                    bar.set_postfix(loss=f"{torch.stack(losses).mean().item():.4f}",
                                    acc=f"{torch.stack(correct).sum().item() / seen:.4f}",
                                    img_s=f"{seen / (time.perf_counter() - started):.0f}", refresh=False)  # fmt: skip
    # Every process's share of each batch is the same size: the mean of their step losses is the
    # global batch's loss, and the sums of correct answers and of images are the global ones.
    totals = torch.stack([
        torch.stack(losses).mean() if losses else torch.tensor(math.nan, device=device),
        torch.stack(correct).sum() if correct else torch.zeros((), device=device),
        torch.tensor(float(seen), device=device),
    ])  # fmt: skip
    if parts.distributed is not None:
        parts.distributed.sum(totals)
        totals[0] /= parts.distributed.world_size
    loss, right, images = totals.tolist()
    seconds = time.perf_counter() - started
    return {"loss": loss, "acc": right / images if images else math.nan, "images": int(images), "seconds": seconds}


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, parts: Parts, batches: datalib.DeviceBatches, criterion: nn.Module
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy, predictions, labels) over every batch of ``batches``, in eval mode."""
    model.eval()
    total_loss = torch.zeros((), device=parts.device)
    predictions, labels = [], []
    for inputs, targets in batches.batches(0):
        with parts.autocast:
            logits = model(inputs)
        total_loss += criterion(logits.float(), targets) * len(targets)
        predictions.append(logits.argmax(dim=1))
        labels.append(targets)
    model.train()
    predicted = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long, device=parts.device)
    truth = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long, device=parts.device)
    # One transfer for the three numbers; summed over the processes of a distributed run, whose
    # shares of the split together cover it once.
    totals = torch.stack([total_loss, (predicted == truth).sum().float(), torch.tensor(float(len(truth)), device=parts.device)])
    if parts.distributed is not None:
        parts.distributed.sum(totals)
    loss_sum, right, count = totals.tolist()
    if not count:
        return math.nan, math.nan, predicted.cpu(), truth.cpu()
    return loss_sum / count, right / count, predicted.cpu(), truth.cpu()


# ----------------------------------------------------------------------------- helpers


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not run_dir.is_dir():
            raise AugkitError(f"--resume {run_dir}: no such folder; give the RUN_DIR of an earlier run")
        if not (run_dir / LAST).is_file():
            raise AugkitError(f"--resume {run_dir}: no {LAST} there (no epoch finished yet); start it again without --resume")
    elif run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        what = "holds a run" if (run_dir / CONFIG).exists() else "is not empty"
        raise AugkitError(f"RUN_DIR {run_dir} {what}; continue it with --resume {run_dir}, or choose another -o")


def _check_finite(
    losses: torch.Tensor, offset: int, epoch: int, parts: Parts, run_dir: Path, history: list[dict[str, float]]
) -> None:
    """Stop at the first non-finite loss, saying where and what usually causes it.

    In a distributed run the processes agree on the first bad step (one all-reduce per read), so
    they all stop together instead of leaving the others waiting for a gradient exchange.
    """
    finite = torch.isfinite(losses)
    bad = (~finite).nonzero()
    first = torch.tensor([offset + int(bad[0, 0]) if len(bad) else offset + len(losses)], device=losses.device)
    if parts.distributed is not None:
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
    step = int(first.item())
    if step == offset + len(losses):
        return
    local = losses[step - offset].item() if step - offset < len(losses) else math.nan
    value = local if not math.isfinite(local) else "NaN or Inf (in another process)"
    config = parts.config
    kept = (
        f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {run_dir / LAST}"
        if history else "no epoch had finished, so there is no checkpoint"
    )  # fmt: skip
    if history and parts.main:
        plot_curves(history, run_dir / CURVES)
    causes = [f"a learning rate too high (--lr {config.lr:g}; try {config.lr / 10:g})"]
    if config.init in ("normal", "uniform", "constant"):
        causes.append(f"weights initialised too large (--init {config.init} --init-std {config.init_std:g}; try kaiming_normal)")
    elif not config.batchnorm:
        causes.append("a deep network without normalisation (try --batchnorm)")
    raise NonFiniteLoss(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}: usually {' or '.join(causes)}; {kept}")


def _state(parts: Parts, epochs_done: int, history: list[dict[str, float]], best: dict[str, float]) -> dict[str, Any]:
    """What a checkpoint holds: enough to continue the run exactly, and to rebuild its model."""
    return {
        "model": unwrapped(parts.model).state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "epoch": epochs_done,
        "history": history,
        "best": best,
        "rng": rng_state(),
        "config": parts.config.to_dict(),
        "classes": list(parts.splits.classes),
        "shape": list(parts.splits.shape),
        "augkit_version": augkit.__version__,
    }


def _restore(parts: Parts, path: Path) -> tuple[int, list[dict[str, float]], dict[str, float]]:
    """Load a checkpoint's state into ``parts``; returns (epochs done, history, best)."""
    state = load_checkpoint(path, map_location=parts.device)
    unwrapped(parts.model).load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return state["epoch"], state["history"], state["best"]


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """The whole table, rewritten atomically each epoch: after a crash it matches last.pt."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue())


def _summary(history: list[dict[str, float]], best: dict[str, float], parts: Parts) -> dict[str, Any]:
    speeds = sorted(r["images_per_second"] for r in history)
    return {
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_val_acc": history[-1]["val_acc"] if history else None,
        "final_train_acc": history[-1]["train_acc"] if history else None,
        "epochs": len(history),
        "seconds": round(sum(r["seconds"] for r in history), 3),  # training and validation, all epochs
        "images_per_second": round(speeds[len(speeds) // 2], 1) if speeds else None,  # training, median epoch
        "device": str(parts.device),
        "processes": parts.distributed.world_size if parts.distributed is not None else 1,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(parts.device) / 2**20, 1) if parts.device.type == "cuda" else None,
        "parameters": count_parameters(parts.model),
        "classes": len(parts.splits.classes),
        "train_images": len(parts.splits.train_labels),
        "val_images": len(parts.splits.val_labels),
        "data": parts.splits.source,
    }


def _describe(parts: Parts, log: Callable[[str], None]) -> None:
    splits, config = parts.splits, parts.config
    h, w, c = splits.shape
    log(f"data: {splits.source}: {len(splits.train_labels)} train / {len(splits.val_labels)} val images, "
        f"{h}x{w}x{c}, {len(splits.classes)} classes")  # fmt: skip
    if splits.skipped:
        log(f"skipped {len(splits.skipped)} unreadable file(s), e.g. {splits.skipped[0][0]}: {splits.skipped[0][1]}")
    log(f"model: {config.model}, {count_parameters(parts.model):,} parameters, on {parts.device}")
    if config.amp and parts.device.type != "cuda":
        log(f"note: --amp applies on CUDA only; training in float32 on {parts.device}")


@contextlib.contextmanager
def _bar(total: int, description: str, quiet: bool) -> Iterator[Any]:
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI); the per-epoch line stays.
    with tqdm(total=total, desc=description, unit="step", leave=False, disable=True if quiet else None,
              dynamic_ncols=True) as bar:  # fmt: skip
        yield bar


def _tensorboard(run_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))
