"""Deterministic resizing for preprocessing: one target size, four ways to reach it.

- ``exact``: stretch to height x width (the aspect ratio changes);
- ``center-crop``: scale to cover the target, keeping the aspect ratio, then cut the centre
  (torchvision's Resize + CenterCrop, the usual evaluation transform);
- ``pad``: scale to fit inside the target, keeping the aspect ratio, and pad the rest with
  black (letterboxing: nothing is cut, nothing is stretched);
- ``shorter``: scale so the shorter side is the target's height, keeping the aspect ratio;
  sizes then vary from image to image, so this mode needs the folder output format.

Interpolation is OpenCV's area filter when shrinking (no aliasing) and linear when enlarging
(``functional.resize``). ``draft_size`` lets ``read_image`` decode a JPEG that is much larger
than the target at reduced scale first, as Pillow's ``Image.thumbnail`` does: the image is
decoded at no less than twice the size it is resized to, so the area filter still has at least
2 x 2 decoded pixels for each output pixel (the result differs from a full decode by about half
a gray level on average), and decoding takes about 60% (1/2 scale) down to 25% of the time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from augkit import functional as F
from augkit.errors import AugkitError

RESIZE_MODES = ("center-crop", "exact", "pad", "shorter")


def parse_size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"32x24"`` -> (32, 24), as height x width."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not match or int(match.group(1)) == 0 or (match.group(2) is not None and int(match.group(2)) == 0):
        raise AugkitError(f"size {text!r} is not HxW or N with positive integers (for example 32 or 224x160)")
    height = int(match.group(1))
    return height, int(match.group(2)) if match.group(2) else height


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    return F.resize(image, max(1, round(h * factor)), max(1, round(w * factor)))


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


def resize_to(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``image`` resized to ``size`` (height, width) by ``mode`` (one of ``RESIZE_MODES``)."""
    height, width = size
    factor = scale_factors(image.shape[:2], size, mode)[0]
    if mode == "exact":
        return F.resize(image, height, width)
    scaled = _scaled(image, factor)
    sh, sw = scaled.shape[:2]
    if mode == "center-crop":
        return F.crop(scaled, (sh - height) // 2, (sw - width) // 2, height, width)
    if mode == "pad":
        top, left = (height - sh) // 2, (width - sw) // 2
        return F.pad(scaled, top, height - sh - top, left, width - sw - left)
    return scaled  # shorter
