"""``TrainConfig``: every option of a training run, in one typed dataclass.

A run's configuration is resolved in one order: the defaults declared here, then a YAML file
(``--config``), then the command line's flags, then ``--set key=value``. An unknown key is an
error naming the closest key. The resolved configuration is printed when a run starts, saved as
``RUN_DIR/config.yaml`` and inside every checkpoint; ``augkit train --config RUN_DIR/config.yaml``
runs the same experiment again.

Fields are flat (``dropout``, not ``model.dropout``) so that a field, its flag and an ablation
key are the same word: ``dropout`` <-> ``--dropout`` <-> ``--grid dropout=0,0.5``.

Names (activation, init, model, optimizer, schedule, loss) are checked against their registries when
the run is built (``augkit.train.build``), where torch is loaded; values are checked here, when a
config is made, so a bad one stops before anything runs:

- every float is finite (NaN and infinities pass no check) and in its range, bounded where a
  larger value could only overflow later: ``init_std`` by ``MAX_INIT_STD``, ``leaky_slope`` to
  [-1, 1], the penalties ``weight_decay`` and ``l1`` by ``MAX_PENALTY``, ``lr`` and ``clip_grad``
  by float32's largest number (torch computes in float32: past it no step can be taken);
- every text (DATA, ``stats``, ``augment``, the names) is valid UTF-8: config.yaml and the
  checkpoints hold UTF-8 text only, so a path whose name is not (Python holds its bytes as
  lone surrogates) could be written but never read back; it is refused with a hint to rename;
- integers are bounded generously (the ``MAX_*`` constants): a bound refuses only what cannot be meant,
  such as a digit typed twice, before it costs a fork bomb of workers or hours of epochs;
- ``seed`` is in [0, 2**32): numpy's ``np.random.seed`` and ``RandomState`` take that range,
  the narrowest of the seeders a run's seed may reach (``torch.manual_seed`` takes
  [-2**63, 2**64), ``np.random.default_rng`` any non-negative integer);
- each width (``hidden``, ``channels``) is at most ``MAX_WIDTH``, and the layers whose size the
  widths alone fix (hidden to hidden, each stage's 3x3 convolutions; the input layer depends
  on the images) must fit in this machine's memory with their gradients and Adam's moments
  (``BYTES_PER_PARAMETER``): a lower bound of what the run needs, checked before any of it is
  allocated. Models past these limits need a bigger machine, not augkit's harness.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from augkit.documents import DocumentSyntaxError, parse_document, read_document, short_repr
from augkit.errors import AugkitError

MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 1 << 20
MAX_WORKERS = 256  # processes
MAX_THREADS = 1024  # torch's intra-op threads: more than any machine's cores
# Floating-point operations of a training step below which a run takes one thread
# (augkit.train.threads): there a second thread saved little even on idle cores (bench/threads.py).
SMALL_STEP_FLOPS = 2e8
MAX_PIECES = 16  # maxout: every piece multiplies the layer before it (the maxout paper uses 2-5)
MAX_COUNT = 2**31 - 1  # train_subset, watch_activations
MAX_WIDTH = 1 << 16  # units of a hidden layer, channels of a stage: 16x the probe's 4096
MAX_LAYERS = 1000  # hidden layers (mlp) or stages (cnn, resnet): 100x the lecture's deepest net
MAX_TEXT = 4096  # characters of a text field: a path (Linux's PATH_MAX) or an inline pipeline spec
SEED_LIMIT = 2**32  # seeds are in [0, SEED_LIMIT): numpy's legacy seeding range
BYTES_PER_PARAMETER = 16  # float32: the weight, its gradient, Adam's two moments
# A weight's std (or constant value). The course's scales are 0.01-0.1, and std 1 already
# saturates a 256-wide tanh layer; far past 10 a draw only overflows (uniform's bound past 2e38).
MAX_INIT_STD = 10.0
MAX_PENALTY = 1.0  # weight_decay and l1; typical values are 1e-5 to 0.1
MAX_LEAKY_SLOPE = 1.0  # |slope|: 1 is the identity, -1 the absolute value; beyond, the leak outgrows the unit
# MixUp's and CutMix's Beta(alpha, alpha). Recipes use 0.1 to 1; at 100 lam already stays within 0.5 +- 0.15, and
# past it every batch is the same even blend: a larger value can only be a typo.
MAX_MIX_ALPHA = 100.0
# Where --augment runs: per image in the DataLoader workers, or on whole batches on the device
# (the same draws; crop, rotate, flips, brightness and contrast only); auto: the device when
# every step has a batched form and none is a random-resized crop (the one the device path
# does not antialias), else the workers.
AUGMENT_ON = ("auto", "cpu", "device")
FLOAT32_MAX = 3.4028234663852886e38  # lr, clip_grad: what multiplies float32 parameters and gradients
# The lecture's names for two initialisations (what most users type): a config stores the
# canonical name, so runs that differ only in how it was typed compare equal in ablation tables.
INIT_ALIASES = {"xavier": "xavier_normal", "kaiming": "kaiming_normal", "he": "kaiming_normal"}
# lr_scaling: none, or linear (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): the optimiser's
# lr is lr * batch_size / LR_REFERENCE_BATCH, batch_size being the global batch (torchrun too).
LR_SCALINGS = ("none", "linear")
LR_REFERENCE_BATCH = 256
# standardize: channel (per-channel mean and std, ResNet-style) | pixel (the lecture's X -= X.mean(axis=0);
# X /= X.std(axis=0) over the training images, the std floored by augkit.stats.floored_std) | none ([0, 1]).
# Configs and checkpoints written before the modes hold a bool: true is channel, false none.
STANDARDIZE = ("channel", "pixel", "none")
STANDARDIZE_FROM_BOOL = {True: "channel", False: "none"}


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
    leaky_slope: float = 0.01  # leaky_relu: slope for x < 0, in [-1, 1]
    prelu_per_channel: bool = True  # prelu: one learnable slope per channel (False: one shared slope)
    maxout_pieces: int = 2  # maxout: linear pieces per unit
    init: str = "kaiming_normal"  # weight initialisation; biases always start at zero. xavier, kaiming, he: saved as *_normal
    init_std: float = 0.01  # normal: std (the course's weight_scale); uniform: std of U(-a, a); constant: value. <= 10
    init_mode: str = "fan_in"  # kaiming: fan_in (keeps forward activations) | fan_out (keeps gradients)
    zero_init_residual: bool = True  # resnet: last norm layer of each block starts at zero (block = identity)
    dropout: float = 0.0  # probability of DROPPING a unit (the CS231n notes use the keep probability)
    batchnorm: bool = True

    # --- regularisation and preprocessing -----------------------------------------------------
    weight_decay: float = 5e-4  # L2 on weights only (not biases or norm parameters); decoupled for adamw. <= 1
    l1: float = 0.0  # L1 penalty l1 * sum(|w|) on weights, added to the loss. <= 1
    augment: str | None = None  # augkit pipeline (file or inline spec) for training images; None: none
    augment_on: str = "auto"  # cpu: per image in the workers | device: whole batches on the device (train/device_augment.py) | auto
    # MixUp / CutMix (train/mix.py; timm's Mixup, batch mode): on the device after standardisation, soft cross-entropy
    mixup: float = 0.0  # MixUp's Beta alpha (timm's mixup_alpha; 0.2 to 0.8 typical); 0: off. <= 100
    cutmix: float = 0.0  # CutMix's Beta alpha (timm's cutmix_alpha; 1.0 in the paper); 0: off. <= 100
    mix_prob: float = 1.0  # probability that a batch is mixed, with mixup or cutmix on (timm's prob)
    switch_prob: float = 0.5  # with both on: probability that a mixed batch takes CutMix, not MixUp
    standardize: str = "channel"  # channel | pixel (per-pixel mean and std images) | none; true/false in old files
    mean_image: bool = False  # subtract the training split's mean image (AlexNet) instead of per-channel means
    stats: str | None = None  # stats.json to standardise with; None: computed on the training split, cached in RUN_DIR

    # --- optimisation -------------------------------------------------------------------------
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05  # peak learning rate (times batch_size / 256 with lr_scaling linear)
    lr_scaling: str = "none"  # none | linear: the optimiser's lr is lr * batch_size / 256 (Goyal et al. 2017)
    momentum: float = 0.9  # sgd momentum; adam/adamw: beta1
    schedule: str = "onecycle"  # constant | step | cosine | onecycle
    warmup_epochs: float = 0.0  # linear warm-up from 0 (onecycle: ramp-up length; 0 means 30% of the run)
    label_smoothing: float = 0.0
    loss: str = "cross_entropy"  # cross_entropy | hinge | squared_hinge | soft_cross_entropy (train/losses.py)
    clip_grad: float | None = None  # clip the gradients' global L2 norm to this
    epochs: int = 20
    batch_size: int = 64

    # --- runtime ------------------------------------------------------------------------------
    workers: int = 0  # DataLoader worker processes for augmentation (0: in the training process)
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    threads: int | None = None  # torch's CPU threads; None: chosen per run from the work and the free cores (train/threads.py)
    amp: bool = False  # bf16 autocast (CUDA), with channels-last
    compile: bool = False  # torch.compile the model
    seed: int = 0  # model init, data order, augmentation and dropout all follow from it
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs the tensorboard package)
    watch_activations: int = 0  # every N steps, per-layer statistics to RUN_DIR/activations.jsonl (0: off)

    def __post_init__(self) -> None:
        check_range("dropout", self.dropout, 0, 1, high_open=True, hint="p is the probability of dropping")
        check_range("val_split", self.val_split, 0, 1, low_open=True, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        check_range("momentum", self.momentum, 0, 1, high_open=True)
        check_range("lr", self.lr, 0, FLOAT32_MAX, low_open=True, hint="the largest float32: torch trains in float32")
        check_range("clip_grad", self.clip_grad, 0, FLOAT32_MAX, low_open=True, hint="the largest float32: torch trains in float32")
        check_range("init_std", self.init_std, 0, MAX_INIT_STD, hint="the course's scales are 0.01 to 0.1")
        check_range("weight_decay", self.weight_decay, 0, MAX_PENALTY, hint="typical values are 1e-5 to 0.1")
        check_range("l1", self.l1, 0, MAX_PENALTY, hint="typical values are 1e-5 to 1e-3")
        check_range("warmup_epochs", self.warmup_epochs, 0)
        check_range("leaky_slope", self.leaky_slope, -MAX_LEAKY_SLOPE, MAX_LEAKY_SLOPE, hint="usually 0.01 to 0.3")
        for name in ("mixup", "cutmix"):  # 0: off
            check_range(name, getattr(self, name), 0, MAX_MIX_ALPHA, hint="Beta(alpha, alpha); recipes use 0.1 to 1")
        check_range("mix_prob", self.mix_prob, 0, 1)
        check_range("switch_prob", self.switch_prob, 0, 1)
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_range("workers", self.workers, 0, MAX_WORKERS)
        check_range("threads", self.threads, 1, MAX_THREADS, hint="leave it out (null) to let each run choose")
        check_range("watch_activations", self.watch_activations, 0, MAX_COUNT)
        check_range("train_subset", self.train_subset, 1, MAX_COUNT)
        check_range("maxout_pieces", self.maxout_pieces, 2 if self.activation == "maxout" else 1, MAX_PIECES)
        check_range("seed", self.seed, 0, SEED_LIMIT, high_open=True, hint="numpy's seed range")
        # Every text, and so config.yaml, within what augkit.documents reads back (1 MiB, UTF-8).
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, str):
                check_utf8(value, name)
                if len(value) > MAX_TEXT:
                    raise AugkitError(f"{name} is {len(value):,} characters long, more than {MAX_TEXT:,}: "
                                      f"give a shorter path (or put a long pipeline in a file)")  # fmt: skip
        if self.augment_on not in AUGMENT_ON:
            raise AugkitError(f"augment_on must be {', '.join(AUGMENT_ON)}, got {short_repr(self.augment_on)}")
        self.init = INIT_ALIASES.get(self.init, self.init)
        if isinstance(self.standardize, bool):  # TrainConfig(standardize=True), as before the modes
            self.standardize = STANDARDIZE_FROM_BOOL[self.standardize]
        if self.standardize not in STANDARDIZE:
            raise AugkitError(f"standardize must be {', '.join(STANDARDIZE)}, got {short_repr(self.standardize)}")
        if self.standardize == "pixel" and self.mean_image:
            raise AugkitError("standardize pixel already subtracts the mean image (and divides by the std image); "
                              "drop mean_image (--mean-image)")  # fmt: skip
        if self.lr_scaling not in LR_SCALINGS:
            raise AugkitError(f"lr_scaling must be none or linear, got {short_repr(self.lr_scaling)}")
        if self.lr_scaling == "linear":  # the lr the optimiser gets, within float32 too
            check_range("lr * batch_size / 256", self.lr * self.batch_size / LR_REFERENCE_BATCH, 0, FLOAT32_MAX,
                        low_open=True, hint="--lr-scaling linear; the largest float32: torch trains in float32")
        if self.init_mode not in ("fan_in", "fan_out"):
            raise AugkitError(f"init_mode must be fan_in or fan_out, got {short_repr(self.init_mode)}")
        self._check_widths()
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise AugkitError(f"warmup_epochs ({self.warmup_epochs}) must be shorter than the run (epochs={self.epochs})")

    def fixed_parameters(self) -> int:
        """Parameters of the layers the widths alone fix: a lower bound of the model's size.

        mlp: the matrices between consecutive hidden layers. cnn and resnet: each stage's 3x3
        convolutions (from the previous stage's channels, and within the stage). Maxout
        multiplies each by its pieces. The input layer and the head depend on the images and
        classes, and are left out.
        """
        pieces = self.maxout_pieces if self.activation == "maxout" else 1
        if self.model == "mlp":
            return sum(a * b * pieces for a, b in zip(self.hidden, self.hidden[1:]))
        widths = self.channels
        return sum(9 * b * pieces * (a + b) for a, b in zip((0, *widths), widths))

    def _check_widths(self) -> None:
        """The model's size against this machine's memory, then each width against ``MAX_WIDTH``."""
        memory, parameters = physical_memory(), self.fixed_parameters()
        if memory is not None and parameters * BYTES_PER_PARAMETER > memory:
            name = "hidden" if self.model == "mlp" else "channels"
            raise AugkitError(
                f"{name} {short_repr(getattr(self, name))} gives the {self.model} at least {_approx(parameters)} "
                f"parameters: {_approx(parameters * BYTES_PER_PARAMETER // 10**9)} GB with their gradients and "
                f"Adam's moments (float32), more than this machine's {memory / 1e9:.1f} GB of memory; use narrower layers"
            )
        for name in ("hidden", "channels"):
            widths = getattr(self, name)
            if not 1 <= len(widths) <= MAX_LAYERS or not all(1 <= w <= MAX_WIDTH for w in widths):
                raise AugkitError(
                    f"{name} must be 1 to {MAX_LAYERS} widths, each in [1, {MAX_WIDTH}] (for example 256,256), "
                    f"got {short_repr(widths)}" + (f" ({len(widths)} widths)" if len(widths) > MAX_LAYERS else "")
                )

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
        """A config from a YAML (or JSON) file; keys not given keep their defaults.

        Read through ``augkit.documents``: size, nesting, aliases and numbers are bounded.
        """
        try:
            data = read_document(path, what="training config", format="yaml")
        except FileNotFoundError:
            raise AugkitError(f"config file {path} not found") from None
        return cls.from_dict({} if data is None else data, source=str(path))


def parse_assignment(text: str, *, option: str = "--set") -> tuple[str, Any]:
    """``"dropout=0.5"`` -> ("dropout", 0.5): the value read as YAML (``null``, ``[1, 2]``, ``true``).

    A value that is not YAML is kept as text (an inline pipeline may hold a ``:``); one over a
    limit of ``augkit.documents`` (nesting, aliases, a 5000-digit number, bytes that are not
    UTF-8) is refused.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise AugkitError(f"{option} takes KEY=VALUE (for example {option} dropout=0.5), got {short_repr(text)}")
    key = key.strip().replace("-", "_")
    try:
        parsed = parse_document(value, source=f"{option} {key}", what="value") if value.strip() else None
    except DocumentSyntaxError:
        parsed = value
    return key, parsed


# How a list of integers is written (hidden, channels), as the errors say it.
INT_LIST_FORM = "separated by commas or spaces (for example 512,512 or '512 512')"
_LIST_ITEM = re.compile(r"[+-]?\d{1,12}")
_LIST_SEPARATOR = re.compile(r"\s*,\s*|\s+")


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"512,512"``, ``"512 512"``, ``"512, 512"``, ``"[512, 512]"`` or ``"512"`` -> (512, 512) or (512,).

    Strict: every item an integer (at most 12 digits), one separator between two items (a
    comma, spaces, or a comma with spaces), brackets around the whole optional. Anything else,
    such as ``512x512``, ``512,,512`` or an empty text, is refused rather than read as something
    the user did not write (the old reading dropped spaces: ``"512 512"`` became 512512).

    Raises:
        ValueError: ``text`` is not of that form (the caller names the option; see ``INT_LIST_FORM``).
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1].strip()
    items = _LIST_SEPARATOR.split(body)
    if not all(_LIST_ITEM.fullmatch(item) for item in items):
        raise ValueError(f"not a list of integers: {text!r}")
    return tuple(int(item) for item in items)


FIELDS: dict[str, Any] = {}  # name -> type hint, filled below


def _convert(key: str, value: Any, source: str) -> Any:
    """``value`` as the type of field ``key``; a clear error for unknown keys and wrong types."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(FIELDS)}"
        raise AugkitError(f"{source}: unknown option {short_repr(key)}{hint}")
    hint = FIELDS[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise AugkitError(f"{source}: {key} cannot be empty (null)")
    kind = next(t for t in options if t is not type(None))
    if key == "standardize":  # a config.yaml or checkpoint from before the modes: a bool, or a text read as one
        if type(value) is int and value in (0, 1):  # `--set standardize=1`, read as YAML
            value = bool(value)
        if isinstance(value, str) and value.lower() not in STANDARDIZE:
            try:
                value = _as(bool, value)
            except TypeError:
                raise AugkitError(f"{source}: standardize must be {', '.join(STANDARDIZE)} (or true/false, as "
                                  f"channel/none), got {short_repr(value)}") from None  # fmt: skip
        if isinstance(value, bool):
            return STANDARDIZE_FROM_BOOL[value]
    try:
        return _as(kind, value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float(10**400)
        expected = f"a list of integers, {INT_LIST_FORM}" if typing.get_origin(kind) is tuple else kind.__name__
        raise AugkitError(f"{source}: {key} must be {expected}, got {short_repr(value)}") from None


def _as(kind: Any, value: Any) -> Any:
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = parse_int_list(value)
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


def check_range(
    name: str,
    value: float | None,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> None:
    """Refuse ``value`` outside [low, high] (open where asked); NaN and infinities never pass.

    Every comparison with NaN is False, so the test is that the value is inside, never that
    it is outside. None (an optional left unset) passes.
    """
    if value is None:
        return
    finite = isinstance(value, int) or math.isfinite(value)  # isfinite(10**400) would overflow
    if finite and (low < value if low_open else low <= value) and (value < high if high_open else value <= high):
        return
    if math.isinf(high):
        wanted = "finite" if math.isinf(low) else f"{'above' if low_open else 'at least'} {low:g} and finite"
    else:
        top = f"{high:g}" if isinstance(high, float) else str(high)  # 3.40282e+38; an integer in full (4294967296)
        wanted = f"in {'(' if low_open else '['}{low:g}, {top}{')' if high_open else ']'}"
    shown = short_repr(value) if isinstance(value, int) else f"{value:g}"
    raise AugkitError(f"{name} must be {wanted}, got {shown}" + (f" ({hint})" if hint else ""))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_utf8(text: str | os.PathLike, what: str, fix: str = "rename it to a UTF-8 name") -> None:
    """Refuse ``text`` (a path, a name, a value) unless it is valid UTF-8.

    A file name whose bytes are not UTF-8 reaches Python as lone surrogates (``os.fsdecode``):
    usable to open the file, but config.yaml, checkpoints and plots take UTF-8 text only, so it
    could be written there and never read back.

    Raises:
        AugkitError: naming ``what``, the text with its bad bytes escaped (``printable``) and ``fix``.
    """
    value = os.fspath(text)
    bad = _LONE_SURROGATE.search(value)
    if bad is None:
        return
    char = ord(bad.group())
    byte = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"a lone surrogate U+{char:04X}"
    raise AugkitError(f"{what} '{printable(value)[:200]}' is not valid UTF-8 ({byte}); augkit takes UTF-8 names "
                      f"only, as config files, plots and messages hold them: {fix}")  # fmt: skip


def printable(text: str) -> str:
    """``text`` with every byte that is not UTF-8 shown as ``\\xff`` (other lone surrogates as ``\\udXXX``):
    what a font, a terminal or a UTF-8 file can take, for a title, a label or a message."""

    def escape(match: re.Match) -> str:
        char = ord(match.group())
        return f"\\x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"\\u{char:04x}"

    return _LONE_SURROGATE.sub(escape, text)


def _approx(n: int) -> str:
    """A large count to three digits (9e+12), or as a power of ten past float's range."""
    return f"{n:,}" if n < 10**6 else f"{n:.3g}" if n.bit_length() < 1000 else f"about 10**{int(n.bit_length() * 0.30103)}"


def physical_memory() -> int | None:
    """This machine's memory in bytes; None where the system does not say (Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


FIELDS.update(typing.get_type_hints(TrainConfig))
FIELDS.pop("FIELDS", None)
