"""Deterministic resizing for preprocessing: one target size, four ways to reach it.

- ``exact``: stretch to height x width (the aspect ratio changes);
- ``center-crop``: scale to cover the target, keeping the aspect ratio, then cut the centre
  (torchvision's Resize + CenterCrop, the usual evaluation transform);
- ``pad``: scale to fit inside the target, keeping the aspect ratio, and pad the rest with
  black (letterboxing: nothing is cut, nothing is stretched);
- ``shorter``: scale so the shorter side is the target's height, keeping the aspect ratio;
  sizes then vary from image to image, so this mode needs the folder output format.

Interpolation is OpenCV's area filter when shrinking (no aliasing) and linear when enlarging
(``functional.resize``).
"""

from __future__ import annotations

import re

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


def resize_to(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``image`` resized to ``size`` (height, width) by ``mode`` (one of ``RESIZE_MODES``)."""
    height, width = size
    h, w = image.shape[:2]
    if mode == "exact":
        return F.resize(image, height, width)
    if mode == "shorter":
        return _scaled(image, height / min(h, w))
    if mode == "center-crop":
        scaled = _scaled(image, max(height / h, width / w))
        sh, sw = scaled.shape[:2]
        return F.crop(scaled, (sh - height) // 2, (sw - width) // 2, height, width)
    if mode == "pad":
        scaled = _scaled(image, min(height / h, width / w))
        sh, sw = scaled.shape[:2]
        top, left = (height - sh) // 2, (width - sw) // 2
        return F.pad(scaled, top, height - sh - top, left, width - sw - left)
    raise AugkitError(f"unknown resize mode {mode!r}; choose one of: {', '.join(RESIZE_MODES)}")
