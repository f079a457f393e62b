"""The training loop: ``train(config, run_dir)``, one function read top to bottom.

Each optimisation step, in a fixed order: forward (bf16 autocast with --amp on CUDA), loss
(+ L1 penalty), zero_grad, backward, clip, optimiser step, scheduler step, record. Each epoch:
train, evaluate on val, check that the epoch is good (its losses and the weights it leaves are
finite; otherwise the run stops and keeps the previous epoch's files), then write ``best.pt``
(when it is the best), ``last.pt`` and ``metrics.csv`` and, at the end, ``summary.json`` and
``curves.png``. Everything a run needs is built first by ``build``, so a mistake in the config
or the data stops the run before any training.

A RUN_DIR that holds no ``last.pt`` and only what a run writes before its first checkpoint (a
run killed, diverged or out of disk space during its first epoch) is started afresh by the same
``-o`` or by ``--resume``; a RUN_DIR with a ``last.pt`` is continued by ``--resume`` only.
Ctrl-C ends a run in one line (``RunError``, exit code 1) saying which epoch ``last.pt`` holds
and the ``--resume`` command that continues; a save under way finishes first, so last.pt,
best.pt and metrics.csv agree. RUN_DIR's name must be valid UTF-8 (``check_run_dir_name``).

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
import shlex
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
from augkit.errors import DISK_FULL, AugkitError, RunError
from augkit.files import TEMPORARY_NAME, atomic_write
from augkit.processes import sigint_deferred
from augkit.train import data as datalib
from augkit.train.checkpoint import (
    BEST, LAST, METRIC_COLUMNS, checkpoint_bytes, count_nonfinite, load_checkpoint, restore_training, rng_state,
    save_checkpoint, training_tensors, unwrapped,
)  # fmt: skip
from augkit.train.config import TrainConfig, check_utf8
from augkit.train.distributed import Distributed, check_batch_size
from augkit.train.hooks import ACTIVATIONS_FILE, ActivationWatcher
from augkit.train.models import count_parameters, create_model
from augkit.train.optim import create_optimizer, create_scheduler, l1_penalty
from augkit.train.threads import ThreadChoice, apply_threads, choose_threads, count_step_flops, free_cores
from augkit.train.plots import describe_tricks, plot_curves

CONFIG, METRICS, SUMMARY, CURVES = "config.yaml", "metrics.csv", "summary.json", "curves.png"
TENSORBOARD = "tensorboard"


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
    threads: ThreadChoice | None = None  # torch's intra-op threads in this process, and why

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
    Sets torch's intra-op threads of this process (``augkit.train.threads``) once the model is
    built: ``config.threads``, or chosen from a step's work and the free cores.
    """
    free = free_cores()  # read before torch's threads first work: spinning, they would count as busy
    device = resolve_device(config.device) if device is None else device
    check_batch_size(config.batch_size, distributed)
    splits = datalib.open_splits(config)
    height, width, channels = splits.shape
    torch.manual_seed(config.seed)  # the model's initial weights, then dropout, follow from the seed
    model = create_model(config, (channels, height, width), len(splits.classes))
    # The DataLoader workers keep a core each busy (none run with --augment-on device); the
    # processes of a torchrun run share the rest.
    processes = distributed.world_size if distributed is not None else 1
    workers = config.workers if config.augment_on == "cpu" else 0
    share = max(1, (free - workers) // processes)
    step_flops = count_step_flops(model, (channels, height, width), config.batch_size // processes)
    threads = apply_threads(choose_threads(step_flops, config.threads, free=share))
    model = model.to(device)
    if distributed is not None and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # statistics over the global batch
    main = distributed is None or distributed.main
    normalizer = datalib.fit_normalizer(config, splits, run_dir, write=main).to(device)
    augment = datalib.load_augment(config.augment, config.seed)
    device_augment = None
    if config.augment_on == "device" and augment is not None:  # the workers only slice batches
        device_augment, augment = datalib.create_device_augment(augment, splits.train_images), None
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
    train_batches = datalib.DeviceBatches(train_loader, normalizer, device, channels_last=channels_last,
                                          augment=device_augment)  # fmt: skip
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
                 distributed, threads)  # fmt: skip


# ----------------------------------------------------------------------------- the loop


class NonFiniteLoss(RunError):
    """A loss, or the weights, became NaN or Inf: training stops at once, keeping the last good checkpoint.

    ``str()`` is the message for ``augkit train`` (its flags, the checkpoint kept); ``outcome``
    says the same in config fields (``lr=100``), for a run that is one row of an ablation.
    """

    def __init__(self, message: str, outcome: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome or message


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
    created = not run_dir.exists()
    problem, restore = None, resume
    if main:  # before the other processes look into RUN_DIR: a stale stats.json is gone by then
        try:
            _check_outside_data(run_dir, config)
            restore = _prepare_run_dir(run_dir, resume, log)
        except AugkitError as error:
            problem = str(error)
    if distributed is not None:
        problem, restore = distributed.broadcast((problem, restore))  # every process stops, not only rank 0
    if problem is not None:
        raise AugkitError(problem)
    # From here a Ctrl-C ends the run in one line: what last.pt holds, and the command that continues.
    saved = None  # the epoch last.pt holds, once restored or saved by this run
    try:
        if main:  # config.yaml first: a folder augkit writes into is recognisable as a run from then on
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / CONFIG)
        try:
            parts = build(config, run_dir, device=device, distributed=distributed)
        except AugkitError:
            if created and main:  # a mistake in the input leaves nothing behind: the same -o works once fixed
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        model, optimizer = parts.model, parts.optimizer

        history: list[dict[str, float]] = []
        best = {"val_acc": -1.0, "epoch": 0}
        start_epoch = 0
        if restore:
            path = run_dir / LAST
            state = load_checkpoint(path, map_location=device, resume=True)
            start_epoch, history, best = restore_training(state, path, model, optimizer, parts.scheduler, parts.scaler,
                                                          len(parts.train_batches))  # fmt: skip
            if main:  # a save cut short (a full disk) may have left metrics.csv a row behind last.pt
                _write_metrics(run_dir / METRICS, history)
            saved = start_epoch

        # Printed once everything is checked: a mistake in the input is one line, not the config and a line.
        log(f"config ({run_dir / CONFIG}):\n" + "".join(f"  {line}\n" for line in config.to_yaml().splitlines()))
        if restore:
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
                _check_good(parts, row, run_dir, history)
                history.append(row)
                is_best = val_acc > best["val_acc"]
                if is_best:
                    best = {"val_acc": val_acc, "epoch": epoch + 1}
                if main:
                    with sigint_deferred():  # a Ctrl-C waits for the save: last.pt, best.pt and metrics.csv agree
                        _save_epoch(parts, run_dir, history, best, is_best)
                        saved = epoch + 1  # before the held Ctrl-C is raised on the way out: the message names it
                else:
                    saved = epoch + 1
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
        try:
            atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
            if history:
                plot_curves(history, run_dir / CURVES, title=f"{run_dir.name}: {describe_tricks(config)}")
        except OSError as error:
            raise _write_failed(error, f"write {SUMMARY} and {CURVES}", f"{LAST} holds all {len(history)} epochs", run_dir) from None
        return summary
    except KeyboardInterrupt:
        raise _interrupted(run_dir, config, saved, restore) from None


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
            try:
                optimizer.step()
            except RuntimeError as error:
                # torch's optimisers raise, rather than return Inf, when a step no longer fits a
                # float (Adam at --lr 3e38 divides it by its bias correction): a diverged run.
                if "overflow" not in str(error):
                    raise
                raise _diverged(f"the optimiser step overflowed at epoch {epoch + 1}, step {step + 1}", parts,
                                run_dir, history) from None  # fmt: skip
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


# What a run writes into RUN_DIR besides last.pt (and atomic_write's temporaries of these,
# ``.NAME.*.tmp``, which a kill leaves behind). A RUN_DIR holding only these, one of them an
# augkit config.yaml, and no last.pt, is a run that stopped before its first checkpoint.
_RUN_FILES = frozenset({CONFIG, datalib.STATS_FILE, "stats.mean_image.npy", METRICS, SUMMARY, CURVES, ACTIVATIONS_FILE, BEST})


def _prepare_run_dir(run_dir: Path, resume: bool, log: Callable[[str], None]) -> bool:
    """Check that RUN_DIR can take the run; returns whether to restore its last.pt.

    A new run needs a missing or empty folder; --resume, one with a last.pt. Either starts
    afresh in a folder that holds only what a run writes before its first checkpoint (killed,
    diverged or out of disk space in its first epoch): its files go, config.yaml is rewritten.
    Anything else is refused (AugkitError), and nothing is deleted that augkit did not write.
    """
    check_run_dir_name(run_dir, resume)
    if resume and not run_dir.is_dir():
        raise AugkitError(f"--resume {run_dir}: no such folder; give the RUN_DIR of an earlier run")
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise AugkitError(f"RUN_DIR {run_dir} is a file; choose another -o")
    if (run_dir / LAST).exists():
        if resume:
            return True
        raise AugkitError(f"RUN_DIR {run_dir} holds a run; continue it with --resume {run_dir}, or choose another -o")
    entries = sorted(run_dir.iterdir())
    if not entries:
        return False
    # Epochs recorded there (summary.json, or a row in metrics.csv, both written after last.pt):
    # a run whose last.pt was moved or deleted, not one to start afresh. (best.pt alone is not:
    # it is saved before last.pt, so a disk that filled at the first last.pt leaves it.)
    finished = [name for name in (SUMMARY, METRICS) if _holds_epochs(run_dir / name)]
    if finished:
        raise AugkitError(f"RUN_DIR {run_dir} holds a run that finished epochs ({', '.join(finished)}) but has no {LAST}; "
                          f"nothing was deleted: choose another -o")  # fmt: skip
    foreign = [p.name for p in entries if not _written_by_run(p)]
    if foreign or not _is_train_config(run_dir / CONFIG):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        what = f"files augkit did not write ({shown})" if foreign else f"no {CONFIG} of an `augkit train` run"
        if resume:
            raise AugkitError(f"--resume {run_dir}: no {LAST} there (no epoch finished), and it holds {what}; "
                              f"start the run again with -o in a new folder")  # fmt: skip
        raise AugkitError(f"RUN_DIR {run_dir} is not empty (it holds {what}); choose another -o")
    removed = [p for p in entries if p.name != CONFIG]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    log(f"{run_dir} holds a run that stopped before its first checkpoint (no {LAST}): starting it afresh"
        + (f", removing {', '.join(p.name for p in removed)}" if removed else ""))  # fmt: skip
    return False


def _check_outside_data(run_dir: Path, config: TrainConfig) -> None:
    """Refuse a RUN_DIR inside the dataset (or the dataset inside it): the next run would read
    the run's PNGs as images of a class (``preprocess`` refuses an OUT inside its source alike)."""
    data = Path(config.data) if config.data is not None else augkit.sample_data_dir() / "digits"
    if not data.is_dir():
        return
    source, target = data.resolve(), run_dir.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise AugkitError(
            f"RUN_DIR {run_dir} and the dataset {data} overlap: the run's files would be read as images "
            f"by the next run; choose an -o outside the dataset"
        )


def _holds_epochs(path: Path) -> bool:
    """Whether ``path`` (summary.json, or metrics.csv with a row under its header) records an epoch."""
    if not path.is_file():
        return False
    if path.name == SUMMARY:
        return True
    try:
        with open(path, "rb") as f:
            return len(f.read(1 << 16).splitlines()) > 1
    except OSError:
        return False


def check_run_dir_name(run_dir: Path, resume: bool = False) -> None:
    """Refuse a RUN_DIR whose name is not valid UTF-8 (``check_utf8``): its name goes into the
    run's plots and messages, and its path into commands to copy."""
    fix = "rename the folder to a UTF-8 name, then resume it" if resume else "choose a UTF-8 name for -o"
    check_utf8(run_dir, "RUN_DIR", fix=fix)


def _written_by_run(path: Path) -> bool:
    """Whether ``path`` is one of the files a run writes before its first checkpoint."""
    if path.name == TENSORBOARD:
        return path.is_dir() and not path.is_symlink()
    temporary = TEMPORARY_NAME.fullmatch(path.name)  # run files' names are short enough to be whole there
    name = temporary["name"] if temporary else path.name
    return (name in _RUN_FILES or (temporary is not None and name == LAST)) and not path.is_dir()


def _is_train_config(path: Path) -> bool:
    try:
        TrainConfig.load(path)
    except AugkitError:
        return False
    return True


def _check_good(parts: Parts, row: dict[str, float], run_dir: Path, history: list[dict[str, float]]) -> None:
    """Stop unless the epoch just ended is good: its losses finite, and every weight, buffer and
    optimiser value it leaves finite. Only a good epoch is saved.

    The weights are checked on the device and read once per epoch (``count_nonfinite``); a
    distributed run sums the counts of every process (BatchNorm statistics may differ between
    them), so that all stop together.
    """
    bad = count_nonfinite(training_tensors(parts.model, parts.optimizer))
    if parts.distributed is not None:
        bad = int(parts.distributed.sum(torch.tensor(bad, device=parts.device)))
    problems = [f"the {name} loss became {row[key]:g}" for key, name in (("train_loss", "training"), ("val_loss", "validation"))
                if not math.isfinite(row[key])]  # fmt: skip
    if bad:
        problems.append(f"{bad} weights or optimiser values became NaN or Inf")
    if problems:
        raise _diverged(f"{' and '.join(problems)} in epoch {int(row['epoch'])}", parts, run_dir, history)


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
    raise _diverged(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}", parts, run_dir, history)


def _diverged(what: str, parts: Parts, run_dir: Path, history: list[dict[str, float]]) -> NonFiniteLoss:
    """The error for a run that diverged: ``what`` happened, what usually causes it, what is kept."""
    config = parts.config
    kept = (
        f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {run_dir / LAST}"
        if history else f"no epoch ended with finite losses and weights, so no checkpoint was saved: "
                        f"run again with a changed config (the same -o {run_dir} starts afresh)"
    )  # fmt: skip
    if history and parts.main:
        plot_curves(history, run_dir / CURVES, title=f"{run_dir.name} (diverged): {describe_tricks(config)}")
    # Each cause as flags (augkit train) and as config fields (a row of an ablation): (given, fix) in each form.
    causes = [("a learning rate too high ({}; try {})",
               (f"--lr {config.lr:g}", f"lr={config.lr:g}"), (f"{config.lr / 10:g}", f"{config.lr / 10:g}"))]  # fmt: skip
    if config.init in ("normal", "uniform", "constant"):
        causes.append(("weights initialised too large ({}; try {})",
                       (f"--init {config.init} --init-std {config.init_std:g}", f"init={config.init}, init_std={config.init_std:g}"),
                       ("--init kaiming_normal", "init=kaiming_normal")))  # fmt: skip
    elif not config.batchnorm:
        causes.append(("a deep network without normalisation ({}; try {})", ("--no-batchnorm", "batchnorm=false"),
                       ("--batchnorm", "batchnorm=true")))  # fmt: skip

    def usually(form: int) -> str:
        return " or ".join(text.format(given[form], fix[form]) for text, given, fix in causes)

    return NonFiniteLoss(f"{what}: usually {usually(0)}; {kept}", outcome=f"{what}: usually {usually(1)}")


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


def _save_epoch(parts: Parts, run_dir: Path, history: list[dict[str, float]], best: dict[str, float], is_best: bool) -> None:
    """Save the good epoch just ended: best.pt (when it is the best), then last.pt, then metrics.csv.

    Each write is atomic, and in this order one that fails (a full disk) leaves last.pt and
    metrics.csv at the previous epoch (best.pt may hold this one, a good checkpoint too); only
    a failure of metrics.csv itself leaves it a row behind last.pt, and --resume rewrites it.
    Any OSError ends the run: RunError (exit code 1) saying what is kept and how to continue.
    """
    epoch = history[-1]["epoch"]
    payload = checkpoint_bytes(_state(parts, epoch, history, best))
    kept = history[-2]["epoch"] if len(history) > 1 else None
    try:
        if is_best:
            save_checkpoint(run_dir / BEST, payload)
        save_checkpoint(run_dir / LAST, payload)
        kept = epoch
        _write_metrics(run_dir / METRICS, history)
    except OSError as error:
        holds = f"{LAST} holds epoch {kept}" if kept else f"no {LAST} was saved yet"
        raise _write_failed(error, f"save epoch {epoch}", holds, run_dir) from None


def _write_failed(error: OSError, doing: str, holds: str, run_dir: Path) -> RunError:
    """A write into RUN_DIR that failed mid-run (a full disk): what failed, what is kept, the way on."""
    fix = "free some space" if error.errno in DISK_FULL else "fix that"
    return RunError(f"could not {doing} in {run_dir} ({error.strerror or error}); {holds}; "
                    f"{fix}, then continue with: {_resume_command(run_dir)}")


def _interrupted(run_dir: Path, config: TrainConfig, saved: int | None, restore: bool) -> RunError:
    """The error for a run stopped by Ctrl-C: what RUN_DIR keeps, and the command that continues.

    ``saved``: the epoch last.pt holds (restored or saved by this run), None if neither happened yet.
    ``--resume`` continues from last.pt, or starts afresh a RUN_DIR stopped before its first one.
    """
    if saved is not None:
        kept = f"{LAST} holds epoch {saved} of {config.epochs}, the last good checkpoint; continue with"
    elif restore:
        kept = f"{LAST} is kept as it was; continue with"
    else:
        kept = "no epoch had ended, so no checkpoint was saved; start it again with"
    return RunError(f"interrupted; {kept}: {_resume_command(run_dir)}")


def _resume_command(run_dir: Path) -> str:
    """The command that continues the run in ``run_dir``, quoted for a POSIX shell."""
    return f"augkit train --resume {shlex.quote(str(run_dir))}"


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
        "threads": parts.threads.threads if parts.threads is not None else None,  # torch's intra-op threads, each process
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
    threads = f", {parts.threads.describe()}" if parts.threads is not None else ""
    log(f"model: {config.model}, {count_parameters(parts.model):,} parameters, on {parts.device}{threads}")
    if config.amp and parts.device.type != "cuda":
        log(f"note: --amp applies on CUDA only; training in float32 on {parts.device}")
    if parts.train_batches.augment is not None:
        log(f"augment: on {parts.device}, whole batches (--augment-on device): {parts.train_batches.augment.pipeline.steps}")
        if config.workers:
            log(f"note: --workers {config.workers} is not used with --augment-on device: batches are sliced in "
                f"this process and augmented on {parts.device}")


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
