"""Per-layer activation and gradient statistics, from hooks that always remove themselves.

A *layer* is an activation module (in augkit's models every activation is its own module),
named as in ``model.named_modules()`` ("act1", "stage1.act2"), in model order. Its statistics,
over everything the hooks saw:

    mean, std   of the activation's output, over every sample, unit and position (population std)
    saturated   the fraction of outputs in a flat tail, where the gradient vanishes: |x| > 0.99
                for tanh; x < 0.01 or x > 0.99 for sigmoid; 0 for activations that do not saturate
    dead        the fraction of units (features, or channels of a convolution) whose output is
                <= 0 for every sample and position seen; ReLU-family activations only (0 for others)
    grad_norm   the L2 norm of the gradient of the loss with respect to the activation's output,
                over the batch (a tensor hook during backward); None where no backward pass ran
    hist        HIST_BINS counts over a fixed range per activation (torch.histc); values outside
                the range count in the other statistics, not in the histogram

Reductions stay on the device: the hooks only launch kernels, and ``summary()`` stacks every
layer's numbers into one tensor and copies it to the CPU once: one sync per summary, never one
per layer or per batch (fastai's ``ActivationStats`` is the model; its per-layer reads are what
this avoids).

``ActivationWatcher`` uses them during training: every N steps, one step's statistics go to
``RUN_DIR/activations.jsonl`` and a warning is logged when a layer crosses a threshold.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import torch
from torch import nn

from augkit.train.activations import ACTIVATIONS, create_activation
from augkit.train.checkpoint import unwrapped

ACTIVATIONS_FILE = "activations.jsonl"
HIST_BINS = 40
HIST_LIMIT = 4.0  # histogram range of unbounded activations: [-HIST_LIMIT, HIST_LIMIT] ([0, ...] for relu)
SATURATION = 0.99  # tanh: |x| > 0.99; sigmoid: x < 1 - 0.99 or x > 0.99
DEAD_FAMILY = frozenset({"relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu"})

# Thresholds for the plain-word warnings.
DEAD_WARNING = 0.5  # more than half of a layer's units dead
SATURATED_WARNING = 0.3  # more than 30% of a layer's outputs saturated
COLLAPSED_STD = 0.01  # activations squeezed to nearly nothing: the weights are too small for the depth


@dataclass(frozen=True)
class Layer:
    """One activation module of a model."""

    name: str  # as in model.named_modules(): "act1", "stage1.act2"
    activation: str  # the registry name: decides what saturated and dead mean, and the histogram range
    module: nn.Module


@functools.cache
def _activation_types() -> dict[type, str]:
    """Module class -> registry name, from the registry itself (so a new activation is known at once)."""
    return {type(create_activation(name, channels=1)): name for name in ACTIVATIONS}


def activation_layers(model: nn.Module) -> list[Layer]:
    """Every activation module of ``model`` (unwrapped from DDP / torch.compile), in model order."""
    kinds = _activation_types()
    return [Layer(name, kinds[type(m)], m) for name, m in unwrapped(model).named_modules() if type(m) in kinds]


def hist_range(activation: str) -> tuple[float, float]:
    """The histogram's range: the output's range where it is bounded, else +-HIST_LIMIT (from 0 for relu)."""
    bounded = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "relu": (0.0, HIST_LIMIT)}
    return bounded.get(activation, (-HIST_LIMIT, HIST_LIMIT))


def _saturated(activation: str, x: torch.Tensor) -> torch.Tensor | None:
    if activation == "tanh":
        return x.abs() > SATURATION
    if activation == "sigmoid":
        return (x < 1.0 - SATURATION) | (x > SATURATION)
    return None


@dataclass
class LayerStats:
    """One layer's statistics (see the module's docstring)."""

    layer: str
    activation: str
    mean: float
    std: float
    saturated: float
    dead: float
    grad_norm: float | None
    hist: list[float]
    range: tuple[float, float]

    def to_dict(self, *, hist: bool = False) -> dict[str, Any]:
        """``layer, mean, std, saturated, dead, grad_norm`` (and ``hist, range``): what --json prints."""
        row: dict[str, Any] = {k: _finite(getattr(self, k)) for k in ("layer", "mean", "std", "saturated", "dead", "grad_norm")}
        if hist:
            row.update(hist=[int(c) if math.isfinite(c) else 0 for c in self.hist], range=list(self.range))
        return row


def _finite(value: Any) -> Any:
    """NaN and infinities as None: JSON has no such numbers (a layer no forward pass reached)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


_FIELDS = 5  # mean, std, saturated, dead, grad_norm; then the histogram


class _Accumulator:
    """One layer's running statistics, as tensors on the layer's device."""

    def __init__(self, layer: Layer, bins: int) -> None:
        self.layer, self.bins = layer, bins
        self.range = hist_range(layer.activation)
        self.count = 0  # elements seen: a Python int, shapes are known without a sync
        self.mean = self.m2 = self.hist = self.saturated = self.alive = self.grad_sq = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        n = x.numel()
        if n == 0:
            return
        var, mean = torch.var_mean(x, correction=0)
        if self.count == 0:
            self.mean, self.m2 = mean, var * n
        else:  # Chan et al.: exact mean and sum of squared deviations of the union, no cancellation
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + var * n + delta.square() * (self.count * n / total)
        self.count += n
        hist = torch.histc(x, self.bins, *self.range)
        self.hist = hist if self.hist is None else self.hist + hist
        saturated = _saturated(self.layer.activation, x)
        if saturated is not None:
            count = saturated.sum()
            self.saturated = count if self.saturated is None else self.saturated + count
        if self.layer.activation in DEAD_FAMILY and x.ndim > 1:
            alive = x.amax(dim=[d for d in range(x.ndim) if d != 1]) > 0  # per unit (dim 1)
            self.alive = alive if self.alive is None else self.alive | alive

    def add_grad(self, grad: torch.Tensor) -> None:
        squares = grad.detach().float().square().sum()
        self.grad_sq = squares if self.grad_sq is None else self.grad_sq + squares

    def vector(self, device: torch.device) -> torch.Tensor:
        """mean, std, saturated, dead, grad_norm, then the histogram: one row of the summary."""
        nan = torch.full((), math.nan, device=device)
        if self.count == 0:
            return torch.full((_FIELDS + self.bins,), math.nan, device=device)
        zero = torch.zeros((), device=device)
        head = [
            self.mean,
            (self.m2 / self.count).sqrt(),
            zero if self.saturated is None else self.saturated / self.count,
            zero if self.alive is None else 1.0 - self.alive.float().mean(),
            nan if self.grad_sq is None else self.grad_sq.sqrt(),
        ]
        return torch.cat([torch.stack(head), self.hist])


class ActivationStats:
    """Forward hooks on every activation layer, accumulating statistics on the device.

    A context manager: hooks are registered on entry and removed on exit, also when the block
    raises. Every forward pass inside adds to the statistics; where the output requires grad, a
    tensor hook adds the gradient of the following backward pass. ``summary()`` reads them all
    in one transfer.

        with ActivationStats(model) as stats:
            for x in batches:
                model(x)
        layers = stats.summary()

    Args:
        model: a model, or the layers of one (``activation_layers``) to skip looking them up again.
        bins: histogram bins per layer.
    """

    def __init__(self, model: nn.Module | Sequence[Layer], *, bins: int = HIST_BINS) -> None:
        self.layers = activation_layers(model) if isinstance(model, nn.Module) else list(model)
        self.bins = bins
        self._accumulators = [_Accumulator(layer, bins) for layer in self.layers]
        self._handles: list[Any] = []

    def __enter__(self) -> ActivationStats:
        for layer, accumulator in zip(self.layers, self._accumulators):
            self._handles.append(layer.module.register_forward_hook(self._hook(accumulator)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (again harmless)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _hook(accumulator: _Accumulator) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            accumulator.add(output)
            if output.requires_grad:
                output.register_hook(accumulator.add_grad)

        return hook

    def summary(self) -> list[LayerStats]:
        """Every layer's statistics so far: one stacked tensor, one copy to the CPU."""
        seen = [a for a in self._accumulators if a.mean is not None]
        if not seen:
            return []
        device = seen[0].mean.device
        rows = torch.stack([a.vector(device) for a in self._accumulators]).cpu().tolist()  # the one sync
        stats = []
        for accumulator, row in zip(self._accumulators, rows):
            mean, std, saturated, dead, grad = row[:_FIELDS]
            stats.append(LayerStats(
                accumulator.layer.name, accumulator.layer.activation, mean, std, saturated, dead,
                None if math.isnan(grad) else grad, row[_FIELDS:], accumulator.range,
            ))  # fmt: skip
        return stats


# ----------------------------------------------------------------------------- warnings


class LayerWarning(NamedTuple):
    layer: str
    condition: str  # "overflowed" | "dead" | "saturated" | "collapsed"
    message: str


def find_warnings(layers: Sequence[LayerStats], seen: str = "on the batches seen") -> list[LayerWarning]:
    """Plain-word warnings for the layers past a threshold; ``seen`` says over what ("on 360 images")."""
    found = []
    for s in layers:
        if math.isnan(s.saturated):  # no forward pass reached the layer: nothing to say
            continue
        if not (math.isfinite(s.mean) and math.isfinite(s.std)):  # float32 overflowed: Inf, then Inf - Inf = NaN
            found.append(LayerWarning(s.layer, "overflowed", f"layer {s.layer}: activations are not finite {seen} (they "
                                      f"overflowed float32); the weights are far too large for this depth: try "
                                      f"xavier_normal (tanh) or kaiming_normal (relu), or a smaller init std"))  # fmt: skip
        elif s.dead > DEAD_WARNING:
            fixes = ("leaky_relu, " if s.activation == "relu" else "") + "a lower learning rate or Kaiming init"
            found.append(LayerWarning(s.layer, "dead", f"layer {s.layer}: {s.dead:.0%} of {s.activation} units are dead "
                                      f"(never positive {seen}); try {fixes}"))  # fmt: skip
        elif s.saturated > SATURATED_WARNING:
            rule = "|x| > 0.99" if s.activation == "tanh" else "x < 0.01 or x > 0.99"
            found.append(LayerWarning(s.layer, "saturated", f"layer {s.layer}: {s.saturated:.0%} of {s.activation} outputs are "
                                      f"saturated ({rule}), where gradients vanish; try Xavier init or smaller weights, "
                                      f"a lower learning rate, batchnorm, or relu"))  # fmt: skip
        elif s.std < COLLAPSED_STD:
            found.append(LayerWarning(s.layer, "collapsed", f"layer {s.layer}: activations have collapsed (std {s.std:.2g}); the "
                                      f"weights are too small for this depth: try xavier_normal (tanh) or kaiming_normal (relu)"))  # fmt: skip
    return found


# ----------------------------------------------------------------------------- during training


class ActivationWatcher:
    """Every ``every`` steps, one training step's per-layer statistics as a line of ``path``.

    ``before_step(step)`` registers the hooks when ``step % every == 0`` (other steps cost one
    modulo: no hooks are registered at all); ``after_backward(step, epoch)`` reads that step's
    statistics in one transfer, appends
    ``{"step", "epoch", "layers": [{"layer", "mean", "std", "saturated", "dead", "grad_norm",
    "hist", "range"}]}`` to ``path`` and removes the hooks. A layer crossing a threshold
    (``find_warnings``) is logged once per layer and condition for the watcher's life. ``dead``
    is over that step's batch. With ``every=0`` it does nothing and writes nothing.

    A context manager that may be entered again (once per epoch, say): on exit hooks are
    removed, also after an exception, and the file is closed; the once-only warnings persist.
    """

    def __init__(self, model: nn.Module, every: int, path: str | Path, log: Callable[[str], None] = print) -> None:
        if every < 0:
            raise ValueError(f"every must be 0 (off) or more, got {every}")
        self.every, self.path, self.log = every, Path(path), log
        self.layers = activation_layers(model) if every else []
        self._stats: ActivationStats | None = None
        self._file: IO[str] | None = None
        self._warned: set[tuple[str, str]] = set()

    def __enter__(self) -> ActivationWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._disarm()
        if self._file is not None:
            self._file.close()
            self._file = None

    def before_step(self, step: int) -> None:
        if self.every == 0 or step % self.every:
            return
        self._disarm()  # an armed step that never reached after_backward
        self._stats = ActivationStats(self.layers).__enter__()

    def after_backward(self, step: int, epoch: int) -> None:
        if self._stats is None:
            return
        layers = self._stats.summary()
        self._disarm()
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        record = {"step": step, "epoch": epoch, "layers": [s.to_dict(hist=True) for s in layers]}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a crash loses at most the line being written; readers skip a torn line
        for warning in find_warnings(layers, seen=f"on the batch of step {step}"):
            if (warning.layer, warning.condition) not in self._warned:
                self._warned.add((warning.layer, warning.condition))
                self.log(f"warning: step {step} (epoch {epoch}): {warning.message}")

    def _disarm(self) -> None:
        if self._stats is not None:
            self._stats.remove()
            self._stats = None

