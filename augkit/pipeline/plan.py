"""The compiled form of a pipeline: per sample, one warp, one lookup table, one normalisation.

A pipeline of small steps spends its time between them: at 32 x 32 each albumentations call
costs more than its pixels, and at 224 x 224 every step reads and writes the whole image.
``Plan`` runs the same top-level steps with the same draws (each step draws from the sample's
generators in spec order, exactly as when it runs alone), and merges what composes:

- **geometry** (``crop`` in every mode, ``rotate``, ``hflip``, ``vflip``): consecutive steps
  become one 2 x 3 affine map, applied by one ``cv2.warpAffine`` straight into the output size,
  or by one copy when the map moves whole pixels (crops and flips: the same pixels as the steps,
  bit for bit);
- **intensity** on uint8 (``brightness``, ``contrast``, and albumentations' ``InvertImg``,
  ``Solarize``, ``Posterize``, ``RandomGamma``): one 256-entry lookup table per channel, built
  by composing each step's own table (bit for bit the steps' result: a uint8 table composes
  exactly; ``contrast`` reads the mean of the image it would see);
- **normalisation** (``standardize`` and ``subtract_mean`` with per-channel statistics, ``scale``)
  after uint8 steps: folded into the lookup table, whose float32 entries are the step's own float32
  arithmetic on each level, so uint8 becomes the normalised float32 image in one pass.

What a warp may merge is decided per sample, so that every pixel comes from where the steps
would take it, with one resampling per warp at most (a rotation, or a random-resized crop's
resize; a second one, e.g. a crop enlarged after a rotation, starts a new warp: merged, the two
would differ from resampling twice by up to 2 gray levels on average). A map may sample
outside the image it starts from with one border only (the
first step that reaches outside, a rotation or a padded crop, and only while the map so far
moves whole pixels: a border around an enlarged image would mirror about a line between the
source's pixels), else a new warp starts from the image so far; a crop that stays inside
narrows the source to a view (OpenCV's warp treats a view as an image of its own, borders
included). A random-resized crop that shrinks its window runs as its own step (its antialiased
resize; one bilinear warp would alias). A flip after intensity steps runs before their table
(it moves pixels without changing them or the mean). So crops, flips and tables give the
step-by-step result bit for bit, and a merged warp differs by OpenCV's rounding only
(``tests/test_plan.py``: a mean absolute difference under 0.5 gray levels on photos; about
0.12 measured, from warpAffine's fixed point against cv2.resize's).

Everything else (albumentations' other steps, compositions such as ``OneOf``, images of more
than 4 channels, intensity steps on uint16 or float32 images, ``standardize(mode=pixel)`` and
``subtract_mean(mode=image)``, whose every pixel has its own statistics: no table of 256 levels
holds them) runs as it does without a plan, in order. ``Plan.describe`` (``augkit steps
--plan``) says which steps merge; ``compile: false`` in a spec turns plans off. Boxes and
keypoints ride along (``Targets``): each geometric step moves them by the inverse of the map its
pixels are sampled with, the steps that run as they are move them themselves. Masks never go
through a plan: a call with a mask runs step by step, nearest-neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from augkit.errors import AugkitError
from augkit.io.images import DEFAULT_MAX_PIXELS
from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.steps import Brightness, Contrast, Crop, Rotate, Scale, Standardize, SubtractMean, move_boxes, symmetric

# An affine map (a, b, c, d, e, f): a point (x, y) of the output goes to (a x + b y + c, d x + e y + f)
# of the source. Plain floats: composing a few of them in Python is faster than numpy's 3 x 3.
Affine = tuple[float, float, float, float, float, float]
_IDENTITY: Affine = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

# albumentations' pointwise uint8 steps: each level maps to one level whatever the pixel's
# neighbours, so a step's table is its own function applied to the 256 levels.
_POINTWISE_ALBUMENTATIONS = ("InvertImg", "Solarize", "Posterize", "RandomGamma")


def _compose(outer: Affine, inner: Affine) -> Affine:
    """The map ``outer`` then ``inner``: output -> ``outer`` -> middle -> ``inner`` -> source."""
    a, b, c, d, e, f = inner
    p, q, r, s, t, u = outer
    return (a * p + b * s, a * q + b * t, a * r + b * u + c, d * p + e * s, d * q + e * t, d * r + e * u + f)


def _whole_pixels(m: Affine) -> bool:
    """Whether ``m`` moves whole pixels: a translation by integers, possibly mirrored per axis."""
    a, b, c, d, e, f = m
    return b == 0.0 and d == 0.0 and abs(a) == 1.0 and abs(e) == 1.0 and c.is_integer() and f.is_integer()


# ----------------------------------------------------------------------------- the kinds of step

# A geometric step's effect on one sample: (output height, output width, its output -> input
# affine map, (border, fill) when some output pixel comes from outside its input or None, the
# input rectangle (y, x, h, w) it reads when it reads one, whether it is a resize that shrinks).
Window = tuple[int, int, Affine, "tuple[str, float] | None", "tuple[int, int, int, int] | None", bool]

_AS_IS, _GEOMETRIC, _INTENSITY, _NORMALISATION = range(4)


class _Kind:
    """How the plan treats one top-level step (one object per step, built once).

    ``draw`` returns what the step draws for an input of height x width, drawn with the very
    calls its own ``__call__`` makes (same generator, same order; the kinds read only the part
    they use), or None when its probability skips it; ``draw_all`` returns every key, as
    ``replay`` records them.
    """

    label = "as is"
    code = _AS_IS

    def __init__(self, name: str, transform: Any) -> None:
        self.name = name
        self.transform = transform
        self.p = transform.p

    def applies(self) -> bool:
        """``BasicTransform.should_apply``: one draw only when 0 < p < 1."""
        p = self.p
        if p >= 1.0:
            return True
        return p > 0.0 and self.transform.py_random.random() < p

    def draw(self, height: int, width: int) -> Any:
        return self.draw_all((height, width))

    def params(self, drawn: Any) -> dict[str, Any]:
        """What ``draw`` returned, as the keyword arguments of the step's ``apply``."""
        return drawn

    def draw_all(self, shape: tuple[int, ...]) -> dict[str, Any] | None:
        t = self.transform
        if not t.should_apply():
            return None
        params = t.get_params()
        data = {"image": np.broadcast_to(np.zeros((), np.uint8), shape)}
        params = t.update_transform_params(params=params, data=data)
        params.update(t.get_params_dependent_on_data(params=params, data=data))
        return params


class _Geometric(_Kind):
    label = "warp"
    code = _GEOMETRIC
    is_flip = False

    def window(self, drawn: Any, height: int, width: int) -> Window:
        raise NotImplementedError


class _Crop(_Geometric):
    def draw(self, height: int, width: int) -> Any:
        if not self.applies():
            return None
        return self.transform.get_params_dependent_on_data({"shape": (height, width)}, None)

    def window(self, drawn: dict[str, Any], height: int, width: int) -> Window:
        y, x, h, w = drawn["window"]
        pad = drawn["pad"]
        out_h, out_w = drawn["out"]
        y, x = y - pad[0], x - pad[2]  # in the unpadded image's coordinates
        if 0 <= y and y + h <= height and 0 <= x and x + w <= width:
            border, rect = None, (y, x, h, w)
        else:
            border, rect = (self.transform.border, self.transform.fill), None
        if h == out_h and w == out_w:
            return out_h, out_w, (1.0, 0.0, float(x), 0.0, 1.0, float(y)), border, rect, False
        sy, sx = h / out_h, w / out_w  # pixel centres aligned, as cv2.resize
        affine = (sx, 0.0, x + 0.5 * sx - 0.5, 0.0, sy, y + 0.5 * sy - 0.5)
        return out_h, out_w, affine, border, rect, sy > 1.0 or sx > 1.0


class _Rotate(_Geometric):
    def __init__(self, name: str, transform: Any) -> None:
        super().__init__(name, transform)
        self.limits = symmetric(transform.limit)  # what Rotate.get_params draws between

    def draw(self, height: int, width: int) -> Any:
        return self.transform.py_random.uniform(*self.limits) if self.applies() else None

    def window(self, angle: float, height: int, width: int) -> Window:
        if angle == 0:
            return height, width, _IDENTITY, None, (0, 0, height, width), False
        # F.rotate turns counter-clockwise by `angle` about ((w-1)/2, (h-1)/2); a point of the
        # output comes from the point turned back by the same angle.
        radians = math.radians(angle)
        cos, sin = math.cos(radians), math.sin(radians)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        affine = (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
        return height, width, affine, (self.transform.border, self.transform.fill), None, False


class _Flip(_Geometric):
    is_flip = True

    def __init__(self, name: str, transform: Any, horizontal: bool) -> None:
        super().__init__(name, transform)
        self.horizontal = horizontal

    def draw(self, height: int, width: int) -> Any:
        return True if self.applies() else None

    def window(self, drawn: Any, height: int, width: int) -> Window:
        if self.horizontal:
            affine = (-1.0, 0.0, width - 1.0, 0.0, 1.0, 0.0)
        else:
            affine = (1.0, 0.0, 0.0, 0.0, -1.0, height - 1.0)
        return height, width, affine, None, (0, 0, height, width), False


class _Intensity(_Kind):
    """A pointwise step on uint8: a table of 256 levels per channel (256 x C, or 256 x 1 for all)."""

    label = "table"
    code = _INTENSITY
    needs_mean = False

    def table(self, drawn: Any, channels: int, mean: float) -> np.ndarray:
        raise NotImplementedError


class _Brightness(_Intensity):
    def __init__(self, name: str, transform: Any) -> None:
        super().__init__(name, transform)
        self.limits = symmetric(transform.limit)  # what _Jitter.get_params draws between

    def draw(self, height: int, width: int) -> Any:
        return self.transform.py_random.uniform(*self.limits) if self.applies() else None

    def params(self, delta: float) -> dict[str, Any]:
        return {"delta": delta}

    def table(self, delta: float, channels: int, mean: float) -> np.ndarray:
        return F.brightness_table(delta).reshape(256, 1)


class _Contrast(_Brightness):
    needs_mean = True

    def table(self, delta: float, channels: int, mean: float) -> np.ndarray:
        return F.contrast_table(mean, 1.0 + delta).reshape(256, 1)


class _Pointwise(_Intensity):
    """albumentations' pointwise steps: the table is the step's own function on the 256 levels."""

    def table(self, drawn: dict[str, Any], channels: int, mean: float) -> np.ndarray:
        ramp = np.repeat(_RAMP.reshape(1, 256, 1), channels, axis=2)
        return np.asarray(self.transform.apply(ramp, **drawn), dtype=np.uint8).reshape(256, channels)


class _Normalisation(_Kind):
    """standardize / subtract_mean (per-channel statistics) / scale: a float32 table of 256 levels per
    channel, the step's own float32 arithmetic on each level (p is 1: nothing is drawn)."""

    label = "normalise"
    code = _NORMALISATION

    def __init__(self, name: str, transform: Any) -> None:
        super().__init__(name, transform)
        self._tables: dict[int, np.ndarray] = {}

    def draw(self, height: int, width: int) -> Any:
        return True

    def params(self, drawn: Any) -> dict[str, Any]:
        return {}

    def float_table(self, channels: int) -> np.ndarray:
        """256 x C float32: what the step makes of each uint8 level in each channel."""
        table = self._tables.get(channels)
        if table is None:
            ramp = np.repeat(_RAMP.reshape(1, 256, 1), channels, axis=2)
            table = self._tables[channels] = self.transform.apply(ramp).reshape(256, channels)
        return table


_RAMP = np.arange(256, dtype=np.uint8).reshape(1, 256)
_RAMP.setflags(write=False)


def _kind(name: str, transform: Any) -> _Kind:
    """The plan's treatment of one top-level step."""
    cls = type(transform)
    if cls is Crop:
        return _Crop(name, transform)
    if cls is Rotate:
        return _Rotate(name, transform)
    if cls is A.HorizontalFlip or cls is A.VerticalFlip:
        return _Flip(name, transform, horizontal=cls is A.HorizontalFlip)
    if cls is Brightness:
        return _Brightness(name, transform)
    if cls is Contrast:
        return _Contrast(name, transform)
    if cls.__name__ in _POINTWISE_ALBUMENTATIONS and cls is getattr(A, cls.__name__):
        return _Pointwise(name, transform)
    # A mean image (subtract_mean mode image, standardize mode pixel) has no table: the step runs as is.
    if cls is Scale or ((cls is Standardize or cls is SubtractMean) and transform.mean.ndim == 1):
        return _Normalisation(name, transform)
    return _Kind(name, transform)


# ----------------------------------------------------------------------------- running


class _Warp:
    """A pending warp: the view of the image it reads, its output -> view map, its output size,
    its border, and whether the map takes the output's rectangle exactly onto the view's (so
    that a border added now is the border of the image the next step sees)."""

    __slots__ = ("view", "affine", "height", "width", "border", "covers")

    def __init__(self, height: int, width: int) -> None:
        self.view = (0, 0, height, width)  # y, x, h, w in the image
        self.affine = _IDENTITY
        self.height, self.width = height, width
        self.border: tuple[str, float] | None = None
        self.covers = True

    def add(self, window: Window) -> bool:
        """Merge one geometric step; False if it cannot be (the caller runs the warp so far and
        merges the step into a fresh one, where it always can)."""
        out_h, out_w, affine, border, rect, shrinks = window
        if shrinks:
            return False  # a shrinking resize runs as its own step (antialiased)
        if not _whole_pixels(affine) and not _whole_pixels(self.affine):
            # One resampling per warp (a rotation, or a random-resized crop's resize), with the
            # crops and flips around it: two in one (a crop enlarged after a rotation) would
            # differ from resampling twice by more than rounding (up to 2 gray levels on average).
            return False
        if border is not None:
            if self.border is not None or not self.covers or not _whole_pixels(self.affine):
                # A second border; a border around an image the map does not cover; or one
                # around a resized image, whose mirror axis lies between the view's pixels.
                return False
            self.border, self.covers = border, False
        elif rect is not None and self.border is None and self.covers and _whole_pixels(self.affine):
            # A window inside the image so far: narrow the view to it, so that a later border
            # is drawn at the window's edges, as the steps would draw it.
            y, x, h, w = rect
            (y0, x0), (y1, x1) = self._to_view(y, x), self._to_view(y + h - 1, x + w - 1)
            top, left = min(y0, y1), min(x0, x1)
            self.view = (self.view[0] + top, self.view[1] + left, abs(y1 - y0) + 1, abs(x1 - x0) + 1)
            a, b, c, d, e, f = _compose(affine, self.affine)
            self.affine = (a, b, c - left, d, e, f - top)
            self.height, self.width = out_h, out_w
            return True
        elif rect is None or rect != (0, 0, self.height, self.width):
            self.covers = False  # the output covers part of the view only
        self.affine = _compose(affine, self.affine)
        self.height, self.width = out_h, out_w
        return True

    def _to_view(self, y: int, x: int) -> tuple[int, int]:
        """Where pixel (y, x) of the current output lies in the view (a whole-pixel map)."""
        a, b, c, d, e, f = self.affine
        return round(d * x + e * y + f), round(a * x + b * y + c)

    def pending(self, image: np.ndarray) -> bool:
        return self.affine != _IDENTITY or self.view[2:] != image.shape[:2]

    def run(self, image: np.ndarray) -> np.ndarray:
        """The warped image: a copy where whole pixels move (a crop, through the crop's own
        border code where it reaches outside), the steps' own resize where the map is a resize
        of the whole view (a random-resized crop), each then flipped by ``cv2.flip`` if the map
        mirrors; else one ``warpAffine``."""
        y, x, h, w = self.view
        source = image[y : y + h, x : x + w]
        out_h, out_w = self.height, self.width
        a, b, c, d, e, f = self.affine
        if b == 0.0 and d == 0.0:  # axis-aligned: read it unmirrored, mirror after
            flip = (1 if a < 0 else 0) + (2 if e < 0 else 0)
            if a < 0:
                a, c = -a, c + a * (out_w - 1)
            if e < 0:
                e, f = -e, f + e * (out_h - 1)
            if a == 1.0 and e == 1.0 and c.is_integer() and f.is_integer():
                top, left = int(f), int(c)
                if 0 <= top and top + out_h <= h and 0 <= left and left + out_w <= w:
                    out = source[top : top + out_h, left : left + out_w]
                    return _flipped(out, flip) if flip else out.copy()
                return _flipped(F.crop(source, top, left, out_h, out_w, *(self.border or ("constant", 0))), flip)
            if self.border is None and _resizes(a, c, w, out_w) and _resizes(e, f, h, out_h):
                return _flipped(F.resize(source, out_h, out_w), flip)
        border, fill = self.border or ("replicate", 0)  # a bilinear edge, as cv2.resize's
        return F.warp_affine(source, np.array([self.affine[:3], self.affine[3:]]), out_h, out_w, border, fill, inverse=True)


def _resizes(scale: float, offset: float, size: int, out: int) -> bool:
    """Whether ``x -> scale x + offset`` is cv2.resize's map from ``out`` pixels to ``size``."""
    return scale == size / out and abs(offset - (0.5 * scale - 0.5)) < 1e-9


def _finish(image: np.ndarray, warp: _Warp | None, table: np.ndarray | None) -> np.ndarray:
    """The pending warp, then the pending table."""
    if warp is not None and warp.pending(image):
        image = warp.run(image)
    if table is not None:
        image = _apply_table(image, table)
    return image


def _flipped(image: np.ndarray, flip: int) -> np.ndarray:
    """``image`` mirrored: flip 1 = columns, 2 = rows, 3 = both (cv2.flip: one pass, any layout)."""
    if not flip:
        return image
    return F.keep_channels(cv2.flip(image, _FLIP_CODES[flip]), image)


_FLIP_CODES = {1: 1, 2: 0, 3: -1}


def _compose_tables(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The table of ``before`` then ``after`` (each 256 x C, or 256 x 1 for every channel)."""
    if before.shape[1] == 1:
        return after[before[:, 0]]
    if after.shape[1] == 1:
        return after[:, 0][before]
    return np.take_along_axis(after, before.astype(np.intp), axis=0)


def _apply_table(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[image]`` per channel: a 256 x 1 uint8 table through StringZilla (5 us at
    224 x 224 x 3), others (per channel, or float32 levels) through ``cv2.LUT``."""
    if table.shape[1] == 1 and table.dtype == np.uint8:
        return F.lut(image, table[:, 0])
    channels = image.shape[2] if image.ndim == 3 else 1
    if table.shape[1] != channels:
        table = np.repeat(table, channels, axis=1)
    return cv2.LUT(image, np.ascontiguousarray(table).reshape(1, 256, channels)).reshape(image.shape)


def check_output_size(what: str, image: Any) -> None:
    """Refuse an image larger than the pixel limit (``DEFAULT_MAX_PIXELS``) that ``what`` (e.g.
    "step 'Pad'") made.

    augkit's own steps are bounded when they are built; albumentations' steps that grow an image
    (``Pad``, ``CropAndPad``, ``RandomScale``, ``Affine(fit_output=True)``) can only be measured
    on an image of a given size, so the pipeline checks every step's output, and ``Pad``'s before
    it runs (``check_padding``).

    Raises:
        AugkitError: one line naming the step and the size it made.
    """
    if isinstance(image, np.ndarray) and image.ndim >= 2:
        _refuse_size(what, "made", image.shape[0], image.shape[1])


def check_padding(what: str, transform: Any, image: np.ndarray) -> None:
    """Refuse, before it allocates anything, an albumentations ``Pad`` that would take ``image``
    past the pixel limit (its ``padding``: one int, (x, y), or (left, top, right, bottom)).

    Raises:
        AugkitError: one line naming the step and the size it would make.
    """
    if type(transform) is not A.Pad:
        return
    padding = transform.padding
    sides = (padding,) * 4 if isinstance(padding, (int, float)) else tuple(padding)
    left, top, right, bottom = sides * 2 if len(sides) == 2 else sides
    _refuse_size(what, "would make", image.shape[0] + top + bottom, image.shape[1] + left + right)


def _refuse_size(what: str, made: str, height: int, width: int) -> None:
    if height * width > DEFAULT_MAX_PIXELS:
        raise AugkitError(
            f"{what} {made} a {height} x {width} image ({height * width:,} pixels), more than the pixel limit "
            f"({DEFAULT_MAX_PIXELS:,}); lower the parameters that grow it (padding, scale, px, ...)"
        )


class Targets:
    """Boxes and keypoints riding along a plan: each geometric step moves them by the inverse of
    the very map its pixels are sampled with (``Window``), every other step as it moves them
    itself, and after each step they are clipped and filtered as albumentations' Compose does
    (``check_data_post_transform``: ``min_visibility``, ``min_area``, keypoints outside).

    Args:
        data: the Compose's data after its ``preprocess``: boxes normalised N x 4+ (label fields as
            columns), keypoints N x 5+ in pixels ([x, y, z, angle, scale, ...]), the label fields.
        compose: that Compose (its processors filter, and later convert back).
    """

    def __init__(self, data: dict[str, Any], compose: Any) -> None:
        self.data = data
        self.compose = compose

    def move(self, kind: _Kind, window: Window, height: int, width: int) -> None:
        """Move by a geometric step taking ``height`` x ``width`` to its ``window``."""
        out_h, out_w, (a, b, c, d, e, f) = window[0], window[1], window[2]
        if (a, b, c, d, e, f) != _IDENTITY:
            forward = np.linalg.inv(np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]]))[:2]  # input -> output points
            data = self.data
            if len(data.get("bboxes", ())):
                rule = getattr(kind.transform, "rotate_method", "largest_box")  # exact for maps that keep axes
                data["bboxes"] = move_boxes(data["bboxes"], forward, (height, width), (out_h, out_w), rule)
            if len(data.get("keypoints", ())):
                scale = max(math.hypot(forward[0, 0], forward[1, 0]), math.hypot(forward[0, 1], forward[1, 1]))
                data["keypoints"] = F.keypoints_affine(data["keypoints"], forward, scale)
        self._filter(out_h, out_w)

    def run(self, transform: Any, image: np.ndarray) -> np.ndarray:
        """A step the plan runs as it is: with the targets, as albumentations calls it."""
        out = transform(image=image, **self.data)
        image = out.pop("image")
        self.data.update(out)
        self._filter(*image.shape[:2])
        return image

    def _filter(self, height: int, width: int) -> None:
        stand_in = np.broadcast_to(np.zeros((), np.uint8), (height, width))  # the shape, no pixels
        data = self.compose.check_data_post_transform({**self.data, "image": stand_in})
        data.pop("image")
        self.data = data


def _apply(kind: _Kind, params: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """The step itself on ``image`` with the parameters drawn, as its own call applies them."""
    return kind.transform.apply_with_params(params, image=image)["image"]


class Plan:
    """The compiled form of a list of top-level transforms (see the module docstring).

    Call it with an image after the pipeline has seeded the sample's generators; it draws
    exactly what the transforms would, in order.
    """

    def __init__(self, names: Sequence[str], transforms: Sequence[Any]) -> None:
        self.kinds = [_kind(name, t) for name, t in zip(names, transforms)]

    @property
    def undrawable(self) -> str | None:
        """The first step whose draws may depend on the pixels: one that runs as it is, unless it
        declares ``draws_from_shape`` (the augmentation policies, ``augkit.pipeline.policies``)."""
        return next(
            (k.name for k in self.kinds if k.code == _AS_IS and not getattr(k.transform, "draws_from_shape", False)), None
        )

    @property
    def drawable(self) -> bool:
        """Whether ``draws`` can tell every step's parameters from the image's shape alone."""
        return self.undrawable is None

    def draws(self, shape: tuple[int, ...]) -> list[tuple[str, dict[str, Any] | None]]:
        """Each step's parameters (every key, as ``replay`` gives them) for an input of
        ``shape``, in order, after the pipeline has seeded the sample; None for a skipped step."""
        height, width = shape[:2]
        out = []
        for kind in self.kinds:
            params = kind.draw_all((height, width, *shape[2:]))
            out.append((kind.name, params))
            if params is not None and isinstance(kind, _Crop):
                height, width = params["out"]
        return out

    def accepts(self, image: np.ndarray) -> bool:
        """Images the plan runs: H x W or H x W x C with C <= 4 (OpenCV's warps and tables)."""
        return image.ndim == 2 or image.shape[2] <= 4

    def __call__(self, image: np.ndarray, targets: Targets | None = None) -> np.ndarray:
        """The pipeline's output for ``image`` (H x W or H x W x C, C <= 4, the pixel contract);
        ``targets`` (boxes, keypoints) are moved along, in place."""
        warp: _Warp | None = None  # geometry waiting to run, then the table
        table: np.ndarray | None = None
        height, width = image.shape[:2]  # of the image as the next step sees it
        for kind in self.kinds:
            code = kind.code
            if code == _AS_IS:
                image = _finish(image, warp, table)
                warp, table = None, None
                check_padding(f"step {kind.name!r}", kind.transform, image)
                image = kind.transform(image=image)["image"] if targets is None else targets.run(kind.transform, image)
                check_output_size(f"step {kind.name!r}", image)
                height, width = image.shape[:2]
                continue
            drawn = kind.draw(height, width)
            if drawn is None:
                continue
            if code == _GEOMETRIC:
                window = kind.window(drawn, height, width)
                if targets is not None:
                    targets.move(kind, window, height, width)
                if table is not None and kind.is_flip:
                    # A flip moves pixels without changing them: it runs before the table.
                    warp = warp or _Warp(height, width)
                    warp.affine = _compose(window[2], warp.affine)
                    continue
                if table is not None or window[5] or (warp is not None and not warp.add(window)):
                    image = _finish(image, warp, table)
                    warp, table = None, None
                    if window[5]:  # a shrinking resize: the step itself (its antialiased resize)
                        image = _apply(kind, drawn, image)
                        height, width = image.shape[:2]
                        continue
                if warp is None:
                    warp = _Warp(height, width)
                    if not warp.add(window):  # cannot happen on a fresh warp: loud, not silent
                        raise AssertionError(f"plan: {kind.name} did not merge into a fresh warp")
                height, width = window[0], window[1]
            elif image.dtype != np.uint8:  # tables are for uint8: the step itself
                image = _finish(image, warp, table)
                warp, table = None, None
                image = _apply(kind, kind.params(drawn), image)
            elif code == _INTENSITY:
                mean = 0.0
                channels = image.shape[2] if image.ndim == 3 else 1
                if kind.needs_mean:
                    image = _finish(image, warp, table)
                    warp, table = None, None
                    mean = F.image_mean(image)
                new = kind.table(drawn, channels, mean)
                table = new if table is None else _compose_tables(table, new)
            else:  # a normalisation of uint8: the table so far, then the step's float32 levels
                image, warp = _finish(image, warp, None), None
                channels = image.shape[2] if image.ndim == 3 else 1
                levels = kind.float_table(channels)
                image = _apply_table(image, levels if table is None else _compose_tables(table, levels))
                table = None
        return _finish(image, warp, table)

    def describe(self) -> list[tuple[str, list[str]]]:
        """The plan's passes over the image, in the order they run: (what runs, [step names]).

        "warp": one warp (at run time a second border or a shrinking resize may start another);
        "flip": flips that follow intensity steps, run before their table (a flip commutes with
        it); "table": one lookup-table pass (a contrast after other intensity steps starts a new
        one: it reads the mean of the image they made); "normalise": one pass to float32 through
        a 256-level table (any table before it folded in); "as is": a step on its own.
        """
        groups: list[tuple[str, list[str]]] = []
        for kind in self.kinds:
            label = kind.label
            last = groups[-1][0] if groups else None
            if label == "warp" and kind.is_flip and last == "table":
                table = len(groups) - 1
                before = groups[table - 1][0] if table > 0 else None
                # Into the warp before the table while that warp still waits (a table that opens
                # with a contrast ran it to read the mean), else a pass of its own.
                if before == "flip" or (before == "warp" and not self.kinds_of(groups[table])[0].needs_mean):
                    groups[table - 1][1].append(kind.name)
                else:
                    groups.insert(table, ("flip", [kind.name]))
                continue
            if label == "normalise" and last == "table":  # the table folds into the normalising pass
                groups[-1] = (label, [*groups[-1][1], kind.name])
                continue
            new_table = label == "table" and kind.needs_mean
            if last == label and label != "as is" and not new_table:
                groups[-1][1].append(kind.name)
            else:
                groups.append((label, [kind.name]))
        return groups

    def kinds_of(self, group: tuple[str, list[str]]) -> list[_Kind]:
        """The kinds of a ``describe`` group's steps (by name, in order)."""
        names = group[1]
        return [next(kind for kind in self.kinds if kind.name == name) for name in names]
