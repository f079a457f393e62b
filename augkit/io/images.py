"""Image files in: one reader for every command (the one writer is ``augkit.io.writer``).

Everything augkit reads comes through ``read_image``, in four steps; each can refuse the file
with ``ImageReadError`` (the path and a one-line reason), which callers skip and report, or stop on:

1. **The file.** ``os.stat`` comes first: what is not a regular file (a directory, a FIFO, a
   device, a socket; a dangling or looping symbolic link) is refused without being opened, so a
   FIFO named ``x.png`` never blocks a run and ``/dev/zero`` is never read. A file of more than
   ``max_bytes`` is refused before it is read; by default the cap follows the pixel limit:
   ``16 * max_pixels + 16 MiB`` (an uncompressed float32 RGBA image at the limit, the widest
   pixel augkit reads, plus room for metadata), 1.45 GB at the default limit. Python reads the
   bytes, so non-ASCII paths work on every platform.
2. **The header.** Pillow reads the format, the size and the EXIF orientation from the header,
   decoding no pixel, for every format augkit reads: PNG, JPEG, WebP, GIF, BMP, TIFF and PNM
   (those of ``IMAGE_EXTENSIONS``); anything else is "not an image", and a header Pillow cannot
   read (damaged, or a layout it does not know, such as 64-bit float TIFF) is "unreadable". An
   image of more than ``max_pixels`` pixels (default 89,478,485 = 9459 x 9459, Pillow's
   ``MAX_IMAGE_PIXELS``) is refused there: a 32-byte lossless WebP of 16383 x 16383 is refused
   in a millisecond instead of decoded in 8-11 s and 2.1 GB. ``max_pixels`` may be raised (or
   None) without touching Pillow's global setting: augkit calls each format's reader as
   ``Image.open`` does, less the check of ``PIL.Image.MAX_IMAGE_PIXELS`` that ``Image.open``
   adds. One reader checks it by itself: Pillow's WebP reader refuses more than 2 x
   ``PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970) before it allocates its canvas; raise that too
   to read larger WebP files.
3. **The pixels.** ``cv2.imdecode`` decodes them (it keeps 16-bit colour, which Pillow cuts to
   8 bits). A file it cannot decode is reported as truncated where its end is missing (OpenCV 5
   refuses truncated files of every format, without saying why), else as corrupt.
4. **As shown, under the pixel contract** (``augkit.pixels``):

   - the EXIF orientation (1-8) is applied as ``PIL.ImageOps.exif_transpose`` applies it, so a
     phone photo reads upright (``exif_orientation=False``: the pixels as stored). JPEG, PNG
     (an eXIf chunk before the pixel data), WebP and TIFF carry it;
   - alpha is composited onto ``background`` (white unless given): round(a * colour +
     (1 - a) * background), exact in integers at the file's depth (8 or 16 bits), so an icon
     drawn in black on transparent black reads as black on white instead of all black. Alpha
     that OpenCV's decoders drop (BMP, a gray PNG's transparent colour key, gray TIFF) stays
     dropped;
   - 16-bit files are rounded to 8 bits (x / 257); float files (TIFF, PFM) must hold values on
     [0, 1] and are scaled by 255; any other float (0..1000, NaN) is refused, never clipped.
     ``keep_depth=True`` returns uint16 and float32 pixels as they are.

The result is uint8 RGB, height x width x 3, or height x width x 1 with ``gray=True``.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import ExifTags, Image

# Importing a format's plugin registers its reader in Image.OPEN: these are the formats augkit reads.
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, PpmImagePlugin  # noqa: F401
from PIL import TiffImagePlugin, WebPImagePlugin  # noqa: F401

from augkit.errors import PROCESS_ERRORS, AugkitError, ImageReadError
from augkit.files import NotRegularFileError, open_regular
from augkit.pixels import PixelError, check_image, full_scale, to_uint8

# PIL's Image.MAX_IMAGE_PIXELS (about 9459 x 9459), so what PIL opens without a warning opens here.
DEFAULT_MAX_PIXELS = 89_478_485

# The byte cap derived from a pixel limit: the widest pixel augkit reads uncompressed (float32
# RGBA TIFF), and room for what a file holds beside its pixels (EXIF, ICC profiles, the video a
# phone appends to a "motion photo").
_BYTES_PER_PIXEL = 16
_METADATA_BYTES = 16 << 20

# What augkit treats as an image when it scans a folder. GIF is included because the OpenCV
# wheels augkit depends on (5.x) decode it (first frame); EXR is left out: the wheels ship
# without it.
IMAGE_EXTENSIONS = frozenset(
    {
        ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp",
        ".ppm", ".pgm", ".pbm", ".pnm", ".gif",
    }
)  # fmt: skip

# Pillow's names of the formats read, in the order their signatures are tried (PPM covers PBM,
# PGM, PNM and PFM), and how many first bytes its ``accept`` tests look at (as Image.open).
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
_PREFIX_BYTES = 16

WHITE = (255, 255, 255)
_NAMED_COLORS = {"white": WHITE, "black": (0, 0, 0)}

# EXIF orientation -> (transpose, flip rows, flip columns), in that order: the transposition
# PIL.ImageOps.exif_transpose makes for each value (6: rotate 90 degrees clockwise, ...).
_ORIENTATIONS = {
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}
_INVERSE = {6: 8, 8: 6}  # every other orientation undoes itself


def is_image_file(path: str | Path) -> bool:
    """Whether augkit treats ``path`` as an image, by its extension (case-insensitive)."""
    # os.path rather than Path: this runs once per file when scanning datasets of millions.
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def default_max_bytes(max_pixels: int | None) -> int | None:
    """The byte cap ``read_image`` derives from ``max_pixels``: ``16 * max_pixels + 16 MiB``.

    That is an uncompressed float32 RGBA image at the pixel limit plus room for metadata, so
    no file within the pixel limit is refused for its size. None (no pixel limit): no cap.
    """
    return None if max_pixels is None else _BYTES_PER_PIXEL * max_pixels + _METADATA_BYTES


def background_color(value: str | Sequence[int]) -> tuple[int, int, int]:
    """A background colour as (R, G, B) on 0..255, from "white", "black", "R,G,B" or a sequence.

    Raises:
        AugkitError: anything else, with the forms accepted.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NAMED_COLORS:
            return _NAMED_COLORS[text]
        parts: Sequence[object] = [p.strip() for p in text.split(",")]
        parts = [int(p) if p.isdigit() else p for p in parts]
    else:
        parts = list(value) if isinstance(value, Sequence) else []
    if len(parts) == 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in parts
    ):
        return (int(parts[0]), int(parts[1]), int(parts[2]))
    raise AugkitError(
        f"background must be white, black or R,G,B with integers from 0 to 255 (for example 128,128,128), "
        f"got {value!r}"
    )


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
    max_bytes: int | None | Literal["auto"] = "auto",
    draft: DraftSize | None = None,
    exif_orientation: bool = True,
    background: str | Sequence[int] = WHITE,
    keep_depth: bool = False,
) -> np.ndarray:
    """Read an image file as it is shown: uint8 RGB (height x width x 3), or gray (height x width x 1).

    Args:
        path: the image file (symbolic links are followed). Its format is found from its
            content, not its name.
        gray: return one channel (ITU-R 601 luma, the weights of PIL's ``convert("L")``).
        max_pixels: refuse images of more pixels than this (decompression bombs), from the
            header, before anything is decoded. None: no limit.
        max_bytes: refuse files of more bytes than this, before reading them. "auto":
            ``default_max_bytes(max_pixels)`` (16 bytes per pixel of the limit plus 16 MiB).
            None: no cap.
        draft: for callers that shrink the image next (Pillow's ``Image.draft``): a function of
            the full (height, width), as shown, that gives the smallest (height, width) the
            caller needs. A JPEG is then decoded at 1/2, 1/4 or 1/8 scale, the smallest still at
            least that large (libjpeg scales in the DCT domain: a 1/2-scale decode takes about
            60% of a full one). Other formats, and JPEGs too small to reduce, are decoded in full.
        exif_orientation: apply the EXIF orientation, as a viewer shows the image; False: the
            pixels as stored.
        background: the colour alpha is composited onto: (R, G, B) on 0..255, "white" or "black".
        keep_depth: return 16-bit files as uint16 (0..65535) and float files as float32 (0..1),
            under ``augkit.pixels``' contract, instead of converting them to uint8.

    Raises:
        ImageReadError: the file is missing, not a regular file, too large, unreadable, not an
            image, truncated, corrupt, of too many pixels, or holds pixels outside the contract
            (its reason says which).
        AugkitError: ``background`` is not a colour.
        OSError: a failure of this process rather than of the file (``augkit.errors.PROCESS_ERRORS``:
            out of file descriptors or memory), which must not mark the file as unreadable.
    """
    if type(background) is not tuple or background != WHITE:  # the default needs no check: microseconds a read
        background = background_color(background)
    data = _read_file(path, default_max_bytes(max_pixels) if max_bytes == "auto" else max_bytes)
    kind, header = _open_header(path, data, max_pixels)
    width, height = header.size
    _check_pixels(path, width, height, max_pixels)
    orientation = _orientation(header)
    if kind == "TIFF":
        # Orientation is a TIFF tag, not only EXIF: OpenCV applies it while decoding, so it is
        # undone for the stored pixels rather than done.
        orientation = 1 if exif_orientation else _INVERSE.get(orientation, orientation)
    elif not exif_orientation:
        orientation = 1

    flags = cv2.IMREAD_UNCHANGED  # every channel (alpha too) at its depth; orientation as stored
    if draft is not None and kind == "JPEG":
        flags = _jpeg_draft_flags(width, height, orientation in (5, 6, 7, 8), draft)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        # OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS) and other assertions land here.
        raise ImageReadError(path, f"cannot decode ({cv2_reason(e)})") from None
    if image is None:
        raise ImageReadError(path, _truncated(kind, data) or f"corrupt {kind} (the decoder failed)")
    _check_pixels(path, image.shape[1], image.shape[0], max_pixels)

    if kind == "PPM":
        image = _full_range(image, header)
    image = _under_contract(path, image)
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = _composite(image, background, premultiplied=_premultiplied(kind, header, image.dtype))
    if not keep_depth:
        image = to_uint8(image)
    return _reorient(_to_rgb_or_gray(path, image, gray), orientation)


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


def _read_file(path: str | Path, max_bytes: int | None) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed), refused past ``max_bytes``."""
    try:
        with open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise ImageReadError(path, "empty file (0 bytes)")
            if max_bytes is not None and size > max_bytes:
                raise ImageReadError(
                    path,
                    f"file too large: {size:,} bytes > limit {max_bytes:,} "
                    f"(raise max_bytes, or max_pixels which it follows, if you trust this file)",
                )
            # Its signature first: a file that no reader accepts is refused before the rest of it
            # is read (a 1 GB file named .jpg is not read to find out it is no image).
            prefix = file.read(_PREFIX_BYTES)
            if not any(accept(prefix) for _, accept in (Image.OPEN[kind] for kind in _FORMATS)):
                raise ImageReadError(path, "not an image (unrecognised format)")
            # The size just checked, not to the end: a file that grows is never read past the cap.
            return prefix + file.read(size - len(prefix))
    except NotRegularFileError as error:
        raise ImageReadError(path, f"not a regular file ({error.kind})") from None
    except OSError as error:
        if error.errno in PROCESS_ERRORS:
            # About this process, not the file (no descriptors left, one closed under a worker
            # being torn down): raised as it is, so the file is not recorded as unreadable.
            error.filename = str(path)
            raise
        raise ImageReadError(path, _os_reason(path, error)) from None


def _os_reason(path: str | Path, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "dangling symbolic link (its target does not exist)" if os.path.islink(path) else "file not found"
    if error.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or str(error)).lower()


def _open_header(path: str | Path, data: bytes, max_pixels: int | None) -> tuple[str, Image.Image]:
    """The format of ``data`` and the image Pillow opened from its header (no pixel decoded).

    Each format's reader is called as ``Image.open`` calls it (``Image.OPEN[format]``, after
    its ``accept`` test on the first bytes), without the check of ``PIL.Image.MAX_IMAGE_PIXELS``
    that ``Image.open`` adds after it: ``read_image`` checks ``max_pixels`` instead.
    """
    prefix = data[:_PREFIX_BYTES]
    for kind in _FORMATS:
        factory, accept = Image.OPEN[kind]
        verdict = accept(prefix)
        if not verdict:
            continue
        if isinstance(verdict, str):  # Pillow knows the format but was built without its codec
            raise ImageReadError(path, f"cannot read {kind} files: {verdict}")
        try:
            return kind, factory(io.BytesIO(data), "")
        except Image.DecompressionBombError:
            # Only readers that allocate while opening check Pillow's global limit themselves
            # (WebP: its canvas), and only above twice that limit.
            bound = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            ours = max_pixels is not None and max_pixels < bound  # augkit's limit refuses it too
            over, also = (f" > limit {max_pixels:,}", "max_pixels and ") if ours else ("", "")
            raise ImageReadError(
                path,
                f"too many pixels: more than {bound:,}{over} (if you trust this file, raise {also}"
                f"PIL.Image.MAX_IMAGE_PIXELS: Pillow's {kind} reader refuses more than twice that itself)",
            ) from None
        except Exception as error:  # noqa: BLE001
            # Pillow's readers fail on damaged headers with SyntaxError, OSError, ValueError,
            # struct.error, EOFError, ...: any of them means this file cannot be read.
            raise ImageReadError(path, _truncated(kind, data) or f"unreadable {kind} header ({error})") from None
    raise ImageReadError(path, "not an image (unrecognised format)")


def _orientation(header: Image.Image) -> int:
    """The EXIF orientation (1-8) of an image opened by ``_open_header``; 1 if none or unreadable."""
    try:
        # Image.getexif, not PngImageFile's own, which decodes the whole image to look for an
        # eXIf chunk after the pixel data: the EXIF the header holds (and XMP's orientation, as
        # exif_transpose reads it).
        value = Image.Image.getexif(header).get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF: the pixels as stored, not an unreadable photo
        return 1
    return value if value in _ORIENTATIONS else 1


def _jpeg_draft_flags(width: int, height: int, transposed: bool, draft: DraftSize) -> int:
    """imdecode flags for the smallest reduced JPEG decode that ``draft`` accepts.

    ``draft`` sees and answers in the image's shown size, which an orientation of 5-8
    (``transposed``) turns by 90 degrees from the stored one.
    """
    shown = (width, height) if transposed else (height, width)
    need_h, need_w = draft(*shown)
    if transposed:
        need_h, need_w = need_w, need_h
    for scale, flag in _JPEG_DRAFT_FLAGS:
        # libjpeg rounds a scaled side up; the orientation is applied afterwards, as for a full decode.
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


def _truncated(kind: str, data: bytes) -> str | None:
    """For a ``kind`` file that could not be read: "truncated (...)" if its end is missing, else None."""
    end = None
    if kind == "PNG" and not 0 <= data.rfind(b"IEND") <= len(data) - 8:  # the chunk type, then its CRC
        end = "its IEND chunk"
    elif kind == "JPEG" and data.rfind(b"\xff\xd9") <= data.rfind(b"\xff\xda"):
        # Entropy-coded data never holds FF D9, so a whole JPEG ends its last scan with it.
        end = "its end-of-image marker FFD9"
    elif kind == "WEBP" and len(data) < 8 + int.from_bytes(data[4:8], "little"):
        end = "the length its RIFF header gives"
    elif kind == "GIF" and not data.rstrip(b"\0").endswith(b";"):
        end = "its trailer byte 3B"
    elif kind == "BMP" and len(data) < int.from_bytes(data[2:6], "little"):
        end = "the size its header gives"
    return f"truncated ({kind} ends before {end})" if end else None


def _full_range(image: np.ndarray, header: Image.Image) -> np.ndarray:
    """A PGM/PPM of another maxval than 255 or 65535 scaled to its container's full range.

    OpenCV hands back the stored values (0..15 for maxval 15, 0..1000 in uint16 for 1000), where
    the format means maxval as full intensity (as Pillow reads it). Pillow's header names the
    maxval in its decoder's arguments when it is not a plain 8- or 16-bit one.
    """
    tile = header.tile[0] if header.tile else None
    args = tile.args if tile is not None and tile.codec_name in ("ppm", "ppm_plain") else None
    maxval = args[-1] if isinstance(args, tuple) and args and isinstance(args[-1], int) else None
    if maxval is None or image.dtype.kind != "u":
        return image
    full = 255 if image.dtype == np.uint8 else 65535
    if maxval in (0, full):
        return image
    scaled = (np.minimum(image.astype(np.uint32), maxval) * full + maxval // 2) // maxval  # round(x * full / maxval)
    return scaled.astype(image.dtype)


def _under_contract(path: str | Path, image: np.ndarray) -> np.ndarray:
    """Decoded pixels as uint8, uint16 or float32 under ``augkit.pixels``' contract."""
    if image.dtype.kind == "f":
        image = image.astype(np.float32, copy=False)
        try:
            check_image(image)
        except PixelError:
            finite = np.isfinite(image)
            if not finite.all():
                seen = f"NaN or Inf in {int(image.size - finite.sum()):,} value(s)"
            else:
                seen = f"values from {float(image.min()):g} to {float(image.max()):g}"
            raise ImageReadError(
                path,
                f"float pixels outside [0, 1] ({seen}): augkit reads float images as intensities on "
                f"[0, 1] and does not guess another scale; rescale the file to [0, 1], or save it as "
                f"8- or 16-bit integers",
            ) from None
        return image
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported image (dtype {image.dtype})")
    return image


def _premultiplied(kind: str, header: Image.Image, dtype: np.dtype) -> bool:
    """Whether OpenCV hands back this file's colour already multiplied by its alpha.

    Only TIFF says so (ExtraSamples 1, associated alpha). OpenCV also reads 8-bit TIFF through
    libtiff's RGBA interface, which premultiplies unassociated alpha (ExtraSamples 2).
    """
    if kind != "TIFF":
        return False
    extra = header.tag_v2.get(338)  # ExtraSamples, one value per extra channel
    first = extra[0] if isinstance(extra, tuple) and extra else extra
    return first == 1 or (first == 2 and dtype == np.uint8)


def _composite(image: np.ndarray, background: tuple[int, int, int], *, premultiplied: bool) -> np.ndarray:
    """Colour + alpha (H x W x 2 or 4, OpenCV's BGR order) onto ``background`` (R, G, B on 0..255).

    round(a * colour + (1 - a) * background), with a = alpha / full scale (colour + (1 - a) *
    background if ``premultiplied``), exact in integers for uint8 and uint16. Returns
    H x W x 3 BGR of the same dtype (gray + alpha becomes colour when the background is one).
    """
    colour, alpha = image[..., :-1], image[..., -1:]
    bgr = background[::-1]
    if image.dtype == np.float32:
        base = np.asarray(bgr, np.float32) / np.float32(255)
        mixed = (colour if premultiplied else colour * alpha) + (1 - alpha) * base
        return np.clip(mixed, 0, 1, out=mixed)
    full = int(full_scale(image))
    wide = np.int64 if full > 255 else np.int32  # 65535 * 65535 * 2 does not fit in int32
    a = alpha.astype(wide)
    base = np.asarray(bgr, wide) * (full // 255)  # 0..255 -> the image's scale (x 257 for 16 bits)
    numerator = colour.astype(wide) * (full if premultiplied else a) + (full - a) * base
    # full is odd, so x / full is never exactly half-way: floor(x / full + 1/2) rounds exactly.
    return np.minimum((numerator + full // 2) // full, full).astype(image.dtype)


def _to_rgb_or_gray(path: str | Path, image: np.ndarray, gray: bool) -> np.ndarray:
    """Decoded pixels (OpenCV's BGR order, alpha composited) -> RGB H x W x 3 or gray H x W x 1."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        plane = image if image.ndim == 2 else image[..., 0]
        return plane[..., None] if gray else cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB)
    if channels != 3:
        raise ImageReadError(path, f"unsupported image ({channels} channels)")
    out = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB)
    return out[..., None] if gray else out


def _reorient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` transposed and flipped as EXIF ``orientation`` says; C-contiguous."""
    if orientation in _ORIENTATIONS:
        transpose, flip_rows, flip_columns = _ORIENTATIONS[orientation]
        if transpose:
            image = image.swapaxes(0, 1)
        if flip_rows:
            image = image[::-1]
        if flip_columns:
            image = image[:, ::-1]
    return np.ascontiguousarray(image)


def cv2_reason(error: cv2.error) -> str:
    """What a cv2.error says went wrong, without OpenCV's source file and line (also for the writer)."""
    return getattr(error, "err", None) or str(error).strip()
