"""Weight initialisations by name, written out as formulas.

Each scheme fills one weight tensor in place from torch's global RNG (the caller seeds it).
``init_weights`` applies one to every Linear and Conv2d of a model, zeroes their biases, resets
normalisation layers to the identity (weight 1, bias 0), and finally lets residual blocks zero
their last layer (``zero_init_last``).

The lecture's names are aliases (``INIT_ALIASES``): ``xavier`` is ``xavier_normal``, ``kaiming``
and ``he`` are ``kaiming_normal``. ``INITS.get`` takes them; ``INITS.names()`` lists the canonical
names only (``INITS.aliases`` the others), and a ``TrainConfig`` stores the canonical name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.activations import gain as activation_gain
from augkit.train.config import INIT_ALIASES
from augkit.train.registry import Registry

FAN_MODES = ("fan_in", "fan_out")
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Fans:
    """What a scheme may scale by, for one weight tensor."""

    fan_in: int  # inputs feeding one output: in_features, or in_channels * kh * kw
    fan_out: int  # outputs one input feeds: out_features, or out_channels * kh * kw
    mode: str  # which fan Kaiming keeps: fan_in (forward activations) or fan_out (gradients)
    gain: float  # the activation's gain (see augkit.train.activations.gain)
    std: float  # normal: std; uniform: std of U(-a, a); constant: the value

    @property
    def fan(self) -> int:
        return self.fan_in if self.mode == "fan_in" else self.fan_out


Scheme = Callable[[torch.Tensor, Fans], None]


class AliasedRegistry(Registry[Scheme]):
    """A ``Registry`` that also takes other names for some entries (``aliases``: alias -> name).

    ``get`` and ``in`` take an alias as its entry; ``names()`` stays the canonical names (what a
    loop over the schemes runs once each); an unknown name's closest match may be an alias.
    """

    def __init__(self, kind: str, aliases: dict[str, str]) -> None:
        super().__init__(kind)
        self.aliases = dict(aliases)

    def canonical(self, name: str) -> str:
        """``name``, or the entry it is an alias of."""
        return self.aliases.get(name, name)

    def get(self, name: str | Scheme) -> Scheme:
        return super().get(self.canonical(name) if isinstance(name, str) else name)

    def __contains__(self, name: object) -> bool:
        return super().__contains__(self.aliases.get(name, name) if isinstance(name, str) else name)

    def unknown(self, name: str) -> str:
        known = [*self.names(), *self.aliases]
        same = [e for e in known if e.lower() == name.lower()]
        close = same or difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        also = ", ".join(f"{a} ({n})" for a, n in self.aliases.items())
        return f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}; or an alias: {also}"


INITS = AliasedRegistry("initialisation", INIT_ALIASES)


def fans_of(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, kh, kw) weight."""
    receptive = math.prod(weight.shape[2:])  # 1 for a Linear
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _uniform_with_std(weight: torch.Tensor, std: float) -> None:
    # U(-a, a) has std a / sqrt(3).
    a = std * math.sqrt(3.0)
    weight.uniform_(-a, a)


@INITS.register("zeros")
def _zeros(weight: torch.Tensor, f: Fans) -> None:
    weight.zero_()


@INITS.register("constant")
def _constant(weight: torch.Tensor, f: Fans) -> None:
    weight.fill_(f.std)


@INITS.register("normal")
def _normal(weight: torch.Tensor, f: Fans) -> None:
    weight.normal_(0.0, f.std)


@INITS.register("uniform")
def _uniform(weight: torch.Tensor, f: Fans) -> None:
    _uniform_with_std(weight, f.std)


@INITS.register("xavier_normal")
def _xavier_normal(weight: torch.Tensor, f: Fans) -> None:
    # Glorot & Bengio 2010: the average of the forward and backward variance conditions.
    weight.normal_(0.0, math.sqrt(2.0 / (f.fan_in + f.fan_out)))


@INITS.register("xavier_uniform")
def _xavier_uniform(weight: torch.Tensor, f: Fans) -> None:
    a = math.sqrt(6.0 / (f.fan_in + f.fan_out))
    weight.uniform_(-a, a)


@INITS.register("kaiming_normal")
def _kaiming_normal(weight: torch.Tensor, f: Fans) -> None:
    # He et al. 2015, for ReLU: w = randn * sqrt(2 / fan_in), i.e. std = gain / sqrt(fan).
    # A common transcription writes randn / sqrt(2 / fan_in), which makes the std
    # sqrt(fan_in / 2) and blows activations up; the gain multiplies.
    weight.normal_(0.0, f.gain / math.sqrt(f.fan))


@INITS.register("kaiming_uniform")
def _kaiming_uniform(weight: torch.Tensor, f: Fans) -> None:
    _uniform_with_std(weight, f.gain / math.sqrt(f.fan))  # a = gain * sqrt(3 / fan)


@INITS.register("lecun_normal")
def _lecun_normal(weight: torch.Tensor, f: Fans) -> None:
    # LeCun 1998, the scale SELU's self-normalisation assumes: always fan_in, gain 1.
    weight.normal_(0.0, 1.0 / math.sqrt(f.fan_in))


@INITS.register("orthogonal")
def _orthogonal(weight: torch.Tensor, f: Fans) -> None:
    # Saxe et al. 2014: a random orthogonal matrix (rows or columns orthonormal, whichever are
    # fewer) times the gain; conv kernels are flattened to (out, in * kh * kw).
    rows, cols = weight.shape[0], weight.numel() // weight.shape[0]
    q, r = torch.linalg.qr(weight.new_empty(max(rows, cols), min(rows, cols)).normal_())
    q = q * torch.sign(torch.diagonal(r))  # fixes QR's sign choice, so q is uniformly random
    weight.copy_((q if rows >= cols else q.T).reshape(weight.shape) * f.gain)


@INITS.register("default")
def _default(weight: torch.Tensor, f: Fans) -> None:
    """Leave the weight as torch built it (init_weights also leaves biases and norm layers)."""


def init_weights(
    model: nn.Module,
    name: str,
    *,
    std: float = 0.01,
    mode: str = "fan_in",
    activation: str = "relu",
    slope: float = 0.01,
) -> None:
    """Initialise every Linear / Conv2d weight of ``model`` with scheme ``name`` (or an alias); zero their biases.

    Normalisation layers are reset to weight 1, bias 0. ``default`` leaves all of that as torch
    built it. Then every submodule with a truthy ``zero_init`` and a ``zero_init_last()`` method
    (the resnet's blocks) zeroes its last layer, whatever the scheme: zero-init-residual is part
    of the model's configuration, not of the scheme.

    Args:
        std: normal's std, uniform's std, constant's value.
        mode: fan_in or fan_out, the fan Kaiming divides by.
        activation, slope: the activation the layers feed, for Kaiming's and orthogonal's gain.
    """
    scheme = INITS.get(name)
    if mode not in FAN_MODES:
        raise AugkitError(f"init mode must be fan_in or fan_out, got {mode!r}")
    layer_gain = activation_gain(activation, slope)
    with torch.no_grad():
        if scheme is not _default:
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    # fan_out is the layer's real output count: for maxout, units x pieces.
                    fan_in, fan_out = fans_of(module.weight)
                    scheme(module.weight, Fans(fan_in, fan_out, mode, layer_gain, std))
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, _NORMS):
                    for param, value in ((module.weight, 1.0), (module.bias, 0.0)):
                        if param is not None:  # None where the norm has no affine part
                            param.fill_(value)
        for module in model.modules():
            if getattr(module, "zero_init", False) and hasattr(module, "zero_init_last"):
                module.zero_init_last()


def list_inits() -> list[str]:
    return INITS.names()
