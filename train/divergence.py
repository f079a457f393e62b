"""Only good epochs are saved: the checks that stop a run whose losses, weights or optimiser
values became NaN or Inf, and the error (``NonFiniteLoss``) that says what usually causes it and
which checkpoint is kept."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist

from augkit.errors import RunError
from augkit.train.checkpoint import LAST, count_nonfinite, training_tensors
from augkit.train.parts import Parts
from augkit.train.plots import describe_tricks, plot_curves
from augkit.train.run_dir import CURVES


class NonFiniteLoss(RunError):
    """A loss, or the weights, became NaN or Inf: training stops at once, keeping the last good checkpoint.

    ``str()`` is the message for ``augkit train`` (its flags, the checkpoint kept); ``outcome``
    says the same in config fields (``lr=100``), for a run that is one row of an ablation.
    """

    def __init__(self, message: str, outcome: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome or message


def check_good(parts: Parts, row: dict[str, float], run_dir: Path, history: list[dict[str, float]]) -> None:
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
        raise diverged(f"{' and '.join(problems)} in epoch {int(row['epoch'])}", parts, run_dir, history)


def check_finite(
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
    raise diverged(f"the loss became {value} at epoch {epoch + 1}, step {step + 1}", parts, run_dir, history)


def diverged(what: str, parts: Parts, run_dir: Path, history: list[dict[str, float]]) -> NonFiniteLoss:
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
