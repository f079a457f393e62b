"""augkit.io.images: every kind of image file -> the same RGB/gray uint8 arrays; every failure -> one reason."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import augkit.files
import augkit.io.images
from augkit.errors import AugkitError, ImageReadError
from augkit.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    background_color,
    default_max_bytes,
    is_image_file,
    read_image,
)
from augkit.io.writer import WRITE_EXTENSIONS, encode_image, write_image

# 2 x 2 RGB pixels whose channels all differ, so a swapped channel order cannot pass.
RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 120, 230]]], dtype=np.uint8)


def cv2_bytes(ext: str, pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def pil_bytes(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png() -> bytes:
    image = Image.new("P", (2, 2))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 120, 230] + [0] * 756)
    image.putdata([0, 1, 2, 3])
    return pil_bytes(image)


def gray_alpha_png() -> bytes:
    # Alpha 0 on a dark pixel: dropping alpha would keep 50, compositing onto white gives 255.
    return pil_bytes(Image.frombytes("LA", (2, 1), bytes([50, 0, 200, 255])))


def transparent_palette_png() -> bytes:
    # tRNS: index 0 fully transparent, index 1 half (128 of 255), the others opaque.
    return pil_bytes(Image.open(io.BytesIO(palette_png())), transparency=bytes([0, 128, 255, 255]))


GRAY_2x2 = [[0, 77], [200, 255]]

# name -> (file bytes, extension, expected RGB). Each kind OpenCV can hand back.
KINDS = {
    "gray": (cv2_bytes(".png", np.array(GRAY_2x2, np.uint8)), ".png",
             np.repeat(np.array(GRAY_2x2, np.uint8)[..., None], 3, axis=2)),
    "rgb": (cv2_bytes(".png", RGB[..., ::-1]), ".png", RGB),
    # round(a * colour + (1 - a) * 255): a = 0 -> white, a = 128/255 -> (127, 127, 255) from blue.
    "rgba, composited onto white": (
        cv2_bytes(".png", np.dstack([RGB[..., ::-1], [[0, 255], [128, 0]]]).astype(np.uint8)),
        ".png", np.array([[[255, 255, 255], [0, 255, 0]], [[127, 127, 255], [255, 255, 255]]], np.uint8)),
    "16-bit gray, rounded": (
        cv2_bytes(".png", np.array([[0, 128], [129, 65535]], np.uint16)), ".png",
        np.repeat(np.array([[0, 0], [1, 255]], np.uint8)[..., None], 3, axis=2)),
    "16-bit rgb": (cv2_bytes(".png", RGB[..., ::-1].astype(np.uint16) * 257), ".png", RGB),
    "palette": (palette_png(), ".png", RGB),
    # index 1 is green (0, 255, 0) at alpha 128: round(128/255 * 255 + 127/255 * 255) = 255, 127.
    "palette with transparency (tRNS)": (transparent_palette_png(), ".png",
        np.array([[[255, 255, 255], [127, 255, 127]], [[0, 0, 255], [10, 120, 230]]], np.uint8)),
    "gray + alpha": (gray_alpha_png(), ".png", np.array([[[255] * 3, [200] * 3]], np.uint8)),
    "float tiff on [0, 1]": (
        cv2_bytes(".tiff", np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)), ".tiff",
        np.repeat(np.array([[0, 64], [128, 255]], np.uint8)[..., None], 3, axis=2)),
    "bmp": (cv2_bytes(".bmp", RGB[..., ::-1]), ".bmp", RGB),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_image_kind_reads_as_rgb_uint8_hwc(tmp_path, kind):
    data, ext, expected = KINDS[kind]
    path = tmp_path / f"image{ext}"
    path.write_bytes(data)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.flags.c_contiguous
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_gray_read_is_hw1_with_itu601_luma(tmp_path, kind):
    data, ext, expected_rgb = KINDS[kind]
    path = tmp_path / f"image{ext}"
    path.write_bytes(data)
    gray = read_image(path, gray=True)
    assert gray.shape == (*expected_rgb.shape[:2], 1) and gray.dtype == np.uint8
    r, g, b = expected_rgb.astype(float).transpose(2, 0, 1)
    np.testing.assert_allclose(gray[..., 0], 0.299 * r + 0.587 * g + 0.114 * b, atol=0.51)


def test_gray_read_agrees_with_pil_convert_l_within_one_level(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    path.write_bytes(cv2_bytes(".png", pixels[..., ::-1]))
    pil = np.asarray(Image.fromarray(pixels).convert("L"), dtype=int)
    assert np.abs(read_image(path, gray=True)[..., 0].astype(int) - pil).max() <= 1


@pytest.mark.parametrize("ext", sorted(IMAGE_EXTENSIONS))
def test_every_scanned_extension_is_one_opencv_decodes(tmp_path, ext):
    # Pillow writes each format; a listed extension OpenCV cannot read would fail here.
    color = (30, 120, 200)
    image = Image.new("1", (8, 8), 1) if ext == ".pbm" else Image.new("RGB", (8, 8), color)
    path = tmp_path / f"image{ext}"
    image.save(path, **({"quality": 95} if ext in (".jpg", ".jpeg", ".webp") else {}))
    expected = (255, 255, 255) if ext == ".pbm" else color
    tolerance = 3 if ext in (".jpg", ".jpeg", ".webp") else 0
    np.testing.assert_allclose(read_image(path)[4, 4], expected, atol=tolerance)


def test_non_ascii_path_reads(tmp_path):
    path = tmp_path / "données" / "чай.png"
    path.parent.mkdir()
    path.write_bytes(KINDS["rgb"][0])
    np.testing.assert_array_equal(read_image(path), RGB)
    np.testing.assert_array_equal(read_image(str(path)), RGB)


def _photo_jpeg(tmp_path: Path, height: int, width: int) -> Path:
    """A real photo, area-resized to height x width, saved as a quality-95 JPEG."""
    import augkit

    photo = cv2.imread(str(augkit.sample_data_dir() / "photos" / "astronaut.jpg"), cv2.IMREAD_COLOR)
    return _write(tmp_path, "photo.jpg", cv2_bytes(".jpg", cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)))


@pytest.mark.parametrize(
    ("need", "shape"),
    [
        ((200, 200), (257, 301)),  # not reducible by 2: full decode
        ((120, 150), (129, 151)),  # 1/2: libjpeg rounds the sides up
        ((60, 40), (65, 76)),  # 1/4
        ((1, 1), (33, 38)),  # 1/8 at most
    ],
)
def test_draft_decodes_a_jpeg_at_the_smallest_scale_still_large_enough(tmp_path, need, shape):
    path = _photo_jpeg(tmp_path, 257, 301)
    asked = []
    image = read_image(path, draft=lambda h, w: asked.append((h, w)) or need)
    assert asked == [(257, 301)]  # the full size, from the header
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    # The same picture, in RGB order (pixel-level closeness after the resize that follows a
    # draft: test_preprocess.py).
    assert np.abs(image.mean(axis=(0, 1)) - read_image(path).mean(axis=(0, 1))).max() < 3  # R-B: 45


def test_draft_keeps_gray_reads_and_leaves_other_formats_at_full_size(tmp_path):
    jpeg = _photo_jpeg(tmp_path, 64, 64)
    assert read_image(jpeg, gray=True, draft=lambda h, w: (16, 16)).shape == (16, 16, 1)
    png = _write(tmp_path, "photo.png", cv2_bytes(".png", cv2.imread(str(jpeg))))
    assert np.array_equal(read_image(png, draft=lambda h, w: (1, 1)), read_image(png))


def _truncated_png(tmp_path: Path) -> Path:
    data = cv2_bytes(".png", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) - 20])
    return path


def _truncated_jpeg(tmp_path: Path, cut: int = 2) -> Path:
    data = cv2_bytes(".jpg", np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) - cut])
    return path


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FAILURES = {
    "missing": (lambda d: d / "nope.png", "file not found"),
    "directory": (lambda d: d, "not a regular file (directory)"),
    "empty": (lambda d: _write(d, "empty.png", b""), "empty file (0 bytes)"),
    "text named .jpg": (lambda d: _write(d, "notes.jpg", b"just some text\n" * 10),
                        "not an image (unrecognised format)"),
    "truncated png": (_truncated_png, "truncated (PNG ends before its IEND chunk)"),
    "jpeg without its last 2 bytes": (_truncated_jpeg, "truncated (JPEG ends before"),
    "jpeg cut in half": (lambda d: _truncated_jpeg(d, cut=400), "truncated (JPEG ends before"),
    "png signature then garbage": (lambda d: _write(d, "junk.png", b"\x89PNG\r\n\x1a\n" + b"x" * 40),
                                   "truncated (PNG"),
    "16-bit signed tiff": (lambda d: _write(d, "s.tif", cv2_bytes(".tiff", np.full((2, 2), -5, np.int16))),
                           "unsupported image (dtype int16)"),
}  # fmt: skip


@pytest.mark.parametrize("case", FAILURES)
def test_unreadable_file_raises_image_read_error_with_its_reason(tmp_path, case):
    make, reason = FAILURES[case]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason.startswith(reason)
    assert info.value.path == str(path) and str(path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_permissions_raise_permission_denied(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(KINDS["rgb"][0])
    path.chmod(0)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(path)


@pytest.mark.parametrize("padding", [b"\x00" * 100, b"MotionPhoto_Data" + b"\x00\x01" * 64])
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_data_after_the_end_marker_is_accepted(tmp_path, ext, padding):
    # NUL padding (some writers) and appended data (phone "motion photos") are not truncation.
    path = _write(tmp_path, f"padded{ext}", cv2_bytes(ext, RGB[..., ::-1]) + padding)
    assert read_image(path).shape == (2, 2, 3)


# ----------------------------------------------------------------------------- decompression bombs


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a correct CRC) claims width x height, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))  # fmt: skip


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 segment is patched to claim width x height."""
    data = bytearray(cv2_bytes(".jpg", np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_of_zeros(width: int, height: int) -> bytes:
    """A real GIF of width x height black pixels: a screen that large holding one 1 x 1 frame.

    A frame may be smaller than its screen, and decoders allocate the screen: at 30000 x 30000
    these 37 bytes took OpenCV 37 s and 6 GB (the issue's 297 KB GIF, 20.6 s and 3.1 GB).
    """
    data = bytearray(pil_bytes(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _webp_of_one_colour(width: int, height: int, rgba: tuple[int, int, int, int] = (255, 0, 0, 255)) -> bytes:
    """A real lossless WebP (VP8L) of width x height pixels of one colour, in 32 bytes.

    Its five prefix codes hold one symbol each, which costs no bit, so its pixels take none: at
    16383 x 16383 (VP8L's largest) OpenCV decodes it in 8-11 s and 2.1 GB, like the issue's 10 KB one.
    """
    bits: list[int] = []

    def put(value: int, count: int) -> None:  # VP8L packs bits least significant first
        bits.extend((value >> i) & 1 for i in range(count))

    put(width - 1, 14), put(height - 1, 14), put(1, 1), put(0, 3)  # size, alpha used, version 0
    put(0, 3)  # no transform, no colour cache, no meta prefix codes
    red, green, blue, alpha = rgba
    for symbol in (green, red, blue, alpha):
        put(0b101, 3), put(symbol, 8)  # simple code, one symbol, 8 bits wide
    put(0b001, 3), put(0, 1)  # distance: simple code, one symbol, 1 bit wide
    packed = bytes(sum(bit << i for i, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    payload = b"\x2f" + packed  # the VP8L signature, then the bits
    payload += b"\0" * (len(payload) % 2)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _tiff(width: int, height: int, strip: bytes, *, strips: int = 1, compression: int = 1, bits: int = 8,
          samples: int = 1, extra_samples: int | None = None, sample_format: int = 1) -> bytes:  # fmt: skip
    """A little-endian TIFF, gray (1 sample), RGB (3) or RGBA (4): ``strips`` strips, all of them ``strip``."""
    tags = {256: [width], 257: [height], 258: [bits] * samples, 259: [compression],
            262: [1 if samples == 1 else 2], 277: [samples], 278: [-(-height // strips)],
            279: [len(strip)] * strips, 339: [sample_format] * samples}  # fmt: skip
    if extra_samples is not None:
        tags[338] = [extra_samples]
    ifd_end = 8 + 2 + 12 * (len(tags) + 1) + 4
    spilled = 4 * sum(len(v) for v in tags.values() if len(v) > 1) + (4 * strips if strips > 1 else 0)
    tags[273] = [ifd_end + spilled] * strips  # StripOffsets: the strip, after the IFD and the values that spill
    entries, arrays = b"", b""
    for tag, values in sorted(tags.items()):  # every value a LONG, which readers take for these tags
        field = struct.pack("<I", values[0] if len(values) == 1 else ifd_end + len(arrays))
        arrays += struct.pack(f"<{len(values)}I", *values) if len(values) > 1 else b""
        entries += struct.pack("<HHI", tag, 4, len(values)) + field
    return b"II*\0" + struct.pack("<IH", 8, len(tags)) + entries + b"\0" * 4 + arrays + strip


def _tiff_of_zeros(width: int, height: int) -> bytes:
    """A real 8-bit gray TIFF of width x height zeros: strips of 100 rows, all the same deflated bytes."""
    return _tiff(width, height, zlib.compress(bytes(width * 100), 9), strips=-(-height // 100), compression=8)


def _bmp_of_zeros(width: int, height: int) -> bytes:
    """A real 8-bit BMP of width x height pixels of colour 0: run-length coded, it ends at once."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, 2, 2835, 2835, 1, 1)  # BI_RLE8, 1 colour
    data = b"\0\0\0\0" + b"\x00\x01"  # the palette's one colour, then "end of bitmap"
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(data), 0, 0, 14 + len(info) + 4) + info + data


# name -> (file bytes, extension, the reason): real images, but the PNG and JPEG, whose headers claim a size.
BOMB = (f"too many pixels: 60000 x 50000 = 3,000,000,000 > limit {DEFAULT_MAX_PIXELS:,} "
        f"(raise max_pixels if you trust this file)")  # fmt: skip
BOMBS = {
    "png": (_png_claiming(60000, 50000), ".png", BOMB),
    "jpeg": (_jpeg_claiming(60000, 50000), ".jpg", BOMB),
    "gif": (_gif_of_zeros(60000, 50000), ".gif", BOMB),
    "bmp": (_bmp_of_zeros(60000, 50000), ".bmp", BOMB),
    "tiff": (_tiff_of_zeros(60000, 50000), ".tiff", BOMB),
    "lossless webp of 16383 x 16383 in 32 bytes": (
        _webp_of_one_colour(16383, 16383), ".webp",
        f"too many pixels: more than 178,956,970 > limit {DEFAULT_MAX_PIXELS:,} (if you trust this file, raise "
        f"max_pixels and PIL.Image.MAX_IMAGE_PIXELS: Pillow's WEBP reader refuses more than twice that itself)"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("make", "expected"),
    [(lambda w, h: _webp_of_one_colour(w, h, (10, 20, 30, 255)), (10, 20, 30)), (_gif_of_zeros, (0, 0, 0)),
     (_tiff_of_zeros, (0, 0, 0)), (_bmp_of_zeros, (0, 0, 0))],
    ids=["webp", "gif", "tiff", "bmp"],
)  # fmt: skip
def test_the_bombs_are_real_images(tmp_path, make, expected):
    # What each bomb is made of decodes, at a size that costs nothing.
    image = read_image(_write(tmp_path, "small", make(300, 200)))
    assert image.shape == (200, 300, 3) and (image == expected).all()


@pytest.mark.parametrize("bomb", BOMBS)
def test_decompression_bomb_of_every_format_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch, bomb):
    data, ext, reason = BOMBS[bomb]
    path = _write(tmp_path, f"bomb{ext}", data)

    def must_not_decode(*args):
        raise AssertionError("the decoder ran on a decompression bomb")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason == reason


# Reads every bomb under an address-space limit that one allocation of any of their images
# would break, and shows the limit is real: decoding the WebP bomb under it fails.
_UNDER_MEMORY_LIMIT = """
import json, resource, sys
import cv2, numpy as np
from augkit.errors import ImageReadError
from augkit.io.images import read_image
read_image(sys.argv[1])  # whatever reading allocates once (thread pools, codecs) is counted in the base
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + (384 << 20), size + (384 << 20)))
reasons = []
for path in sys.argv[2:]:
    try:
        read_image(path)
        reasons.append("read")
    except ImageReadError as error:
        reasons.append(error.reason)
try:
    control = cv2.imdecode(np.fromfile(sys.argv[-1], np.uint8), cv2.IMREAD_UNCHANGED)
    control = "decoded" if control is not None else "failed"
except (cv2.error, MemoryError):
    control = "failed"
print(json.dumps({"reasons": reasons, "control": control}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_decompression_bombs_are_refused_without_allocating_their_images(tmp_path):
    small = _write(tmp_path, "small.png", KINDS["rgb"][0])
    paths = [_write(tmp_path, f"bomb-{i}{ext}", data) for i, (data, ext, _) in enumerate(BOMBS.values())]
    run = subprocess.run([sys.executable, "-c", _UNDER_MEMORY_LIMIT, small, *paths],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["reasons"] == [reason for _, _, reason in BOMBS.values()]
    assert result["control"] == "failed"  # the WebP bomb (last) needs 1 GB to decode


def test_max_pixels_above_pillows_own_limit_needs_no_change_to_pillows_setting(tmp_path):
    # 14000 x 13000 = 182,000,000: more than twice Pillow's MAX_IMAGE_PIXELS, which Image.open refuses.
    path = _write(tmp_path, "big.png", _png_claiming(14000, 13000))
    with pytest.raises(ImageReadError) as info:
        read_image(path, max_pixels=200_000_000)
    assert info.value.reason == "corrupt PNG (the decoder failed)"  # past the header: decoded, and found empty
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("ext", [".png", ".jpg", ".gif", ".bmp", ".tiff", ".ppm", ".webp"])
def test_pillows_global_limit_does_not_apply_except_in_its_webp_reader(tmp_path, monkeypatch, ext):
    path = tmp_path / f"image{ext}"
    Image.new("RGB", (64, 64), (30, 120, 200)).save(path, **({"lossless": True} if ext == ".webp" else {}))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as a user's program may set it
    if ext != ".webp":
        assert read_image(path).shape == (64, 64, 3)
        return
    with pytest.raises(ImageReadError, match=r": too many pixels: more than 200 \(if you trust this file, raise PIL"):
        read_image(path, max_pixels=None)


def test_max_pixels_refuses_one_pixel_over_the_limit(tmp_path):
    path = _write(tmp_path, "small.bmp", cv2_bytes(".bmp", np.zeros((10, 10, 3), np.uint8)))
    with pytest.raises(ImageReadError, match=r"too many pixels: 10 x 10 = 100 > limit 99"):
        read_image(path, max_pixels=99)
    assert read_image(path, max_pixels=100).shape == (10, 10, 3)


def test_max_pixels_none_disables_the_limit_and_opencv_errors_still_become_image_read_errors(tmp_path):
    small = _write(tmp_path, "small.png", cv2_bytes(".png", np.zeros((10, 10, 3), np.uint8)))
    assert read_image(small, max_pixels=None).shape == (10, 10, 3)
    # Past augkit's check, OpenCV's own limit raises cv2.error: it must not escape.
    bomb = _write(tmp_path, "bomb.png", _png_claiming(100000, 100000))
    with pytest.raises(ImageReadError, match="cannot decode"):
        read_image(bomb, max_pixels=None)


@pytest.mark.parametrize("fmt, ext", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("GIF", ".gif"),
                                      ("BMP", ".bmp")])  # fmt: skip
@pytest.mark.parametrize("keep", [0.99, 0.5, 0.02])
def test_truncated_file_of_every_format_says_it_is_truncated(tmp_path, fmt, ext, keep):
    # OpenCV 5 refuses every one of these without saying why; the reason names the cut.
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(pixels), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    path = _write(tmp_path, f"cut{ext}", data[: max(20, int(len(data) * keep))])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason.startswith(f"truncated ({fmt} ends before")


@pytest.mark.parametrize("fmt, ext", [("TIFF", ".tiff"), ("PPM", ".ppm")])
def test_truncated_file_without_an_end_marker_is_refused_as_corrupt(tmp_path, fmt, ext):
    data = pil_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageReadError, match=f": corrupt {fmt} "):
        read_image(_write(tmp_path, f"cut{ext}", data[: len(data) // 2]))


# ----------------------------------------------------------------------------- files that are not regular files


_READ_IN_A_SUBPROCESS = """
import json, sys
from augkit.errors import ImageReadError
from augkit.io.images import read_image
reasons = []
for path in sys.argv[1:]:
    try:
        reasons.append(read_image(path).shape)
    except ImageReadError as error:
        reasons.append(error.reason)
print(json.dumps(reasons))
"""


def _reasons(*paths: Path) -> list:
    """read_image's reason for each path, from another process: a read that blocks fails the test, not the suite."""
    run = subprocess.run([sys.executable, "-c", _READ_IN_A_SUBPROCESS, *map(str, paths)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX's")
def test_fifo_device_directory_and_broken_links_are_refused_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")  # opening it for reading would block until a writer comes
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "dangling.png").symlink_to("gone.png")
    (tmp_path / "l1.png").symlink_to("l2.png")
    (tmp_path / "l2.png").symlink_to("l1.png")
    (tmp_path / "link.png").symlink_to(_write(tmp_path, "real.png", KINDS["rgb"][0]))
    names = ["fifo.png", "zero.png", "folder.png", "dangling.png", "l1.png", "link.png"]
    assert _reasons(*(tmp_path / n for n in names)) == [
        "not a regular file (FIFO)",
        "not a regular file (character device)",
        "not a regular file (directory)",
        "dangling symbolic link (its target does not exist)",
        "symbolic link loop (too many levels of symbolic links)",
        [2, 2, 3],  # a link to an image reads as the image
    ]


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets are POSIX's")
def test_socket_is_refused_as_not_a_regular_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative name: socket paths are limited to about 100 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("socket.png")
        with pytest.raises(ImageReadError, match=r"not a regular file \(socket\)$"):
            read_image("socket.png")


def test_sparse_multi_gigabyte_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as file:
        file.truncate(5_000_000_000)  # sparse: no disk used, 5 GB if read
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason == (
        f"file too large: 5,000,000,000 bytes > limit {default_max_bytes(DEFAULT_MAX_PIXELS):,} "
        f"(raise max_bytes, or max_pixels which it follows, if you trust this file)"
    )


def test_byte_cap_follows_the_pixel_limit_and_can_be_set_or_lifted(tmp_path):
    # 16 bytes per pixel (float32 RGBA, uncompressed) plus 16 MiB for metadata: 1.45 GB by default.
    assert default_max_bytes(DEFAULT_MAX_PIXELS) == 16 * 89_478_485 + 16 * 2**20 == 1_448_432_976
    assert default_max_bytes(None) is None
    path = _write(tmp_path, "image.png", KINDS["rgb"][0])
    size = path.stat().st_size
    assert read_image(path, max_bytes=size).shape == (2, 2, 3)
    assert read_image(path, max_bytes=None).shape == (2, 2, 3)
    with pytest.raises(ImageReadError, match=f"file too large: {size} bytes > limit {size - 1} "):
        read_image(path, max_bytes=size - 1)


# ----------------------------------------------------------------------------- EXIF orientation


def test_phone_photo_with_orientation_6_reads_as_it_is_shown(tmp_path):
    # Stored 20 wide x 40 high, with a red mark at the stored top-left; shown 40 wide x 20 high,
    # turned 90 degrees clockwise: the mark is at the top-right.
    stored = np.full((40, 20, 3), 200, np.uint8)
    stored[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _write(tmp_path, "phone.jpg", pil_bytes(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95))
    shown = read_image(path)
    assert shown.shape == (20, 40, 3)
    assert np.abs(shown[4:12, -12:-4].astype(int) - (255, 0, 0)).max() < 10  # inside the mark, clear of JPEG's ringing
    assert np.abs(shown[4:12, 4:12].astype(int) - 200).max() < 10
    as_stored = read_image(path, exif_orientation=False)
    assert as_stored.shape == (40, 20, 3) and np.abs(as_stored[4:12, 4:12].astype(int) - (255, 0, 0)).max() < 10


def _with_orientation(pixels: np.ndarray, fmt: str, orientation: int) -> bytes:
    """``pixels`` saved as ``fmt`` with EXIF orientation ``orientation`` (TIFF: its own tag)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"TIFF": {"tiffinfo": {0x0112: orientation}},
               "WEBP": {"lossless": True, "exif": exif.tobytes()},
               "JPEG": {"quality": 100, "subsampling": 0, "exif": exif.tobytes()},
               "PNG": {"exif": exif.tobytes()}}[fmt]  # fmt: skip
    return pil_bytes(Image.fromarray(pixels), fmt, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "JPEG"])
def test_exif_orientation_is_applied_as_pil_exif_transpose_applies_it(tmp_path, fmt, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    path = _write(tmp_path, f"image.{fmt.lower()}", _with_orientation(pixels, fmt, orientation))
    reference = Image.fromarray(pixels)
    reference.getexif()[0x0112] = orientation
    shown = np.asarray(ImageOps.exif_transpose(reference))
    tolerance = 3 if fmt == "JPEG" else 0  # quality 100, 4:4:4: within rounding of the DCT
    for exif_orientation, expected in ((True, shown), (False, pixels)):
        image = read_image(path, exif_orientation=exif_orientation)
        assert image.shape == expected.shape
        assert np.abs(image.astype(int) - expected).max() <= tolerance


def test_draft_decoding_turns_the_image_as_a_full_decode_does(tmp_path):
    import augkit

    photo = Image.open(augkit.sample_data_dir() / "photos" / "astronaut.jpg").convert("RGB").resize((96, 160))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 96 wide x 160 high, shown 160 wide x 96 high
    path = _write(tmp_path, "phone.jpg", pil_bytes(photo, "JPEG", exif=exif.tobytes(), quality=95))
    asked = []
    draft = read_image(path, draft=lambda h, w: asked.append((h, w)) or (h // 4, w // 4))
    assert asked == [(96, 160)]  # the size as shown
    assert draft.shape == (24, 40, 3)  # a 1/4-scale decode, turned
    full = cv2.resize(read_image(path), (40, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(draft.astype(int) - full).mean() < 4  # the same picture the same way up


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own word about it
def test_damaged_exif_reads_the_pixels_as_stored(tmp_path):
    path = _write(tmp_path, "odd.jpg", pil_bytes(Image.new("RGB", (4, 2), (200, 10, 10)), "JPEG",
                                                 exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"))  # fmt: skip
    assert read_image(path).shape == (2, 4, 3)


# ----------------------------------------------------------------------------- alpha


def test_icon_drawn_in_black_on_transparent_black_reads_as_black_on_white(tmp_path):
    # The issue's icon: every pixel (0, 0, 0), the stroke opaque, the rest transparent.
    icon = np.zeros((16, 16, 4), np.uint8)
    icon[4:12, 7, 3] = 255
    path = _write(tmp_path, "icon.png", cv2_bytes(".png", icon))
    expected = np.full((16, 16, 3), 255, np.uint8)
    expected[4:12, 7] = 0
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(read_image(path, background="black"), np.zeros((16, 16, 3), np.uint8))
    np.testing.assert_array_equal(read_image(path, background=(0, 128, 255))[0, 0], (0, 128, 255))


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (30, 140, 250)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_composited_exactly_at_the_files_depth(tmp_path, dtype, background):
    full = np.iinfo(dtype).max
    bgra = np.random.default_rng(1).integers(0, full + 1, (32, 32, 4), dtype=np.int64)
    bgra[0, :4, 3] = (0, 1, full - 1, full)
    path = _write(tmp_path, "rgba.png", cv2_bytes(".png", bgra.astype(dtype)))
    # round(a * colour + (1 - a) * background), in Python's exact rationals.
    alpha = bgra[..., 3:] / full
    base = np.array(background[::-1]) * (full // 255)
    mixed = np.round(alpha * bgra[..., :3] + (1 - alpha) * base).astype(np.int64)[..., ::-1]
    if dtype == np.uint16:
        np.testing.assert_array_equal(read_image(path, background=background, keep_depth=True), mixed)
        mixed = (mixed + 128) // 257
    np.testing.assert_array_equal(read_image(path, background=background), mixed)


@pytest.mark.parametrize(
    ("bits", "extra_samples", "rgba", "expected"),
    [
        # Straight alpha (2): 8-bit comes back premultiplied from OpenCV's libtiff RGBA path.
        (8, 2, (120, 80, 40, 128), (187, 167, 147)),  # round(a * c + (1 - a) * 255)
        (16, 2, (30840, 20560, 10280, 32896), (187, 167, 147)),  # the same, times 257
        # Associated alpha (1): the colour is stored already multiplied by alpha.
        (8, 1, (60, 40, 20, 128), (187, 167, 147)),  # round(c + (1 - a) * 255)
        (16, 1, (15420, 10280, 5140, 32896), (187, 167, 147)),
    ],
)
def test_tiff_alpha_is_composited_whether_stored_straight_or_premultiplied(tmp_path, bits, extra_samples, rgba,
                                                                           expected):  # fmt: skip
    dtype = "<u1" if bits == 8 else "<u2"
    data = _tiff(1, 1, np.array(rgba, dtype).tobytes(), bits=bits, samples=4, extra_samples=extra_samples)
    np.testing.assert_allclose(read_image(_write(tmp_path, "rgba.tiff", data))[0, 0], expected, atol=1)


@pytest.mark.parametrize("value, expected", [("white", (255, 255, 255)), ("Black", (0, 0, 0)),
                                             ("0, 128,255", (0, 128, 255)), ([1, 2, 3], (1, 2, 3))])  # fmt: skip
def test_background_is_a_name_or_r_g_b(value, expected):
    assert background_color(value) == expected


@pytest.mark.parametrize("value", ["purple", "1,2", "0,0,256", "-1,0,0", (0.5, 0, 0), (True, 0, 0), 255])
def test_background_that_is_not_a_colour_is_refused_saying_what_is(tmp_path, value):
    path = _write(tmp_path, "rgb.png", KINDS["rgb"][0])
    with pytest.raises(AugkitError, match="background must be white, black or R,G,B with integers from 0 to 255"):
        read_image(path, background=value)


# ----------------------------------------------------------------------------- the pixel contract


def test_float_tiff_holding_0_to_1000_is_refused_not_clipped(tmp_path):
    path = _write(tmp_path, "counts.tiff", cv2_bytes(".tiff", np.linspace(0, 1000, 64, dtype=np.float32).reshape(8, 8)))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason == (
        "float pixels outside [0, 1] (values from 0 to 1000): augkit reads float images as intensities "
        "on [0, 1] and does not guess another scale; rescale the file to [0, 1], or save it as 8- or "
        "16-bit integers"
    )


def test_float_tiff_with_nan_is_refused(tmp_path):
    path = _write(tmp_path, "nan.tiff", cv2_bytes(".tiff", np.array([[0.5, np.nan]], np.float32)))
    with pytest.raises(ImageReadError, match=r"float pixels outside \[0, 1\] \(NaN or Inf in 1 value\(s\)\)"):
        read_image(path)


@pytest.mark.parametrize(
    ("data", "dtype", "expected"),
    [
        (cv2_bytes(".png", np.array([[0, 1], [1000, 65535]], np.uint16)), np.uint16, [[0, 1], [1000, 65535]]),
        (cv2_bytes(".tiff", np.array([[0.0, 0.1], [0.25, 1.0]], np.float32)), np.float32, [[0.0, 0.1], [0.25, 1.0]]),
        (cv2_bytes(".png", np.array([[0, 7], [200, 255]], np.uint8)), np.uint8, [[0, 7], [200, 255]]),
    ],
    ids=["16-bit png", "float32 tiff", "8-bit png"],
)
def test_keep_depth_returns_16_bit_and_float_pixels_as_they_are(tmp_path, data, dtype, expected):
    path = _write(tmp_path, "deep.tiff", data)
    image = read_image(path, keep_depth=True)
    assert image.dtype == dtype and image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image[..., 0], np.array(expected, dtype))
    gray = read_image(path, keep_depth=True, gray=True)
    assert gray.dtype == dtype and gray.shape == (2, 2, 1)
    np.testing.assert_allclose(gray[..., 0], np.array(expected, dtype), rtol=1e-6)
    assert read_image(path).dtype == np.uint8  # the default is what datasets and packed outputs store


@pytest.mark.parametrize("name, expected", [("a.PNG", True), ("b.JpEg", True), ("c.gif", True),
                                            ("d.txt", False), ("png", False), ("e.png.bak", False)])  # fmt: skip
def test_is_image_file_goes_by_extension_case_insensitively(name, expected):
    assert is_image_file(name) is expected


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
@pytest.mark.parametrize("pixels", [RGB, RGB[..., :1], RGB[..., 0]], ids=["rgb", "gray hw1", "gray hw"])
def test_lossless_write_round_trips_exactly(tmp_path, ext, pixels):
    path = write_image(tmp_path / f"out{ext}", pixels)
    expected = pixels if pixels.ndim == 3 and pixels.shape[2] == 3 else np.repeat(
        pixels.reshape(2, 2, 1), 3, axis=2)  # fmt: skip
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_write_uses_quality(tmp_path, ext):
    x, y = np.meshgrid(np.arange(64), np.arange(64))
    smooth = np.dstack([x * 3, y * 3, np.full_like(x, 90)]).astype(np.uint8)
    high = write_image(tmp_path / f"high{ext}", smooth, quality=95)
    low = write_image(tmp_path / f"low{ext}", smooth, quality=5)
    assert low.stat().st_size < high.stat().st_size
    assert np.abs(read_image(high).astype(int) - smooth).mean() < 2


def test_write_over_an_existing_file_replaces_it_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, RGB)
    write_image(path, RGB[::-1])
    np.testing.assert_array_equal(read_image(path), RGB[::-1])
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_encode_image_gives_the_bytes_write_image_writes(tmp_path):
    path = write_image(tmp_path / "out.png", RGB)
    assert encode_image(RGB, ".png") == encode_image(RGB, "PNG") == path.read_bytes()


def test_unknown_extension_is_refused_naming_the_supported_ones(tmp_path):
    with pytest.raises(AugkitError) as info:
        write_image(tmp_path / "out.xyz", RGB)
    assert "'.xyz'" in str(info.value) and all(ext in str(info.value) for ext in WRITE_EXTENSIONS)
    assert not (tmp_path / "out.xyz").exists()


@pytest.mark.parametrize("pixels", [RGB.astype(np.float32), np.zeros((2, 2, 4), np.uint8), np.zeros(4, np.uint8)],
                         ids=["float", "rgba", "1-d"])  # fmt: skip
def test_write_refuses_what_is_not_uint8_rgb_or_gray(tmp_path, pixels):
    with pytest.raises(AugkitError, match="uint8 RGB"):
        write_image(tmp_path / "out.png", pixels)


@pytest.mark.parametrize("quality", [0, 101, 9.5, True])
def test_write_refuses_quality_outside_1_to_100(tmp_path, quality):
    with pytest.raises(AugkitError, match="quality must be an integer from 1 to 100"):
        write_image(tmp_path / "out.jpg", RGB, quality=quality)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EBADF, errno.ENOMEM])
def test_a_failure_of_the_process_is_raised_not_recorded_as_an_unreadable_file(tmp_path, write_png, monkeypatch, code):
    # A Ray worker torn down by a Ctrl-C met EBADF mid-read: recorded as "bad file descriptor",
    # the image was skipped for good by the resumed run. Out of descriptors (EMFILE) is the same kind.
    path = write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))

    def failing_open(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(augkit.files.os, "open", failing_open)
    with pytest.raises(OSError) as caught:
        read_image(path)
    assert not isinstance(caught.value, ImageReadError) and caught.value.errno == code
    assert caught.value.filename == str(path)


def test_a_failure_of_the_process_while_reading_is_one_line_and_exit_1_from_the_cli(tmp_path, write_png, monkeypatch):
    from click.testing import CliRunner

    from augkit.cli.main import cli

    for name in ("a.png", "b.png"):
        write_png(tmp_path / "flat" / name, np.zeros((4, 4, 3), np.uint8))
    real_open = augkit.files.os.open

    def out_of_descriptors(path, *args, **kwargs):
        if str(path).endswith("b.png"):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(augkit.files.os, "open", out_of_descriptors)
    result = CliRunner().invoke(cli, ["stats", str(tmp_path / "flat"), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'flat' / 'b.png'}: Too many open files; the run failed, run the command again"


def test_a_file_that_no_reader_accepts_is_refused_before_the_rest_of_it_is_read(tmp_path, monkeypatch):
    # A sparse 1 GB file of zeros named .jpg was read whole (7 s, 1.1 GB) to find it is no image.
    path = tmp_path / "zeros.jpg"
    with open(path, "wb") as f:
        f.truncate(1 << 30)
    asked: list[int] = []
    real_open = augkit.io.images.open_regular

    def recording_open(p):
        file = real_open(p)
        read = file.read
        file.read = lambda n=-1: (asked.append(n), read(n))[1]  # type: ignore[method-assign]
        return file

    monkeypatch.setattr(augkit.io.images, "open_regular", recording_open)
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(path)
    assert sum(asked) <= 16


@pytest.mark.parametrize(("maxval", "stored", "expected"), [(15, [0, 5, 10, 15], [0, 85, 170, 255]), (1, [0, 1, 1, 0], [0, 255, 255, 0]),
                                                            (1000, [0, 1, 500, 1000], [0, 0, 128, 255])])
def test_pgm_files_of_another_maxval_read_at_full_range(tmp_path, maxval, stored, expected):
    # OpenCV hands back the stored values: a maxval-15 gradient read with a maximum of 15 of 255.
    path = tmp_path / "g.pgm"
    if maxval < 256:
        path.write_bytes(b"P5 4 1 %d\n" % maxval + bytes(stored))
    else:
        path.write_bytes(b"P5 4 1 %d\n" % maxval + np.array(stored, ">u2").tobytes())
    assert read_image(path, gray=True)[0, :, 0].tolist() == expected
    pillow = np.asarray(Image.open(path)).astype(np.int64)  # Pillow scales by maxval too: to 8 bits, or to 16 ("I")
    assert read_image(path, gray=True)[0, :, 0].tolist() == (pillow if maxval < 256 else (pillow + 128) // 257)[0].tolist()
