"""Optimisers, learning-rate schedules and the weight penalties (L2 and L1), by name.

L2 applies to weights only: the weights of linear and convolution layers (every parameter with
two or more dimensions). Biases, normalisation parameters and PReLU slopes are not decayed:
shrinking a bias or a norm layer's scale towards zero does not make the function simpler, it
only fights the layer (the practice of the ResNet and timm recipes). For SGD and Adam the
decay is coupled (``weight_decay * w`` added to the gradient: an L2 term in the loss); AdamW
decouples it from the adaptive step, as Loshchilov & Hutter propose. L1 is a loss term,
``l1 * sum(|w|)`` over the same weights.

``--lr-scaling linear`` is the linear scaling rule of Goyal et al. 2017, "Accurate, Large
Minibatch SGD: Training ImageNet in 1 Hour": when the batch grows k times, so does the lr. The
optimiser's peak lr is then ``lr * batch_size / 256`` (``peak_lr``), batch_size being the
global batch (under torchrun, what all processes together take in one step).

A schedule is a pure function of the step (``lr_factor``), so that a resumed run continues on
exactly the same curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from augkit.train.config import LR_REFERENCE_BATCH, TrainConfig
from augkit.train.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")


def decayed_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights that L2/L1 apply to, every other trainable parameter)."""
    weights, others = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (weights if parameter.ndim >= 2 else others).append(parameter)
    return weights, others


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=config.lr, betas=(config.momentum, 0.999))


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def peak_lr(config: TrainConfig) -> float:
    """The lr the optimiser gets (before the schedule): ``config.lr``, times ``batch_size / 256``
    with ``lr_scaling`` linear (Goyal et al. 2017; batch_size is the global batch)."""
    if config.lr_scaling == "linear":
        return config.lr * config.batch_size / LR_REFERENCE_BATCH
    return config.lr


def create_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser at ``peak_lr(config)``, with weight decay on the weights' group only."""
    make = OPTIMIZERS.get(config.optimizer)
    weights, others = decayed_parameters(model)
    lr = peak_lr(config)  # each group's lr overrides the optimiser's default (config.lr)
    groups = [{"params": weights, "weight_decay": config.weight_decay, "lr": lr},
              {"params": others, "weight_decay": 0.0, "lr": lr}]  # fmt: skip
    return make([g for g in groups if g["params"]], config)


def l1_penalty(model: nn.Module, strength: float) -> torch.Tensor | None:
    """``strength * sum(|w|)`` over the decayed weights, or None when ``strength`` is 0."""
    if not strength:
        return None
    weights, _ = decayed_parameters(model)
    return strength * sum(w.abs().sum() for w in weights)


# --- schedules: the factor of the peak lr at progress t in [0, 1], after the warm-up -----------


@SCHEDULES.register("constant")
def _constant(t: float) -> float:
    return 1.0


@SCHEDULES.register("step")
def _step(t: float) -> float:
    """x0.1 at half the run and again at three quarters (the classic ResNet recipe's shape)."""
    return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01


# onecycle is cosine after a ramp up that defaults to 30% of the run (warmup_steps).
@SCHEDULES.register("onecycle")
@SCHEDULES.register("cosine")
def _cosine(t: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * t))


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The multiple of the peak learning rate at optimisation step ``step`` of ``total``.

    Warm-up is linear from 1/warmup to 1 over the first ``warmup`` steps; the schedule then
    runs over the remaining steps.
    """
    shape = SCHEDULES.get(schedule)
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return shape(min(t, 1.0))


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    epochs = config.warmup_epochs
    if config.schedule == "onecycle" and epochs == 0:
        epochs = 0.3 * config.epochs
    return round(epochs * steps_per_epoch)


def create_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler following ``lr_factor``; its state (the step) is all a checkpoint needs."""
    SCHEDULES.get(config.schedule)  # unknown names fail here, before training
    total, warmup = config.epochs * steps_per_epoch, warmup_steps(config, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, config.schedule))
