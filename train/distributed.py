"""Data-parallel training across processes: what ``torchrun`` sets up, in one small object.

``torchrun --nproc_per_node=N -m augkit train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; the command line reads them
(``Distributed.from_env``: nothing below the CLI reads the environment) and hands the result to
``train``. Each process then:

- joins the process group: NCCL on GPUs (one per process, ``cuda:LOCAL_RANK``), gloo on CPUs;
- builds the same model from the same seed (DistributedDataParallel also broadcasts rank 0's
  weights) and wraps it, so gradients are averaged across processes after each backward pass;
- takes every ``world_size``-th sample of each global batch: the epoch's order is a pure
  function of (seed, epoch), the same in every process, so this is what ``DistributedSampler``
  with ``set_epoch`` does, and augmentation stays seeded per (seed, epoch, index). With equal
  shares, the average of the processes' gradients is the gradient of the global batch: results
  match one process with the same global ``--batch-size`` up to floating-point reduction order;
- sums losses and correct counts across processes for the metrics; only rank 0 writes files.

BatchNorm layers become SyncBatchNorm on GPUs (statistics over the global batch); on CPUs (gloo)
torch has no SyncBatchNorm, so each process normalises with its own share's statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from augkit.errors import AugkitError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Distributed | None:
        """The run torchrun describes in ``environ``, or None for a single process."""
        if "RANK" not in environ or int(environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        try:
            return cls(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0")))
        except ValueError:
            raise AugkitError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set them with torchrun)") from None

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group; returns this process's device (``cuda:LOCAL_RANK`` on GPUs)."""
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=self.rank, world_size=self.world_size)
        return device

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, in every process (a small picklable object)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over every process (in place; returned for convenience)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def shard(indices: Any, distributed: Distributed | None) -> Any:
    """This process's share of a batch's sample indices: every world_size-th, from its rank."""
    if distributed is None:
        return indices
    return indices[distributed.rank :: distributed.world_size]


def check_batch_size(batch_size: int, distributed: Distributed | None) -> None:
    if distributed is not None and batch_size % distributed.world_size:
        raise AugkitError(
            f"--batch-size {batch_size} is the global batch and must divide among {distributed.world_size} "
            f"processes; use a multiple of {distributed.world_size}"
        )
