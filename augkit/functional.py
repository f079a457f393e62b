"""The arithmetic of augkit's transforms, as small pure functions on HxWxC arrays.

Transforms in ``augkit.transforms`` draw their random parameters and forward here, so every
formula can be tested on its own. Inputs are uint8 (0..255) or float32 on the [0, 1] scale;
outputs keep the input's layout (HxWxC, C >= 1) even where OpenCV drops a single channel axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from augkit.errors import AugkitError

BORDERS = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,  # mirror without repeating the edge pixel, like np.pad's "reflect"
    "replicate": cv2.BORDER_REPLICATE,
}


def _keep_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV returns HxW for HxWx1 input; put the channel axis back."""
    return out[..., None] if out.ndim == 2 and like.ndim == 3 else out


def _max_value(img: np.ndarray) -> float:
    return 255.0 if img.dtype == np.uint8 else 1.0


def _lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry uint8 lookup table (the fast path for per-pixel maps on uint8)."""
    return _keep_channels(cv2.LUT(img, table), img)


def pad(
    img: np.ndarray,
    top: int,
    bottom: int,
    left: int,
    right: int,
    border: str = "constant",
    fill: float = 0,
) -> np.ndarray:
    """Pad the borders; ``border`` is one of ``BORDERS``."""
    if not (top or bottom or left or right):
        return img
    # OpenCV cannot reflect across more pixels than the image has; np.pad can, by repeating.
    if border == "reflect" and (max(top, bottom) >= img.shape[0] or max(left, right) >= img.shape[1]):
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (img.ndim - 2)
        return np.pad(img, widths, mode="reflect" if min(img.shape[:2]) > 1 else "edge")
    value = (fill,) * 4
    out = cv2.copyMakeBorder(img, top, bottom, left, right, BORDERS[border], value=value)
    return _keep_channels(out, img)


def crop(img: np.ndarray, y: int, x: int, height: int, width: int) -> np.ndarray:
    """The ``height`` x ``width`` window at row ``y``, column ``x``; a copy, never a view.

    A view would let a caller who writes to the output change their input image.
    """
    return img[y : y + height, x : x + width].copy()


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with area interpolation when shrinking (no aliasing), linear when enlarging."""
    if img.shape[:2] == (height, width):
        return img
    shrinking = height * width < img.shape[0] * img.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return _keep_channels(cv2.resize(img, (width, height), interpolation=interpolation), img)


def rotate(img: np.ndarray, angle: float, border: str = "reflect", fill: float = 0) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the centre, keeping the size."""
    height, width = img.shape[:2]
    center = ((width - 1) / 2, (height - 1) / 2)
    matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
    out = cv2.warpAffine(
        img,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=BORDERS[border],
        borderValue=(fill,) * 4,
    )
    return _keep_channels(out, img)


def adjust_brightness(img: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta`` (a fraction of the full range, -1..1) to every pixel, clipped."""
    if img.dtype == np.uint8:
        table = np.clip(np.arange(256) + delta * 255.0, 0, 255).round().astype(np.uint8)
        return _lut(img, table)
    return np.clip(img + np.float32(delta), 0.0, 1.0, dtype=np.float32)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale the distance of every pixel from the image's mean by ``factor``, clipped.

    The mean is taken over all pixels and channels (torchvision uses the grayscale mean;
    the two agree for gray images and differ by a small colour-dependent shift otherwise).
    """
    mean = float(img.mean())
    if img.dtype == np.uint8:
        table = np.clip((np.arange(256) - mean) * factor + mean, 0, 255).round().astype(np.uint8)
        return _lut(img, table)
    return np.clip((img - np.float32(mean)) * np.float32(factor) + np.float32(mean), 0.0, 1.0, dtype=np.float32)


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
    max_value = _max_value(img)
    shift = (mean_arr * max_value).astype(np.float32)
    inv = (1.0 / (std_arr * max_value)).astype(np.float32)
    return (img.astype(np.float32) - shift) * inv


def subtract_mean(img: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``x / max - mean`` in float32, with a per-channel mean (VGG) or a mean image (AlexNet)."""
    mean_arr = _per_channel(np.asarray(mean, dtype=np.float64), img, "subtract_mean: mean")
    return img.astype(np.float32) * np.float32(1.0 / _max_value(img)) - mean_arr.astype(np.float32)


def scale(img: np.ndarray) -> np.ndarray:
    """Map pixels to float32 on [0, 1]."""
    return img.astype(np.float32) * np.float32(1.0 / _max_value(img))
