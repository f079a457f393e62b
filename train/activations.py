"""Activations by name, each with the init gain that suits it.

``create_activation(name, channels=...)`` builds a fresh module (one per layer, so hooks can
tell layers apart), ``gain(name)`` is what Kaiming and orthogonal init scale by, and
``width_factor(name, pieces)`` says how many features the layer before must produce per unit
(maxout takes the max over ``pieces`` of them; everything else is elementwise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.registry import Registry

PRELU_INIT = 0.25  # torch's initial PReLU slope; its init gain is leaky ReLU's at this slope
_RELU_GAIN = math.sqrt(2.0)


def _leaky_gain(slope: float) -> float:
    # He et al. 2015: a leaky unit keeps (1 + slope^2) / 2 of its input's second moment.
    return math.sqrt(2.0 / (1.0 + slope**2))


class Maxout(nn.Module):
    """The max over each unit's ``pieces`` features on dim 1: (N, C*k, ...) -> (N, C, ...).

    Unit j takes the contiguous features j*k .. j*k+k-1, so a layer's output splits into
    units with one ``unflatten`` and no copy.
    """

    def __init__(self, units: int, pieces: int) -> None:
        super().__init__()
        if pieces < 2:
            raise AugkitError(f"maxout needs at least 2 pieces per unit, got {pieces}: set maxout_pieces to 2 or more")
        self.units = units
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.units * self.pieces:
            raise ValueError(f"maxout expected {self.units} x {self.pieces} features on dim 1, got {x.shape[1]}")
        return x.unflatten(1, (self.units, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"units={self.units}, pieces={self.pieces}"


Builder = Callable[[int, float, int, bool], nn.Module]  # (channels, slope, pieces, per_channel) -> module


@dataclass(frozen=True)
class Activation:
    """How to build one activation, and how to initialise the layer that feeds it."""

    build: Builder
    gain: Callable[[float], float]  # slope -> gain for Kaiming / orthogonal init
    takes_pieces: bool = False  # the layer before produces `pieces` features per unit


ACTIVATIONS: Registry[Activation] = Registry("activation")


def _fixed(value: float) -> Callable[[float], float]:
    """A gain that does not depend on the slope."""
    return lambda _slope: value


def _register(name: str, build: Builder, gain: Callable[[float], float], *, takes_pieces: bool = False) -> None:
    ACTIVATIONS.register(name)(Activation(build, gain, takes_pieces))


# Builders take (channels c, slope s, pieces k, per_channel pc) and use what they need.
# Modules are never in-place: an in-place op would overwrite the tensor a forward hook just saw.
_register("sigmoid", lambda c, s, k, pc: nn.Sigmoid(), _fixed(1.0))
_register("tanh", lambda c, s, k, pc: nn.Tanh(), _fixed(5.0 / 3.0))
_register("relu", lambda c, s, k, pc: nn.ReLU(), _fixed(_RELU_GAIN))
_register("leaky_relu", lambda c, s, k, pc: nn.LeakyReLU(s), _leaky_gain)
_register("prelu", lambda c, s, k, pc: nn.PReLU(c if pc else 1, init=PRELU_INIT), _fixed(_leaky_gain(PRELU_INIT)))
# ELU, GELU, SiLU and maxout have no exact gain; like ReLU they pass about half their input's
# second moment, and sqrt(2) is the common approximation.
_register("elu", lambda c, s, k, pc: nn.ELU(), _fixed(_RELU_GAIN))
# SELU self-normalises with LeCun's scale, gain 1 (std 1/sqrt(fan_in)). torch's
# calculate_gain("selu") = 3/4 is a different convention: it gives up that fixed point for
# steadier gradients (torch's docs themselves say to use gain 1 for self-normalising nets).
_register("selu", lambda c, s, k, pc: nn.SELU(), _fixed(1.0))
_register("gelu", lambda c, s, k, pc: nn.GELU(), _fixed(_RELU_GAIN))
_register("silu", lambda c, s, k, pc: nn.SiLU(), _fixed(_RELU_GAIN))
_register("maxout", lambda c, s, k, pc: Maxout(c, k), _fixed(_RELU_GAIN), takes_pieces=True)


def create_activation(
    name: str, *, channels: int, slope: float = 0.01, pieces: int = 2, per_channel: bool = True
) -> nn.Module:
    """A new activation module (never shared between layers).

    Args:
        channels: units after the activation (PReLU's slopes per channel; maxout's outputs).
        slope: leaky_relu's slope for x < 0.
        pieces: maxout's features per unit.
        per_channel: prelu learns one slope per channel (False: one slope shared by all).
    """
    return ACTIVATIONS.get(name).build(channels, slope, pieces, per_channel)


def width_factor(name: str, pieces: int) -> int:
    """Features the layer before the activation produces per unit: ``pieces`` for maxout, else 1."""
    return pieces if ACTIVATIONS.get(name).takes_pieces else 1


def gain(name: str, slope: float = 0.01) -> float:
    """The gain Kaiming and orthogonal init use for layers feeding this activation."""
    return ACTIVATIONS.get(name).gain(slope)


def list_activations() -> list[str]:
    return ACTIVATIONS.names()
