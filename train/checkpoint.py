"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, checked before use.

A checkpoint holds everything a run needs to continue exactly where it stopped: the model,
the optimiser, the scheduler, the AMP scaler, the number of epochs done, the best score so far,
the metrics history, torch's random state (dropout draws from it; data order and augmentation
do not, they follow from (seed, epoch, index)) and the config. Only tensors and plain Python
values go in, so ``weights_only=True`` loads it: a checkpoint from elsewhere cannot run code.

A checkpoint is *good* when every floating value of its model and optimiser state is finite
(``count_nonfinite``) and so are its epoch's losses: the training loop writes no other, and the
readers refuse any other. Reading is checked in one place, here: ``load_checkpoint`` checks the
structure and types of what the file holds, that every tensor a reader uses is dense and holds
its values (not sparse, nested or on the ``meta`` device, which ``torch.save`` writes too and
``map_location`` leaves where it is) and, for ``--resume``, that every number of the optimiser,
scheduler and scaler state is finite (a NaN learning rate would diverge the resumed run);
``load_weights`` and ``restore_training`` check each tensor against the model and optimiser that
take it (names, shapes, dtypes, finite values). Whatever is wrong is one line
(``CheckpointError``, exit code 2) naming the file; never a traceback.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.files import atomic_write
from augkit.train.config import TrainConfig

LAST, BEST = "last.pt", "best.pt"
# One row of a run's history (and of metrics.csv) per epoch.
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_second")
# What every reader needs, and what only --resume needs besides.
_MODEL_KEYS = ("config", "model", "classes", "shape", "epoch", "history", "best")
_RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng")
# Why a checkpoint holding NaN or Inf exists at all (augkit writes none since it checks), and what to do.
_DIVERGED = "an older augkit kept it after the run diverged; use an earlier checkpoint or train again"


class CheckpointError(AugkitError):
    """A checkpoint that cannot be used (missing, unreadable, damaged, or not augkit's), in one line."""


def _invalid(path: Path, problem: str) -> CheckpointError:
    # One argument, the message: the error crosses process boundaries (ablate's workers) pickled.
    return CheckpointError(f"checkpoint {path} {problem}")


# ----------------------------------------------------------------------------- writing


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """``state`` serialised as ``torch.save`` writes it (once, for last.pt and best.pt alike)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, state: dict[str, Any] | bytes) -> Path:
    """Write ``state`` (or its ``checkpoint_bytes``) to ``path`` atomically: a crash or a full
    disk leaves the previous file, never half a file. Raises OSError as the write does."""
    return atomic_write(path, state if isinstance(state, bytes) else checkpoint_bytes(state))


def count_nonfinite(tensors: Iterable[torch.Tensor]) -> int:
    """How many NaN or Inf elements ``tensors`` hold (floating ones: others cannot hold them).

    The common case is cheap: one sum per tensor, queued on its device, and one read per
    device (one CPU-GPU sync), since the sum of finite values is finite unless it overflows.
    Only when it is not (a NaN or Inf, or huge finite values) are the elements counted, tensor
    by tensor. Tensors may lie on several devices: Adam keeps its ``step`` count on the CPU
    beside moments on the GPU.
    """
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if t.is_floating_point():
            by_device.setdefault(t.device, []).append(t)
    totals = [torch.stack([t.sum().float() for t in group]).sum() for group in by_device.values()]
    if all(bool(torch.isfinite(total)) for total in totals):
        return 0
    return sum(int(torch.stack([(~torch.isfinite(t)).sum() for t in group]).sum()) for group in by_device.values())


def training_tensors(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """What a checkpoint's finiteness is judged on: the model's parameters and buffers, and the
    optimiser's state (momentum, Adam's moments)."""
    tensors = list(unwrapped(model).state_dict().values())
    if optimizer is not None:
        tensors += [v for entry in optimizer.state.values() for v in entry.values() if isinstance(v, torch.Tensor)]
    return tensors


# ----------------------------------------------------------------------------- reading


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *, resume: bool = False) -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint``, its structure checked.

    Checked here: ``config`` (a valid TrainConfig), ``model`` (tensors by name), ``classes``
    (unique strings), ``shape`` ([height, width, channels], positive ints), ``epoch`` (1 to the
    config's epochs), ``history`` (one row of ``METRIC_COLUMNS`` numbers per epoch, losses
    finite), ``best`` ({val_acc, epoch}); with ``resume`` also ``optimizer``, ``scheduler``,
    ``scaler`` and ``rng``. Tensor shapes are checked by ``load_weights`` and ``restore_training``
    against the model and optimiser that take them.

    Raises:
        CheckpointError: the file is missing, cannot be read, or is not what augkit writes.
    """
    if not path.is_file():
        raise _invalid(path, "does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise _invalid(path, "is empty (0 bytes; augkit's writes are atomic, so something else emptied it); "
                             "use another checkpoint or train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, IndexError... for bad files
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
        raise _invalid(path, f"cannot be read by torch.load(weights_only=True) ({reason})") from None
    _check_structure(state, path, resume)
    return state


def checkpoint_config(state: dict[str, Any], path: Path) -> TrainConfig:
    """The run's config saved in a checkpoint; CheckpointError if it is not a valid one."""
    data = state["config"]
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise _invalid(path, f"has a 'config' that is not a mapping of option names (a {type(data).__name__})")
    try:
        return TrainConfig.from_dict(data, source="config")
    except AugkitError as error:
        raise _invalid(path, f"has an invalid config ({error})") from None


def load_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load the checkpoint's ``model`` into ``model`` once it matches exactly: the same tensor
    names, shapes and dtypes, every value finite. CheckpointError names the first mismatch."""
    target = unwrapped(model)
    _check_tensors(state["model"], target.state_dict(), path, "model")
    target.load_state_dict(state["model"])


def restore_training(
    state: dict[str, Any],
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    steps_per_epoch: int,
) -> tuple[int, list[dict[str, float]], dict[str, Any]]:
    """Load a ``resume`` checkpoint into a freshly built run; returns (epochs done, history, best).

    Everything is checked before anything is loaded: the model (``load_weights``), the
    optimiser's groups and per-parameter state against the live optimiser (a momentum buffer of
    each parameter's shape, a scalar step), the scheduler against a fresh one and at the step
    where the checkpoint's epoch ends (``steps_per_epoch`` of this data), torch's random state.
    """
    _check_optimizer(state["optimizer"], optimizer, path)
    _check_like(state["scheduler"], scheduler.state_dict(), path, "scheduler")
    epoch = state["epoch"]
    if state["scheduler"].get("last_epoch") != epoch * steps_per_epoch:
        raise _invalid(path, f"has its schedule at step {state['scheduler'].get('last_epoch')}, but epoch {epoch} "
                             f"ends at step {epoch * steps_per_epoch} with {steps_per_epoch} steps per epoch "
                             f"(did the training data change since the run began?)")  # fmt: skip
    _check_rng(state["rng"], path)
    load_weights(model, state, path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return epoch, state["history"], state["best"]


def rng_state() -> dict[str, Any]:
    """torch's random state, CPU and every CUDA device."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()``'s output. States load wherever map_location put them, but torch
    takes CPU byte tensors; a machine with fewer GPUs than the writer's restores the ones it has."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][: torch.cuda.device_count()]])


def unwrapped(model: nn.Module) -> nn.Module:
    """The module whose state_dict keys are plain: without torch.compile's or DDP's wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------- the checks


def _check_structure(state: Any, path: Path, resume: bool) -> None:
    """Every key a reader uses, of the type it expects (see ``load_checkpoint``)."""
    if not isinstance(state, dict):
        raise _invalid(path, f"holds a {type(state).__name__}, not the dictionary `augkit train` writes")
    missing = [key for key in _MODEL_KEYS + (_RESUME_KEYS if resume else ()) if key not in state]
    if missing:
        raise _invalid(path, f"has no {', '.join(repr(k) for k in missing)}: it is not a checkpoint `augkit train` wrote")

    def wrong(key: str, expected: str) -> CheckpointError:
        value = state[key]
        shown = repr(value) if isinstance(value, (int, float, str)) and len(repr(value)) < 60 else f"a {type(value).__name__}"
        return _invalid(path, f"has {key!r} {shown}, expected {expected}")

    config = checkpoint_config(state, path)
    _check_stored(state, _MODEL_KEYS + (_RESUME_KEYS if resume else ()), path)
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise wrong("model", "a mapping of parameter names to tensors")
    classes = state["classes"]
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        raise wrong("classes", "a list of class names")
    if len(set(classes)) != len(classes):
        raise _invalid(path, "has the same class name twice in 'classes'")
    shape = state["shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or not all(_is_int(s) and s >= 1 for s in shape):
        raise wrong("shape", "[height, width, channels] of positive integers")
    epoch = state["epoch"]
    if not _is_int(epoch) or not 1 <= epoch <= config.epochs:
        raise wrong("epoch", f"the number of epochs done (1 to its config's {config.epochs})")
    history = state["history"]
    if not isinstance(history, list) or len(history) != epoch:
        raise wrong("history", f"a list of {epoch} rows, one per epoch done")
    for number, row in enumerate(history, 1):
        if not isinstance(row, dict) or not all(_is_number(row.get(key)) for key in METRIC_COLUMNS) or row["epoch"] != number:
            raise _invalid(path, f"has a history row {number} that is not {{{', '.join(METRIC_COLUMNS)}}} "
                                 f"for epoch {number}")  # fmt: skip
        for key in ("train_loss", "val_loss"):
            if not math.isfinite(row[key]):
                raise _invalid(path, f"is not a good checkpoint: epoch {number}'s {key} was {row[key]}; {_DIVERGED}")
    best = state["best"]
    if not (isinstance(best, dict) and _is_number(best.get("val_acc")) and _is_int(best.get("epoch"))
            and 0 <= best["epoch"] <= epoch):  # fmt: skip
        raise wrong("best", f"{{'val_acc': accuracy, 'epoch': 0 to {epoch}}}")
    if resume:
        for key in ("optimizer", "scheduler", "scaler", "rng"):
            if not isinstance(state[key], dict):
                raise wrong(key, "a dictionary (its state_dict)")
        for key in ("optimizer", "scheduler", "scaler"):  # learning rates, momenta, betas, steps
            for where, value in _leaves(state[key], key):
                if isinstance(value, float) and not math.isfinite(value):
                    raise _invalid(path, f"is not a good checkpoint: its {where} is {value}, where a finite number "
                                         f"belongs (a learning rate, a momentum, a step); use another checkpoint "
                                         f"or train again")  # fmt: skip


def _check_stored(state: dict[str, Any], keys: tuple[str, ...], path: Path) -> None:
    """Every tensor under ``keys`` is dense and holds its values: a sparse or nested tensor, or one
    on the meta device (shapes only, no data), would pass the shape checks and fail when used."""
    for key in keys:
        for where, value in _leaves(state[key], key):
            if not isinstance(value, torch.Tensor):
                continue
            if value.is_meta:
                raise _invalid(path, f"holds {where} on the meta device, which keeps shapes but no values "
                                     f"(saved from a model that was never materialised); use a checkpoint "
                                     f"with its weights")  # fmt: skip
            if value.is_nested or value.layout != torch.strided:
                kind = "nested" if value.is_nested else str(value.layout).removeprefix("torch.")
                raise _invalid(path, f"holds {where} as a {kind} tensor, where `augkit train` writes dense ones; "
                                     f"use a checkpoint `augkit train` wrote, or train again")  # fmt: skip


def _leaves(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every value inside ``value`` that is not a dict, list or tuple, with its place
    (``optimizer['param_groups'][0]['lr']``). Walked without recursion: a loaded file may
    nest as deep as pickle lets it."""
    stack = [(where, value)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{where}[{key!r}]", item) for key, item in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value))))
        else:
            yield where, value


def _check_tensors(got: dict[str, Any], expected: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """``got`` has exactly ``expected``'s names, each a tensor of the same shape and dtype, all finite."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing or unexpected:
        parts = [f"{label} {_names(keys)}" for label, keys in (("lacks", missing), ("has unexpected", unexpected)) if keys]
        raise _invalid(path, f"does not fit the {what} its config builds: its {what} {' and '.join(parts)}")
    for name, want in expected.items():
        have = got[name]
        if not isinstance(have, torch.Tensor) or have.layout != torch.strided or have.shape != want.shape or have.dtype != want.dtype:
            raise _invalid(path, f"does not fit the {what} its config builds: {name} is {_describe(have)}, "
                                 f"expected {_describe(want)}")  # fmt: skip
    _check_finite(got.values(), path, f"its {what}")


def _check_finite(tensors: Iterable[torch.Tensor], path: Path, what: str) -> None:
    bad = count_nonfinite(tensors)
    if bad:
        raise _invalid(path, f"is not a good checkpoint: {bad} values of {what} are NaN or Inf; {_DIVERGED}")


def _check_optimizer(saved: dict[str, Any], optimizer: torch.optim.Optimizer, path: Path) -> None:
    """The saved optimiser state fits ``optimizer``: its groups (sizes, option types) and, per
    parameter, tensors of that parameter's shape (momentum, moments) or scalars (Adam's step)."""
    groups, entries = saved.get("param_groups"), saved.get("state")
    live = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or not isinstance(entries, dict) or len(groups) != len(live):
        raise _invalid(path, f"has an optimizer state that is not the {type(optimizer).__name__} state of "
                             f"{len(live)} parameter group(s) its config builds")  # fmt: skip
    params: dict[Any, torch.Tensor] = {}
    for number, (group, want, params_live) in enumerate(zip(groups, live, optimizer.param_groups), 1):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or len(ids) != len(want["params"]) or not all(_is_int(i) for i in ids):
            raise _invalid(path, f"has an optimizer group {number} that is not {len(want['params'])} parameter ids")
        for key in want.keys() & group.keys() - {"params"}:
            if not _same_kind(group[key], want[key]):
                raise _invalid(path, f"has optimizer option {key!r} {_describe(group[key])}, expected one like "
                                     f"{_describe(want[key])} ({type(optimizer).__name__})")  # fmt: skip
        params.update(zip(ids, params_live["params"]))
    for key, entry in entries.items():
        if key not in params or not isinstance(entry, dict):
            raise _invalid(path, f"has optimizer state for parameter {key!r}, which its groups do not list")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                if value.is_floating_point() and value.shape in (params[key].shape, torch.Size([])):
                    continue
            elif value is None or _is_number(value):
                continue
            raise _invalid(path, f"has optimizer {name!r} of parameter {key} as {_describe(value)}, "
                                 f"expected a tensor of its shape {list(params[key].shape)} or a number")  # fmt: skip
    tensors = [v for entry in entries.values() for v in entry.values() if isinstance(v, torch.Tensor)]
    _check_finite(tensors, path, "its optimizer state")


def _check_like(saved: dict[str, Any], fresh: dict[str, Any], path: Path, what: str) -> None:
    """A state_dict loaded by updating an object's attributes: no key the fresh one lacks (it
    would overwrite anything), and each value of the same kind as the fresh one's (keys a
    newer torch added may be missing: the object keeps its own)."""
    unexpected = [k for k in saved if k not in fresh]
    if unexpected:
        raise _invalid(path, f"has unexpected {what} entries {_names(unexpected)}")
    for key, value in saved.items():
        if not _same_kind(value, fresh[key]):
            raise _invalid(path, f"has {what} {key!r} as {_describe(value)}, expected one like {_describe(fresh[key])}")


def _check_rng(saved: dict[str, Any], path: Path) -> None:
    """torch's state: bytes of the size this torch's generator takes; CUDA's: a list of bytes."""
    unexpected = [k for k in saved if k not in ("torch", "cuda")]
    if unexpected:
        raise _invalid(path, f"has unexpected random state entries {_names(unexpected)}")
    states = [("torch", saved.get("torch"))]
    if "cuda" in saved:
        cuda = saved["cuda"]
        if not isinstance(cuda, (list, tuple)):
            raise _invalid(path, f"has a CUDA random state that is {_describe(cuda)}, expected a list of byte tensors")
        states += [(f"cuda[{i}]", s) for i, s in enumerate(cuda)]
    for name, value in states:
        if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1:
            raise _invalid(path, f"has a random state {name} that is {_describe(value)}, expected a byte tensor")
    size = torch.get_rng_state().numel()
    if saved["torch"].numel() != size:
        raise _invalid(path, f"has a random state of {saved['torch'].numel()} bytes, torch's takes {size}")


def _same_kind(value: Any, like: Any) -> bool:
    """Whether ``value`` can stand where ``like`` stands: numbers for numbers, the same literal
    type otherwise, sequences of the same length element by element."""
    if isinstance(like, (list, tuple)):
        return isinstance(value, (list, tuple)) and len(value) == len(like) and all(map(_same_kind, value, like))
    if _is_number(like):
        return _is_number(value)
    return type(value) is type(like)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _names(keys: list[Any]) -> str:
    shown = ", ".join(str(key)[:60] for key in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _describe(value: Any) -> str:
    """A short description of ``value`` for a message: a tensor's dtype and shape, a short literal."""
    if isinstance(value, torch.Tensor):
        if value.is_nested:
            return "a nested tensor"
        kind = "" if value.layout == torch.strided else f" {str(value.layout).removeprefix('torch.')}"
        where = " on the meta device" if value.is_meta else ""
        return f"{str(value.dtype).removeprefix('torch.')} {list(value.shape)}{kind}{where}"
    literal = isinstance(value, (int, float, str, type(None))) and len(repr(value)) < 40
    return repr(value) if literal else f"a {type(value).__name__}"
