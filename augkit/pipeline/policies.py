"""Augmentation policies as steps: ``randaugment``, ``trivialaugment``, ``autoaugment``, ``augmix``.

Each policy is a table of operations with magnitude ranges, as torchvision defines it
(``torchvision/transforms/v2/_auto_augment.py``; the pixel arithmetic of every operation is in
``augkit.pipeline.functional``):

- ``randaugment`` (Cubuk et al. 2020, "RandAugment"): N operations drawn uniformly from 14, each at
  bin M of its range cut into ``num_magnitude_bins``; with ``magnitude_std`` (timm's ``mstd``) the
  bin is drawn per operation from N(M, std), clipped to [0, bins - 1];
- ``trivialaugment`` (Müller & Hutter 2021, "TrivialAugment", torchvision's ``TrivialAugmentWide``):
  one operation, at a bin drawn uniformly, from the wide ranges;
- ``autoaugment`` (Cubuk et al. 2019, "AutoAugment"): one of the 25 published sub-policies of
  the ImageNet, CIFAR-10 or SVHN search, each two (operation, probability, magnitude bin of 10);
- ``augmix`` (Hendrycks et al. 2020, "AugMix"): ``mixture_width`` chains of 1-3 operations at
  severity-limited magnitudes, mixed with Dirichlet weights, then with the image (Beta weight).

Signed magnitudes (shears, translations, rotations, enhancements) take either sign with
probability 1/2. Every draw comes from the step's Python generator, which the pipeline re-seeds
per sample (``augkit.pipeline.seeding``), so a preview, ``replay``, ``draw`` and training agree.
The drawn operations and magnitudes are the step's parameters (``ops``, for augmix ``chains``
and ``weights``) and its caption ("rand: rotate +12.0°, solarize 178.5").

Inline specs also take timm's strings (``rand-m9-n2-mstd0.5``, ``augmix-m5-w3-d2``,
``original``): ``augkit.pipeline.spec`` maps them to these steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from augkit.errors import AugkitError
from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.steps import (
    AugkitTransform,
    BaseInitSchema,
    _check_fill,
    _check_number,
    _on_labels,
    _signed,
    _step,
    move_boxes,
)

# ----------------------------------------------------------------------------- magnitudes

# An operation's magnitude at bin k (fractional with magnitude_std) of `bins`, for an image of
# height x width; the functions give torchvision's `torch.linspace(...)[k]` and friends.
Magnitude = Callable[[float, int, int, int], float]


def _linear(high: float) -> Magnitude:
    """``linspace(0, high, bins)[k]``."""
    return lambda k, bins, height, width: high * k / (bins - 1)


def _of_width(fraction: float) -> Magnitude:
    """``linspace(0, fraction * width, bins)[k]``, pixels."""
    return lambda k, bins, height, width: fraction * width * k / (bins - 1)


def _of_height(fraction: float) -> Magnitude:
    """``linspace(0, fraction * height, bins)[k]``, pixels."""
    return lambda k, bins, height, width: fraction * height * k / (bins - 1)


def _posterize(start: int, spread: int) -> Magnitude:
    """``start - round(arange(bins) / ((bins - 1) / spread))[k]``: bits kept, fewer as k grows."""
    return lambda k, bins, height, width: start - round(k / ((bins - 1) / spread))


def _solarize(k: float, bins: int, height: int, width: int) -> float:
    """``linspace(255, 0, bins)[k]``: the threshold in 8-bit units (torchvision v2 writes it as a
    fraction, ``linspace(1, 0)``, times the dtype's maximum: the same level)."""
    return 255.0 * (1.0 - k / (bins - 1))


# A space: torchvision's operation name -> (its magnitude, or None where it takes none; signed).
Space = dict[str, tuple[Magnitude | None, bool]]

_NO_MAGNITUDE = (None, False)
RANDAUGMENT_SPACE: Space = {
    "Identity": _NO_MAGNITUDE,
    "ShearX": (_linear(0.3), True),
    "ShearY": (_linear(0.3), True),
    "TranslateX": (_of_width(150.0 / 331.0), True),
    "TranslateY": (_of_height(150.0 / 331.0), True),
    "Rotate": (_linear(30.0), True),
    "Brightness": (_linear(0.9), True),
    "Color": (_linear(0.9), True),
    "Contrast": (_linear(0.9), True),
    "Sharpness": (_linear(0.9), True),
    "Posterize": (_posterize(8, 4), False),
    "Solarize": (_solarize, False),
    "AutoContrast": _NO_MAGNITUDE,
    "Equalize": _NO_MAGNITUDE,
}
TRIVIALAUGMENT_SPACE: Space = {
    "Identity": _NO_MAGNITUDE,
    "ShearX": (_linear(0.99), True),
    "ShearY": (_linear(0.99), True),
    "TranslateX": (_linear(32.0), True),
    "TranslateY": (_linear(32.0), True),
    "Rotate": (_linear(135.0), True),
    "Brightness": (_linear(0.99), True),
    "Color": (_linear(0.99), True),
    "Contrast": (_linear(0.99), True),
    "Sharpness": (_linear(0.99), True),
    "Posterize": (_posterize(8, 6), False),
    "Solarize": (_solarize, False),
    "AutoContrast": _NO_MAGNITUDE,
    "Equalize": _NO_MAGNITUDE,
}
AUTOAUGMENT_SPACE: Space = {**{k: v for k, v in RANDAUGMENT_SPACE.items() if k != "Identity"}, "Invert": _NO_MAGNITUDE}
_AUGMIX_PARTIAL: Space = {
    "ShearX": (_linear(0.3), True),
    "ShearY": (_linear(0.3), True),
    "TranslateX": (_of_width(1.0 / 3.0), True),
    "TranslateY": (_of_height(1.0 / 3.0), True),
    "Rotate": (_linear(30.0), True),
    "Posterize": (_posterize(4, 4), False),
    "Solarize": (_solarize, False),
    "AutoContrast": _NO_MAGNITUDE,
    "Equalize": _NO_MAGNITUDE,
}
AUGMIX_SPACE: Space = {
    **_AUGMIX_PARTIAL,
    "Brightness": (_linear(0.9), True),
    "Color": (_linear(0.9), True),
    "Contrast": (_linear(0.9), True),
    "Sharpness": (_linear(0.9), True),
}
AUTOAUGMENT_BINS = 10  # AutoAugment's magnitudes are bins of 10 (torchvision: magnitudes_fn(10, ...))
AUGMIX_BINS = 10  # AugMix's severity picks among the first of 10 bins (torchvision's _PARAMETER_MAX)

# The published AutoAugment sub-policies (Cubuk et al. 2019, appendix), as torchvision's
# AutoAugmentPolicy tables: ((operation, probability, magnitude bin or None), (...)).
AUTOAUGMENT_POLICIES: dict[str, list[tuple[tuple[str, float, int | None], ...]]] = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
        (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
        (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
        (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
        (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
        (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
        (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
        (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}

# ----------------------------------------------------------------------------- operations

# (operation, magnitude) as drawn: shears as factors, translations in pixels (whole pixels
# applied, truncated as torchvision's int()), rotations in degrees counter-clockwise,
# enhancements as the change of factor (factor = 1 + magnitude), posterize in bits kept,
# solarize as the threshold in 8-bit units; 0.0 for operations without a magnitude.
Op = tuple[str, float]

_GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def apply_op(img: np.ndarray, op: Op, *, nearest: bool = True, fill: float = 0) -> np.ndarray:
    """One operation on an image (H x W or H x W x C, the pixel contract), as torchvision's
    ``_apply_image_or_video_transform``; ``nearest`` and ``fill`` are how geometric ones sample."""
    name, m = op
    if name in _GEOMETRIC:
        if name == "Rotate":
            return F.rotate(img, m, border="constant", fill=fill, nearest=nearest)
        if name in ("ShearX", "ShearY"):
            return F.shear(img, m, "x" if name == "ShearX" else "y", fill=fill, nearest=nearest)
        shift = int(m)
        return F.translate(img, 0, shift, fill) if name == "TranslateX" else F.translate(img, shift, 0, fill)
    return _PIXEL_OPS[name](img, m)


_PIXEL_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "Identity": lambda img, m: img,
    "Brightness": lambda img, m: F.enhance_brightness(img, 1.0 + m),
    "Color": lambda img, m: F.enhance_color(img, 1.0 + m),
    "Contrast": lambda img, m: F.enhance_contrast(img, 1.0 + m),
    "Sharpness": lambda img, m: F.enhance_sharpness(img, 1.0 + m),
    "Posterize": lambda img, m: F.posterize(img, int(m)),
    "Solarize": lambda img, m: F.solarize(img, m),
    "AutoContrast": lambda img, m: F.autocontrast(img),
    "Equalize": lambda img, m: F.equalize(img),
    "Invert": lambda img, m: F.invert(img),
}


def run_ops(img: np.ndarray, ops: list[Op], *, nearest: bool = True, fill: float = 0) -> np.ndarray:
    """``ops`` one after another; a new array even when none changes a pixel."""
    out = img
    for op in ops:
        out = apply_op(out, op, nearest=nearest, fill=fill)
    return out.copy() if out is img else out


def _move_mask(mask: np.ndarray, ops: list[Op], fill_mask: float) -> np.ndarray:
    """The geometric operations of ``ops`` on a label map, nearest-neighbour (pixel ops leave it)."""
    moves = [op for op in ops if op[0] in _GEOMETRIC]
    return _on_labels(mask, lambda m: run_ops(m, moves, nearest=True, fill=fill_mask))


def op_matrix(op: Op, height: int, width: int) -> np.ndarray | None:
    """The 2 x 3 map of points (pixel centres at integers) by which a geometric operation moves an
    image of ``height`` x ``width`` (``apply_op``'s warp); None for the others, which move nothing."""
    name, m = op
    if name == "Rotate":
        return F.rotation_matrix(m, height, width)
    if name in ("ShearX", "ShearY"):
        return F.shear_matrix(m, "x" if name == "ShearX" else "y")
    if name == "TranslateX":
        return F.translate_matrix(0, int(m))
    if name == "TranslateY":
        return F.translate_matrix(int(m), 0)
    return None


def ops_matrix(ops: list[Op], height: int, width: int) -> np.ndarray:
    """The map of points of ``ops`` one after another (every one keeps the size): 2 x 3 float64."""
    total = np.eye(3)
    for op in ops:
        matrix = op_matrix(op, height, width)
        if matrix is not None:
            total = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ total
    return total[:2]


def move_boxes_by_ops(bboxes: np.ndarray, ops: list[Op], shape: tuple) -> np.ndarray:
    """albumentations' normalised N x 4+ boxes moved by the geometric operations of ``ops`` in turn.

    Each moves them as ``steps.move_boxes`` does (the box around the four moved corners); what one
    moves out of the image is cut off before the next, as it is from the pixels (its place shows
    ``fill``), and a box with nothing left inside is dropped. What the last one moves out is left
    to ``Compose``, which clips it and weighs it against ``min_visibility``.
    """
    if len(bboxes) == 0:
        return bboxes
    for index, matrix in enumerate(m for m in (op_matrix(op, *shape[:2]) for op in ops) if m is not None):
        if index > 0:
            bboxes = np.array(bboxes, dtype=np.float64)
            bboxes[:, :4] = np.clip(bboxes[:, :4], 0.0, 1.0)
            bboxes = bboxes[(bboxes[:, 2] > bboxes[:, 0]) & (bboxes[:, 3] > bboxes[:, 1])]
        bboxes = move_boxes(bboxes, matrix, shape, shape)
    return bboxes


# Short names for captions ("rand: rotate +12.0°, solarize 178.5").
_SHORT = {
    "ShearX": "shear_x", "ShearY": "shear_y", "TranslateX": "translate_x", "TranslateY": "translate_y",
    "AutoContrast": "autocontrast",
}  # fmt: skip
_ENHANCE = ("Brightness", "Color", "Contrast", "Sharpness")


def _changes_nothing(op: Op) -> bool:
    """A shear, translation, rotation or enhancement at magnitude 0 (a translation under a pixel)."""
    name, m = op
    return (name in _GEOMETRIC or name in _ENHANCE) and (int(m) if name.startswith("Translate") else m) == 0


def describe_op(op: Op) -> str:
    """One operation as a caption shows it: "rotate +12.0°", "shear_x -0.27", "color ×0.73"."""
    name, m = op
    short = _SHORT.get(name, name.lower())
    if name in ("ShearX", "ShearY"):
        return f"{short} {_signed(m)}"
    if name in ("TranslateX", "TranslateY"):
        return f"{short} {_signed(int(m), 0)}px"
    if name == "Rotate":
        return f"rotate {_signed(m, 1)}°"
    if name in _ENHANCE:
        return f"{short} ×{1.0 + m:.2f}"
    if name == "Posterize":
        return f"posterize {int(m)} bits"
    if name == "Solarize":
        return f"solarize {round(m, 1):g}"
    return short


def _magnitude(space: Space, name: str, k: float, bins: int, shape: tuple[int, ...], rng: random.Random) -> float:
    """Operation ``name``'s magnitude at bin ``k``, negated with probability 1/2 where signed
    (one draw, only then); 0.0 for an operation without one."""
    magnitude, signed = space[name]
    if magnitude is None:
        return 0.0
    value = float(magnitude(k, bins, shape[0], shape[1]))
    return -value if signed and rng.random() < 0.5 else value


# ----------------------------------------------------------------------------- the steps

Interpolation = Literal["nearest", "bilinear"]
MAX_OPS = 16  # operations per sample: RandAugment's N, AugMix's width and depth
MAX_BINS = 1001


class _PolicySchema(BaseInitSchema):
    interpolation: Interpolation
    fill: float
    fill_mask: float

    @model_validator(mode="after")
    def _check_fills(self) -> _PolicySchema:
        _check_fill(self.fill)
        _check_fill(self.fill_mask)
        return self


class _Policy(AugkitTransform, A.DualTransform):
    """Shared by randaugment, trivialaugment and autoaugment: operations drawn per sample, applied
    in order to the image; masks follow the geometric ones, nearest-neighbour, and boxes and
    keypoints by the same matrices (``op_matrix``; boxes as ``move_boxes_by_ops`` says).

    Args:
        interpolation: how rotations and shears sample: "nearest" (torchvision's default) or "bilinear".
        fill: the value of the pixels that geometric operations bring in from outside, in the image's
            units (0..255 for uint8, 0..65535 for uint16, 0..1 for float32); torchvision's 0.
        fill_mask: their label in a mask (masks follow the geometric operations only).
    """

    prefix = ""
    draws_from_shape = True  # what it draws depends on the image's size only (Pipeline.draw reads it)

    def __init__(self, interpolation: Interpolation, fill: float, fill_mask: float, p: float) -> None:
        super().__init__(p=p)
        self.interpolation = interpolation
        self.fill = fill
        self.fill_mask = fill_mask

    def apply(self, img: np.ndarray, ops: list[Op], **params: Any) -> np.ndarray:
        return run_ops(img, ops, nearest=self.interpolation == "nearest", fill=self.fill)

    def apply_to_mask(self, mask: np.ndarray, ops: list[Op], **params: Any) -> np.ndarray:
        return _move_mask(mask, ops, self.fill_mask)

    def apply_to_bboxes(self, bboxes: np.ndarray, ops: list[Op], **params: Any) -> np.ndarray:
        return move_boxes_by_ops(bboxes, ops, params["shape"])

    def apply_to_keypoints(self, keypoints: np.ndarray, ops: list[Op], **params: Any) -> np.ndarray:
        """All the operations' maps at once: a keypoint that one moves out and a later one back in
        comes back (``Compose`` sees only where it ends), though its pixel was lost on the way."""
        return F.keypoints_affine(keypoints, ops_matrix(ops, *params["shape"][:2]))

    def describe(self, params: dict[str, Any]) -> str:
        return f"{self.prefix}: {', '.join(describe_op(op) for op in params['ops']) or 'no op'}"

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("interpolation", "fill", "fill_mask")


@_step("randaugment")
class RandAugment(_Policy):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` operations of 14, drawn uniformly, at magnitude bin ``magnitude``.

    torchvision's ``RandAugment`` operations and ranges (``RANDAUGMENT_SPACE``); with
    ``magnitude_std`` the bin is drawn per operation, as timm's ``mstd``.

    Args:
        num_ops: how many operations each sample gets, one after another (N), 0 to 16.
        magnitude: the bin of every operation's range (M), 0 to num_magnitude_bins - 1; may be fractional.
        num_magnitude_bins: how many bins each range is cut into, 2 to 1001: torchvision's 31;
            11 makes magnitude timm's 0..10 scale.
        magnitude_std: timm's mstd: each operation's bin is drawn from N(magnitude, magnitude_std),
            clipped to [0, num_magnitude_bins - 1]; 0 keeps it fixed.
    """

    prefix = "rand"

    class InitSchema(_PolicySchema):
        num_ops: int = Field(ge=0, le=MAX_OPS)
        magnitude: float = Field(ge=0)
        num_magnitude_bins: int = Field(ge=2, le=MAX_BINS)
        magnitude_std: float = Field(ge=0, le=100)

        @model_validator(mode="after")
        def _check(self) -> RandAugment.InitSchema:
            _check_number("magnitude", self.magnitude, 0, self.num_magnitude_bins - 1)
            return self

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 9,
        num_magnitude_bins: int = 31,
        magnitude_std: float = 0.0,
        interpolation: Interpolation = "nearest",
        fill: float = 0,
        fill_mask: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, fill_mask, p)
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.num_magnitude_bins = num_magnitude_bins
        self.magnitude_std = magnitude_std

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng, names, last = self.py_random, list(RANDAUGMENT_SPACE), self.num_magnitude_bins - 1
        ops = []
        for _ in range(self.num_ops):
            name = names[rng.randrange(len(names))]
            k = self.magnitude
            if self.magnitude_std > 0 and RANDAUGMENT_SPACE[name][0] is not None:
                k = min(max(rng.normalvariate(self.magnitude, self.magnitude_std), 0.0), last)
            ops.append((name, _magnitude(RANDAUGMENT_SPACE, name, k, self.num_magnitude_bins, params["shape"], rng)))
        return {"ops": ops}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "num_magnitude_bins", "magnitude_std", *super().get_transform_init_args_names())


@_step("trivialaugment")
class TrivialAugment(_Policy):
    """TrivialAugment (Müller & Hutter 2021): one operation of 14 at a magnitude bin, both drawn uniformly.

    torchvision's ``TrivialAugmentWide`` operations and wide ranges (``TRIVIALAUGMENT_SPACE``).

    Args:
        num_magnitude_bins: how many bins each range is cut into, 2 to 1001 (torchvision's 31).
    """

    prefix = "trivial"

    class InitSchema(_PolicySchema):
        num_magnitude_bins: int = Field(ge=2, le=MAX_BINS)

    def __init__(
        self,
        num_magnitude_bins: int = 31,
        interpolation: Interpolation = "nearest",
        fill: float = 0,
        fill_mask: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, fill_mask, p)
        self.num_magnitude_bins = num_magnitude_bins

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng, names = self.py_random, list(TRIVIALAUGMENT_SPACE)
        name = names[rng.randrange(len(names))]
        k = rng.randrange(self.num_magnitude_bins) if TRIVIALAUGMENT_SPACE[name][0] is not None else 0
        return {"ops": [(name, _magnitude(TRIVIALAUGMENT_SPACE, name, k, self.num_magnitude_bins, params["shape"], rng))]}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_magnitude_bins", *super().get_transform_init_args_names())


@_step("autoaugment")
class AutoAugment(_Policy):
    """AutoAugment (Cubuk et al. 2019): one of the 25 published sub-policies, drawn uniformly.

    Each sub-policy is two operations, each applied with its own probability at its own magnitude
    bin of 10 (``AUTOAUGMENT_POLICIES``, torchvision's ``AutoAugmentPolicy`` tables).

    Args:
        policy: the search it comes from: "imagenet", "cifar10" or "svhn".
    """

    prefix = "auto"

    class InitSchema(_PolicySchema):
        policy: Literal["imagenet", "cifar10", "svhn"]

    def __init__(
        self,
        policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet",
        interpolation: Interpolation = "nearest",
        fill: float = 0,
        fill_mask: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(interpolation, fill, fill_mask, p)
        self.policy = policy

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng, table = self.py_random, AUTOAUGMENT_POLICIES[self.policy]
        index = rng.randrange(len(table))
        ops = []
        for name, probability, k in table[index]:
            if rng.random() <= probability:  # torchvision applies when its draw is <= p
                ops.append((name, _magnitude(AUTOAUGMENT_SPACE, name, k or 0, AUTOAUGMENT_BINS, params["shape"], rng)))
        return {"sub_policy": index, "ops": ops}

    def describe(self, params: dict[str, Any]) -> str:
        ops = ", ".join(describe_op(op) for op in params["ops"]) or "no op"
        return f"auto #{params['sub_policy']}: {ops}"

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("policy", *super().get_transform_init_args_names())


def _no_targets(what: str) -> AugkitError:
    """The error for ``what`` ("masks", "boxes", "keypoints") given to augmix."""
    return AugkitError(
        f"step 'augmix' blends several transformed copies of the image, which {what} cannot follow; "
        f"use randaugment, trivialaugment or autoaugment with {what}"
    )


def _dirichlet(rng: random.Random, alpha: float, n: int) -> list[float]:
    """A draw of Dirichlet(alpha, ..., alpha) over ``n``: gamma variates, normalised."""
    draws = [rng.gammavariate(alpha, 1.0) for _ in range(n)]
    total = math.fsum(draws)
    return [d / total for d in draws]


@_step("augmix")
class AugMix(AugkitTransform, A.DualTransform):
    """AugMix (Hendrycks et al. 2020): chains of operations mixed with Dirichlet weights, then with the image.

    torchvision's ``AugMix``: weights (w0, w1) ~ Dirichlet(alpha, alpha) for the image and the
    mixture, the chains' shares ~ Dirichlet(alpha, ..., alpha); each chain is ``chain_depth``
    operations (1 to 3 at random with -1) drawn from ``AUGMIX_SPACE``, each at a magnitude bin
    drawn from the first ``severity`` of 10. The mixture is computed in float32 and rounded
    (torchvision truncates). Masks, boxes and keypoints are refused: a blend of moved images has no
    label map, and an object in it has as many places as there are chains.

    Args:
        severity: how far up the ranges magnitudes go, 1 to 10 (bins 0..severity-1 of 10).
        mixture_width: how many chains are mixed, 1 to 16.
        chain_depth: operations per chain, 1 to 16, or -1 for 1 to 3 drawn per chain.
        alpha: the Dirichlet and Beta concentration, 0.1 to 100 (1: uniform weights).
        all_ops: also brightness, color, contrast and sharpness (torchvision's default); the
            AugMix paper leaves them out because they overlap ImageNet-C's corruptions.
        interpolation: how rotations and shears sample: "bilinear" (torchvision's AugMix default) or "nearest".
        fill: the value of the pixels that geometric operations bring in from outside, in the image's units.
    """

    draws_from_shape = True

    class InitSchema(BaseInitSchema):
        severity: int = Field(ge=1, le=AUGMIX_BINS)
        mixture_width: int = Field(ge=1, le=MAX_OPS)
        chain_depth: int = Field(ge=-1, le=MAX_OPS)
        alpha: float = Field(ge=0.1, le=100)  # smaller: gamma draws that underflow to 0
        all_ops: bool
        interpolation: Interpolation
        fill: float

        @model_validator(mode="after")
        def _check(self) -> AugMix.InitSchema:
            if self.chain_depth == 0:
                raise ValueError("chain_depth must be 1 to 16 operations, or -1 for 1 to 3 drawn per chain; got 0")
            _check_fill(self.fill)
            return self

    def __init__(
        self,
        severity: int = 3,
        mixture_width: int = 3,
        chain_depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = True,
        interpolation: Interpolation = "bilinear",
        fill: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.severity = severity
        self.mixture_width = mixture_width
        self.chain_depth = chain_depth
        self.alpha = alpha
        self.all_ops = all_ops
        self.interpolation = interpolation
        self.fill = fill

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        rng = self.py_random
        space = AUGMIX_SPACE if self.all_ops else _AUGMIX_PARTIAL
        names = list(space)
        original, mixed = _dirichlet(rng, self.alpha, 2)
        shares = _dirichlet(rng, self.alpha, self.mixture_width)
        chains = []
        for _ in range(self.mixture_width):
            depth = self.chain_depth if self.chain_depth > 0 else rng.randint(1, 3)
            chain = []
            for _ in range(depth):
                name = names[rng.randrange(len(names))]
                k = rng.randrange(self.severity) if space[name][0] is not None else 0
                chain.append((name, _magnitude(space, name, k, AUGMIX_BINS, params["shape"], rng)))
            chains.append(chain)
        return {"weights": [original, *(mixed * share for share in shares)], "chains": chains}

    def apply(self, img: np.ndarray, weights: list[float], chains: list[list[Op]], **params: Any) -> np.ndarray:
        nearest = self.interpolation == "nearest"
        augmented = [run_ops(img, chain, nearest=nearest, fill=self.fill) for chain in chains]
        return F.weighted_sum([img, *augmented], weights)

    def apply_to_mask(self, mask: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise _no_targets("masks")

    def apply_to_bboxes(self, bboxes: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise _no_targets("boxes")

    def apply_to_keypoints(self, keypoints: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise _no_targets("keypoints")

    def describe(self, params: dict[str, Any]) -> str:
        """The chains, " | " between them; operations drawn at magnitude 0 (a third of them at
        severity 3) change nothing and are left out, so the caption stays short enough to read."""
        chains = [", ".join(describe_op(op) for op in chain if not _changes_nothing(op)) for chain in params["chains"]]
        return f"augmix: {' | '.join(chain or 'identity' for chain in chains)} (image {params['weights'][0]:.0%})"

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("severity", "mixture_width", "chain_depth", "alpha", "all_ops", "interpolation", "fill")
