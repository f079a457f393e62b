"""augkit's own steps: the lecture's preprocessing and augmentations as albumentations transforms.

Each class follows the albumentations contract: ``InitSchema`` validates the parameters,
``get_params_dependent_on_data`` draws the randomness (from the generators the pipeline
re-seeds per sample), and ``apply`` only forwards to a pure function in
``augkit.pipeline.functional``. Because they are albumentations transforms, they mix freely with every
albumentations transform in one ``Compose``, and ``albumentations.save`` writes them.

``describe(params)`` turns the parameters drawn for one sample into a short caption
("rot -12.3°"), which the preview prints under each tile.

Every numeric parameter is finite and bounded, and the bound is in the error: an angle of
1e308 or a NaN crop size is refused when the spec is read, not found by OpenCV spinning
forever. Outputs are bounded by ``MAX_SIDE`` per side (OpenCV's warps refuse larger ones)
and by ``augkit.io.images.DEFAULT_MAX_PIXELS`` in all. Geometric steps move masks with
nearest-neighbour sampling, so a mask's labels come out as labels (a subset of the input's,
plus ``fill_mask`` where a constant border shows). Boxes and keypoints move by the matrix the pixels
are warped with (``augkit.pipeline.functional``, "boxes and keypoints"). Where a border mirrors or
repeats the image, albumentations' own transforms add boxes and keypoints for the copies of objects
the border shows; augkit's keep the original objects' only, so boxes and labels stay one to one
with the annotations given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from augkit.errors import AugkitError
from augkit.io.images import DEFAULT_MAX_PIXELS
from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.parameters import Bounds
from augkit.pixels import MAX_SIDE, full_scale
from augkit.stats import MIN_STD, ChannelStats, floored_std

BaseInitSchema = A.core.transforms_interface.BaseTransformInitSchema
Border = Literal["constant", "reflect", "replicate"]

# Padding is built window by window (functional.crop), so it costs no memory; the bound
# only keeps numbers sane.
MAX_PADDING = MAX_SIDE
MAX_ANGLE = 360.0  # degrees: a rotation limit beyond a full turn means nothing more
# fill values are in the image's own units: at most a uint16 pixel (uint8 saturates at 255).
MAX_FILL = 65535.0
RATIO_BOUNDS = (0.01, 100.0)  # aspect ratios (width / height) of random-resized crops

# augkit's steps by their spec names; ``augkit.pipeline.registry`` reads this table (this
# module imports nothing from the registry, so the two never import each other).
AUGKIT_STEPS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def _step(name: str) -> Callable[[T], T]:
    """Class decorator: list a transform in AUGKIT_STEPS as ``name``."""

    def decorator(cls: T) -> T:
        if name in AUGKIT_STEPS:
            raise ValueError(f"step name {name!r} is already registered to {AUGKIT_STEPS[name].__name__}")
        AUGKIT_STEPS[name] = cls
        return cls

    return decorator


def _check_number(name: str, value: float, low: float, high: float) -> None:
    """Raise ValueError (the schema's error) unless ``low <= value <= high`` (NaN never is)."""
    if not (isinstance(value, (int, float)) and low <= value <= high):
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")


def _check_fill(fill: float) -> None:
    _check_number("fill", fill, 0.0, MAX_FILL)


def _on_labels(mask: np.ndarray, move: Any) -> np.ndarray:
    """``move(mask)``, for a bool mask too: OpenCV moves no bool array, so it moves the same
    bytes as uint8 (True is 1), and the result is read back as bool."""
    if mask.dtype == np.bool_:
        return move(mask.view(np.uint8)).astype(bool)
    return move(mask)


def move_boxes(
    bboxes: np.ndarray, matrix: np.ndarray, shape: tuple, out_shape: tuple, rule: F.BoxRule = "largest_box"
) -> np.ndarray:
    """albumentations' N x 4+ normalised boxes (pixels divided by the input's width and height,
    ``shape``: H, W, ...) moved by a 2 x 3 map of points (``F.boxes_affine`` by ``rule``) and
    normalised by the output's (``out_shape``); not clipped (``Compose`` clips and filters)."""
    if len(bboxes) == 0:
        return bboxes
    (height, width), (out_height, out_width) = shape[:2], out_shape[:2]
    pixels = np.array(bboxes, dtype=np.float64)
    pixels[:, [0, 2]] *= width
    pixels[:, [1, 3]] *= height
    moved = F.boxes_affine(pixels, matrix, rule)
    moved[:, [0, 2]] /= out_width
    moved[:, [1, 3]] /= out_height
    return moved


def symmetric(limit: float | tuple[float, float]) -> tuple[float, float]:
    """``15`` means the range (-15, 15); a pair is taken as it is."""
    if isinstance(limit, (int, float)):
        return (-abs(float(limit)), abs(float(limit)))
    low, high = limit
    return (float(low), float(high))


def _signed(value: float, digits: int = 2) -> str:
    """``value`` rounded to ``digits`` decimals with its sign ("+1.4", "-0.3"); what rounds to
    zero has none ("0.0", never "-0.0")."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


class AugkitTransform:
    """Mixin for augkit's steps: a caption for the parameters one sample drew.

    augkit's steps draw only from ``self.py_random``, never from ``self.random_generator``
    (numpy), which lets a pipeline of them skip re-seeding numpy per sample (a test holds every
    step to this).
    """

    draws_from_numpy = False

    def describe(self, params: dict[str, Any]) -> str:
        raise NotImplementedError


# ----------------------------------------------------------------------------- geometry


@_step("crop")
class Crop(AugkitTransform, A.DualTransform):
    """Crop to ``size``: a random window, the centre, or a random-resized crop (Inception-style).

    Args:
        size: output side (int), ``[height, width]``, or a fraction of the input's sides (0 < f <= 1).
        mode: "random" (a window at a random position), "center", or "random_resized" (a random
            area fraction in ``scale`` and aspect ratio in ``ratio``, resized to ``size``).
        padding: pixels added on every side before cropping, as in the CIFAR recipe
            (``size: 32, padding: 4``). Inputs smaller than ``size`` are padded up to it.
        scale: ``[low, high]``, 0 < low <= high <= 1: the range of the area fraction a
            random-resized crop keeps.
        ratio: ``[low, high]``, each in [0.01, 100]: the range of the aspect ratio (width / height)
            of a random-resized crop.
        border: how padding is filled: "constant" (``fill``), "reflect" or "replicate".
        fill: the value of constant padding, in the image's units (0..255 for uint8, 0..65535
            for uint16, 0..1 for float32).
        fill_mask: the label constant padding gets in a mask (albumentations' name).
    """

    class InitSchema(BaseInitSchema):
        size: int | tuple[int, int] | float
        mode: Literal["random", "center", "random_resized"]
        padding: int = Field(ge=0)
        scale: Annotated[tuple[float, float], Bounds(0, 1, low_inclusive=False)]
        ratio: Annotated[tuple[float, float], Bounds(*RATIO_BOUNDS)]
        border: Border
        fill: float
        fill_mask: float

        @model_validator(mode="after")
        def _check(self) -> Crop.InitSchema:
            sides = self.size if isinstance(self.size, tuple) else (self.size, self.size)
            fraction = isinstance(self.size, float)
            if not (0 < sides[0] <= 1 if fraction else all(1 <= side <= MAX_SIDE for side in sides)):
                raise ValueError(  # the comparisons are False for NaN too
                    f"size must be pixels from 1 to {MAX_SIDE} (an int or [height, width]) or a fraction "
                    f"of the input's sides in (0, 1], got {self.size!r}"
                )
            if not fraction and sides[0] * sides[1] > DEFAULT_MAX_PIXELS:
                raise ValueError(
                    f"size {sides[0]} x {sides[1]} = {sides[0] * sides[1]:,} pixels is more than "
                    f"the pixel limit ({DEFAULT_MAX_PIXELS:,})"
                )
            _check_number("padding", self.padding, 0, MAX_PADDING)
            for value in self.scale:
                _check_number("scale", value, 0.0, 1.0)
            if not 0 < self.scale[0] <= self.scale[1] <= 1:
                raise ValueError("scale must be (low, high) with 0 < low <= high <= 1")
            for value in self.ratio:
                _check_number("ratio", value, *RATIO_BOUNDS)
            if not self.ratio[0] <= self.ratio[1]:
                raise ValueError("ratio must be (low, high) with low <= high")
            _check_fill(self.fill)
            _check_fill(self.fill_mask)
            return self

    def __init__(
        self,
        size: int | tuple[int, int] | float = 0.875,
        mode: Literal["random", "center", "random_resized"] = "random",
        padding: int = 0,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        border: Border = "constant",
        fill: float = 0,
        fill_mask: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.size = size
        self.mode = mode
        self.padding = padding
        self.scale = scale
        self.ratio = ratio
        self.border = border
        self.fill = fill
        self.fill_mask = fill_mask

    def _output_size(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.size, float):
            return max(1, round(self.size * height)), max(1, round(self.size * width))
        if isinstance(self.size, int):
            return self.size, self.size
        return self.size

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        out_h, out_w = self._output_size(height, width)
        if self.mode == "random_resized":
            return {"pad": (0, 0, 0, 0), "window": self._resized_window(height, width), "out": (out_h, out_w)}
        # Pad by `padding` on every side, then (centred) up to the output size if still short.
        padding = self.padding
        # room: how much larger than the window the padded image is, on each axis.
        room_h, room_w = height + 2 * padding - out_h, width + 2 * padding - out_w
        if room_h >= 0 and room_w >= 0:
            pad = (padding, padding, padding, padding)
        else:
            grow_h, grow_w = max(0, -room_h), max(0, -room_w)
            top, left = padding + grow_h // 2, padding + grow_w // 2
            pad = (top, padding + grow_h - grow_h // 2, left, padding + grow_w - grow_w // 2)
            room_h, room_w = max(0, room_h), max(0, room_w)
        if self.mode == "center":
            y, x = room_h // 2, room_w // 2
        else:
            y = self.py_random.randint(0, room_h)
            x = self.py_random.randint(0, room_w)
        return {"pad": pad, "window": (y, x, out_h, out_w), "out": (out_h, out_w)}

    def _resized_window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A window of random area and aspect ratio (10 tries, then the centred best fit)."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.py_random.uniform(*self.scale)
            aspect = math.exp(self.py_random.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return self.py_random.randint(0, height - h), self.py_random.randint(0, width - w), h, w
        # Fallback, as torchvision does: the whole image trimmed to the nearest allowed ratio.
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
        w, h = min(w, width), min(h, height)
        return (height - h) // 2, (width - w) // 2, h, w

    def apply(self, img: np.ndarray, pad: tuple, window: tuple, out: tuple, **params: Any) -> np.ndarray:
        y, x, h, w = window
        if h == out[0] and w == out[1]:  # the common case, without crop_resized's extra call
            return F.crop(img, y - pad[0], x - pad[2], h, w, border=self.border, fill=self.fill)
        return F.crop_resized(img, y - pad[0], x - pad[2], h, w, *out, border=self.border, fill=self.fill)

    def apply_to_mask(self, mask: np.ndarray, pad: tuple, window: tuple, out: tuple, **params: Any) -> np.ndarray:
        return _on_labels(mask, lambda m: F.resize_mask(self._window(m, pad, window, self.fill_mask), *out))

    def apply_to_bboxes(self, bboxes: np.ndarray, pad: tuple, window: tuple, out: tuple, **params: Any) -> np.ndarray:
        return move_boxes(bboxes, self._matrix(pad, window, out), params["shape"], out)

    def apply_to_keypoints(
        self, keypoints: np.ndarray, pad: tuple, window: tuple, out: tuple, **params: Any
    ) -> np.ndarray:
        _, _, h, w = window
        # A keypoint's scale grows by the larger of the resize's factors, as albumentations' crops scale it.
        return F.keypoints_affine(keypoints, self._matrix(pad, window, out), max(out[0] / h, out[1] / w))

    @staticmethod
    def _matrix(pad: tuple, window: tuple, out: tuple) -> np.ndarray:
        """The map of points of the window (given in the padded image's coordinates) and its resize."""
        y, x, h, w = window
        return F.crop_matrix(y - pad[0], x - pad[2], h, w, *out)

    def _window(self, img: np.ndarray, pad: tuple, window: tuple, fill: float) -> np.ndarray:
        """The window, given in the padded image's coordinates, cut from the unpadded image."""
        y, x, h, w = window
        return F.crop(img, y - pad[0], x - pad[2], h, w, border=self.border, fill=fill)

    def describe(self, params: dict[str, Any]) -> str:
        y, x, h, w = params["window"]
        text = f"crop ({y},{x})" if self.mode != "random_resized" else f"crop {h}x{w} at ({y},{x})"
        return text if self.mode != "center" else ""

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "mode", "padding", "scale", "ratio", "border", "fill", "fill_mask")


@_step("rotate")
class Rotate(AugkitTransform, A.DualTransform):
    """Rotate by an angle drawn uniformly from ``limit`` degrees (15 means -15..15).

    Args:
        limit: degrees, each end in [-360, 360]; a number means (-limit, limit).
        border: how the corners uncovered by the rotation are filled.
        fill: their value with ``border: constant``, in the image's units.
        fill_mask: their label in a mask with ``border: constant``.
        rotate_method: how a box turns: "largest_box", the box around its turned corners (it holds
            the object, loosely for round ones), or "ellipse", the box around the turned ellipse
            inscribed in it (tighter; exact for round objects). albumentations' Rotate's
            ``rotate_method``, the same names and functions (``functional.boxes_affine``).
    """

    class InitSchema(BaseInitSchema):
        limit: Annotated[float | tuple[float, float], Bounds(-MAX_ANGLE, MAX_ANGLE)]
        border: Border
        fill: float
        fill_mask: float
        rotate_method: F.BoxRule

        @model_validator(mode="after")
        def _check(self) -> Rotate.InitSchema:
            low, high = symmetric(self.limit)
            if not -MAX_ANGLE <= low <= high <= MAX_ANGLE:  # False for NaN too
                raise ValueError(
                    f"limit must be degrees within [-{MAX_ANGLE:g}, {MAX_ANGLE:g}]: a number a (meaning -a..a) "
                    f"or [low, high] with low <= high, got {self.limit!r}"
                )
            _check_fill(self.fill)
            _check_fill(self.fill_mask)
            return self

    def __init__(
        self,
        limit: float | tuple[float, float] = 15,
        border: Border = "reflect",
        fill: float = 0,
        fill_mask: float = 0,
        rotate_method: F.BoxRule = "largest_box",
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.limit = limit
        self.border = border
        self.fill = fill
        self.fill_mask = fill_mask
        self.rotate_method = rotate_method

    def get_params(self) -> dict[str, Any]:
        return {"angle": self.py_random.uniform(*symmetric(self.limit))}

    def apply(self, img: np.ndarray, angle: float, **params: Any) -> np.ndarray:
        return F.rotate(img, angle, border=self.border, fill=self.fill)

    def apply_to_mask(self, mask: np.ndarray, angle: float, **params: Any) -> np.ndarray:
        return _on_labels(mask, lambda m: F.rotate(m, angle, border=self.border, fill=self.fill_mask, nearest=True))

    def apply_to_bboxes(self, bboxes: np.ndarray, angle: float, **params: Any) -> np.ndarray:
        shape = params["shape"]
        return move_boxes(bboxes, F.rotation_matrix(angle, *shape[:2]), shape, shape, self.rotate_method)

    def apply_to_keypoints(self, keypoints: np.ndarray, angle: float, **params: Any) -> np.ndarray:
        return F.keypoints_affine(keypoints, F.rotation_matrix(angle, *params["shape"][:2]))

    def describe(self, params: dict[str, Any]) -> str:
        return f"rot {_signed(params['angle'], 1)}°"

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("limit", "border", "fill", "fill_mask", "rotate_method")


# ----------------------------------------------------------------------------- photometric


class _Jitter(AugkitTransform, A.ImageOnlyTransform):
    """Shared by brightness and contrast: one value ``delta`` drawn uniformly from ``limit``.

    Args:
        limit: the range of ``delta``, each end in [-1, 1]; a number means (-limit, limit).
    """

    class InitSchema(BaseInitSchema):
        limit: Annotated[float | tuple[float, float], Bounds(-1, 1)]

        @model_validator(mode="after")
        def _check(self) -> _Jitter.InitSchema:
            low, high = symmetric(self.limit)
            if not -1 <= low <= high <= 1:
                raise ValueError(f"limit must lie within [-1, 1] (low <= high), got {self.limit}")
            return self

    def __init__(self, limit: float | tuple[float, float] = 0.2, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.limit = limit

    def get_params(self) -> dict[str, Any]:
        return {"delta": self.py_random.uniform(*symmetric(self.limit))}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("limit",)


@_step("brightness")
class Brightness(_Jitter):
    """Add a brightness offset drawn from ``limit`` (a fraction of the full range: 0.2 = ±51 of 255)."""

    def apply(self, img: np.ndarray, delta: float, **params: Any) -> np.ndarray:
        return F.adjust_brightness(img, delta)

    def describe(self, params: dict[str, Any]) -> str:
        return f"bright {_signed(params['delta'])}"


@_step("contrast")
class Contrast(_Jitter):
    """Scale contrast about the image mean by ``1 + delta``, with ``delta`` drawn from ``limit``."""

    def apply(self, img: np.ndarray, delta: float, **params: Any) -> np.ndarray:
        return F.adjust_contrast(img, 1.0 + delta)

    def describe(self, params: dict[str, Any]) -> str:
        return f"contrast ×{1 + params['delta']:.2f}"


# ----------------------------------------------------------------------------- preprocessing


_UNIT_SCALE_HINT = (
    "mean and std are on the [0, 1] scale: divide 0..255 values by 255 "
    "(ImageNet's are mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])"
)


def _check_statistics(mean: Any, std: Any = None) -> None:
    """Raise ValueError unless every mean lies in [0, 1] and every std in [MIN_STD, 1]."""
    for name, values, low in (("mean", mean, 0.0), ("std", std, MIN_STD)):
        if values is None:
            continue
        array = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if array.size == 0:
            raise ValueError(f"{name} must hold one value per channel, got an empty list")
        if not ((array >= low) & (array <= 1.0)).all():  # False for NaN too
            raise ValueError(f"{name} values must lie in [{low:g}, 1], got {array.tolist()}; {_UNIT_SCALE_HINT}")


def _load_stats(path: str | Path) -> ChannelStats:
    return ChannelStats.load(path)


class _NormalizationSchema(BaseInitSchema):
    @model_validator(mode="after")
    def _always(self) -> _NormalizationSchema:
        if self.p != 1:
            # Applied to some samples only, the output's dtype and scale would depend on the draw.
            raise ValueError(f"a normalisation step always applies: p must be 1, got {self.p!r}")
        return self


class _Normalization(AugkitTransform, A.ImageOnlyTransform):
    """Shared by the deterministic preprocessing steps: applied always, nothing to caption."""

    stats: str | None = None

    def describe(self, params: dict[str, Any]) -> str:
        return ""

    def _check_file_channels(self, img: np.ndarray, mean: np.ndarray) -> None:
        """A stats file measured on other images than ``img``'s kind: one value given by hand
        means every channel, but a file's channel count is what its data had (a gray file on
        colour images would standardise every channel with the gray statistics)."""
        channels = img.shape[2] if img.ndim == 3 else 1
        if self.stats is not None and mean.ndim == 1 and mean.size != channels:
            raise AugkitError(
                f"{self.stats} holds statistics of {mean.size} channel(s) but the image has {channels}; compute "
                f"them on images read the same way: augkit stats DATA{' --gray' if channels == 1 else ''} -o stats.json"
            )


@_step("standardize")
class Standardize(_Normalization):
    """Per-channel ``(x/255 - mean) / std`` (ResNet-style), or per pixel (``mode: pixel``).

    Output: float32 H x W x C. ``mode: pixel`` is the lecture's ``X -= X.mean(axis=0);
    X /= X.std(axis=0)``: every pixel of every channel by its own mean and std over the training
    images, read from the mean and std images of a stats file (``augkit stats --per-pixel``), the
    std floored by ``augkit.stats.floored_std`` (a constant pixel, such as the digits' borders,
    only centred; any other std at least one gray level, 1/255, so that no pixel is amplified
    more than 255-fold). Its images must be of the statistics' size (AugkitError otherwise).

    Args:
        stats: a JSON file written by ``augkit stats`` (or ``ChannelStats.save``) of the training data.
        mean, std: per-channel values on the [0, 1] scale, used when ``stats`` is not given.
        mode: "channel" (per-channel mean and std) or "pixel" (the mean and std images; needs a
            stats file computed with --per-pixel).
    """

    class InitSchema(_NormalizationSchema):
        stats: str | None
        mean: float | list[float] | None
        std: float | list[float] | None
        mode: Literal["channel", "pixel"]

        @model_validator(mode="after")
        def _check(self) -> Standardize.InitSchema:
            if self.mode == "pixel" and self.stats is None:
                raise ValueError(
                    "mode 'pixel' needs a stats file with a std image (augkit stats DATA --per-pixel -o FILE)"
                )
            if (self.stats is None) == (self.mean is None or self.std is None):
                raise ValueError("give either stats (a stats file) or both mean and std")
            _check_statistics(self.mean, self.std)
            return self

    def __init__(
        self,
        stats: str | None = None,
        mean: float | list[float] | None = None,
        std: float | list[float] | None = None,
        mode: Literal["channel", "pixel"] = "channel",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.stats = stats
        self.mode = mode
        if stats is not None and mode == "pixel":
            loaded = _load_stats(stats)
            if loaded.std_image is None:
                raise AugkitError(
                    f"{stats}: has no std image, which mode pixel needs; compute it with "
                    f"`augkit stats DATA --per-pixel -o FILE`"
                )
            mean, std = loaded.mean_image, floored_std(loaded.std_image)
        elif stats is not None:
            loaded = _load_stats(stats)
            mean, std = loaded.mean.tolist(), loaded.std.tolist()
            if min(std) < MIN_STD:
                raise AugkitError(
                    f"{stats}: a channel has std {min(std):g} (constant images?), below {MIN_STD:g}; cannot standardize"
                )
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        self._factors: dict[tuple[float, int], tuple[np.ndarray, np.ndarray]] = {}  # mode pixel, per full scale

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if self.mode == "pixel":
            return F.shift_and_scale(img, *self._pixel_factors(img))
        self._check_file_channels(img, self.mean)
        return F.standardize(img, self.mean, self.std)

    def _pixel_factors(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``F.standardize_factors`` of the mean and std images for ``img``'s full scale, in its
        layout (H x W for a 2D gray image), made once (made per call, at 224 x 224 x 3, they took
        ~400 us of 560); or one line naming both sizes and the fix."""
        shape = img.shape if img.ndim == 3 else (*img.shape, 1)
        if shape != self.mean.shape:
            raise AugkitError(
                f"standardize(mode=pixel): the image is {' x '.join(map(str, shape))} (H x W x C) but {self.stats} "
                f"holds per-pixel statistics of {' x '.join(map(str, self.mean.shape))} images; resize or crop the "
                f"images to that size before it, or compute statistics of images of this size: "
                f"augkit stats DATA --per-pixel -o FILE"
            )
        key = (full_scale(img), img.ndim)
        factors = self._factors.get(key)
        if factors is None:
            mean, std = self.mean.reshape(img.shape), self.std.reshape(img.shape)
            factors = self._factors[key] = F.standardize_factors(mean, std, key[0])
        return factors

    def get_transform_init_args(self) -> dict[str, Any]:
        if self.stats is not None:
            return {"stats": self.stats, "mode": self.mode} if self.mode == "pixel" else {"stats": self.stats}
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


@_step("subtract_mean")
class SubtractMean(_Normalization):
    """Subtract the training mean: per channel (VGG-style) or the mean image (AlexNet-style).

    Args:
        stats: a stats file; ``mode: image`` needs one computed with ``--mean-image``.
        mean: per-channel values on the [0, 1] scale, used when ``stats`` is not given.
        mode: "channel" or "image".
    """

    class InitSchema(_NormalizationSchema):
        stats: str | None
        mean: float | list[float] | None
        mode: Literal["channel", "image"]

        @model_validator(mode="after")
        def _check(self) -> SubtractMean.InitSchema:
            if (self.stats is None) == (self.mean is None):
                raise ValueError("give either stats (a stats file) or mean")
            if self.mode == "image" and self.stats is None:
                raise ValueError("mode 'image' needs a stats file computed with --mean-image")
            _check_statistics(self.mean)
            return self

    def __init__(
        self,
        stats: str | None = None,
        mean: float | list[float] | None = None,
        mode: Literal["channel", "image"] = "channel",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.stats = stats
        self.mode = mode
        if stats is not None:
            loaded = _load_stats(stats)
            if mode == "image" and loaded.mean_image is None:
                raise AugkitError(f"{stats}: has no mean image; compute it with `augkit stats --mean-image`")
            mean = loaded.mean_image if mode == "image" else loaded.mean
        self.mean = np.asarray(mean, dtype=np.float64)
        if self.mean.ndim == 0:
            self.mean = self.mean[None]
        # What subtract_mean computes with, converted once rather than per image (a mean image
        # of 224 x 224 x 3 takes 40 us to convert).
        self._mean32 = self.mean.astype(np.float32)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        self._check_file_channels(img, self.mean)
        return F.subtract_mean(img, self._mean32)

    def get_transform_init_args(self) -> dict[str, Any]:
        if self.stats is not None:
            return {"stats": self.stats, "mode": self.mode}
        return {"mean": self.mean.tolist(), "mode": self.mode}


@_step("scale")
class Scale(_Normalization):
    """Map pixels to float32 on [0, 1]."""

    class InitSchema(_NormalizationSchema):
        pass

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return F.scale(img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


# Flips need nothing albumentations lacks: the short names point at its transforms.
AUGKIT_STEPS["hflip"] = A.HorizontalFlip
AUGKIT_STEPS["vflip"] = A.VerticalFlip
