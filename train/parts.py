"""``Parts``: everything a run is made of (data, model, optimiser, schedule, device, processes),
as ``augkit.train.loop.build`` returns it and the loop and its checks read it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from augkit.train import data as datalib
from augkit.train.config import TrainConfig
from augkit.train.distributed import Distributed
from augkit.train.mix import Mixup
from augkit.train.threads import ThreadChoice


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
    augment_reason: str = ""  # why --augment runs where it does (the run's log says it)
    mix: Mixup | None = None  # MixUp/CutMix of the training batches (--mixup, --cutmix); None: off

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
