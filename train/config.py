"""``TrainConfig``: every option of a training run, in one typed dataclass.

A run's configuration is resolved in one order: the defaults declared here, then a YAML file
(``--config``), then the command line's flags, then ``--set key=value``. An unknown key is an
error naming the closest key. The resolved configuration is printed when a run starts, saved as
``RUN_DIR/config.yaml`` and inside every checkpoint; ``augkit train --config RUN_DIR/config.yaml``
runs the same experiment again.

Fields are flat (``dropout``, not ``model.dropout``) so that a field, its flag and an ablation
key are the same word: ``dropout`` <-> ``--dropout`` <-> ``--grid dropout=0,0.5``.

Names (activation, init, model, optimizer, schedule) are checked against their registries when
the run is built (``augkit.train.build``), where torch is loaded; ranges are checked here.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from augkit.errors import AugkitError


@dataclass
class TrainConfig:
    """A training run. Defaults train a small CNN to about 98-99% on the sample digits in seconds."""

    # --- data ---------------------------------------------------------------------------------
    data: str | None = None  # any dataset augkit opens (ImageFolder, packed, CIFAR, digits); None: sample_data/digits
    val_split: float | None = None  # carve this fraction of train into val (stratified, seeded) when DATA has none
    train_subset: int | None = None  # train on this many training images only (stratified, seeded): small-data runs

    # --- model --------------------------------------------------------------------------------
    model: str = "cnn"  # mlp (the course's fully-connected net) | cnn | resnet
    hidden: tuple[int, ...] = (256, 256)  # mlp: width of each hidden layer
    channels: tuple[int, ...] = (32, 64)  # cnn / resnet: channels of each stage (each stage halves the size)
    activation: str = "relu"  # see `augkit train --help` for the choices
    leaky_slope: float = 0.01  # leaky_relu: slope for x < 0
    prelu_per_channel: bool = True  # prelu: one learnable slope per channel (False: one shared slope)
    maxout_pieces: int = 2  # maxout: linear pieces per unit
    init: str = "kaiming_normal"  # weight initialisation; biases always start at zero
    init_std: float = 0.01  # normal: std (the course's weight_scale); uniform: std of U(-a, a); constant: value
    init_mode: str = "fan_in"  # kaiming: fan_in (keeps forward activations) | fan_out (keeps gradients)
    zero_init_residual: bool = True  # resnet: last norm layer of each block starts at zero (block = identity)
    dropout: float = 0.0  # probability of DROPPING a unit (the CS231n notes use the keep probability)
    batchnorm: bool = True

    # --- regularisation and preprocessing -----------------------------------------------------
    weight_decay: float = 5e-4  # L2 on weights only (not biases or norm parameters); decoupled for adamw
    l1: float = 0.0  # L1 penalty l1 * sum(|w|) on weights, added to the loss
    augment: str | None = None  # augkit pipeline (file or inline spec) for training images; None: none
    standardize: bool = True  # divide by the training split's per-channel std (after subtracting a mean)
    mean_image: bool = False  # subtract the training split's mean image (AlexNet) instead of per-channel means
    stats: str | None = None  # stats.json to standardise with; None: computed on the training split, cached in RUN_DIR

    # --- optimisation -------------------------------------------------------------------------
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # sgd momentum; adam/adamw: beta1
    schedule: str = "onecycle"  # constant | step | cosine | onecycle
    warmup_epochs: float = 0.0  # linear warm-up from 0 (onecycle: ramp-up length; 0 means 30% of the run)
    label_smoothing: float = 0.0
    clip_grad: float | None = None  # clip the gradients' global L2 norm to this
    epochs: int = 20
    batch_size: int = 64

    # --- runtime ------------------------------------------------------------------------------
    workers: int = 0  # DataLoader worker processes for augmentation (0: in the training process)
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    amp: bool = False  # bf16 autocast (CUDA), with channels-last
    compile: bool = False  # torch.compile the model
    seed: int = 0  # model init, data order, augmentation and dropout all follow from it
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs the tensorboard package)
    watch_activations: int = 0  # every N steps, per-layer statistics to RUN_DIR/activations.jsonl (0: off)

    def __post_init__(self) -> None:
        _check_range("dropout", self.dropout, 0.0, 1.0, closed_high=False, hint="p is the probability of dropping")
        _check_range("val_split", self.val_split, 0.0, 1.0, closed_low=False, closed_high=False)
        _check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, closed_high=False)
        _check_range("momentum", self.momentum, 0.0, 1.0, closed_high=False)
        for name in ("lr", "init_std"):
            _check_min(name, getattr(self, name), 0.0, strict=name == "lr")
        for name in ("weight_decay", "l1", "warmup_epochs"):
            _check_min(name, getattr(self, name), 0.0)
        for name in ("epochs", "batch_size", "maxout_pieces"):
            _check_min(name, getattr(self, name), 1)
        _check_min("workers", self.workers, 0)
        _check_min("watch_activations", self.watch_activations, 0)
        if self.maxout_pieces < 2 and self.activation == "maxout":
            raise AugkitError(f"maxout_pieces must be at least 2, got {self.maxout_pieces}")
        if self.clip_grad is not None:
            _check_min("clip_grad", self.clip_grad, 0.0, strict=True)
        if self.train_subset is not None:
            _check_min("train_subset", self.train_subset, 1)
        if self.init_mode not in ("fan_in", "fan_out"):
            raise AugkitError(f"init_mode must be fan_in or fan_out, got {self.init_mode!r}")
        for name in ("hidden", "channels"):
            widths = getattr(self, name)
            if not widths or any(w < 1 for w in widths):
                raise AugkitError(f"{name} must be one or more positive widths (for example 256,256), got {widths}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise AugkitError(f"warmup_epochs ({self.warmup_epochs}) must be shorter than the run (epochs={self.epochs})")

    # --- reading and writing ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples as lists): what config.yaml and checkpoints hold."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A config from plain values, every key checked and every value converted to its field's type."""
        if not isinstance(data, dict):
            raise AugkitError(f"{source}: expected a mapping of option: value, got {type(data).__name__}")
        values = {key: _convert(key, value, source) for key, value in data.items()}
        return cls(**values)

    def replace(self, changes: dict[str, Any], *, source: str = "--set") -> TrainConfig:
        """A copy with ``changes`` applied (each key checked and converted like ``from_dict``)."""
        values = self.to_dict()
        values.update({key: _convert(key, value, source) for key, value in changes.items()})
        return TrainConfig.from_dict(values, source=source)

    def save(self, path: str | Path) -> Path:
        from augkit.files import atomic_write

        return atomic_write(path, self.to_yaml().encode("utf-8"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """A config from a YAML (or JSON) file; keys not given keep their defaults."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AugkitError(f"config file {path} not found") from None
        except OSError as e:
            raise AugkitError(f"cannot read config file {path}: {e.strerror or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise AugkitError(f"config file {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
        return cls.from_dict(data or {}, source=str(path))


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"dropout=0.5"`` -> ("dropout", 0.5): the value read as YAML (``null``, ``[1, 2]``, ``true``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AugkitError(f"--set takes KEY=VALUE (for example --set dropout=0.5), got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


FIELDS: dict[str, Any] = {}  # name -> type hint, filled below


def _convert(key: str, value: Any, source: str) -> Any:
    """``value`` as the type of field ``key``; a clear error for unknown keys and wrong types."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(FIELDS)}"
        raise AugkitError(f"{source}: unknown option {key!r}{hint}")
    hint = FIELDS[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise AugkitError(f"{source}: {key} cannot be empty (null)")
    kind = next(t for t in options if t is not type(None))
    try:
        return _as(kind, value)
    except (TypeError, ValueError):
        expected = "a list of integers (for example 256,256)" if typing.get_origin(kind) is tuple else kind.__name__
        raise AugkitError(f"{source}: {key} must be {expected}, got {value!r}") from None


def _as(kind: Any, value: Any) -> Any:
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return tuple(_as(int, v) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise TypeError
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError
        return str(value)
    raise TypeError


def _check_range(
    name: str,
    value: float | None,
    low: float,
    high: float,
    *,
    closed_low: bool = True,
    closed_high: bool = True,
    hint: str = "",
) -> None:
    if value is None:
        return
    ok = (value >= low if closed_low else value > low) and (value <= high if closed_high else value < high)
    if not ok:
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"
        raise AugkitError(f"{name} must be in {interval}, got {value:g}" + (f" ({hint})" if hint else ""))


def _check_min(name: str, value: float, minimum: float, *, strict: bool = False) -> None:
    if value < minimum or (strict and value == minimum):
        raise AugkitError(f"{name} must be {'above' if strict else 'at least'} {minimum:g}, got {value:g}")


FIELDS.update(typing.get_type_hints(TrainConfig))
FIELDS.pop("FIELDS", None)
