"""Image files in and out: one reader for every command, one writer.

Everything augkit reads comes through ``read_image``: the file's bytes are read with Python (so
non-ASCII paths work on every platform) and decoded by ``cv2.imdecode``. Whatever the file holds
(gray, gray+alpha, RGB, RGBA, 16-bit, palette, float) comes back as uint8 RGB, height x width x 3,
or height x width x 1 with ``gray=True``. A file that cannot be read raises ``ImageReadError``
with the path and a short reason; callers decide whether to skip and report, or stop.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from augkit.errors import AugkitError, ImageReadError
from augkit.files import atomic_write

# PIL's Image.MAX_IMAGE_PIXELS (about 9459 x 9459), so what PIL opens without a warning opens here.
DEFAULT_MAX_PIXELS = 89_478_485

# What augkit treats as an image when it scans a folder. GIF is included because the OpenCV
# wheels augkit depends on (5.x) decode it (first frame); EXR is left out: the wheels ship
# without it.
IMAGE_EXTENSIONS = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp",
        ".ppm", ".pgm", ".pbm", ".pnm", ".gif",
    }
)  # fmt: skip

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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# A JPEG marker: FF followed by a code that is not stuffing (00), a restart (D0-D7, no length,
# may sit inside entropy-coded data) or fill (FF). Searching for the next one from the end of a
# segment also steps over entropy-coded data, where an FF is always stuffed or a restart.
_JPEG_MARKER = re.compile(rb"\xff[\x01\xc0-\xcf\xd8-\xfe]")
# Start-of-frame markers carry the image size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def is_image_file(path: str | Path) -> bool:
    """Whether augkit treats ``path`` as an image, by its extension (case-insensitive)."""
    # os.path rather than Path: this runs once per file when scanning datasets of millions.
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


# JPEG reduced-scale decoding (libjpeg's DCT scaling), largest reduction first.
_JPEG_DRAFT_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))

# A function of an image's full (height, width) giving the smallest (height, width) its caller
# needs: what ``read_image(draft=...)`` takes.
DraftSize = Callable[[int, int], tuple[int, int]]


def read_image(
    path: str | Path,
    *,
    gray: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: DraftSize | None = None,
) -> np.ndarray:
    """Read an image file as uint8 RGB (height x width x 3), or gray (height x width x 1).

    Args:
        path: the image file. Its format is found from its content, not its name.
        gray: return one channel (ITU-R 601 luma, the weights of PIL's ``convert("L")``).
        max_pixels: refuse images with more pixels than this (decompression bombs); for PNG and
            JPEG the size is read from the header, before anything is decoded. None: no limit.
        draft: for callers that shrink the image next (Pillow's ``Image.draft``): a function of
            the full (height, width) that gives the smallest (height, width) the caller needs.
            A JPEG is then decoded at 1/2, 1/4 or 1/8 scale, the smallest still at least that
            large (libjpeg scales in the DCT domain: a 1/2-scale decode takes about 60% of a full
            one). Other formats, and JPEGs too small to reduce, are decoded in full.

    Raises:
        ImageReadError: the file is missing, unreadable, not an image, truncated, too large,
            or of a kind augkit does not convert (its reason says which).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory") from None
    except PermissionError:
        # Windows reports opening a folder as a permission error.
        reason = "is a directory" if Path(path).is_dir() else "permission denied"
        raise ImageReadError(path, reason) from None
    except OSError as e:
        raise ImageReadError(path, (e.strerror or str(e)).lower()) from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")

    # PNG and JPEG are checked before decoding: their size is known from the header, and
    # truncation is caught here rather than left to the decoder (libjpeg fills a cut-off JPEG
    # with gray and calls it a warning; OpenCV 5 refuses it, but without saying why, and
    # older builds hand the gray image on, which must never reach training).
    if data.startswith(_PNG_SIGNATURE):
        size, complete = _png_header(data)
        kind, end = "PNG", "its IEND chunk"
    elif data.startswith(_JPEG_SOI):
        size, complete = _jpeg_header(data)
        kind, end = "JPEG", "its end-of-image marker FFD9"
    else:
        size, complete, kind = None, True, None
    if size is not None:
        _check_pixels(path, *size, max_pixels)
    if not complete:
        raise ImageReadError(path, f"truncated ({kind} ends before {end})")

    flags = cv2.IMREAD_UNCHANGED
    if draft is not None and kind == "JPEG" and size is not None:
        flags = _jpeg_draft_flags(*size, draft)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        # OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS) and other assertions land here.
        raise ImageReadError(path, f"cannot decode ({_cv2_reason(e)})") from None
    if image is None:
        if kind is None:
            raise ImageReadError(path, "not an image (unrecognised format)")
        raise ImageReadError(path, f"corrupt {kind} (decoder failed)")
    _check_pixels(path, image.shape[1], image.shape[0], max_pixels)
    return _to_rgb_or_gray(path, image, gray)


def convert_channels(image: np.ndarray, *, gray: bool) -> np.ndarray:
    """uint8 RGB (H x W x 3) or gray (H x W, H x W x 1) -> RGB H x W x 3, or H x W x 1 if ``gray``.

    For images that did not come from a file (CIFAR rows, digits), so that every source gives
    the same two shapes ``read_image`` gives.
    """
    if image.ndim == 3 and image.shape[2] == 3:
        if not gray:
            return np.ascontiguousarray(image)
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[..., None]
    plane = image if image.ndim == 2 else image[..., 0]
    plane = np.ascontiguousarray(plane)
    return plane[..., None] if gray else cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB)


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
        raise AugkitError(f"cannot encode {ext} image: {_cv2_reason(e)}") from None
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


def _jpeg_draft_flags(width: int, height: int, draft: DraftSize) -> int:
    """imdecode flags for the smallest reduced JPEG decode that ``draft`` accepts."""
    need_h, need_w = draft(height, width)
    for scale, flag in _JPEG_DRAFT_FLAGS:
        # libjpeg rounds a scaled side up; EXIF orientation stays ignored, as with UNCHANGED.
        if -(-height // scale) >= need_h and -(-width // scale) >= need_w:
            return flag | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.IMREAD_UNCHANGED


def _check_pixels(path: str | Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"too many pixels: {width} x {height} = {width * height:,} > limit {max_pixels:,} "
            f"(raise max_pixels if you trust this file)",
        )


def _png_header(data: bytes) -> tuple[tuple[int, int] | None, bool]:
    """(width, height) from IHDR, and whether the chunks run intact up to IEND."""
    size = None
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length  # length, type, data, CRC
        if end > len(data):
            break
        if kind == b"IHDR" and length >= 8:
            size = struct.unpack_from(">II", data, pos + 8)
        elif kind == b"IEND":
            return size, True
        pos = end
    return size, False


def _jpeg_header(data: bytes) -> tuple[tuple[int, int] | None, bool]:
    """(width, height) from the SOFn segment, and whether the markers run intact up to EOI.

    Walks segment by segment (skipping each by its length, so an EXIF thumbnail's own markers
    are never mistaken for the image's), so data after EOI (phones append videos to "motion
    photos") is accepted and a file cut anywhere before EOI is not.
    """
    size = None
    pos = len(_JPEG_SOI)
    while match := _JPEG_MARKER.search(data, pos):
        marker, pos = data[match.start() + 1], match.end()
        if marker == 0xD9:
            return size, True
        if marker in (0x01, 0xD8):  # standalone markers, no length
            continue
        if pos + 2 > len(data):
            break
        end = pos + struct.unpack_from(">H", data, pos)[0]
        if end > len(data):
            break
        if marker in _JPEG_SOF and end - pos >= 7:
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if height:  # 0 means "set later by a DNL marker": checked after decoding instead
                size = (width, height)
        pos = end
    return size, False


def _to_rgb_or_gray(path: str | Path, image: np.ndarray, gray: bool) -> np.ndarray:
    """Decoded OpenCV image (BGR order, any depth) -> uint8 RGB H x W x 3 or gray H x W x 1."""
    if image.dtype == np.uint16:
        # round(x * 255 / 65535) == round(x / 257), exactly, in integers: 65535 -> 255.
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        # Float images (TIFF) hold intensities in [0, 1] by convention.
        image = np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported image (dtype {image.dtype})")

    channels = 1 if image.ndim == 2 else image.shape[2]
    # Alpha is dropped, not composited onto a background: the same as PIL's convert("RGB"),
    # which torchvision's loader uses, so augkit's pixels match what a torchvision user trains on.
    if channels in (1, 2):  # gray, gray + alpha
        return convert_channels(image if channels == 1 else image[..., 0], gray=gray)
    if channels == 3:
        code = cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB
    elif channels == 4:
        code = cv2.COLOR_BGRA2GRAY if gray else cv2.COLOR_BGRA2RGB
    else:
        raise ImageReadError(path, f"unsupported image ({channels} channels)")
    out = cv2.cvtColor(image, code)
    return out[..., None] if gray else out


def _cv2_reason(error: cv2.error) -> str:
    """What a cv2.error says went wrong, without OpenCV's source file and line."""
    return getattr(error, "err", None) or str(error).strip()
