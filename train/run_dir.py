"""The run folder, RUN_DIR: the names of the files a run writes there, and which folder can take a run.

A new run needs a missing or empty folder; ``--resume``, one with a ``last.pt``
(``prepare_run_dir``). A RUN_DIR that holds no ``last.pt`` and only what a run writes before its
first checkpoint (a run killed, diverged or out of disk space during its first epoch) is started
afresh by the same ``-o`` or by ``--resume``; anything else is refused, and nothing augkit did
not write is deleted. RUN_DIR must not overlap the dataset (``check_outside_data``), and its
name must be valid UTF-8 (``check_run_dir_name``).

RUN_DIR after a run:
    config.yaml    the resolved config: ``augkit train --config RUN_DIR/config.yaml`` runs it again
    stats.json     the training split's statistics used to standardise (when computed here)
    last.pt        the state after the latest epoch: ``--resume RUN_DIR`` continues from it
    best.pt        the state after the epoch with the best validation accuracy
    metrics.csv    one row per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc, seconds, ...
    summary.json   best_val_acc, best_epoch, final_val_acc, epochs, seconds, images_per_second, device, ...
    curves.png     loss and accuracy, train against val
    activations.jsonl  per-layer statistics every N steps, with --watch-activations N
    tensorboard/   TensorBoard's event files, with --tensorboard
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import augkit
from augkit.errors import AugkitError
from augkit.files import TEMPORARY_NAME
from augkit.train.checkpoint import BEST, LAST
from augkit.train.config import TrainConfig, check_utf8
from augkit.train.device import STATS_FILE
from augkit.train.hooks import ACTIVATIONS_FILE

CONFIG, METRICS, SUMMARY, CURVES = "config.yaml", "metrics.csv", "summary.json", "curves.png"
TENSORBOARD = "tensorboard"  # a folder: SummaryWriter's event files
LR_FIND = "lr_find.png"  # --lr auto: the range test's curve

# What a run writes into RUN_DIR besides last.pt (and atomic_write's temporaries of these,
# ``.NAME.*.tmp``, which a kill leaves behind). A RUN_DIR holding only these, one of them an
# augkit config.yaml, and no last.pt, is a run that stopped before its first checkpoint.
_RUN_FILES = frozenset({CONFIG, STATS_FILE, "stats.mean_image.npy", "stats.std_image.npy", METRICS, SUMMARY, CURVES,
                        ACTIVATIONS_FILE, BEST, LR_FIND})  # fmt: skip


def prepare_run_dir(run_dir: Path, resume: bool, log: Callable[[str], None]) -> bool:
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


def check_outside_data(run_dir: Path, config: TrainConfig) -> None:
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
