"""Image files out: ``encode_image`` (to bytes) and ``write_image`` (to a file, atomically).

uint8 RGB (H x W x 3) or gray (H x W x 1, H x W) images are encoded by OpenCV in the format of
a file extension (``WRITE_EXTENSIONS``) and written atomically: a reader never sees a
half-written file. Reading is ``augkit.io.images``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from augkit.errors import AugkitError
from augkit.files import atomic_write
from augkit.io.images import cv2_reason

# extension -> the encoder parameter that takes ``quality`` (None: the format has no quality).
_WRITERS: dict[str, int | None] = {
    ".png": None,
    ".jpg": cv2.IMWRITE_JPEG_QUALITY,
    ".jpeg": cv2.IMWRITE_JPEG_QUALITY,
    ".webp": cv2.IMWRITE_WEBP_QUALITY,
    ".bmp": None,
    ".tif": None,
    ".tiff": None,
}
WRITE_EXTENSIONS = tuple(_WRITERS)


def encode_image(image: np.ndarray, ext: str, quality: int = 95) -> bytes:
    """Encode a uint8 RGB or gray image (H x W x 3, H x W x 1 or H x W) in the format of ``ext``.

    Args:
        ext: ".png" (lossless), ".jpg"/".jpeg", ".webp", ".bmp", ".tif"/".tiff"; dot optional.
        quality: 1-100, for JPEG and WebP; ignored by the other formats.
    """
    ext = ext.lower() if ext.startswith(".") else f".{ext.lower()}"
    if ext not in _WRITERS:
        raise AugkitError(
            f"cannot write {ext!r} images; use one of: {', '.join(WRITE_EXTENSIONS)}"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise AugkitError(f"quality must be an integer from 1 to 100, got {quality!r}")
    image = np.asarray(image)
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if image.dtype != np.uint8 or channels not in (1, 3):
        raise AugkitError(
            f"write_image takes uint8 RGB (H x W x 3) or gray (H x W x 1) images, "
            f"got {image.dtype} with shape {image.shape}"
        )
    # OpenCV encoders expect BGR channel order.
    pixels = image
    if channels == 3:
        pixels = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    param = _WRITERS[ext]
    try:
        ok, buf = cv2.imencode(ext, pixels, [] if param is None else [param, quality])
    except cv2.error as e:
        raise AugkitError(f"cannot encode {ext} image: {cv2_reason(e)}") from None
    if not ok:
        raise AugkitError(f"cannot encode {ext} image of shape {image.shape}")
    return buf.tobytes()


def write_image(path: str | Path, image: np.ndarray, *, quality: int = 95) -> Path:
    """Write a uint8 RGB or gray image to ``path``, encoded by its extension, atomically.

    A reader never sees a half-written file: the bytes go to a temporary file in the same folder
    that is then renamed over ``path``. The folder must exist.
    """
    path = Path(path)
    return atomic_write(path, encode_image(image, path.suffix, quality))
