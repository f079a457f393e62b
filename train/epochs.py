"""What a run keeps of its epochs: a good epoch saved (best.pt, last.pt, metrics.csv, in an order
that keeps them in agreement), the summary at the end, and the errors for a run stopped part way
(a failed write, Ctrl-C) that say which epoch last.pt holds and the command that continues."""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path
from typing import Any

import torch

import augkit
from augkit.errors import DISK_FULL, RunError
from augkit.files import atomic_write
from augkit.train.checkpoint import BEST, LAST, METRIC_COLUMNS, checkpoint_bytes, rng_state, save_checkpoint, unwrapped
from augkit.train.config import TrainConfig
from augkit.train.models import count_parameters
from augkit.train.optim import peak_lr
from augkit.train.parts import Parts
from augkit.train.run_dir import METRICS


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


def save_epoch(parts: Parts, run_dir: Path, history: list[dict[str, float]], best: dict[str, float], is_best: bool) -> None:
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
        write_metrics(run_dir / METRICS, history)
    except OSError as error:
        holds = f"{LAST} holds epoch {kept}" if kept else f"no {LAST} was saved yet"
        raise write_failed(error, f"save epoch {epoch}", holds, run_dir) from None


def write_failed(error: OSError, doing: str, holds: str, run_dir: Path) -> RunError:
    """A write into RUN_DIR that failed mid-run (a full disk): what failed, what is kept, the way on."""
    fix = "free some space" if error.errno in DISK_FULL else "fix that"
    return RunError(f"could not {doing} in {run_dir} ({error.strerror or error}); {holds}; "
                    f"{fix}, then continue with: {_resume_command(run_dir)}")


def interrupted(run_dir: Path, config: TrainConfig, saved: int | None, restore: bool) -> RunError:
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


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """The whole table, rewritten atomically each epoch: after a crash it matches last.pt."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, buffer.getvalue())


def summarize(history: list[dict[str, float]], best: dict[str, float], parts: Parts) -> dict[str, Any]:
    """What summary.json holds: best and final accuracy, time, training speed, device, sizes."""
    speeds = sorted(r["images_per_second"] for r in history)
    return {
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "final_val_acc": history[-1]["val_acc"] if history else None,
        # As the last epoch measured it (train mode); with MixUp/CutMix, against each mixed sample's dominant label.
        "final_train_acc": history[-1]["train_acc"] if history else None,
        "epochs": len(history),
        "seconds": round(sum(r["seconds"] for r in history), 3),  # training and validation, all epochs
        "images_per_second": round(speeds[len(speeds) // 2], 1) if speeds else None,  # training, median epoch
        "device": str(parts.device),
        "processes": parts.distributed.world_size if parts.distributed is not None else 1,
        "threads": parts.threads.threads if parts.threads is not None else None,  # torch's intra-op threads, each process
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(parts.device) / 2**20, 1) if parts.device.type == "cuda" else None,
        "peak_lr": peak_lr(parts.config),  # the lr the schedule peaks at (after --lr-scaling)
        "parameters": count_parameters(parts.model),
        "classes": len(parts.splits.classes),
        "train_images": len(parts.splits.train_labels),
        "val_images": len(parts.splits.val_labels),
        "data": parts.splits.source,
    }
