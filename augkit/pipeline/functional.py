"""The arithmetic of augkit's transforms, as small pure functions on HxWxC arrays.

Transforms in ``augkit.pipeline.steps`` draw their random parameters and forward here, so every
formula can be tested on its own. Inputs follow augkit's pixel contract (``augkit.pixels``):
uint8 (0..255), uint16 (0..65535) or float32 on [0, 1]; intensity steps keep the dtype and its
range, normalisation steps return float32. Outputs keep the input's layout (HxWxC, C >= 1) even
where OpenCV drops a single channel axis. Masks (label maps, any integer dtype) only ever move
with nearest-neighbour sampling: a label is never blended with its neighbour. Boxes and keypoints
move by the matrices the pixels are warped with (the section "boxes and keypoints").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import stringzilla

from augkit.errors import AugkitError
from augkit.pipeline._albumentations import A
from augkit.pixels import full_scale, to_uint8, to_unit_scale
from augkit.resize import resample

BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,  # mirror without repeating the edge pixel, like np.pad's "reflect"
    "replicate": cv2.BORDER_REPLICATE,
}


def keep_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV returns HxW for HxWx1 input; put the channel axis back."""
    return out[..., None] if out.ndim == 2 and like.ndim == 3 else out


# 0..255 as float64: the start of every uint8 lookup table (the same values as np.arange(256)).
_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS.setflags(write=False)


def _translates_into_buffers() -> bool:
    """Whether this StringZilla's ``translate`` takes ``out=`` (recent releases do); older ones
    only translate in place, which costs a copy first."""
    try:
        stringzilla.translate(memoryview(b"\0"), memoryview(bytes(256)), out=memoryview(bytearray(1)))
    except TypeError:
        return False
    return True


_TRANSLATE_OUT = _translates_into_buffers()


def lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry uint8 lookup table (the fast path for per-pixel maps on uint8).

    StringZilla's byte translation (what albumentations' own lookups use; it comes with
    albumentations through albucore) runs 5-10x faster than ``cv2.LUT`` on one thread:
    5 against 53 us at 224 x 224 x 3. Any shape; a new array.
    """
    if not _TRANSLATE_OUT:
        out = np.array(img, order="C")  # a copy, translated in place
        stringzilla.translate(memoryview(out.reshape(-1)), memoryview(table), inplace=True)
        return out
    source, out = np.ascontiguousarray(img).reshape(-1), np.empty(img.shape, dtype=np.uint8)
    stringzilla.translate(memoryview(source), memoryview(table), out=memoryview(out.reshape(-1)))
    return out


def _uint8_table(levels: np.ndarray) -> np.ndarray:
    """``levels`` (256 float64 values, a fresh array) clipped to 0..255 and rounded, as uint8."""
    np.minimum(levels, 255.0, out=levels)
    np.maximum(levels, 0.0, out=levels)
    return np.rint(levels, out=levels).astype(np.uint8)


def crop(
    img: np.ndarray, y: int, x: int, height: int, width: int, border: str = "constant", fill: float = 0
) -> np.ndarray:
    """The ``height`` x ``width`` window at row ``y``, column ``x``; a copy, never a view.

    The window may reach past the image (``y`` or ``x`` negative, or beyond the far side):
    what lies outside is filled by ``border`` as if the image had been padded first
    (``fill`` for "constant", in the image's own units), without building the padded image,
    so memory is that of the window whatever the padding. A view would let a caller who
    writes to the output change their input image.
    """
    rows, cols = img.shape[:2]
    if 0 <= y and y + height <= rows and 0 <= x and x + width <= cols:
        return img[y : y + height, x : x + width].copy()
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + height, rows), min(x + width, cols)
    if top >= bottom or left >= right:  # the window misses the image: all border
        return _crop_by_index(img, y, x, height, width, border, fill)
    pads = (top - y, y + height - bottom, left - x, x + width - right)  # top, bottom, left, right
    # OpenCV pads the part of the image inside the window (about 1 us at 32 x 32, against 17 us
    # for numpy's fancy indexing). That part touches the image's edge on every side that needs
    # a border, so replicating its edge is the image's; mirroring is too while each border is
    # narrower than the part (REFLECT_101 reads rows 1..k for a border of k); OpenCV's constant
    # value holds 4 channels at most.
    channels = img.shape[2] if img.ndim == 3 else 1
    if border == "constant" and channels <= 4:
        value = (saturate(fill, img.dtype),) * 4
    elif border == "replicate" or (
        border == "reflect" and max(pads[:2]) < bottom - top and max(pads[2:]) < right - left
    ):
        value = None
    else:
        return _crop_by_index(img, y, x, height, width, border, fill)
    out = cv2.copyMakeBorder(img[top:bottom, left:right], *pads, BORDERS[border], value=value)
    return keep_channels(out, img)


def crop_resized(
    img: np.ndarray,
    y: int,
    x: int,
    height: int,
    width: int,
    out_height: int,
    out_width: int,
    border: str = "constant",
    fill: float = 0,
) -> np.ndarray:
    """``resize(crop(img, y, x, height, width, border, fill), out_height, out_width)``: a new array.

    The same pixels, without copying a window that lies inside the image before resizing it
    (the resize writes a new array anyway): 5% of a random-resized crop at 512 x 512.
    """
    if height == out_height and width == out_width:
        return crop(img, y, x, height, width, border, fill)
    if 0 <= y and y + height <= img.shape[0] and 0 <= x and x + width <= img.shape[1]:
        return resize(img[y : y + height, x : x + width], out_height, out_width)
    return resize(crop(img, y, x, height, width, border, fill), out_height, out_width)


def _crop_by_index(
    img: np.ndarray, y: int, x: int, height: int, width: int, border: str, fill: float = 0
) -> np.ndarray:
    """``crop`` for any window, border and channel count, by the source of every output pixel."""
    rows, cols = img.shape[:2]
    if border == "constant":
        out = np.full((height, width, *img.shape[2:]), saturate(fill, img.dtype), dtype=img.dtype)
        top, left = max(y, 0), max(x, 0)
        bottom, right = min(y + height, rows), min(x + width, cols)
        if top < bottom and left < right:
            out[top - y : bottom - y, left - x : right - x] = img[top:bottom, left:right]
        return out
    ys = _border_index(np.arange(y, y + height), rows, border)
    xs = _border_index(np.arange(x, x + width), cols, border)
    return img[ys[:, None], xs]


@functools.lru_cache(maxsize=256)
def saturate(value: float, dtype: np.dtype) -> float | int:
    """``value`` clipped to what an image of ``dtype`` holds: 0..255 for uint8 (as OpenCV
    saturates), the integer range for other integers, [0, 1] for float32 (the pixel contract:
    ``fill=255`` on a float image is its white, 1.0, not 255.0)."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return int(min(max(round(value), info.min), info.max))
    return min(max(float(value), 0.0), 1.0)


def _border_index(index: np.ndarray, size: int, border: str) -> np.ndarray:
    """Where positions ``index`` (possibly outside 0..size-1) take their pixel from.

    "reflect" mirrors without repeating the edge pixel (OpenCV's BORDER_REFLECT_101, np.pad's
    "reflect"), as often as needed; "replicate" repeats the edge pixel.
    """
    if border == "replicate" or size == 1:
        return np.clip(index, 0, size - 1)
    period = 2 * size - 2
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to ``height`` x ``width``, antialiased on every shrinking axis (``augkit.resize.resample``).

    Any number of channels (H x W x 1 stays H x W x 1); the dtype is kept; the input itself is
    returned when the size does not change.
    """
    return resample(img, height, width)


def rotate(
    img: np.ndarray, angle: float, border: str = "reflect", fill: float = 0, *, nearest: bool = False
) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the centre, keeping the size.

    Args:
        angle: degrees, finite (the steps bound it to [-360, 360]).
        border: how pixels from outside the image are filled, one of ``BORDERS``.
        fill: the value of ``border="constant"`` pixels, in the image's own units (0..255 for
            uint8, 0..65535 for uint16, 0..1 for float32; a label for a mask).
        nearest: nearest-neighbour sampling instead of bilinear: for masks, whose labels must
            never be blended into values that are no label.
    """
    height, width = img.shape[:2]
    return warp_affine(img, rotation_matrix(angle, height, width), height, width, border, fill, nearest=nearest)


# From this many pixels on, a 3-channel warp goes through 4 channels; below, the conversions
# cost more than they save. bench/warp_channels.py (3-channel time / 4-channel route's): 0.8-0.9
# at 32 x 32, 1.0-1.1 at 48 x 48, 1.5-1.8 at 128 x 128 and 224 x 224 for uint8 and uint16.
_WARP_AS_FOUR_CHANNELS = 48 * 48


def warp_affine(
    img: np.ndarray,
    matrix: np.ndarray,
    height: int,
    width: int,
    border: str = "reflect",
    fill: float = 0,
    *,
    nearest: bool = False,
    inverse: bool = False,
) -> np.ndarray:
    """``cv2.warpAffine`` into ``height`` x ``width``, the layout kept (H x W x 1 stays so).

    Args:
        matrix: 2 x 3, in pixel coordinates (pixel centres at integers, as OpenCV's); it maps
            the input to the output, or the output to the input with ``inverse=True``.
        border, fill: as ``rotate``'s.
        nearest: nearest-neighbour sampling (label maps) instead of bilinear.

    OpenCV 5's bilinear warp of 3-channel images takes about twice as long as of 4-channel
    ones, so from ``_WARP_AS_FOUR_CHANNELS`` pixels on a 3-channel image is warped with a
    fourth channel added and dropped again: the same values, bit for bit (every channel is
    sampled at the same points with the same weights).
    """
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | (cv2.WARP_INVERSE_MAP if inverse else 0)
    value = (saturate(fill, img.dtype),) * 4
    three = img.ndim == 3 and img.shape[2] == 3 and not nearest and height * width >= _WARP_AS_FOUR_CHANNELS
    source = cv2.cvtColor(img, cv2.COLOR_RGB2RGBA) if three else img
    out = cv2.warpAffine(source, matrix, (width, height), flags=flags, borderMode=BORDERS[border], borderValue=value)
    if three:
        return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
    return keep_channels(out, img)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a label map by nearest neighbour (pixel centres aligned, as Pillow's NEAREST)."""
    if mask.shape[:2] == (height, width):
        return mask
    out = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return keep_channels(out, mask)


# ----------------------------------------------------------------------------- boxes and keypoints

# Points and boxes move by the same 2 x 3 matrix as the pixels, in albumentations' two conventions
# (its own geometric transforms keep both):
# - points (keypoints, and every matrix here) put a pixel's centre at integer coordinates: pixel
#   (row i, column j) is the point (j, i) and the image spans [-0.5, W - 0.5], as in OpenCV's
#   warps, so each matrix is the very one the pixels are warped with. albumentations' flips
#   (x -> W - 1 - x) and Rotate (about ((W - 1) / 2, (H - 1) / 2)) agree; its Resize alone scales
#   keypoints as if corners were at integers (x -> x * ratio), half a pixel times (ratio - 1) off.
# - boxes put pixel edges at integers: pixel (i, j) covers [j, j + 1] x [i, i + 1], so the box
#   [x_min, y_min, x_max, y_max] = [2, 3, 5, 7] holds columns 2..4 and rows 3..6 (pascal_voc's
#   pixels; albumentations' normalised boxes are these divided by W and H).

BoxRule = Literal["largest_box", "ellipse"]


def rotation_matrix(angle: float, height: int, width: int) -> np.ndarray:
    """``rotate``'s 2 x 3 map from input to output points (float64): counter-clockwise by ``angle``
    degrees about ((width - 1) / 2, (height - 1) / 2), ``cv2.getRotationMatrix2D``'s matrix, the
    one ``rotate`` warps with (and albumentations' Rotate for the same angle)."""
    return cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)


def crop_matrix(y: int, x: int, height: int, width: int, out_height: int, out_width: int) -> np.ndarray:
    """``crop_resized(img, y, x, height, width, out_height, out_width)``'s 2 x 3 map from input to
    output points (float64).

    The window's first pixel is the input's (row ``y``, column ``x``), negative or past the far
    side where the window reaches into padding; the resize aligns pixel corners, as ``resize``
    (and ``cv2.resize``) do: column ``c`` moves to ``(c - x + 0.5) * out_width / width - 0.5``,
    rows likewise (``c - x`` without a resize).
    """
    sx, sy = out_width / width, out_height / height
    return np.array([[sx, 0.0, (0.5 - x) * sx - 0.5], [0.0, sy, (0.5 - y) * sy - 0.5]])


def shear_matrix(factor: float, axis: str) -> np.ndarray:
    """``shear(img, factor, axis)``'s 2 x 3 map from input to output points (float64): (x, y) moves
    to (x - factor * (y + 0.5), y) for "x", to (x, y - factor * (x + 0.5)) for "y" (about the image's
    top-left corner, at -0.5). Its inverse is the shear by ``-factor``, which ``shear`` warps with."""
    if axis == "x":
        return np.array([[1.0, -factor, -0.5 * factor], [0.0, 1.0, 0.0]])
    return np.array([[1.0, 0.0, 0.0], [-factor, 1.0, -0.5 * factor]])


def translate_matrix(dy: float, dx: float) -> np.ndarray:
    """``translate(img, dy, dx)``'s 2 x 3 map from input to output points (float64): (x + dx, y + dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def points_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """N x 2 points (x, y; pixel centres at integers) moved by a 2 x 3 matrix: N x 2 float64."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def boxes_affine(boxes: np.ndarray, matrix: np.ndarray, rule: BoxRule = "largest_box") -> np.ndarray:
    """N x 4+ boxes [x_min, y_min, x_max, y_max, ...] in pixels (edges at integers) moved by ``matrix``.

    Args:
        boxes: N x 4 or more (columns after the fourth, such as labels, are kept), any float dtype.
        matrix: 2 x 3, a map of points (pixel centres at integers), as the functions above give;
            it is shifted by half a pixel to act on edges (a rotation about (W - 1) / 2 in points
            turns boxes about W / 2: the same motion).
        rule: albumentations' ``rotate_method`` names and functions (albumentations 2.0
            ``augmentations/geometric/functional.py``, called here): "largest_box", the box around
            the four moved corners (``bboxes_affine_largest_box``: it holds the whole moved box,
            and is exact for maps that keep axes: crops, resizes, flips, translations); "ellipse",
            the box around the moved ellipse inscribed in the box, sampled at 360 points
            (``bboxes_affine_ellipse``: tighter under rotations, and exact for round objects).

    Returns:
        N x 4+ float64, not clipped: albumentations' ``Compose`` clips and filters boxes
        (``BboxParams``' min_visibility, min_area) after every step.
    """
    if rule not in ("largest_box", "ellipse"):
        raise AugkitError(f"box rule must be 'largest_box' or 'ellipse', got {rule!r}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return boxes
    shift = 0.5 - matrix[:, :2].sum(axis=1) * 0.5  # T(+0.5) @ matrix @ T(-0.5): edges to centres and back
    edges = np.vstack([np.column_stack([matrix[:, :2], matrix[:, 2] + shift]), [0.0, 0.0, 1.0]])
    geometric = A.augmentations.geometric.functional
    move = geometric.bboxes_affine_largest_box if rule == "largest_box" else geometric.bboxes_affine_ellipse
    return move(boxes, edges)


def keypoints_affine(keypoints: np.ndarray, matrix: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """albumentations' N x 5+ keypoints [x, y, z, angle, scale, ...] moved by a 2 x 3 ``matrix``.

    x, y (pixels, centres at integers) go through the matrix; the angle (radians) turns with it,
    by ``atan2(-m10, m00)``, after mirroring (``-angle``) when the map mirrors (a negative
    determinant: a flip merged in by the compiled plan), and is wrapped to [0, 2 pi): the angles
    albumentations' Rotate, HorizontalFlip (pi - angle) and VerticalFlip (-angle) give. The
    keypoint's scale is multiplied by ``scale`` (the resize factor: albumentations passes the
    larger of the two axes'); z and other columns are kept. As albumentations' ``keypoints_affine``
    with a constant border (which adds no reflected copies). Returns float64 of the same shape.
    """
    out = np.array(keypoints, dtype=np.float64)
    if len(out) == 0:
        return out
    out[:, :2] = points_affine(out[:, :2], matrix)
    if matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0] < 0:
        out[:, 3] = -out[:, 3]  # a mirror: the map is a vertical flip, then a map that keeps orientation
    out[:, 3] = np.mod(out[:, 3] + math.atan2(-matrix[1, 0], matrix[0, 0]), 2 * math.pi)
    out[:, 4] *= scale
    return out


def _rows(img: np.ndarray) -> np.ndarray:
    """``img`` as a 2-D H x (W*C) array: one OpenCV channel, so any number of channels works."""
    return np.ascontiguousarray(img).reshape(img.shape[0], -1)


def _gain_bias(img: np.ndarray, gain: float, bias: float) -> np.ndarray:
    """``clip(img * gain + bias)`` to the image's range, in its dtype; ``bias`` in its units.

    uint16 goes through OpenCV's ``addWeighted``, which rounds and saturates to 0..65535 in one
    pass (a 65536-entry lookup table costs twice as much); float32 is clipped to [0, 1].
    """
    out = cv2.addWeighted(_rows(img), gain, _rows(img), 0.0, bias)
    if img.dtype == np.float32:
        np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(img.shape)


def adjust_brightness(img: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta`` (a fraction of the full range, -1..1) to every pixel, clipped; dtype kept.

    ``delta = 0.2`` adds 51 to a uint8 pixel, 13107 to a uint16 one, 0.2 to a float32 one.
    """
    scale = full_scale(img)
    if img.dtype == np.uint8:
        return lut(img, brightness_table(delta))
    return _gain_bias(img, 1.0, delta * scale)


def brightness_table(delta: float) -> np.ndarray:
    """``adjust_brightness``'s 256-entry uint8 table: each level plus ``delta * 255``, clipped, rounded."""
    return _uint8_table(_LEVELS + delta * 255.0)


def image_mean(img: np.ndarray) -> float:
    """The mean over all pixels and channels, in the image's own units (OpenCV: one pass).

    Integer images are summed with ``cv2.sumElems`` (exact integer sums, 2-5x faster than
    ``cv2.mean`` on one thread) and scaled by ``1 / count``, which is how ``cv2.mean`` ends, so
    the two give the same float; float32 images go through ``cv2.mean`` itself.
    """
    rows = _rows(img)
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        return cv2.sumElems(rows)[0] * (1.0 / rows.size)
    return cv2.mean(rows)[0]


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale the distance of every pixel from the image's mean by ``factor``, clipped; dtype kept.

    The mean is taken over all pixels and channels (torchvision uses the grayscale mean;
    the two agree for gray images and differ by a small colour-dependent shift otherwise).
    """
    full_scale(img)  # refuses dtypes outside the pixel contract
    mean = image_mean(img)
    if img.dtype == np.uint8:
        return lut(img, contrast_table(mean, factor))
    return _gain_bias(img, factor, mean * (1.0 - factor))


def contrast_table(mean: float, factor: float) -> np.ndarray:
    """``adjust_contrast``'s 256-entry uint8 table for an image whose mean is ``mean`` (0..255)."""
    return _uint8_table((_LEVELS - mean) * factor + mean)


def _per_channel(values: np.ndarray, img: np.ndarray, what: str) -> np.ndarray:
    """Broadcast per-channel values (length 1 or C) against an HxWxC image, or refuse."""
    channels = img.shape[-1] if img.ndim == 3 else 1
    if values.ndim == 1 and values.size not in (1, channels):
        raise AugkitError(
            f"{what} has {values.size} channels but the image has {channels}; "
            "compute the statistics on images read the same way (e.g. both --gray or both colour)"
        )
    if values.ndim == 3 and values.shape != img.shape:
        raise AugkitError(
            f"{what} is a mean image of shape {values.shape} but the image has shape {img.shape}; "
            "a mean image needs inputs of exactly that size (resize first)"
        )
    return values


def standardize(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(x / max - mean) / std`` in float32: zero mean, unit variance per channel.

    ``mean`` and ``std`` are on the [0, 1] scale (like torchvision's Normalize); written as
    ``(x - mean * max) * (1 / (std * max))``, the form albumentations' Normalize uses, so the
    two agree to float32 rounding.
    """
    mean_arr = _per_channel(np.asarray(mean, dtype=np.float64), img, "standardize: mean")
    std_arr = _per_channel(np.asarray(std, dtype=np.float64), img, "standardize: std")
    return shift_and_scale(img, *standardize_factors(mean_arr, std_arr, full_scale(img)))


def standardize_factors(mean: np.ndarray, std: np.ndarray, max_value: float) -> tuple[np.ndarray, np.ndarray]:
    """``standardize``'s float32 ``(mean * max, 1 / (std * max))`` for images of full scale
    ``max_value``; ``mean`` and ``std`` per channel or H x W x C images (``mode: pixel``, whose
    step computes them once rather than per image), on the [0, 1] scale."""
    return (mean * max_value).astype(np.float32), (1.0 / (std * max_value)).astype(np.float32)


def shift_and_scale(img: np.ndarray, shift: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """``(x - shift) * inv`` in float32, a new array: ``standardize`` with its factors made."""
    out = _float_copy(img)
    np.subtract(out, _along_rows(shift, out), out=out)
    return np.multiply(out, _along_rows(inv, out), out=out)


def subtract_mean(img: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``x / max - mean`` in float32, with a per-channel mean (VGG) or a mean image (AlexNet).

    ``mean``: length 1 or C, or an image of ``img``'s shape (a float32 one is used as it is).
    """
    mean_arr = _per_channel(np.asarray(mean, dtype=np.float32), img, "subtract_mean: mean")
    out = scale(img)
    return np.subtract(out, _along_rows(mean_arr, out), out=out)


def scale(img: np.ndarray) -> np.ndarray:
    """Map pixels to float32 on [0, 1]: value / full scale (255, 65535, or 1 for float32); a new array."""
    max_value = full_scale(img)
    if max_value == 1.0:
        return _float_copy(img)
    # One pass, converting as it multiplies: the same float32 product as converting first.
    return np.multiply(img, np.float32(1.0 / max_value), dtype=np.float32, order="C")


def _float_copy(img: np.ndarray) -> np.ndarray:
    """``img`` as a new C-ordered float32 array (the output the normalisation steps work in)."""
    return img.astype(np.float32, order="C")


def _along_rows(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-channel ``values`` (float32, length 1 or C) laid out to combine with ``out`` seen as
    H x (W*C) rows; anything else (a mean image) as it is, to broadcast against ``out``.

    The point is speed: numpy combines an H x W x 3 array with 3 values in a loop 3 elements
    long, about 10x slower than with one row of W*C values, whose loop is as long as the row
    (standardize at 224 x 224 x 3: 1,100 against 100 us), and element by element the
    arithmetic is the same.
    """
    if values.ndim > 1 or out.ndim < 2:
        return values
    return _tiled(values.astype(np.float32, copy=False).tobytes(), out.shape[1:])


@functools.lru_cache(maxsize=16)  # at most 16 rows of W*C float32 (2 MB at 32767 x 4 channels)
def _tiled(values: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """float32 ``values`` repeated to fill ``shape`` (W x C or W), read-only: a pipeline reuses
    its rows for every image of one size, and tiling anew costs more than the arithmetic at 32 px."""
    row = np.frombuffer(values, dtype=np.float32)
    out = np.tile(row, math.prod(shape) // row.size).reshape(shape)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------- the policies' operations

# The operations of RandAugment, TrivialAugment, AutoAugment and AugMix (augkit.pipeline.policies),
# as torchvision defines them (transforms/v2/_auto_augment.py and functional/_color.py) and PIL's
# ImageOps/ImageEnhance compute them for uint8. Levels written on 8 bits (a solarize threshold of
# 128, posterize to 4 bits) are carried to uint16 and float32 on the [0, 1] scale, so the same
# picture in any dtype gives the same result within an 8-bit level (tests/test_policies.py).


def shear(img: np.ndarray, factor: float, axis: str, *, fill: float = 0, nearest: bool = True) -> np.ndarray:
    """Shear along ``axis`` ("x" or "y") by ``factor`` about the image's top-left corner; size kept.

    torchvision's ShearX/ShearY (``F.affine(shear=degrees(atan(factor)), center=[0, 0])``), which is
    the official AutoAugment's PIL transform ``(1, factor, 0, 0, 1, 0)``: output pixel (x, y) comes
    from (x + factor * (y + 0.5), y) for "x" (pixel centres at integers, the corner at -0.5), and
    from (x, y + factor * (x + 0.5)) for "y". Pixels from outside are ``fill`` (image units).
    """
    height, width = img.shape[:2]
    # The output -> input map is the shear by -factor (``shear_matrix`` is the input -> output one).
    matrix = shear_matrix(-factor, axis)
    return warp_affine(img, matrix, height, width, "constant", fill, nearest=nearest, inverse=True)


def translate(img: np.ndarray, dy: int, dx: int, fill: float = 0) -> np.ndarray:
    """Move the content ``dx`` pixels right and ``dy`` down (negative: left, up), size kept; the
    pixels uncovered are ``fill`` (torchvision's TranslateX/Y with whole pixels: a copy, any dtype)."""
    return crop(img, -dy, -dx, img.shape[0], img.shape[1], border="constant", fill=fill)


def blend(img: np.ndarray, other: np.ndarray | float, factor: float) -> np.ndarray:
    """``other + factor * (img - other)``, clipped to the image's range, dtype kept.

    PIL's ``Image.blend(other, img, factor)``, which every ``ImageEnhance`` class is, and
    torchvision's ``_blend``: factor 0 gives ``other``, 1 the image, above 1 moves away from it.
    Computed in float32 and truncated to integers, as both compute it. ``other``: an image of
    ``img``'s shape and dtype, or one value in its units.
    """
    if img.dtype == np.uint8 and np.isscalar(other):  # one table for the 256 levels
        return lut(img, _blend(_RAMP8, other, factor))
    return _blend(img, other, factor)


def _blend(img: np.ndarray, other: np.ndarray | float, factor: float) -> np.ndarray:
    scale = full_scale(img)
    other = np.float32(other) if np.isscalar(other) else other.astype(np.float32)
    out = img.astype(np.float32)
    out -= other
    out *= np.float32(factor)
    out += other
    np.clip(out, 0.0, scale, out=out)
    return out.astype(img.dtype)


_RAMP8 = np.arange(256, dtype=np.uint8)
_RAMP8.setflags(write=False)


def enhance_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale every pixel by ``factor``, clipped (PIL's ``ImageEnhance.Brightness``: a blend with black)."""
    return blend(img, 0.0, factor)


def _luma(img: np.ndarray) -> np.ndarray | None:
    """The luma of an RGB or RGBA image (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, PIL's "L"), as H x W
    in the image's dtype; None for other channel counts, which have no colour to speak of."""
    channels = img.shape[2] if img.ndim == 3 else 1
    if channels == 3:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    if channels == 4:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2GRAY)
    return None


def enhance_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the mean gray level by ``factor``, clipped (PIL's ``ImageEnhance.Contrast``,
    torchvision's ``adjust_contrast``): the mean of the luma for RGB/RGBA, of all values otherwise."""
    luma = _luma(img)
    return blend(img, image_mean(img if luma is None else luma), factor)


def enhance_color(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's own luma by ``factor``: 0 gray, 1 unchanged, 2 twice as saturated (PIL's
    ``ImageEnhance.Color``, torchvision's ``adjust_saturation``). RGBA keeps its alpha; images that
    are not RGB come back unchanged (a copy)."""
    luma = _luma(img)
    if luma is None:
        full_scale(img)
        return img.copy()
    rgb = np.ascontiguousarray(img[..., :3])
    out = blend(rgb, cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB), factor)
    return out if img.shape[2] == 3 else np.concatenate([out, img[..., 3:]], axis=2)


# PIL's ImageFilter.SMOOTH, the "degenerate" image of ImageEnhance.Sharpness and of torchvision's
# adjust_sharpness.
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13


def enhance_sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image smoothed by PIL's SMOOTH kernel (1 1 1 / 1 5 1 / 1 1 1, over 13) by
    ``factor``: below 1 blurs, above 1 sharpens (PIL's ``ImageEnhance.Sharpness``, torchvision's
    ``adjust_sharpness``). The one-pixel border is the image's own in the smoothed image, as both keep it."""
    height, width = img.shape[:2]
    if height < 3 or width < 3:  # all border
        return blend(img, img, factor)
    smooth = keep_channels(cv2.filter2D(img, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE), img)
    smooth[[0, -1]] = img[[0, -1]]
    smooth[:, [0, -1]] = img[:, [0, -1]]
    return blend(img, smooth, factor)


def solarize(img: np.ndarray, threshold: float) -> np.ndarray:
    """Invert the pixels at or above ``threshold``, given in 8-bit units (0..255; 256 inverts none):
    ``threshold / 255`` of the full scale for uint16 and float32 (torchvision's ``solarize``, PIL's
    ``ImageOps.solarize``)."""
    if img.dtype == np.uint8:
        return lut(img, np.where(_LEVELS >= threshold, 255.0 - _LEVELS, _LEVELS).astype(np.uint8))
    return np.where(img >= threshold / 255.0 * full_scale(img), invert(img), img)


def posterize(img: np.ndarray, bits: int) -> np.ndarray:
    """Keep the top ``bits`` (0..8) bits of every value: 2**bits levels of the full scale.

    uint8: ``x & (0xFF << (8 - bits))`` (PIL's ``ImageOps.posterize``); uint16: the top ``bits`` of
    16 (torchvision v2's ``posterize`` for integers); float32: ``min(floor(x * 2**bits), 2**bits - 1)
    / 2**bits`` (v2's for floats, 1.0 kept in the top level as the integers keep their maximum).
    """
    if img.dtype == np.uint8:
        return lut(img, (np.arange(256) & (0xFF << (8 - bits))).astype(np.uint8))
    if img.dtype == np.uint16:
        return img & np.uint16((0xFFFF << (16 - bits)) & 0xFFFF)
    full_scale(img)
    levels = float(2**bits)
    return (np.minimum(np.floor(img * levels), levels - 1) / levels).astype(np.float32)


def invert(img: np.ndarray) -> np.ndarray:
    """The full scale minus every pixel: 255 - x, 65535 - x, 1 - x."""
    scale = full_scale(img)
    return np.subtract(img.dtype.type(scale), img, dtype=img.dtype)


def _tables(img: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """``tables[x, c]`` for every value x of channel c of a uint8 image (tables: 256 x C uint8)."""
    if img.ndim == 2:
        return cv2.LUT(img, tables[:, 0])
    return keep_channels(cv2.LUT(np.ascontiguousarray(img), np.ascontiguousarray(tables).reshape(1, 256, -1)), img)


def autocontrast(img: np.ndarray) -> np.ndarray:
    """Stretch each channel so its darkest value becomes 0 and its brightest the full scale; a
    constant channel is kept (PIL's ``ImageOps.autocontrast`` without cutoff, torchvision's
    ``autocontrast``). Integer results are truncated, as both compute them: ``int(x * scale + offset)``."""
    scale = full_scale(img)
    flat = img.reshape(-1, img.shape[2] if img.ndim == 3 else 1)
    low, high = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    span = high - low
    gain = np.where(span > 0, scale / np.where(span > 0, span, 1.0), 1.0)
    offset = np.where(span > 0, -low * gain, 0.0)
    if img.dtype == np.uint8:
        tables = np.clip(np.trunc(_LEVELS[:, None] * gain + offset), 0, 255).astype(np.uint8)
        return _tables(img, tables)
    out = img.astype(np.float64) * gain + offset  # per channel, along the last axis (one value for H x W)
    if img.dtype == np.uint16:
        out = np.trunc(out)
    return np.clip(out, 0.0, scale).astype(img.dtype)


def equalize_table(histogram: np.ndarray) -> np.ndarray:
    """PIL's ``ImageOps.equalize`` table for one channel's 256-bin histogram (torchvision's too):
    ``(step // 2 + pixels below the level) // step`` with ``step = (pixels - pixels of the top
    level present) // 255``; the identity when that step is 0 (under 255 pixels below the top level)."""
    present = np.flatnonzero(histogram)
    step = (int(histogram.sum()) - int(histogram[present[-1]])) // 255 if present.size > 1 else 0
    if step == 0:
        return np.arange(256, dtype=np.uint8)
    below = np.concatenate([[0], np.cumsum(histogram)[:-1]])
    return np.minimum((step // 2 + below) // step, 255).astype(np.uint8)


def equalize(img: np.ndarray) -> np.ndarray:
    """Equalize each channel's histogram (``equalize_table``), on 256 levels.

    uint16 and float32 images are equalized on their 8-bit values (``augkit.pixels.to_uint8``,
    rounded) and returned in their dtype (x 257, / 255), as torchvision v2's ``equalize`` goes
    through uint8 for every other dtype: the histogram and the result have 256 levels.
    """
    scale = full_scale(img)
    if img.dtype != np.uint8:
        out = equalize(to_uint8(img))
        return out.astype(np.uint16) * np.uint16(257) if scale == 65535.0 else to_unit_scale(out)
    channels = img.shape[2] if img.ndim == 3 else 1
    flat = img.reshape(-1, channels)
    tables = np.stack([equalize_table(np.bincount(flat[:, c], minlength=256)) for c in range(channels)], axis=1)
    return _tables(img, tables)


def weighted_sum(images: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum(w * image)`` (images of one shape and dtype), rounded and clipped to their range,
    in their dtype: AugMix's mixture (computed in float32, as torchvision mixes)."""
    total = np.zeros(images[0].shape, dtype=np.float32)
    for image, weight in zip(images, weights):
        total += np.float32(weight) * image
    scale = full_scale(images[0])
    if scale != 1.0:
        np.rint(total, out=total)
    return np.clip(total, 0.0, scale, out=total).astype(images[0].dtype)
