"""augkit.images: every kind of image file -> the same RGB/gray uint8 arrays; every failure -> one reason."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augkit.errors import AugkitError, ImageReadError
from augkit.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    WRITE_EXTENSIONS,
    encode_image,
    is_image_file,
    read_image,
    write_image,
)

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
    # Alpha 0 on a bright pixel: compositing onto black would turn it to 0; dropping keeps 200.
    return pil_bytes(Image.frombytes("LA", (2, 1), bytes([200, 0, 50, 255])))


GRAY_2x2 = [[0, 77], [200, 255]]

# name -> (file bytes, extension, expected RGB). Each kind OpenCV can hand back.
KINDS = {
    "gray": (cv2_bytes(".png", np.array(GRAY_2x2, np.uint8)), ".png",
             np.repeat(np.array(GRAY_2x2, np.uint8)[..., None], 3, axis=2)),
    "rgb": (cv2_bytes(".png", RGB[..., ::-1]), ".png", RGB),
    "rgba, alpha dropped not composited": (
        cv2_bytes(".png", np.dstack([RGB[..., ::-1], [[0, 255], [128, 0]]]).astype(np.uint8)),
        ".png", RGB),
    "16-bit gray, rounded": (
        cv2_bytes(".png", np.array([[0, 128], [129, 65535]], np.uint16)), ".png",
        np.repeat(np.array([[0, 0], [1, 255]], np.uint8)[..., None], 3, axis=2)),
    "16-bit rgb": (cv2_bytes(".png", RGB[..., ::-1].astype(np.uint16) * 257), ".png", RGB),
    "palette": (palette_png(), ".png", RGB),
    "gray + alpha": (gray_alpha_png(), ".png", np.array([[[200] * 3, [50] * 3]], np.uint8)),
    "float tiff, clipped to [0, 1]": (
        cv2_bytes(".tiff", np.array([[-0.5, 0.25], [0.5, 1.5]], np.float32)), ".tiff",
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


def test_jpeg_exif_orientation_is_not_applied(tmp_path):
    # Like PIL's Image.open and torchvision: the stored pixels, not the rotated view.
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    path = tmp_path / "rotated.jpg"
    path.write_bytes(pil_bytes(Image.new("RGB", (4, 2), (200, 10, 10)), "JPEG", exif=exif.tobytes()))
    assert read_image(path).shape == (2, 4, 3)


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
    "directory": (lambda d: d, "is a directory"),
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


@pytest.mark.parametrize("make, ext", [(_png_claiming, ".png"), (_jpeg_claiming, ".jpg")])
def test_decompression_bomb_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch, make, ext):
    path = _write(tmp_path, f"bomb{ext}", make(60000, 50000))

    def must_not_decode(*args):
        raise AssertionError("the decoder ran on a decompression bomb")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert info.value.reason == (
        f"too many pixels: 60000 x 50000 = 3,000,000,000 > limit {DEFAULT_MAX_PIXELS:,} "
        f"(raise max_pixels if you trust this file)"
    )


def test_max_pixels_applies_after_decoding_for_formats_without_header_check(tmp_path):
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
