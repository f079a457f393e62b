"""The statistics file: what ``ChannelStats.load`` and ``from_dict`` accept, checked value by value.

A statistics file is JSON (``FORMAT``) with the pixel count, the image count, and per channel
the mean, the sum of squared deviations ``m2`` and the std derived from them, on the [0, 1]
pixel scale; and, when there are, the names of its mean image and its std image (per pixel,
``augkit stats --per-pixel``), ``.npy`` files beside it. Nothing in it is trusted: every value
is checked before it is used (a file on the 0..255 scale, or a hand-edited std, is refused, not
used), and each image's .npy header is checked against the statistics before any of its data is
read or allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augkit.documents import DocumentError, open_regular, short_repr
from augkit.errors import AugkitError
from augkit.files import read_npy_header
from augkit.io.images import DEFAULT_MAX_PIXELS

FORMAT = "augkit.stats/1"

_INT64_MAX = 2**63 - 1

# A mean image is the mean of images augkit read, so it is no larger than they may be: RGBA at
# the pixel limit. Its .npy header is checked against this and against the statistics before
# any of it is allocated (a 100-byte header may claim 100000 x 100000 x 3, 224 GiB).
_MAX_MEAN_IMAGE_VALUES = 4 * DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Fields:
    """The values of a statistics dict, checked: what ``ChannelStats.from_dict`` builds on."""

    count: int  # pixels per channel
    images: int
    channels: int | None  # None only for the statistics of no pixels
    mean: list[float]  # per channel, [0, 1] scale
    m2: list[float]  # per channel, sum of squared deviations from the mean


def check_fields(data: Any) -> Fields:
    """The values of ``data``, a dict made by ``ChannelStats.to_dict``, each checked.

    Every value must be one that ``to_dict`` can write: counts that fit int64, with at least
    one pixel per image; finite means on [0, 1] and variances of at most 1/4 (the largest a
    value on [0, 1] can have), so a file on another scale (0..255) is refused, not used.

    Raises:
        AugkitError: a missing or invalid value; the message names the key.
    """
    if not isinstance(data, dict):
        raise AugkitError(f"expected a JSON object, got {type(data).__name__}")
    found = data.get("format")
    if found != FORMAT:
        raise AugkitError(
            f"format is {found!r}, expected {FORMAT!r}; write the file with "
            f"ChannelStats.save or `augkit stats -o FILE`"
        )
    count = _get_int(data, "count", minimum=0)
    images = _get_int(data, "images", minimum=0)
    channels = None if data.get("channels") is None else _get_int(data, "channels", minimum=1)
    if (count == 0) != (images == 0):
        raise AugkitError(
            f"'count' ({count}) and 'images' ({images}) must both be 0 or both be positive"
        )
    if count < images:
        raise AugkitError(f"'count' ({count}) counts pixels and cannot be less than 'images' ({images})")
    if count and channels is None:
        raise AugkitError("'channels' is missing")
    width = channels or 0
    mean = _get_floats(data, "mean", width)
    m2 = _get_floats(data, "m2", width)
    std = _get_floats(data, "std", width)
    if (m2 < 0).any():
        raise AugkitError(f"'m2' must not be negative, got {short_repr(m2.tolist())}")
    # Pixels on [0, 1] have their mean there and a variance of at most 1/4 (half at 0, half at 1).
    slack = 1e-9
    if ((mean < -slack) | (mean > 1 + slack)).any() or (count and (m2 / count > 0.25 + slack).any()):
        raise AugkitError(
            f"'mean' {short_repr(mean.tolist())} and 'std' {short_repr(std.tolist())} are not on the [0, 1] "
            f"pixel scale (mean in [0, 1], std at most 0.5); recompute them with `augkit stats`"
        )
    # std is derived from m2 and count; a hand-edited std would otherwise be silently ignored.
    expected = np.sqrt(m2 / count) if count else m2
    if not np.allclose(std, expected, rtol=1e-9, atol=1e-12):
        raise AugkitError(
            f"'std' {short_repr(std.tolist())} does not match sqrt(m2 / count) = {short_repr(expected.tolist())}; "
            f"std is derived from m2: edit neither by hand, recompute the statistics"
        )
    return Fields(count, images, channels, mean.tolist(), m2.tolist())


def _get_int(data: dict[str, Any], key: str, *, minimum: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _INT64_MAX:
        raise AugkitError(f"'{key}' must be an integer in [{minimum}, 2**63 - 1], got {short_repr(value)}")
    return value


def _get_floats(data: dict[str, Any], key: str, length: int) -> np.ndarray:
    value = data.get(key)
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise AugkitError(f"'{key}' must be a list of {length} finite numbers, got {short_repr(value)}")
    return np.array(value, dtype=np.float64)


def read_mean_image(
    path: Path, name: Any, *, count: int, images: int, channels: int | None, key: str = "mean_image"
) -> np.ndarray:
    """The mean image (or, with ``key="std_image"``, the std image) named ``name`` beside the
    statistics file ``path``, float H x W x C.

    The .npy header must describe what the statistics (``count`` pixels per channel over
    ``images`` images) imply: a float array H x W x ``channels`` with H * W = count / images,
    within ``_MAX_MEAN_IMAGE_VALUES``; and the file must hold exactly the bytes it announces.
    Only then is the data read.

    Raises:
        AugkitError: a name that is not a file beside ``path``, a missing or unreadable file,
            or one whose header or size does not fit the statistics.
    """
    what = key.replace("_", " ")  # "mean image", "std image"
    # Only a plain file name beside the JSON: a statistics file must not point anywhere else.
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise AugkitError(f"'{key}' must be the name of a file beside it, got {short_repr(name)}")
    sidecar = path.with_name(name)
    pixels, leftover = divmod(count, images)
    if leftover:
        raise AugkitError(
            f"names a {what}, but 'count' ({count}) is not a multiple of 'images' "
            f"({images}): the images were not all one size, so they have no {what}"
        )
    try:
        with open_regular(sidecar, what) as f:
            shape, dtype, fortran, available = read_npy_header(f)
            _check_mean_image_header(name, shape, dtype, pixels, channels, what)
            nbytes = math.prod(shape) * dtype.itemsize
            if available != nbytes:
                state = "is truncated" if available < nbytes else "has bytes after its data"
                raise AugkitError(
                    f"its {what} {name} {state}: its header announces {nbytes:,} bytes of data, "
                    f"the file holds {available:,}; write the statistics again"
                )
            data = f.read(nbytes)
    except FileNotFoundError:
        raise AugkitError(f"its {what} {name} is missing (expected at {sidecar})") from None
    except DocumentError as e:
        raise AugkitError(str(e)) from None
    except (OSError, ValueError, EOFError, SyntaxError) as e:
        raise AugkitError(f"its {what} {name} is not a readable .npy file ({_reason(e)})") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_mean_image_header(
    name: str, shape: tuple[int, ...], dtype: np.dtype, pixels: int, channels: int | None, what: str = "mean image"
) -> None:
    """The header of a mean (or std) image's .npy file against the image the statistics imply."""
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8) or dtype.shape != ():
        raise AugkitError(
            f"its {what} {name} holds {dtype} values; a {what} is float16, float32 or float64"
        )
    if len(shape) != 3 or shape[2] != channels or shape[0] * shape[1] != pixels:
        raise AugkitError(
            f"its {what} {name} is {' x '.join(map(str, shape)) or 'a scalar'}; these statistics need "
            f"shape H x W x {channels} with H x W = {pixels:,} (count / images): the two do not belong together"
        )
    if math.prod(shape) > _MAX_MEAN_IMAGE_VALUES:
        raise AugkitError(
            f"its {what} {name} is {' x '.join(map(str, shape))}: {math.prod(shape):,} values, more than "
            f"{_MAX_MEAN_IMAGE_VALUES:,} (an RGBA image at augkit's pixel limit of {DEFAULT_MAX_PIXELS:,})"
        )


def checked_mean_image(image: np.ndarray, channels: int | None, count: int, images: int) -> np.ndarray:
    """``image`` as the float64 mean image of these statistics, on the [0, 1] scale.

    Raises:
        AugkitError: not a finite float H x W x ``channels`` array on [0, 1] with
            H * W = count / images.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != channels or image.dtype.kind != "f":
        raise AugkitError(
            f"the mean image must be a float array of shape H x W x {channels}, "
            f"got {image.dtype} {image.shape}"
        )
    if count == 0:
        raise AugkitError("statistics of no images cannot have a mean image")
    if image.shape[0] * image.shape[1] * images != count:
        raise AugkitError(
            f"the mean image is {shape_text(image)}, but 'count' / 'images' = {count / images:g} "
            f"pixels per image: the mean image belongs to other statistics"
        )
    if not np.isfinite(image).all():
        raise AugkitError("the mean image holds NaN or infinite values")
    if image.min() < 0 or image.max() > 1:
        raise AugkitError(
            f"the mean image holds values from {image.min():g} to {image.max():g}; "
            f"statistics are on the [0, 1] pixel scale"
        )
    return image.astype(np.float64)


def checked_std_image(image: np.ndarray, mean_image: np.ndarray | None) -> np.ndarray:
    """``image`` as the float64 per-pixel std image (population std, ddof=0) of statistics whose
    mean image is ``mean_image``, on the [0, 1] scale.

    Raises:
        AugkitError: no mean image beside it, or not a finite float array of the mean image's
            shape with values in [0, 0.5] (the largest std a value on [0, 1] can have).
    """
    if mean_image is None:
        raise AugkitError("a std image needs the mean image it was measured around (compute both with --per-pixel)")
    image = np.asarray(image)
    if image.shape != mean_image.shape or image.dtype.kind != "f":
        raise AugkitError(
            f"the std image must be a float array of the mean image's shape {shape_text(mean_image)}, "
            f"got {image.dtype} {image.shape}"
        )
    if not np.isfinite(image).all():
        raise AugkitError("the std image holds NaN or infinite values")
    if image.min() < 0 or image.max() > 0.5 + 1e-9:
        raise AugkitError(
            f"the std image holds values from {image.min():g} to {image.max():g}; a std on the "
            f"[0, 1] pixel scale lies in [0, 0.5]: recompute the statistics with `augkit stats --per-pixel`"
        )
    return image.astype(np.float64)


def shape_text(image: np.ndarray) -> str:
    """An array's shape as "H x W x C"."""
    return " x ".join(str(d) for d in image.shape)


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__

