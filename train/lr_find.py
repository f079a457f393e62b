"""The learning-rate range test: ``lr_find(config)``, what ``augkit lr-find`` and ``--lr auto`` run.

Leslie Smith's test ("Cyclical Learning Rates for Training Neural Networks", 2017), as fastai's
``Learner.lr_find`` and Lightning's ``Tuner.lr_find`` run it: the run's own model, data,
augmentation (MixUp/CutMix included), optimiser and penalties, but the learning rate raised
exponentially from ``min_lr`` to ``max_lr`` over ``steps`` optimisation steps (no schedule, no warm-up), and the
training loss recorded at each. The curve is smoothed by an exponential moving average with
bias correction (``beta`` 0.98, fastai's), and the test stops early once the smoothed loss
passes ``DIVERGE`` times its lowest value, or a loss is not finite: past there only larger
steps follow.

The suggestion is a tenth of the lr at the smoothed loss's minimum: fastai's ``minimum``
suggestion, the rule fastai pairs with one-cycle training (augkit's default schedule, where
``--lr`` is the peak). The lr of the steepest descent of the smoothed loss against log(lr)
(Lightning's rule, fastai's ``steep``) is reported beside it: the usual pick for a constant
lr. On the sample digits the suggestion lies within a factor of 3 of the best peak lr of an
``augkit ablate --grid lr=...`` sweep (tests/test_lr_find.py runs it over seeds; measured:
0.06-0.13 over seeds 0-4 against the sweep's 0.1, docs/benchmarks.md), where the steepest
descent gave 0.03-0.1. A fall of the smoothed loss under ``MIN_FALL`` (10%) is no curve to read:
no suggestion. ``--lr-scaling linear`` is honoured: the test varies the optimiser's lr, and the
suggestion is given as the ``--lr`` that yields it (divided by batch_size / 256).

Nothing is written but the picture (``plot_lr_find``): the model and optimiser live in memory
and are dropped, and the statistics a run would cache go to a temporary folder.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augkit.errors import AugkitError
from augkit.train.config import FLOAT32_MAX, LR_REFERENCE_BATCH, TrainConfig, check_range

MIN_LR, MAX_LR, STEPS = 1e-7, 10.0, 100  # fastai's start_lr, end_lr and num_it; Lightning: 1e-8, 1, 100
MAX_STEPS = 100_000
BETA = 0.98  # fastai's smoothing of the loss (an exponential moving average, bias-corrected)
DIVERGE = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum (fastai's and Lightning's 4)
SKIP_START = 10  # steps at the start left out of the suggestion: the average is still settling (Lightning's 10)
# The smoothed loss must fall by this share of its value after SKIP_START steps for an lr to be
# suggested: less is batch noise on a flat curve (constant images, a zero-initialised net).
MIN_FALL = 0.1


@dataclass
class LRFinding:
    """What the range test measured: per step the optimiser's lr, the loss and its smoothed value.

    ``suggestion`` is the ``--lr`` to train with (None when the curve never fell), ``optimizer_lr``
    the optimiser's lr it corresponds to (different with ``--lr-scaling linear``), ``minimum_lr``
    the optimiser's lr at the smoothed minimum, ``steepest_lr`` the one of the steepest descent,
    ``stopped`` why the test ended, ``warning`` what makes the suggestion doubtful ("" when nothing).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    optimizer_lr: float | None
    minimum_lr: float | None
    steepest_lr: float | None
    stopped: str
    settings: dict[str, Any] = field(default_factory=dict)
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "optimizer_lr": self.optimizer_lr, "minimum_lr": self.minimum_lr,
                "steepest_lr": self.steepest_lr, "stopped": self.stopped, "warning": self.warning,
                **self.settings, "lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed}  # fmt: skip


def check_range_test(min_lr: float, max_lr: float, steps: int) -> None:
    """Refuse an lr range or a step count the test cannot run (AugkitError, one line)."""
    check_range("--min-lr", min_lr, 0, FLOAT32_MAX, low_open=True)
    check_range("--max-lr", max_lr, 0, FLOAT32_MAX, low_open=True, hint="the largest float32: torch trains in float32")
    check_range("--steps", steps, SKIP_START + 10, MAX_STEPS, hint="the test needs a curve to read; 100 is the usual")
    if not max_lr > min_lr:
        raise AugkitError(f"--max-lr ({max_lr:g}) must be above --min-lr ({min_lr:g}): the test raises the lr between them")


def lr_find(
    config: TrainConfig,
    *,
    min_lr: float = MIN_LR,
    max_lr: float = MAX_LR,
    steps: int = STEPS,
    log: Callable[[str], None] = print,
) -> LRFinding:
    """Run the range test on ``config``'s model and data (``config.lr`` and the schedule are not used).

    Args:
        config: the run to find an lr for; its data, model, augmentation, optimiser (momentum,
            weight decay, L1, clipping), batch size, device and seed are the test's.
        min_lr, max_lr: the optimiser's lr at the first and the last step (exponential between).
        steps: optimisation steps, cycling through the training split as often as needed.
        log: where the run's one-line description goes.

    Raises:
        AugkitError: a bad range or step count, or anything ``augkit train`` refuses in ``config``.
    """
    import torch
    from torch import nn

    from augkit.train.loop import build, resolve_device
    from augkit.train.losses import SoftCrossEntropy, create_loss
    from augkit.train.optim import l1_penalty

    check_range_test(min_lr, max_lr, steps)
    with tempfile.TemporaryDirectory(prefix="augkit-lr-find-") as scratch:
        parts = build(config, Path(scratch), device=resolve_device(config.device))
    log(f"lr range test: {config.model} on {parts.splits.source}, {len(parts.splits.train_labels)} training images, "
        f"{config.optimizer} lr {min_lr:g} to {max_lr:g} over {steps} steps (batch {config.batch_size}), on {parts.device}")  # fmt: skip
    # With MixUp/CutMix the test trains as the run will: mixed batches, soft cross-entropy (loop._train).
    criterion = create_loss(config) if parts.mix is None else SoftCrossEntropy()
    model, optimizer = parts.model, parts.optimizer
    model.train()
    factor = (max_lr / min_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, stopped = 0.0, math.inf, f"reached --max-lr {max_lr:g}"
    try:
        for step, (epoch, batch, inputs, targets) in zip(range(steps), _cycle(parts.train_batches)):
            if parts.mix is not None:
                inputs, targets, _ = parts.mix(inputs, targets, epoch, batch)
            lr = min_lr * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            with parts.autocast:
                loss = criterion(model(inputs).float(), targets)
            penalty = l1_penalty(model, config.l1)
            optimizer.zero_grad(set_to_none=True)
            (loss if penalty is None else loss + penalty).backward()
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            value = loss.item()
            if not math.isfinite(value):
                stopped = f"the loss was not finite at lr {lr:.3g}"
                break
            try:
                optimizer.step()
            except RuntimeError as error:  # an optimiser step past float32 (see loop._train_epoch)
                if "overflow" not in str(error):
                    raise
                stopped = f"the optimiser step overflowed at lr {lr:.3g}"
                break
            average = BETA * average + (1 - BETA) * value
            lrs.append(lr)
            losses.append(value)
            smoothed.append(average / (1 - BETA ** len(lrs)))
            best = min(best, smoothed[-1])
            if step >= SKIP_START and smoothed[-1] > DIVERGE * best:
                stopped = f"the smoothed loss passed {DIVERGE:g}x its minimum at lr {lr:.3g}"
                break
    finally:
        parts.train_batches.close()
        del model, optimizer
        if parts.device.type == "cuda":
            torch.cuda.empty_cache()
    minimum_lr, steepest_lr = suggest(lrs, smoothed)
    optimizer_lr = None if minimum_lr is None else minimum_lr / 10
    scale = config.batch_size / LR_REFERENCE_BATCH if config.lr_scaling == "linear" else 1.0
    suggestion = None if optimizer_lr is None else optimizer_lr / scale
    settings = {"source": parts.splits.source, "min_lr": min_lr, "max_lr": max_lr, "steps": steps, "beta": BETA, "lr_scaling": config.lr_scaling,
                "batch_size": config.batch_size}  # fmt: skip
    warning = ""
    if minimum_lr is not None and minimum_lr == lrs[-1] and len(lrs) == steps:
        warning = (f"the loss was still falling at --max-lr {max_lr:g}: the minimum is only the end of the range, "
                   f"and the suggestion a tenth of it; run lr-find with a larger --max-lr")  # fmt: skip
    return LRFinding(lrs, losses, smoothed, suggestion, optimizer_lr, minimum_lr, steepest_lr, stopped, settings, warning)


def _cycle(batches: Any) -> Any:
    """(epoch, step, inputs, targets) of epoch 0, 1, 2, ... in turn (each epoch's order and draws as a run's)."""
    epoch = 0
    while True:
        for step, (inputs, targets) in enumerate(batches.batches(epoch)):
            yield epoch, step, inputs, targets
        epoch += 1


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(the lr at the minimum of ``smoothed``, the lr of its steepest descent against log(lr)),
    each None when the curve did not fall after the first ``SKIP_START`` steps by ``MIN_FALL``
    (10%) of its value there.

    The slope is ``numpy.gradient`` over log10(lr) (Lightning's ``suggestion``), searched from
    ``SKIP_START`` up to the minimum: beyond it the loss only rises, and a slope there is
    divergence, not learning.
    """
    if len(smoothed) <= SKIP_START + 2:
        return None, None
    curve = np.asarray(smoothed, dtype=np.float64)
    lowest = int(np.argmin(curve))
    if lowest <= SKIP_START or not curve[lowest] < (1 - MIN_FALL) * curve[SKIP_START]:  # never fell: no lr trains this run
        return None, None
    slopes = np.gradient(curve, np.log10(np.asarray(lrs, dtype=np.float64)))
    steepest = SKIP_START + int(np.argmin(slopes[SKIP_START : lowest + 1]))
    return float(lrs[lowest]), float(lrs[steepest])


def draw_lr_find(finding: LRFinding, title: str = "") -> Any:
    """Loss against the optimiser's lr (log axis): each step's loss faint, the smoothed curve,
    the suggestion marked and labelled. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    from augkit.train.plots import _suptitle

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.subplots()
    if finding.lrs:
        axes.plot(finding.lrs, finding.losses, color="tab:blue", alpha=0.25, lw=0.8, label="loss (each step)")
        axes.plot(finding.lrs, finding.smoothed, color="tab:blue", lw=1.8, label=f"smoothed (EMA, beta {BETA:g})")
        # The y range from the lowest loss up to 1.5x the smoothed start: divergence runs off the top.
        low, start = min(min(finding.losses), min(finding.smoothed)), finding.smoothed[0]
        top = max(start, low) * 1.5
        axes.set_ylim(low - 0.05 * (top - low), top)
    marks = [(finding.optimizer_lr, "tab:red", "--", f"suggestion: lr {finding.optimizer_lr or 0:.3g} (minimum / 10)"),
             (finding.steepest_lr, "tab:gray", ":", f"steepest descent: lr {finding.steepest_lr or 0:.3g}")]  # fmt: skip
    for lr, colour, style, label in marks:
        if lr is not None:
            axes.axvline(lr, color=colour, lw=1.2, ls=style, label=label)
    if finding.minimum_lr is not None:
        at = finding.lrs.index(finding.minimum_lr)
        axes.plot([finding.minimum_lr], [finding.smoothed[at]], "o", color="tab:red", ms=5, label="smoothed minimum")
    axes.set_xscale("log")
    axes.set_xlabel("learning rate (optimiser's, log scale)")
    axes.set_ylabel("training loss")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="lower left")  # the curve starts high on the left and falls to the right
    _suptitle(figure, title or f"lr range test ({finding.stopped})")
    return figure


def plot_lr_find(finding: LRFinding, path: str | Path, title: str = "") -> Path:
    """``draw_lr_find`` written to ``path`` (PNG, atomically)."""
    from augkit.train.plots import _save

    return _save(draw_lr_find(finding, title), Path(path))
