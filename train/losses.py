"""Losses by name (``--loss``): the lecture's two classifiers' losses and their variants.

- ``cross_entropy`` (the default): softmax cross-entropy, the lecture's "softmax classifier";
  ``--label-smoothing`` applies (Szegedy et al. 2016).
- ``hinge``: the multiclass SVM loss of CS231n, margin 1: for scores s and label y,
  ``sum over j != y of max(0, s_j - s_y + 1)``, through torch's ``MultiMarginLoss``, which
  divides that sum by the number of classes C (a constant factor: gradients 1/C of CS231n's).
- ``squared_hinge``: the same with each term squared (``MultiMarginLoss(p=2)``; L2-SVM).
- ``soft_cross_entropy``: cross-entropy against a distribution over classes (N x C targets,
  rows summing to 1: MixUp and CutMix's mixed labels); class indices are read as one-hot rows,
  where it equals ``cross_entropy``.

Every loss takes N x C float scores and N class indices (int64), returns the batch mean (a
scalar), and is a plain ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.config import TrainConfig
from augkit.train.registry import Registry

LOSSES: Registry[Callable[[TrainConfig], nn.Module]] = Registry("loss")


@LOSSES.register("cross_entropy")
def _cross_entropy(config: TrainConfig) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)


@LOSSES.register("hinge")
def _hinge(config: TrainConfig) -> nn.Module:
    return nn.MultiMarginLoss(p=1, margin=1.0)


@LOSSES.register("squared_hinge")
def _squared_hinge(config: TrainConfig) -> nn.Module:
    return nn.MultiMarginLoss(p=2, margin=1.0)


class SoftCrossEntropy(nn.Module):
    """Cross-entropy against N x C target distributions (or N class indices, as one-hot rows),
    with label smoothing: ``-(targets * log_softmax(scores)).sum(1).mean()``."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 1:
            targets = nn.functional.one_hot(targets, scores.shape[1]).to(scores.dtype)
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / scores.shape[1]
        return -(targets * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


@LOSSES.register("soft_cross_entropy")
def _soft_cross_entropy(config: TrainConfig) -> nn.Module:
    return SoftCrossEntropy(config.label_smoothing)


def create_loss(config: TrainConfig) -> nn.Module:
    """The loss ``config.loss`` names.

    Raises:
        AugkitError: an unknown name (with the choices), or ``label_smoothing``, ``mixup`` or ``cutmix``
            with a hinge loss.
    """
    make = LOSSES.get(config.loss)
    if config.label_smoothing and config.loss in ("hinge", "squared_hinge"):
        raise AugkitError(
            f"--label-smoothing {config.label_smoothing:g} applies to cross_entropy and soft_cross_entropy, not "
            f"{config.loss}: drop it or choose one of those losses"
        )
    if (config.mixup or config.cutmix) and config.loss in ("hinge", "squared_hinge"):
        # A margin loss takes one class per sample; the mixed targets are distributions over two.
        raise AugkitError(
            f"--mixup/--cutmix train on soft cross-entropy against mixed label distributions, which --loss "
            f"{config.loss} (one class per sample) cannot take: drop --loss or --mixup/--cutmix"
        )
    return make(config)
