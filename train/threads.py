"""Torch's intra-op thread count for a run, chosen from the work of a step and the free cores.

Torch starts one intra-op thread per physical core and splits every large enough operation
among them. For the small models augkit trains by default this loses: the threads wait on each
other at every operation, and on a machine whose cores are busy with other work (a browser, a
CI neighbour, the other workers of an ablation) each wait is a time slice lost: with both cores
of a 2-core machine busy, the default ``augkit train`` took 16 to 62 s (median 24.5) with
torch's two threads and 11.3 to 12.0 s with one (docs/benchmarks.md, bench/threads.py). So the
count is chosen, once per run, by ``choose_threads``:

- ``--threads N`` (``TrainConfig.threads``, ``threads=`` of the library calls) is used as given;
- a step of fewer than ``SMALL_STEP_FLOPS`` floating-point operations (0.2 GFLOP) gets one
  thread: below that a second thread saved at most a fifth of a step even on idle cores, and
  nothing below 0.1 GFLOP, while on busy cores it costs several times the step;
- a larger step gets one thread per free core (``free_cores``: the cores this process may run
  on, ``os.sched_getaffinity``, less the tasks of other processes ready to run now), at most
  torch's own default (one per physical core, or ``OMP_NUM_THREADS``), at least one. A run
  with DataLoader workers leaves them a core each; the processes of an ablation (its
  workers) or of a torchrun run share the free cores.

The count can change the last bits of a float sum (torch splits reductions by thread): give
``--threads N`` to reproduce a run bit for bit on another machine or under another load.
Only intra-op threads are set: augkit's loops start no inter-op work (``torch.jit.fork``), and
torch allows setting that pool only before its first use.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from augkit.train.config import MAX_THREADS, SMALL_STEP_FLOPS, check_range

_budget: int | None = None  # cores this process may use at most (an ablation's worker: limit_cores)


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count of a run and why (``reason``: a short phrase for the run's log line)."""

    threads: int
    reason: str

    def describe(self) -> str:
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({self.reason})"


def choose_threads(step_flops: float, requested: int | None = None, *, free: int | None = None) -> ThreadChoice:
    """The thread count for steps of ``step_flops`` operations (see the module's rule).

    Args:
        step_flops: floating-point operations of one step (``count_step_flops``), >= 0.
        requested: the user's ``--threads``, used as given; None chooses.
        free: the cores free for this process's threads (default: ``free_cores()``, read now).

    Raises:
        AugkitError: ``requested`` outside [1, ``augkit.train.config.MAX_THREADS``].
    """
    if requested is not None:
        check_range("threads", requested, 1, MAX_THREADS)
        return ThreadChoice(requested, "--threads")
    gflops = f"{step_flops / 1e9:.2g} GFLOP a step"
    if step_flops < SMALL_STEP_FLOPS:
        return ThreadChoice(1, f"auto: {gflops}, under {SMALL_STEP_FLOPS / 1e9:g}")
    free = max(1, min(free_cores() if free is None else free, _torch_default()))
    return ThreadChoice(free, f"auto: {gflops}, {free} core{'s' if free != 1 else ''} free")


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Set torch's intra-op threads of this process to ``choice.threads``; returns ``choice``."""
    _torch_default()  # read before the first change
    torch.set_num_threads(choice.threads)
    return choice


def free_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``) less those busy now; at least 1.

    Busy: the tasks ready to run right now other than this one (Linux: ``/proc/loadavg``'s
    fourth field, the median of 5 readings 2 ms apart), rounded; elsewhere the last minute's
    load (``os.getloadavg``), which lags behind work that has just started; none where the
    system gives neither. Capped by ``limit_cores`` in an ablation's worker.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = max(1, cores - math.floor(busy_now() + 0.5))
    return free if _budget is None else min(free, _budget)


def busy_now() -> float:
    """Tasks of other processes ready to run now (see ``free_cores``), >= 0."""
    readings = []
    for i in range(5):
        if i:
            time.sleep(0.002)
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])  # "0.61 0.52 0.40 3/181 4242": 3 ready to run
        except (OSError, ValueError, IndexError):
            break
        readings.append(running - 1)  # this process is one of them while it reads
    if readings:
        return max(0.0, statistics.median(readings))
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def limit_cores(cores: int | None) -> None:
    """Let this process use at most ``cores`` cores from now on (None: no limit); an ablation's worker."""
    global _budget
    _budget = cores


@functools.cache
def _torch_default() -> int:
    """Torch's thread count before augkit changed it: one per physical core, or OMP_NUM_THREADS."""
    return torch.get_num_threads()


def count_step_flops(model: nn.Module, in_shape: tuple[int, ...], batch: int, *, backward: bool = True) -> float:
    """Floating-point operations of one step of ``model`` on ``batch`` inputs of ``in_shape`` (C, H, W).

    Counts 2 per multiply-add of every linear and convolution layer, from one forward pass of
    one zero input in eval mode without gradients (nothing learned or drawn changes), times the
    batch; a training step (``backward``) is 3 forward passes' worth. Normalisation,
    activations and pooling cost memory traffic, not arithmetic, and are left out.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
            total += 2 * output.numel() * kernel
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules()]
    training = model.training
    try:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *in_shape, device=device))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return float(total * batch * (3 if backward else 1))
