"""Every resize in augkit, and the four ways preprocessing reaches one target size.

``resample`` is the one resize: ``functional.resize`` (and with it the random-resized crop),
the preview's tiles and the preprocess modes below all go through it. It antialiases on every
axis that shrinks, whatever the other axis does:

- both axes shrink (or keep their size): OpenCV's area filter, which averages every source
  pixel under each output pixel (the common case, and the fastest). It is a box filter: detail
  at the finest scale (one-pixel stripes) shrunk by a fractional ratio leaves a fainter moiré
  than no filter but a stronger one than Pillow's triangle filter (``docs/benchmarks.md``);
- one axis shrinks and the other grows: the shrinking axis alone with the area filter, then
  the growing one with linear interpolation. OpenCV's area filter on such a mix interpolates
  the shrinking axis instead of averaging it: 64 x 1024 one-pixel stripes resized to
  128 x 128 come out a uniform 32 instead of their mean, 127.5 (Pillow gives 128);
- both axes grow: linear interpolation (pixel centres aligned, OpenCV's and Pillow's
  convention), where there is nothing to antialias.

The preprocess modes (``resize_to``):

- ``exact``: stretch to height x width (the aspect ratio changes);
- ``center-crop``: scale to cover the target, keeping the aspect ratio, then cut the centre
  (torchvision's Resize + CenterCrop, the usual evaluation transform). Only the centre is
  computed, from the source pixels it needs: a 1 x 20000 image cropped to 224 x 224 would
  otherwise be scaled to 224 x 4480000 (3 GB) first;
- ``pad``: scale to fit inside the target, keeping the aspect ratio, and pad the rest with
  black (letterboxing: nothing is cut, nothing is stretched);
- ``shorter``: scale so the shorter side is the target's height, keeping the aspect ratio;
  sizes then vary from image to image, so this mode needs the folder output format, and an
  image whose result would pass the pixel limit is refused.

Targets move with the pixels (``placement`` is the one geometry of the four modes):
``resize_mask_to`` resizes label images by nearest neighbour (labels are never blended, the
pad border is label 0), and ``resize_boxes_to`` scales and shifts boxes by the image's own
ratios, clips them to the output and drops those left without area.

``draft_size`` lets ``read_image`` decode a JPEG that is much larger than the target at reduced
scale first, as Pillow's ``Image.thumbnail`` does: the image is decoded at no less than twice
the size it is resized to, so the area filter still has at least 2 x 2 decoded pixels for each
output pixel (on the sample photos the result differs from a full decode by 0.3 gray levels on
average at 128 px, 1.2 at 64, 2.2 at 32), and decoding takes about 60% (1/2 scale) down to 25%
of the time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import cv2
import numpy as np

from augkit.documents import short_repr
from augkit.errors import AugkitError
from augkit.io.images import DEFAULT_MAX_PIXELS

RESIZE_MODES = ("center-crop", "exact", "pad", "shorter")

# (top, left, height, width): a part of a resized image, in the resized image's pixels.
Window = tuple[int, int, int, int]

_CV2_MAX_CHANNELS = 4  # cv2.resize refuses more channels than this


def resample(image: np.ndarray, height: int, width: int, window: Window | None = None) -> np.ndarray:
    """``image`` resized to ``height`` x ``width``, antialiased on every shrinking axis.

    Args:
        image: H x W or H x W x C (any C >= 1; H x W x 1 stays H x W x 1), uint8, uint16 or
            float32 (values are interpolated or averaged, never rescaled: the output keeps the
            dtype and stays within the input's range).
        height, width: the size of the resized image, in pixels (>= 1).
        window: only this part (top, left, height, width) of the resized image, computed from
            the source pixels it needs, so that memory follows the window rather than the
            resized image. Where both axes shrink, the same pixels as cutting the window from
            the whole result; where one grows, the growing axes are interpolated with numpy
            rather than OpenCV (whose fixed-point weights round differently), at most one
            level apart from the whole result's pixels.

    Returns:
        The resized image (or its window), a new array; the input itself when nothing changes.
    """
    h, w = image.shape[:2]
    whole = (0, 0, height, width)
    window = whole if window is None else tuple(window)
    top, left, out_h, out_w = window
    if not (0 <= top < top + out_h <= height and 0 <= left < left + out_w <= width):
        raise ValueError(f"window {window} is not inside the {height} x {width} resized image")
    if (h, w) == (height, width):
        return image if window == whole else image[top : top + out_h, left : left + out_w].copy()
    if height <= h and width <= w:
        # Shrinking (or keeping) both axes: the area filter averages exactly. Its result is no
        # larger than the source, so computing all of it before cutting the window costs little.
        out = _cv2_resize(image, height, width, cv2.INTER_AREA)
        return out if window == whole else out[top : top + out_h, left : left + out_w].copy()
    # One axis grows. Shrink the other first, on its own, with the area filter (see the module
    # docstring for why not both at once); the result is smaller than the source.
    if height < h:
        image = _cv2_resize(image, height, w, cv2.INTER_AREA)
    elif width < w:
        image = _cv2_resize(image, h, width, cv2.INTER_AREA)
    if window == whole:
        return _cv2_resize(image, height, width, cv2.INTER_LINEAR)
    return _linear_window(image, height, width, window)


def _cv2_resize(image: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """``cv2.resize`` for any number of channels, keeping an H x W x 1 image's channel axis."""
    if image.ndim == 3 and image.shape[2] > _CV2_MAX_CHANNELS:
        groups = range(0, image.shape[2], _CV2_MAX_CHANNELS)
        return np.concatenate(
            [_cv2_resize(image[..., c : c + _CV2_MAX_CHANNELS], height, width, interpolation) for c in groups], axis=2
        )
    # No np.ascontiguousarray: OpenCV reads a view with strided rows (a crop) in place, and
    # copies any other layout itself; the random-resized crop relies on it (5% at 512 px).
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out[..., None] if out.ndim == 2 and image.ndim == 3 else out


def _linear_window(image: np.ndarray, height: int, width: int, window: Window) -> np.ndarray:
    """A window of the linear interpolation of ``image`` to ``height`` x ``width`` (no axis shrinks).

    Rows, then columns, each output pixel from its two nearest source pixels, read from the
    few source rows and columns the window needs.
    """
    top, left, out_h, out_w = window
    y0, y1, fy = _linear_taps(image.shape[0], height, top, out_h)
    x0, x1, fx = _linear_taps(image.shape[1], width, left, out_w)
    rows, cols = slice(y0[0], y1[-1] + 1), slice(x0[0], x1[-1] + 1)
    source = image[rows, cols].reshape(rows.stop - rows.start, cols.stop - cols.start, -1).astype(np.float32)
    y0, y1, x0, x1 = y0 - rows.start, y1 - rows.start, x0 - cols.start, x1 - cols.start
    fy, fx = fy[:, None, None], fx[None, :, None]
    between = source[y0] * (1 - fy) + source[y1] * fy
    out = between[:, x0] * (1 - fx) + between[:, x1] * fx
    if image.dtype != np.float32:
        out = np.rint(out)
    return out.astype(image.dtype).reshape(out_h, out_w, *image.shape[2:])


def _linear_taps(size: int, resized: int, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For outputs ``start .. start+count-1`` of ``size`` pixels resized to ``resized``: the two
    source pixels each interpolates and the weight of the second.

    Pixel centres are aligned (output i sits at source (i + 0.5) * size / resized - 0.5, as in
    OpenCV and Pillow); positions past the first or last centre take the edge pixel.
    """
    position = (np.arange(start, start + count) + 0.5) * (size / resized) - 0.5
    position = np.clip(position, 0, size - 1)
    first = np.floor(position).astype(np.intp)
    return first, np.minimum(first + 1, size - 1), (position - first).astype(np.float32)


def parse_size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"32x24"`` -> (32, 24), as height x width.

    Only the form is checked here (positive integers of at most 9 digits, so that no text is
    too long to convert); which sizes are possible, the settings that take one check
    (``augkit.preprocess.PreprocessConfig``: sides and the pixel limit).

    Raises:
        AugkitError: ``text`` is not of that form.
    """
    match = re.fullmatch(r"\s*0*(\d{1,9})\s*(?:[xX]\s*0*(\d{1,9}))?\s*", text)
    if not match or int(match.group(1)) == 0 or (match.group(2) is not None and int(match.group(2)) == 0):
        raise AugkitError(
            f"size {short_repr(text)} is not HxW or N with positive integers of at most 9 digits "
            "(for example 32 or 224x160)"
        )
    height = int(match.group(1))
    return height, int(match.group(2)) if match.group(2) else height


# How much larger than what it is resized to a draft-decoded image must stay (Pillow's
# ``reducing_gap`` in ``Image.thumbnail``, whose default is also 2).
DRAFT_GAP = 2.0


def scale_factors(shape: tuple[int, int], size: tuple[int, int], mode: str) -> tuple[float, float]:
    """(vertical, horizontal) factor by which ``resize_to`` scales an image of ``shape``."""
    height, width = size
    h, w = shape
    if mode == "exact":
        return height / h, width / w
    if mode == "shorter":
        factor = height / min(h, w)
    elif mode == "center-crop":
        factor = max(height / h, width / w)
    elif mode == "pad":
        factor = min(height / h, width / w)
    else:
        raise AugkitError(f"unknown resize mode {mode!r}; choose one of: {', '.join(RESIZE_MODES)}")
    return factor, factor


def draft_size(size: tuple[int, int], mode: str, gap: float = DRAFT_GAP) -> Callable[[int, int], tuple[int, int]]:
    """For ``read_image(draft=...)``: the smallest image ``resize_to(., size, mode)`` should start from.

    That is ``gap`` times the size the image is scaled to (before any crop or pad), so a
    reduced-scale decode is only used where the resize shrinks by at least ``gap`` more.
    """

    def need(h: int, w: int) -> tuple[int, int]:
        fy, fx = scale_factors((h, w), size, mode)
        return math.ceil(h * fy * gap), math.ceil(w * fx * gap)

    return need


# Where ``resize_to`` puts an image: (scaled, offset, out). The image is scaled to ``scaled``
# (height, width), then shifted by ``offset`` (rows, columns) into an output of ``out`` (height,
# width): a negative offset cuts (center-crop), a positive one pads. A pixel edge of the source at
# (y, x) lands at (y * scaled[0] / H + offset[0], x * scaled[1] / W + offset[1]). Plain tuples:
# ``resize_to`` asks for one per image, and a named tuple would add a tenth to a 32-pixel resize.
Placement = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def placement(shape: tuple[int, int], size: tuple[int, int], mode: str) -> Placement:
    """Where ``resize_to(image, size, mode)`` puts an image of ``shape`` (H, W): the one geometry
    its pixels, ``resize_mask_to``'s labels and ``resize_boxes_to``'s boxes all follow."""
    height, width = size
    h, w = shape
    if mode == "exact":
        return (height, width), (0, 0), (height, width)
    factor = scale_factors((h, w), size, mode)[0]
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    if mode == "shorter":
        return (sh, sw), (0, 0), (sh, sw)
    if mode == "pad":  # fits inside, centred (the odd pixel of border goes below and right)
        return (sh, sw), ((height - sh) // 2, (width - sw) // 2), (height, width)
    # center-crop covers the output and keeps its centre
    return (sh, sw), (-((sh - height) // 2), -((sw - width) // 2)), (height, width)


def resize_to(
    image: np.ndarray, size: tuple[int, int], mode: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """``image`` resized to ``size`` (height, width) by ``mode`` (one of ``RESIZE_MODES``).

    Args:
        image: H x W x C (or H x W), uint8, uint16 or float32; the output keeps its dtype.
        size: (height, width) of the output (for "shorter", the shorter side is ``height``).
        max_pixels: refuse an output with more pixels than this (None: no limit). Only
            "shorter" can reach it from a sane ``size``: its output grows with the aspect ratio.

    Raises:
        AugkitError: an unknown mode, or an output past ``max_pixels`` (what it would be, the
            limit, and what to use instead).
    """
    h, w = image.shape[:2]
    (sh, sw), (dy, dx), out = placement((h, w), size, mode)
    if max_pixels is not None and out[0] * out[1] > max_pixels:
        raise AugkitError(
            f"resize mode {mode!r} would turn this {h} x {w} image into {out[0]} x {out[1]} = "
            f"{out[0] * out[1]:,} pixels, more than the limit of {max_pixels:,}; use center-crop or pad "
            f"(a fixed output size) for images this elongated, or a smaller size"
        )
    if mode == "center-crop":
        return resample(image, sh, sw, window=(-dy, -dx, *out))
    resized = resample(image, sh, sw)
    if mode == "pad":
        return np.pad(resized, [(dy, out[0] - sh - dy), (dx, out[1] - sw - dx)] + [(0, 0)] * (image.ndim - 2))
    return resized  # exact, shorter


def resize_mask_to(mask: np.ndarray, size: tuple[int, int], mode: str, fill: int = 0) -> np.ndarray:
    """A label image resized as ``resize_to`` resizes its image: nearest neighbour, never blended.

    Each output pixel takes the label of the source pixel under its centre, with pixel centres
    aligned as in ``resample`` (output pixel i of a side scaled from n to m pixels reads source
    pixel floor((i + 0.5) n / m)), so labels stay exactly the source's and line up with the
    resized pixels. That is OpenCV's INTER_NEAREST_EXACT but for a centre exactly on the edge of
    two source pixels (a shrink by 2), which here reads the pixel after the edge, as a box's
    [x_min, x_max) holds x_min: a box drawn as a mask stays its mask's bounding box (within half
    a pixel) whatever the scale.

    Args:
        mask: H x W (or H x W x C) of any integer dtype; the output keeps it.
        size, mode: as ``resize_to``.
        fill: the label of the border ``mode`` "pad" adds (0, which label maps use for background).
    """
    (sh, sw), (dy, dx), (out_h, out_w) = placement(mask.shape[:2], size, mode)
    rows, row_at = _nearest_taps(mask.shape[0], sh, dy, out_h)
    cols, col_at = _nearest_taps(mask.shape[1], sw, dx, out_w)
    out = np.full((out_h, out_w, *mask.shape[2:]), fill, dtype=mask.dtype)
    out[np.ix_(row_at, col_at)] = mask[np.ix_(rows, cols)]
    return out


def _nearest_taps(size: int, scaled: int, offset: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(source pixels, output pixels they fill) of a side of ``size`` pixels scaled to ``scaled``
    and shifted by ``offset`` into ``count`` output pixels; in exact integer arithmetic."""
    at = np.arange(max(0, offset), min(count, offset + scaled), dtype=np.int64)
    return ((2 * (at - offset) + 1) * size) // (2 * scaled), at


def resize_boxes_to(
    boxes: np.ndarray, shape: tuple[int, int], size: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes moved exactly as ``resize_to`` moves the pixels of an image of ``shape`` (H, W).

    Args:
        boxes: N x 4 [x_min, y_min, x_max, y_max] in pixels of the source (pixel edges: a box
            round pixel column 3 alone is [3, y, 4, y']); albumentations' "pascal_voc" format.
        size, mode: as ``resize_to``.

    Returns:
        (boxes, kept): the boxes scaled by the image's own ratios (scaled size / source size,
        per axis), shifted by its crop or pad, clipped to the output, as float32; only those
        that keep a positive width and height (a box cut away by center-crop is dropped), and
        the boolean N index of those kept, for their labels.
    """
    (sh, sw), (dy, dx), (out_h, out_w) = placement(shape, size, mode)
    sy, sx = sh / shape[0], sw / shape[1]
    moved = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * (sx, sy, sx, sy) + (dx, dy, dx, dy)
    moved = np.clip(moved, 0, (out_w, out_h, out_w, out_h))
    kept = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
    return moved[kept].astype(np.float32), kept
