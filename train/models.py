"""Models by name: ``mlp`` (the course's fully-connected net), a small ``cnn``, a small ``resnet``.

``create_model(config, in_shape, classes)`` checks the names and the image size, builds, and
initialises (``augkit.train.inits``). Every model is an ``nn.Sequential`` of named children
(``fc1``, ``bn1``, ``act1``, ... or ``stage1.conv1``, ...), so diagnostics list layers in order;
every activation is its own module, so hooks tell layers apart.

With maxout, each layer feeding an activation produces ``units x pieces`` features and the
activation reduces them to ``units``; normalisation sits between, on the wide side.

Dropout's ``p`` is the probability of DROPPING a unit (torch's convention; the CS231n notes'
``p`` is the keep probability): kept units are scaled by 1/(1-p) at train time, and dropout is
the identity at eval.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.activations import ACTIVATIONS, create_activation, width_factor
from augkit.train.config import TrainConfig
from augkit.train.inits import INITS, init_weights
from augkit.train.registry import Registry

Layers = list[tuple[str, nn.Module]]


@dataclass(frozen=True)
class ModelKind:
    """How to build one model, and how small an image it can take."""

    build: Callable[[TrainConfig, tuple[int, int, int], int], nn.Module]  # (config, (C, H, W), classes)
    halvings: Callable[[int], int]  # stages -> how many times the model halves the image


MODELS: Registry[ModelKind] = Registry("model")


def _activation(config: TrainConfig, units: int) -> nn.Module:
    return create_activation(
        config.activation,
        channels=units,
        slope=config.leaky_slope,
        pieces=config.maxout_pieces,
        per_channel=config.prelu_per_channel,
    )


def _features(config: TrainConfig, units: int) -> int:
    """Features the layer feeding ``units`` activations produces (units x pieces for maxout)."""
    return units * width_factor(config.activation, config.maxout_pieces)


def _conv_norm(cin: int, cout: int, config: TrainConfig, tag: str = "", *, kernel: int = 3, stride: int = 1) -> Layers:
    # A bias before BatchNorm is cancelled by its mean subtraction, so convs have one only without BN.
    layers: Layers = [(f"conv{tag}", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=not config.batchnorm))]
    if config.batchnorm:
        layers.append((f"bn{tag}", nn.BatchNorm2d(cout)))
    return layers


def _conv_unit(cin: int, units: int, config: TrainConfig, tag: str, *, stride: int = 1) -> Layers:
    """Conv3x3 -> [BatchNorm] -> activation, ending with ``units`` channels."""
    conv = _conv_norm(cin, _features(config, units), config, tag, stride=stride)
    return [*conv, (f"act{tag}", _activation(config, units))]


def _head(channels: int, classes: int, config: TrainConfig) -> Layers:
    """Global average pooling, then a linear classifier."""
    layers: Layers = [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    if config.dropout > 0:
        layers.append(("drop", nn.Dropout(config.dropout)))
    return [*layers, ("head", nn.Linear(channels, classes))]


def _mlp(config: TrainConfig, in_shape: tuple[int, int, int], classes: int) -> nn.Module:
    layers: Layers = [("flatten", nn.Flatten())]
    width = math.prod(in_shape)
    for i, units in enumerate(config.hidden, 1):
        # Same rule as the convs: a bias only where no BatchNorm follows to cancel it.
        layers.append((f"fc{i}", nn.Linear(width, _features(config, units), bias=not config.batchnorm)))
        if config.batchnorm:
            layers.append((f"bn{i}", nn.BatchNorm1d(_features(config, units))))
        layers.append((f"act{i}", _activation(config, units)))
        if config.dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(config.dropout)))
        width = units
    layers.append(("head", nn.Linear(width, classes)))
    return nn.Sequential(OrderedDict(layers))


def _cnn(config: TrainConfig, in_shape: tuple[int, int, int], classes: int) -> nn.Module:
    stages: Layers = []
    cin = in_shape[0]
    for i, units in enumerate(config.channels, 1):
        layers = [*_conv_unit(cin, units, config, "1"), *_conv_unit(units, units, config, "2")]
        layers.append(("pool", nn.MaxPool2d(2)))
        if config.dropout > 0:
            layers.append(("drop", nn.Dropout2d(config.dropout)))  # drops whole channels
        stages.append((f"stage{i}", nn.Sequential(OrderedDict(layers))))
        cin = units
    return nn.Sequential(OrderedDict([*stages, *_head(cin, classes, config)]))


class BasicBlock(nn.Module):
    """ResNet's basic block: act(residual(x) + shortcut(x)), residual = conv-BN-act-conv-BN.

    With ``zero_init`` set, ``init_weights`` calls ``zero_init_last()``: the residual branch
    starts at zero and the block at act(shortcut(x)), which makes deep resnets easier to start
    training (Goyal et al. 2017).
    """

    def __init__(self, cin: int, units: int, stride: int, config: TrainConfig) -> None:
        super().__init__()
        width = _features(config, units)  # what is added, before the final activation
        self.residual = nn.Sequential(
            OrderedDict([*_conv_unit(cin, units, config, "1", stride=stride), *_conv_norm(units, width, config, "2")])
        )
        # A 1x1 projection only where the residual's shape differs from the input's.
        if stride == 1 and cin == width:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(OrderedDict(_conv_norm(cin, width, config, kernel=1, stride=stride)))
        self.act = _activation(config, units)
        self.zero_init = config.zero_init_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))

    def zero_init_last(self) -> None:
        """Zero the residual's last layer: its BatchNorm, or its conv when batchnorm is off."""
        last = self.residual[-1]
        with torch.no_grad():
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()


def _resnet(config: TrainConfig, in_shape: tuple[int, int, int], classes: int) -> nn.Module:
    layers: Layers = [("stem", nn.Sequential(OrderedDict(_conv_unit(in_shape[0], config.channels[0], config, ""))))]
    cin = config.channels[0]
    for i, units in enumerate(config.channels, 1):
        layers.append((f"stage{i}", BasicBlock(cin, units, 1 if i == 1 else 2, config)))
        cin = units
    return nn.Sequential(OrderedDict([*layers, *_head(cin, classes, config)]))


MODELS.register("mlp")(ModelKind(_mlp, halvings=lambda stages: 0))
MODELS.register("cnn")(ModelKind(_cnn, halvings=lambda stages: stages))  # a 2x2 max-pool per stage
MODELS.register("resnet")(ModelKind(_resnet, halvings=lambda stages: stages - 1))  # stride 2 after stage 1


def create_model(config: TrainConfig, in_shape: tuple[int, int, int], classes: int) -> nn.Module:
    """Build ``config.model`` for (C, H, W) images and ``classes`` classes, initialised per config.

    Everything is checked before anything is built. The caller seeds torch first.
    """
    kind = MODELS.get(config.model)
    ACTIVATIONS.get(config.activation)
    INITS.get(config.init)
    if classes < 2:
        raise AugkitError(
            f"a classifier needs at least 2 classes, got {classes}: check that the dataset has 2 or more class folders"
        )
    height, width = in_shape[1:]
    stages = len(config.channels)
    need = 2 ** kind.halvings(stages)
    if height < need or width < need:
        raise AugkitError(
            f"the {config.model}'s {stages} stages halve the image {kind.halvings(stages)} times and need at least "
            f"{need}x{need} images; the images are {height}x{width}: use fewer --channels or --model mlp"
        )
    model = kind.build(config, in_shape, classes)
    init_weights(
        model,
        config.init,
        std=config.init_std,
        mode=config.init_mode,
        activation=config.activation,
        slope=config.leaky_slope,
    )
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (every one is trained)."""
    return sum(p.numel() for p in model.parameters())


def list_models() -> list[str]:
    return MODELS.names()
