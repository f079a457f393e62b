"""The pixel contract: which arrays augkit takes as images, and what their values mean.

Every step, ``ChannelStats``, ``read_image``, the preview and the training harness ask this
module for the scale of an image; nothing else in augkit guesses it from the dtype.

========  ===========  ==========  ==================================================
dtype     values       full scale  typical source
========  ===========  ==========  ==================================================
uint8     0 .. 255     255         photos, PNG/JPEG/WebP, every packed dataset
uint16    0 .. 65535   65535       16-bit PNG/TIFF: microscopy, medical, satellite
float32   0.0 .. 1.0   1.0         images already scaled (the [0, 1] convention of
                                   torchvision's ``ToTensor`` and albumentations)
========  ===========  ==========  ==================================================

Anything else (float32 outside [0, 1] or with NaN/Inf, float64, float16, int32, int64, bool,
...) is refused with one line naming the dtype, the values seen and the fix ("divide by 255"),
rather than guessed: a float image holding 0..255 read as [0, 1] turns 99% of its pixels white
after one brightness step, and a uint16 image read as uint8 standardises to values 257 times
too large. Statistics (``ChannelStats``) and the normalisation steps work on the [0, 1] scale
(value / full scale), so an 8-bit image and the same image stored in 16 bits (value * 257)
give the same statistics and the same standardised pixels.

Masks are not images: they are label maps (any integer dtype), moved by the same geometry
with nearest-neighbour sampling and never rescaled.
"""

from __future__ import annotations

import numpy as np

from augkit.errors import AugkitError

# dtype -> the value that means "full intensity" (1.0 on the [0, 1] scale).
FULL_SCALE: dict[np.dtype, float] = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.float32): 1.0,
}

CONTRACT = "uint8 (0..255), uint16 (0..65535) or float32 on [0, 1]"

# The largest output side: OpenCV's warpAffine and remap refuse sides of SHRT_MAX and more.
MAX_SIDE = 32767


class PixelError(AugkitError):
    """An array that is not an image under augkit's pixel contract (dtype or value range)."""


def full_scale(image: np.ndarray, what: str = "image") -> float:
    """The value that means full intensity for ``image``'s dtype: 255, 65535 or 1.0.

    Only the dtype is looked at (no pass over the pixels): the steps call this on every
    image; ``check_image`` is the full check, run once where an image enters a pipeline.

    Raises:
        PixelError: a dtype outside the contract, with the fix.
    """
    scale = FULL_SCALE.get(image.dtype)
    if scale is None:
        raise PixelError(_dtype_message(image, what))
    return scale


_ONE_BITS = 0x3F800000  # float32 1.0's bit pattern


def check_image(image: np.ndarray, what: str = "image") -> float:
    """Check that ``image`` holds pixels under the contract; returns its full scale.

    For float32 the values must lie in [0, 1] (NaN and Inf are refused) in one pass: the largest
    bit pattern read as uint32. Every float32 in [+0, 1] has a pattern at most 1.0's
    (0x3F800000), while negative numbers, values above 1, Inf and NaN all have larger ones (the
    sign bit, or an exponent of 1.0's or more), so one ``max`` decides, about 8 us for a
    224 x 224 x 3 image in cache (numpy's ``min`` and ``max`` take twice that). Only an image
    that fails it is looked at again, in floats (-0.0 passes there). Integer images need no pass.

    Raises:
        PixelError: the dtype or the value range is outside the contract; the message names
            the dtype, the range seen and how to convert.
    """
    scale = full_scale(image, what)
    if scale == 1.0 and image.size and int(image.view(np.uint32).max()) > _ONE_BITS:
        low, high = float(image.min()), float(image.max())
        if not (0.0 <= low and high <= 1.0):  # False for NaN too
            raise PixelError(
                f"{what}: float32 values must lie in [0, 1], got {_range_text(image, low, high)}; "
                f"{_float_fix(low, high)}"
            )
    return scale


def to_unit_scale(image: np.ndarray) -> np.ndarray:
    """``image`` as float32 on [0, 1] (value / full scale); float32 input is returned as is."""
    scale = full_scale(image)
    if scale == 1.0:
        return image
    return image.astype(np.float32) * np.float32(1.0 / scale)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as uint8 on 0..255, rounded: uint8 as is, uint16 as round(x * 255 / 65535),
    float32 (on [0, 1]) as round(x * 255). The conversion for display and 8-bit files.

    Raises:
        PixelError: a dtype outside the contract.
    """
    scale = full_scale(image)
    if scale == 255.0:
        return image
    if scale == 65535.0:
        # round(x * 255 / 65535) == round(x / 257), exactly, in integers: 65535 -> 255.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return np.rint(image * 255).astype(np.uint8)


def _range_text(image: np.ndarray, low: float, high: float) -> str:
    if np.isnan(low) or np.isnan(high):
        return f"NaN in {int(np.isnan(image).sum()):,} value(s)"
    return f"values from {low:.9g} to {high:.9g}"  # 9 digits: float32's 1.0000001 is not "1"


def _float_fix(low: float, high: float) -> str:
    """How to bring float values seen in [low, high] under the contract."""
    if np.isnan(low) or np.isnan(high) or np.isinf(low) or np.isinf(high):
        return "replace NaN/Inf first (np.nan_to_num), then scale to [0, 1]"
    if low >= 0 and high <= 255:
        return "if they are 8-bit intensities, divide by 255 (image / 255), or pass uint8 (image.astype(np.uint8))"
    if low >= 0 and high <= 65535:
        return "if they are 16-bit intensities, divide by 65535 (image / 65535), or pass uint16"
    return "rescale them to [0, 1] (for example (image - min) / (max - min)) or pass uint8/uint16 pixels"


def _dtype_message(image: np.ndarray, what: str) -> str:
    dtype = image.dtype
    if dtype == np.bool_:
        fix = "for a binary image pass image.astype(np.uint8) * 255; for a mask pass it as mask=, not as the image"
    elif dtype.kind == "f":
        fix = "convert with image.astype(np.float32) (values on [0, 1])"
    elif dtype.kind in "iu":
        if image.size:
            low, high = int(image.min()), int(image.max())
            seen = f" (values from {low} to {high})"
            fix = (
                "convert with image.astype(np.uint8)" if 0 <= low and high <= 255
                else "convert with image.astype(np.uint16)" if 0 <= low and high <= 65535
                else "rescale to 0..65535 and convert to uint16, or to float32 on [0, 1]"
            )  # fmt: skip
            return f"{what}: {dtype} pixels{seen} are not supported; augkit images are {CONTRACT}: {fix}"
        fix = "convert to uint8 or uint16"
    else:
        fix = "pass a numeric image"
    return f"{what}: {dtype} pixels are not supported; augkit images are {CONTRACT}: {fix}"
