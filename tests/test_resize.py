"""augkit's one resize (``augkit.resize.resample``): antialiased on every shrinking axis in every
preprocess mode and in the random-resized crop, any dtype and channel count, and a centre crop
that computes only the window it keeps (memory of the order of the output, whatever the shape).

The reference is Pillow's antialiased BILINEAR resize (a triangle filter as wide as the shrink;
on a growing axis, the linear interpolation augkit uses too). augkit averages a shrinking axis
with OpenCV's area (box) filter, whose kernel differs from the triangle: on one-pixel stripes at
a fractional ratio the two leave different moiré (Pillow's own filters disagree there as much),
so the synthetic patterns are compared with Pillow at whole shrink ratios, where every
antialiasing filter gives the pattern's mean, and checked at every other ratio against the
bound an average over the footprint must meet. The photo strips are compared at any ratio.
"""

from __future__ import annotations

import json

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import augkit
from augkit.errors import AugkitError
from augkit.io.images import read_image
from augkit.pipeline import functional as F
from augkit.resize import RESIZE_MODES, resample, resize_to

MAX_MEAN_DIFFERENCE = 3.0  # gray levels, from Pillow's antialiased resize (issue 9)


def stripes(height: int, width: int) -> np.ndarray:
    """One-pixel vertical stripes, 0 and 255 (mean 127.5): height x width x 1 uint8."""
    image = np.zeros((height, width, 1), np.uint8)
    image[:, ::2] = 255
    return image


def checkerboard(height: int, width: int) -> np.ndarray:
    rows, cols = np.indices((height, width))
    return ((rows + cols) % 2 * 255).astype(np.uint8)[..., None]


def photo_strip() -> np.ndarray:
    """The middle 32 rows of a sample photo, read by augkit's reader: 32 x 451 x 3 uint8."""
    image = read_image(augkit.sample_data_dir() / "photos" / "chelsea.jpg")
    middle = image.shape[0] // 2
    return np.ascontiguousarray(image[middle - 16 : middle + 16])


def transposed(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(1, 0, 2))


PATTERNS = {
    "vertical stripes": lambda: stripes(64, 1024),  # the issue's example
    "horizontal stripes": lambda: transposed(stripes(64, 1024)),
    "checkerboard": lambda: checkerboard(64, 1024),
    "photo strip": photo_strip,
    "photo strip, upright": lambda: transposed(photo_strip()),
}
# Output sizes whose shrinking axes shrink the 1024-pixel patterns by a whole ratio; the photo
# strip (451 pixels) meets fractional ratios in all of them.
SIZES = ((128, 128), (64, 64), (256, 256), (32, 512))


def pillow_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's antialiased BILINEAR resize, channel by channel in float ("F" mode): float32 H x W x C."""
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), "F").resize(
            (width, height), Image.Resampling.BILINEAR))
        for c in range(image.shape[2])
    ]  # fmt: skip
    return np.stack(channels, axis=2)


def pillow_resize_to(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """What ``resize_to`` should give, built with Pillow: scale (as the mode says), then crop or pad."""
    height, width = size
    h, w = image.shape[:2]
    if mode == "exact":
        return pillow_resize(image, height, width)
    cover, fit = max(height / h, width / w), min(height / h, width / w)
    factor = {"center-crop": cover, "pad": fit, "shorter": height / min(h, w)}[mode]
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    scaled = pillow_resize(image, sh, sw)
    if mode == "center-crop":
        top, left = (sh - height) // 2, (sw - width) // 2
        return scaled[top : top + height, left : left + width]
    if mode == "pad":
        out = np.zeros((height, width, image.shape[2]), np.float32)
        top, left = (height - sh) // 2, (width - sw) // 2
        out[top : top + sh, left : left + sw] = scaled
        return out
    return scaled


def mean_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.shape == reference.shape
    return float(np.abs(ours.astype(np.float32) - reference).mean())


# ----------------------------------------------------------------------------- antialiasing


def test_issue_example_stripes_resized_exact_keep_their_mean(tmp_path, write_png, preprocess_cli):
    # 64 x 1024 one-pixel stripes to 128 x 128: OpenCV's area filter alone gave a uniform 32.
    write_png(tmp_path / "src" / "stripes.png", stripes(64, 1024)[..., 0])
    result = preprocess_cli(tmp_path / "src", tmp_path / "out", "--size", "128", "--resize-mode", "exact")
    assert result.exit_code == 0, result.output
    images = np.load(tmp_path / "out" / "train_images.npy")
    assert images.shape == (1, 128, 128, 1)  # a gray PNG: a gray dataset (augkit.io.datasets)
    assert abs(images.mean() - 127.5) < 1
    assert images.min() >= 126 and images.max() <= 129  # uniform: the stripes averaged, not sampled


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_resize_mode_is_within_3_levels_of_pillows_antialiased_resize(pattern, mode):
    image = PATTERNS[pattern]()
    for size in SIZES:
        difference = mean_difference(resize_to(image, size, mode), pillow_resize_to(image, size, mode))
        assert difference <= MAX_MEAN_DIFFERENCE, f"{size}: {difference:.2f} levels from Pillow"


@pytest.mark.parametrize("pattern", ["vertical stripes", "horizontal stripes", "checkerboard"])
def test_random_resized_crop_of_the_issues_patterns_is_antialiased(pattern):
    image = PATTERNS[pattern]()
    h, w = image.shape[:2]
    # The whole image as the window (all its area, its own aspect ratio): 64 x 1024 -> 128 x 128.
    step = {"crop": {"size": [128, 128], "mode": "random_resized", "scale": [1.0, 1.0], "ratio": [w / h, w / h]}}
    output, applied = augkit.load_pipeline({"seed": 0, "steps": [step]}).replay(image, index=0)
    assert applied[0].params["window"] == (0, 0, h, w)
    assert mean_difference(output, pillow_resize(image, 128, 128)) <= MAX_MEAN_DIFFERENCE
    assert abs(output.mean() - 127.5) < 1


@pytest.mark.parametrize("upright", [False, True])
def test_random_resized_crops_of_a_photo_strip_are_within_3_levels_of_pillow(upright):
    image = transposed(photo_strip()) if upright else photo_strip()
    step = {"crop": {"size": [96, 128], "mode": "random_resized", "scale": [0.2, 1.0], "ratio": [0.05, 20]}}
    pipeline = augkit.load_pipeline({"seed": 0, "steps": [step]})
    for index in range(20):
        output, applied = pipeline.replay(image, index=index)
        y, x, h, w = applied[0].params["window"]
        reference = pillow_resize(image[y : y + h, x : x + w], 96, 128)
        assert mean_difference(output, reference) <= MAX_MEAN_DIFFERENCE, (index, (y, x, h, w))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(height=st.integers(1, 600), width=st.integers(2, 512), upright=st.booleans())
def test_one_pixel_stripes_average_to_their_mean_at_any_shrink_ratio(height, width, upright):
    # Each output pixel averages a footprint of `ratio` stripes, so at most one unpaired stripe
    # lifts it off the mean: |pixel - 127.5| <= 127.5 / ratio (+1 for rounding). Sampling
    # instead (nearest, or OpenCV's area filter when the other axis grows) breaks this bound.
    image = stripes(64, 1024)
    if upright:
        image, (height, width) = transposed(image), (width, height)
    out = resample(image, height, width)
    ratio = 1024 / (width if not upright else height)
    assert np.abs(out.astype(np.float64) - 127.5).max() <= 127.5 / ratio + 1


def test_shrinking_both_axes_is_opencvs_area_filter_byte_for_byte():
    # The common case keeps its speed and its bytes (packed datasets written before compare equal).
    image = photo_strip()
    for size in ((16, 200), (32, 451), (7, 3), (31, 450)):
        expected = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
        assert np.array_equal(F.resize(image, *size), expected), size


def test_growing_both_axes_is_opencvs_linear_interpolation_byte_for_byte():
    image = photo_strip()[:20, :30]
    for size in ((40, 60), (20, 31), (333, 100)):
        expected = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(F.resize(image, *size), expected), size


# ----------------------------------------------------------------------------- dtypes and channels


@pytest.mark.parametrize(
    "size", [(128, 128), (32, 32), (300, 2000), (16, 1500)], ids=["mixed", "shrink", "grow", "mixed-other"]
)
def test_uint16_and_float32_resize_as_uint8_does_on_their_own_scale(size):
    photo = cv2.resize(photo_strip(), (1024, 64), interpolation=cv2.INTER_LINEAR)
    image = np.concatenate([stripes(64, 1024), checkerboard(64, 1024), photo], axis=2)  # 5 channels
    ours8 = resample(image, *size).astype(np.float64)
    ours16 = resample(image.astype(np.uint16) * 257, *size)
    ours32 = resample(image.astype(np.float32) / 255, *size)
    assert (ours16.dtype, ours32.dtype) == (np.uint16, np.float32)
    assert np.abs(ours16 / 257 - ours8).max() <= 1.01  # an 8-bit rounding (and float error) apart
    assert np.abs(ours32 * 255 - ours8).max() <= 1.01
    assert 0 <= ours32.min() and ours32.max() <= 1


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize(
    "size", [(40, 60), (20, 90), (90, 20), (200, 300)], ids=["shrink", "mixed", "mixed-other", "grow"]
)
def test_any_channel_count_is_kept_and_each_channel_resized_on_its_own(channels, size):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (64, 96, channels), dtype=np.uint8)
    out = F.resize(image, *size)
    assert out.shape == (*size, channels) and out.dtype == np.uint8
    for c in range(channels):
        assert np.array_equal(out[..., c], F.resize(image[..., c], *size)), c  # a 2-D image stays 2-D
    assert F.resize(image[..., 0], *size).shape == size


# ----------------------------------------------------------------------------- extreme shapes


def test_window_of_an_enlargement_is_computed_from_the_source_pixels_it_needs():
    # Windows of the same enlargement agree exactly wherever they overlap...
    image = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    big = resample(image, 70, 200, window=(5, 40, 50, 120))
    small = resample(image, 70, 200, window=(12, 61, 30, 77))
    assert np.array_equal(small, big[7:37, 21:98])
    # ... and are at most one level from the whole result (OpenCV's fixed-point rounding).
    whole = resample(image, 70, 200)
    assert np.abs(big.astype(int) - whole[5:55, 40:160]).max() <= 1


@pytest.mark.parametrize("shape", [(1, 2000), (2000, 1), (3, 2000), (50, 7)])
def test_center_crop_of_an_elongated_image_gives_the_pixels_of_scaling_it_whole(shape):
    # Noise, so that a window off by a fraction of a pixel would differ by tens of levels.
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = resize_to(image, (32, 32), "center-crop")
    factor = 32 / min(shape)
    sh, sw = round(shape[0] * factor), round(shape[1] * factor)
    naive = F.resize(image, sh, sw)  # what center-crop did before: scale everything, then cut
    top, left = (sh - 32) // 2, (sw - 32) // 2
    expected = naive[top : top + 32, left : left + 32].astype(int)
    assert out.shape == (32, 32, 3)
    assert np.abs(out - expected).max() <= 1 and np.abs(out - expected).mean() < 0.2


# The 1 x 20000 image of the issue, read and resized to 224 x 224 by each fixed-size mode under a
# 1.5 GiB address-space limit; scaling it whole first, as center-crop did (224 x 4480000 x 3
# bytes, 3.0 GB), must fail under the same limit, or the limit would prove nothing.
_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import cv2
from augkit.io.images import read_image
from augkit.resize import resample, resize_to
image = read_image(sys.argv[2])
for mode in ("center-crop", "pad", "exact"):
    print(mode, resize_to(image, (224, 224), mode).shape)
try:
    resample(image, 224, 4480000)
    print("whole: done")
except (MemoryError, cv2.error):
    print("whole: out of memory")
"""
ADDRESS_SPACE_LIMIT = 1536 * 2**20
needs_rlimit_as = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS limits memory on Linux only")


@pytest.fixture
def long_line(tmp_path, write_png) -> Path:
    """A 1 x 20000 RGB noise PNG (about 60 KB) alone in a folder."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 20000, 3), dtype=np.uint8)
    return write_png(tmp_path / "src" / "line.png", pixels)


def _limited(limit: int):
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _single_threaded_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@needs_rlimit_as
def test_resizing_a_1x20000_image_takes_memory_of_the_order_of_the_output(long_line):
    run = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, str(ADDRESS_SPACE_LIMIT), str(long_line)],
        capture_output=True, text=True, timeout=120, env=_single_threaded_env(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    shapes = [f"{mode} (224, 224, 3)" for mode in ("center-crop", "pad", "exact")]
    assert run.stdout.splitlines() == [*shapes, "whole: out of memory"]


@needs_rlimit_as
def test_preprocess_of_a_folder_holding_a_1x20000_png_completes(long_line, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "augkit", "preprocess", str(long_line.parent), str(out), "--size", "224"],
        capture_output=True, text=True, timeout=300, env=_single_threaded_env(),
        preexec_fn=_limited(ADDRESS_SPACE_LIMIT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    images = np.load(out / "train_images.npy")
    assert images.shape == (1, 224, 224, 3)
    expected = resize_to(read_image(long_line), (224, 224), "center-crop")
    assert np.array_equal(images[0], expected)
    assert (images[0] == images[0, :1]).all()  # one source row: every output row the same


def test_pad_and_exact_of_a_1x20000_image_hold_the_line_shrunk_to_224(long_line):
    image = read_image(long_line)
    line = resample(image, 1, 224)[0]  # 20000 -> 224 columns, each the mean of its ~89 pixels
    padded = resize_to(image, (224, 224), "pad")
    assert np.array_equal(padded[111], line) and not padded[:111].any() and not padded[112:].any()
    stretched = resize_to(image, (224, 224), "exact")
    assert (stretched == line).all()
    assert abs(line.astype(float).mean() - image.mean()) < 1


def test_shorter_refuses_an_output_past_the_pixel_limit_in_one_line(long_line):
    with pytest.raises(AugkitError) as error:
        resize_to(read_image(long_line), (224, 224), "shorter")
    message = str(error.value)
    assert "\n" not in message
    for fragment in ("'shorter'", "1 x 20000", "224 x 4480000", "89,478,485", "center-crop or pad"):
        assert fragment in message


def test_preprocess_shorter_skips_a_1x20000_png_with_its_reason_and_keeps_the_others(long_line, tmp_path, write_png, preprocess_cli):
    write_png(long_line.parent / "square.png", np.full((300, 300, 3), 7, np.uint8))
    flags = ("--size", "224", "--resize-mode", "shorter", "--format", "folder")
    result = preprocess_cli(long_line.parent, tmp_path / "out", *flags)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (skipped,) = manifest["skipped"]
    assert skipped["path"].endswith("line.png") and "224 x 4480000" in skipped["reason"] and "limit" in skipped["reason"]
    assert manifest["counts"]["train"]["images"] == 1
