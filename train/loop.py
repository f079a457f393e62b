"""The training loop: ``train(config, run_dir)``, one function read top to bottom.

Each optimisation step, in a fixed order: forward (bf16 autocast with --amp on CUDA), loss
(+ L1 penalty), zero_grad, backward, clip, optimiser step, scheduler step, record. Each epoch:
train, evaluate on val, check that the epoch is good (its losses and the weights it leaves are
finite; otherwise the run stops and keeps the previous epoch's files), then write ``best.pt``
(when it is the best), ``last.pt`` and ``metrics.csv`` and, at the end, ``summary.json`` and
``curves.png``. Everything a run needs is built first by ``build``, so a mistake in the config
or the data stops the run before any training.

Ctrl-C ends a run in one line (``RunError``, exit code 1) saying which epoch ``last.pt`` holds
and the ``--resume`` command that continues; a save under way finishes first, so last.pt,
best.pt and metrics.csv agree. Which folder can take a run, and what it holds after one:
``augkit.train.run_dir``; the checks that only good epochs are saved: ``augkit.train.divergence``;
saving them and the summary: ``augkit.train.epochs``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.files import atomic_write
from augkit.processes import sigint_deferred
from augkit.train import data as datalib
from augkit.train.checkpoint import LAST, load_checkpoint, restore_training
from augkit.train.config import TrainConfig
from augkit.train.distributed import Distributed, check_batch_size
from augkit.train.divergence import check_finite, check_good, diverged
from augkit.train.epochs import interrupted, save_epoch, summarize, write_failed, write_metrics
from augkit.train.hooks import ACTIVATIONS_FILE, ActivationWatcher
from augkit.train.losses import SoftCrossEntropy, create_loss
from augkit.train.mix import create_mixup
from augkit.train.models import count_parameters, create_model
from augkit.train.optim import create_optimizer, create_scheduler, l1_penalty
from augkit.train.parts import Parts
from augkit.train.plots import describe_tricks, plot_curves
from augkit.train.run_dir import CONFIG, CURVES, METRICS, SUMMARY, TENSORBOARD, check_outside_data, prepare_run_dir
from augkit.train.threads import apply_threads, choose_threads, count_step_flops, free_cores


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
    _check_batchnorm_batches(config, len(splits.train_labels), distributed)
    torch.manual_seed(config.seed)  # the model's initial weights, then dropout, follow from the seed
    model = create_model(config, (channels, height, width), len(splits.classes))
    augment = datalib.load_augment(config.augment, config.seed)
    on_device, augment_reason = datalib.augments_on_device(config, augment) if augment is not None else (False, "")
    create_loss(config)  # an unknown loss, or label smoothing with a hinge loss, fails here, before training
    # The DataLoader workers keep a core each busy (none when augmenting on the device); the
    # processes of a torchrun run share the rest.
    processes = distributed.world_size if distributed is not None else 1
    workers = 0 if on_device else config.workers
    share = max(1, (free - workers) // processes)
    step_flops = count_step_flops(model, (channels, height, width), config.batch_size // processes)
    threads = apply_threads(choose_threads(step_flops, config.threads, free=share))
    model = model.to(device)
    if distributed is not None and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # statistics over the global batch
    main = distributed is None or distributed.main
    normalizer = datalib.fit_normalizer(config, splits, run_dir, write=main).to(device)
    device_augment = None
    if on_device:  # the workers only slice batches
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
                 distributed, threads, augment_reason, mix=create_mixup(config, len(splits.classes)))  # fmt: skip


def _check_batchnorm_batches(config: TrainConfig, images: int, distributed: Distributed | None) -> None:
    """BatchNorm in training mode needs two images a batch (one has no variance: torch raises).

    Raises:
        AugkitError: a training batch of one image on some process (``--batch-size 1``, or one
            training image), naming the fix.
    """
    if not config.batchnorm:
        return
    processes = distributed.world_size if distributed is not None else 1
    # Training batches are all full (the last partial one is dropped), or one batch of every image
    # when there are fewer than --batch-size (augkit.train.batches).
    smallest = min(config.batch_size, images) // processes
    if smallest < 2:
        raise AugkitError(f"BatchNorm needs at least 2 images in every training batch per process, and with "
                          f"{images} training image(s) and --batch-size {config.batch_size} a batch has "
                          f"{max(smallest, 1)}; choose a larger --batch-size (or --train-subset), or --no-batchnorm")  # fmt: skip


# ----------------------------------------------------------------------------- the loop


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
            check_outside_data(run_dir, config)
            restore = prepare_run_dir(run_dir, resume, log)
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
                write_metrics(run_dir / METRICS, history)
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
        criterion = create_loss(config)
        # MixUp/CutMix train on soft cross-entropy against the mixed targets (label smoothing folded into them; on
        # one-hot rows it is cross_entropy); validation keeps the plain criterion and the hard labels.
        train_criterion = criterion if parts.mix is None else SoftCrossEntropy()
        # The plain model: its hooks fire inside DistributedDataParallel and torch.compile too.
        watcher = ActivationWatcher(model, config.watch_activations if main else 0, run_dir / ACTIVATIONS_FILE, log=log)
        tensorboard = _tensorboard(run_dir) if config.tensorboard and main else None
        try:
            for epoch in range(start_epoch, config.epochs):
                started = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                trained = _train_epoch(parts, step_model, train_criterion, epoch, run_dir, history, quiet, watcher)
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
                check_good(parts, row, run_dir, history)
                history.append(row)
                is_best = val_acc > best["val_acc"]
                if is_best:
                    best = {"val_acc": val_acc, "epoch": epoch + 1}
                if main:
                    with sigint_deferred():  # a Ctrl-C waits for the save: last.pt, best.pt and metrics.csv agree
                        save_epoch(parts, run_dir, history, best, is_best)
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
        summary = summarize(history, best, parts)
        if not main:
            return summary
        try:
            atomic_write(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
            if history:
                plot_curves(history, run_dir / CURVES, title=f"{run_dir.name}: {describe_tricks(config)}")
        except OSError as error:
            raise write_failed(error, f"write {SUMMARY} and {CURVES}", f"{LAST} holds all {len(history)} epochs", run_dir) from None
        return summary
    except KeyboardInterrupt:
        raise interrupted(run_dir, config, saved, restore) from None


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
            labels = targets  # what train_acc counts: with MixUp/CutMix, each sample's dominant label
            if parts.mix is not None:  # the normalised batch mixed on the device, drawn from (seed, epoch, step)
                inputs, targets, labels = parts.mix(inputs, targets, epoch, step)
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
                raise diverged(f"the optimiser step overflowed at epoch {epoch + 1}, step {step + 1}", parts,
                                run_dir, history) from None  # fmt: skip
            scheduler.step()
            losses.append(loss.detach())
            correct.append((logits.argmax(dim=1) == labels).sum())
            seen += len(labels)
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                check_finite(torch.stack(losses[checked:]), checked, epoch, parts, run_dir, history)
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
        log(f"augment: whole batches on the training device ({parts.device}; {parts.augment_reason}): "
            f"{', '.join(parts.train_batches.augment.pipeline.steps)}")
        if config.workers:
            log(f"note: --workers {config.workers} is not used with --augment-on device: batches are sliced in this "
                f"process (--augment-on cpu runs the pipeline in workers)")
    elif config.augment:
        where = f"{config.workers} worker process(es)" if config.workers else "this process"
        log(f"augment: per image in {where} ({parts.augment_reason})")
    if config.standardize == "pixel" and (config.augment or parts.mix is not None):
        log("note: --standardize pixel divides each pixel by its own training std: a shift, a rotation or a mix moves "
            "ink onto pixels that were nearly constant (std floored at 1/255), up to 255x the usual scale; it suits "
            "fixed, aligned inputs: use --standardize channel with augmentation")  # fmt: skip
    if parts.mix is not None:
        log(f"mix: {parts.mix.describe()}; loss soft cross-entropy on the mixed targets (validation: {config.loss} "
            f"on the labels); train acc against each mixed sample's dominant label")

@contextlib.contextmanager
def _bar(total: int, description: str, quiet: bool) -> Iterator[Any]:
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI); the per-epoch line stays.
    with tqdm(total=total, desc=description, unit="step", leave=False, disable=True if quiet else None,
              dynamic_ncols=True) as bar:  # fmt: skip
        yield bar


def _tensorboard(run_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / TENSORBOARD))
