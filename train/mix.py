"""MixUp and CutMix on the device: timm's ``Mixup`` (``timm/data/mixup.py``) in its batch mode.

Each training batch, already on the device and normalised (``DeviceBatches``; after
``--augment-on device`` too), is mixed with itself reversed, ``x.flip(0)``: sample i with
sample N-1-i (in an odd batch the middle sample meets itself and stays as it was). One draw
per batch, in timm's order:

1. mix at all, with probability ``prob`` (``--mix-prob``);
2. with both on, CutMix rather than MixUp with probability ``switch_prob``;
3. lam ~ Beta(alpha, alpha) of the one chosen (``--mixup`` / ``--cutmix``; Zhang et al. 2018,
   "mixup: Beyond Empirical Risk Minimization"; Yun et al. 2019, "CutMix");
4. MixUp: ``lam * x + (1 - lam) * x.flip(0)``. CutMix: a box of sides ``int(H * sqrt(1 - lam))``
   by ``int(W * sqrt(1 - lam))`` centred on a uniform pixel, clipped to the image, is pasted from
   the partner, and lam becomes the share of the image left uncovered,
   ``1 - box area / (H * W)`` (timm's ``correct_lam=True``).

The targets are N x C distributions, ``lam * y + (1 - lam) * y.flip(0)``, with label smoothing s
folded in as timm's ``mixup_target`` does: each one-hot row is ``s / C`` off the label and
``1 - s + s / C`` on it. Training takes soft cross-entropy against them; accuracy counts each
mixed sample's dominant label (its own where lam >= 0.5, else its partner's).

Draws come from ``np.random.default_rng([seed, MIX_STREAM, epoch, step])``: they depend on
nothing that ran before (not torch's RNG, which dropout uses, nor the data order's stream), so
a run resumed from an epoch's last.pt mixes exactly as the uninterrupted run did. The
processes of a distributed run each mix their own share of the batch with the same draw (the
pairs are formed within a share, so a torchrun run's mixes are not one process's).

Cost on 2 CPU cores, one thread (median of per-repeat ratios): a training step of the default
CNN 6.9% slower on 8x8 digits at batch 64 (the draw about 18 us, the mix 60 us), 2.2% on
3x32x32 at batch 128.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from augkit.train.config import TrainConfig

# A word of its own in the draws' seed: default_rng([seed, epoch]) (the data order) pads to
# [seed, epoch, 0, 0], which [seed, MIX_STREAM, epoch, step] never equals (epochs < MIX_STREAM).
MIX_STREAM = 0x4D495855


@dataclass(frozen=True)
class MixDraw:
    """One batch's mix: ``lam`` is the weight of each sample's own image and label (1: unmixed)."""

    lam: float = 1.0
    cutmix: bool = False
    box: tuple[int, int, int, int] | None = None  # CutMix: rows [top, bottom), columns [left, right)


def cutmix_box(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[tuple[int, int, int, int], float]:
    """CutMix's box for ``lam`` centred on pixel (``cy``, ``cx``), clipped to the image, and the lam its area gives.

    timm's ``rand_bbox`` and ``cutmix_bbox_and_lam(correct_lam=True)``: sides ``int(H * sqrt(1 - lam))``
    and ``int(W * sqrt(1 - lam))``, each spanning ``centre -/+ side // 2``; returns
    ((top, bottom, left, right), ``1 - (bottom - top) * (right - left) / (H * W)``).
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return (top, bottom, left, right), 1.0 - (bottom - top) * (right - left) / float(height * width)


def mix_batch(x: torch.Tensor, draw: MixDraw) -> torch.Tensor:
    """``x`` (float N x C x H x W) mixed with ``x.flip(0)`` as ``draw`` says; a new tensor (``x`` is kept)
    in ``x``'s memory format, or ``x`` itself when unmixed."""
    if draw.lam == 1.0:
        return x
    partner = x.flip(0)
    if draw.cutmix:
        top, bottom, left, right = draw.box
        mixed = x.clone()
        mixed[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
        return mixed
    return x * draw.lam + partner * (1.0 - draw.lam)


def mixup_target(target: torch.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0) -> torch.Tensor:
    """N class indices (int64) -> N x ``num_classes`` float32 rows summing to 1: timm's ``mixup_target``,
    ``lam * y + (1 - lam) * y.flip(0)`` with each one-hot y smoothed to ``s / C`` off and ``1 - s + s / C`` on."""
    off = smoothing / num_classes
    rows = torch.full((len(target), num_classes), off, device=target.device)
    rows.scatter_(1, target.long().reshape(-1, 1), 1.0 - smoothing + off)
    return rows * lam + rows.flip(0) * (1.0 - lam)


class Mixup:
    """MixUp and CutMix per batch, seeded per (seed, epoch, step); timm's ``Mixup(mode="batch")``.

    Args:
        mixup_alpha: MixUp's Beta(alpha, alpha); 0: off. cutmix_alpha: CutMix's; 0: off (one must be on).
        prob: probability that a batch is mixed. switch_prob: with both on, that CutMix is the one.
        label_smoothing: folded into the targets. num_classes: the targets' width. seed: the run's.

    Raises:
        ValueError: an alpha below 0, both 0, a probability outside [0, 1], or num_classes < 1.
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, *, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0, num_classes: int, seed: int = 0) -> None:  # fmt: skip
        if not (mixup_alpha >= 0 and cutmix_alpha >= 0 and 0 < mixup_alpha + cutmix_alpha < math.inf):
            raise ValueError(f"mixup_alpha and cutmix_alpha must be finite, at least 0, one above, got {mixup_alpha}, "
                             f"{cutmix_alpha}")  # fmt: skip
        if not (0 <= prob <= 1 and 0 <= switch_prob <= 1 and 0 <= label_smoothing < 1 and num_classes >= 1):
            raise ValueError(f"prob, switch_prob in [0, 1], label_smoothing in [0, 1) and num_classes >= 1, got "
                             f"{prob}, {switch_prob}, {label_smoothing}, {num_classes}")  # fmt: skip
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob, self.label_smoothing = float(prob), float(switch_prob), float(label_smoothing)
        self.num_classes, self.seed = num_classes, seed

    def draw(self, epoch: int, step: int, height: int, width: int) -> MixDraw:
        """The mix of batch ``step`` of ``epoch`` for H x W images: the same whatever was drawn before."""
        rng = np.random.default_rng([self.seed, MIX_STREAM, epoch, step])
        if not rng.random() < self.prob:
            return MixDraw()
        cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        if lam == 1.0:
            return MixDraw()
        if not cutmix:
            return MixDraw(lam)
        cy, cx = int(rng.integers(height)), int(rng.integers(width))
        box, lam = cutmix_box(height, width, lam, cy, cx)
        return MixDraw(lam, True, box)

    def __call__(
        self, x: torch.Tensor, target: torch.Tensor, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mixed ``x``, N x C float32 soft targets, N dominant labels) for float N x C x H x W ``x``
        and N int64 ``target``, all on ``x``'s device; ``x`` itself is left as it was."""
        draw = self.draw(epoch, step, x.shape[-2], x.shape[-1])
        soft = mixup_target(target, self.num_classes, draw.lam, self.label_smoothing)
        return mix_batch(x, draw), soft, target if draw.lam >= 0.5 else target.flip(0)

    def describe(self) -> str:
        """The mix in words, for the run's log."""
        alphas = " / ".join(f"{name} alpha {alpha}" for name, alpha in (("mixup", self.mixup_alpha),
                                                                         ("cutmix", self.cutmix_alpha)) if alpha)  # fmt: skip
        switch = f", switch {self.switch_prob}" if self.mixup_alpha and self.cutmix_alpha else ""
        smoothing = f", label smoothing {self.label_smoothing} folded in" if self.label_smoothing else ""
        return f"{alphas}, prob {self.prob}{switch} (timm's batch mode){smoothing}"


def create_mixup(config: TrainConfig, num_classes: int) -> Mixup | None:
    """The run's ``Mixup`` (``--mixup``, ``--cutmix``, ``--mix-prob``, ``--switch-prob``), or None when both alphas are 0."""
    if not (config.mixup or config.cutmix):
        return None
    return Mixup(config.mixup, config.cutmix, prob=config.mix_prob, switch_prob=config.switch_prob,
                 label_smoothing=config.label_smoothing, num_classes=num_classes, seed=config.seed)  # fmt: skip
