"""The arithmetic of augkit's transforms, as small pure functions on HxWxC arrays.

Transforms in ``augkit.pipeline.steps`` draw their random parameters and forward here, so every
formula can be tested on its own. Inputs follow augkit's pixel contract (``augkit.pixels``):
uint8 (0..255), uint16 (0..65535) or float32 on [0, 1]; intensity steps keep the dtype and its
range, normalisation steps return float32. Outputs keep the input's layout (HxWxC, C >= 1) even
where OpenCV drops a single channel axis. Masks (label maps, any integer dtype) only ever move
with nearest-neighbour sampling: a label is never blended with its neighbour.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np
import stringzilla

from augkit.errors import AugkitError
from augkit.pixels import full_scale
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
    center = ((width - 1) / 2, (height - 1) / 2)
    matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
    return warp_affine(img, matrix, height, width, border, fill, nearest=nearest)


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
    max_value = full_scale(img)
    shift = (mean_arr * max_value).astype(np.float32)
    inv = (1.0 / (std_arr * max_value)).astype(np.float32)
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
