"""Tests for augkit.stats: streaming per-channel statistics and compute_stats over datasets."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import augkit
import augkit.processes
import augkit.stats.dataset
from augkit.errors import AugkitError
from augkit.io.datasets import open_dataset
from augkit.io.images import read_image
from augkit.io.writer import encode_image, write_image
from augkit.stats import ChannelStats, Skipped, compute_stats

RTOL = 1e-9


def random_images(seed: int, sizes: list[tuple[int, int]], channels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, channels), dtype=np.uint8) for h, w in sizes]


def pixels_of(images: list[np.ndarray]) -> np.ndarray:
    """All pixels of all images, one row each, on the [0, 1] scale."""
    return np.concatenate([im.reshape(-1, im.shape[-1]) for im in images]).astype(np.float64) / 255


def stats_of(images: list[np.ndarray], **kwargs) -> ChannelStats:
    stats = ChannelStats(**kwargs)
    for image in images:
        stats.update(image)
    return stats


def assert_same_stats(a: ChannelStats, b: ChannelStats, rtol: float = 1e-12) -> None:
    assert (a.count, a.images, a.channels) == (b.count, b.images, b.channels)
    np.testing.assert_allclose(a.mean, b.mean, rtol=rtol)
    # m2 can be ~0 (flat images): compare it on the scale of the pixel count.
    np.testing.assert_allclose(a.to_dict()["m2"], b.to_dict()["m2"], rtol=rtol, atol=rtol * a.count)


def assert_identical_stats(a: ChannelStats, b: ChannelStats) -> None:
    assert a.to_dict() == b.to_dict()
    if a.mean_image is None or b.mean_image is None:
        assert a.mean_image is None and b.mean_image is None
    else:
        np.testing.assert_array_equal(a.mean_image, b.mean_image)


# ---------------------------------------------------------------------------------------------
# ChannelStats arithmetic


def test_mean_and_std_equal_numpy_over_all_pixels_of_images_of_different_sizes():
    images = random_images(0, [(7, 300), (64, 64), (1, 1), (250, 3), (31, 17)])
    stats = stats_of(images)
    everything = pixels_of(images)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.var, everything.var(axis=0), rtol=RTOL)
    assert stats.count == len(everything)
    assert stats.images == len(images)
    assert stats.channels == 3


def test_every_pixel_weighs_the_same_not_every_image():
    # A small dark flat image and a large bright noisy one: averaging per-image means and stds
    # (the popular recipe) weights the small image as much as the large one and ignores how far
    # apart the two images' means are.
    rng = np.random.default_rng(1)
    small = rng.integers(0, 20, (8, 8, 3), dtype=np.uint8)
    large = rng.integers(150, 256, (120, 90, 3), dtype=np.uint8)
    images = [small, large]
    everything = pixels_of(images)
    recipe_mean = np.mean([im.reshape(-1, 3).mean(axis=0) / 255 for im in images], axis=0)
    recipe_std = np.mean([im.reshape(-1, 3).std(axis=0) / 255 for im in images], axis=0)
    # The data must tell the two answers apart, or this test could not catch the mistake.
    assert np.all(np.abs(recipe_mean - everything.mean(axis=0)) > 0.1)
    assert np.all(np.abs(recipe_std - everything.std(axis=0)) > 0.01)

    stats = stats_of(images)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)


def test_uint8_images_and_the_same_pixels_as_floats_in_0_1_agree():
    images = random_images(2, [(10, 20), (33, 5)])
    as_uint8 = stats_of(images)
    as_float = stats_of([im.astype(np.float32) / 255 for im in images])
    # float32 / 255 is rounded to float32; that rounding, not the arithmetic, sets the tolerance.
    np.testing.assert_allclose(as_float.mean, as_uint8.mean, rtol=1e-7)
    np.testing.assert_allclose(as_float.std, as_uint8.std, rtol=1e-6)
    as_uint16 = stats_of([im.astype(np.uint16) * 257 for im in images])
    np.testing.assert_allclose(as_uint16.mean, as_uint8.mean, rtol=RTOL)
    np.testing.assert_allclose(as_uint16.std, as_uint8.std, rtol=RTOL)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.full((4, 4, 3), 0.5), r"float64 pixels are not supported.*astype\(np.float32\)"),
        (np.full((4, 4, 3), 200.0, np.float32), r"values from 200 to 200; if they are 8-bit intensities, divide by 255"),
        (np.full((4, 4, 3), np.nan, np.float32), r"NaN in 48 value"),
        (np.full((4, 4, 3), 7, np.int32), r"int32 pixels .* convert with image.astype\(np.uint8\)"),
        (np.ones((4, 4, 3), bool), r"bool pixels are not supported"),
    ],
)
def test_pixels_outside_the_contract_are_refused_not_guessed(pixels, message):
    with pytest.raises(AugkitError, match=message):
        ChannelStats().update(pixels)


def test_uint16_pixels_are_divided_by_65535():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65536, (40, 30, 3), dtype=np.uint16)
    stats = ChannelStats().update(image)
    pixels = image.reshape(-1, 3).astype(np.float64) / 65535
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=RTOL)


def test_gray_images_as_hw_or_hw1_give_the_same_one_channel_stats():
    images = random_images(4, [(12, 9), (5, 40)], channels=1)
    as_hw1 = stats_of(images)
    as_hw = stats_of([im[..., 0] for im in images])
    assert as_hw1.channels == as_hw.channels == 1
    assert_identical_stats(as_hw1, as_hw)
    everything = pixels_of(images)
    np.testing.assert_allclose(as_hw.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(as_hw.std, everything.std(axis=0), rtol=RTOL)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_nhwc_batch_update_equals_updating_image_by_image(dtype):
    images = random_images(5, [(16, 24)] * 6)
    if dtype == np.float32:
        images = [im.astype(np.float32) / 255 for im in images]
    one_by_one = stats_of(images, mean_image=True)
    batched = ChannelStats(mean_image=True).update(np.stack(images))
    # One batch is reduced exactly and merged once, image by image is merged six times: the
    # float64 state may differ in the last bits only.
    assert_same_stats(batched, one_by_one, rtol=1e-13)
    np.testing.assert_allclose(batched.mean_image, one_by_one.mean_image, rtol=1e-13)


def test_uint8_sums_stay_exact_past_32_bit_accumulators():
    # 2**24 pixels of 255 overflow any 32-bit sum (and 2**24 * 255**2 any 32-bit sum of
    # squares); half 0 and half 255 has mean and std exactly 0.5.
    half = 1 << 23
    image = np.zeros((2 * half // 4096, 4096), dtype=np.uint8)
    image[: image.shape[0] // 2] = 255
    stats = ChannelStats().update(image)
    assert stats.count == 2 * half
    assert stats.mean.tolist() == [0.5]
    assert stats.std.tolist() == [0.5]


def test_images_of_more_than_four_channels_are_measured_exactly_too():
    # OpenCV sums at most four channels; wider images take the numpy path.
    rng = np.random.default_rng(6)
    wide = rng.integers(0, 256, (20, 30, 5), dtype=np.uint8)
    stats = ChannelStats().update(wide)
    pixels = wide.reshape(-1, 5).astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=RTOL)


def test_empty_stats_have_nan_mean_and_std():
    stats = ChannelStats(3)
    assert stats.count == 0 and stats.images == 0
    assert np.isnan(stats.mean).all() and np.isnan(stats.std).all()
    assert stats.mean.shape == (3,)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.int32), "int32 pixels (values from 0 to 0) are not supported"),
        (np.zeros((4, 4, 3), dtype=bool), "bool pixels are not supported"),
        (np.zeros(5, dtype=np.uint8), "expected an image"),
        (np.zeros((1, 1, 4, 4, 3), dtype=np.uint8), "expected an image"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty image"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((4, 4, 1), dtype=np.uint8), "1 channel(s), but these statistics have 3"),
    ],
)
def test_update_refuses_bad_images_and_leaves_the_stats_unchanged(bad, message):
    stats = ChannelStats().update(np.full((2, 2, 3), 7, dtype=np.uint8))
    before = stats.to_dict()
    with pytest.raises(AugkitError, match=re.escape(message)):
        stats.update(bad)
    assert stats.to_dict() == before


def test_mean_image_is_the_pixelwise_mean_of_the_images():
    images = random_images(7, [(6, 5)] * 4)
    stats = stats_of(images, mean_image=True)
    expected = np.mean([im / 255.0 for im in images], axis=0)
    np.testing.assert_allclose(stats.mean_image, expected, rtol=1e-13)
    assert stats.mean_image.dtype == np.float64


def test_mean_image_refuses_images_of_another_size_and_says_to_resize():
    stats = ChannelStats(mean_image=True).update(np.zeros((6, 5, 3), dtype=np.uint8))
    before = stats.to_dict()
    with pytest.raises(AugkitError, match="same size.*augkit preprocess --size"):
        stats.update(np.zeros((5, 6, 3), dtype=np.uint8))
    assert stats.to_dict() == before


# ---------------------------------------------------------------------------------------------
# merge


@st.composite
def images_and_cuts(draw):
    channels = draw(st.sampled_from([1, 3]))
    shapes = st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(channels))
    images = draw(
        st.lists(arrays(np.uint8, shapes, elements=st.integers(0, 255)), min_size=1, max_size=8)
    )
    cuts = draw(st.lists(st.integers(0, len(images)), max_size=4))
    return images, sorted(cuts)


@settings(max_examples=60, deadline=None)
@given(images_and_cuts())
def test_merging_shards_equals_one_pass_over_all_images(case):
    images, cuts = case
    bounds = [0, *cuts, len(images)]
    shards = [stats_of(images[a:b]) for a, b in zip(bounds, bounds[1:])]  # some may be empty
    merged = ChannelStats()
    for shard in shards:
        merged.merge(shard)
    assert_same_stats(merged, stats_of(images))
    everything = pixels_of(images)
    np.testing.assert_allclose(merged.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(merged.std, everything.std(axis=0), rtol=RTOL, atol=1e-12)


def test_merging_empty_stats_is_an_exact_identity_both_ways():
    stats = stats_of(random_images(8, [(5, 7), (9, 2)]), mean_image=False)
    reference = stats.to_dict()
    assert stats.merge(ChannelStats()) is stats
    assert stats.to_dict() == reference
    into_empty = ChannelStats().merge(stats)
    assert into_empty.to_dict() == reference


def test_merge_keeps_the_mean_image():
    images = random_images(9, [(4, 4)] * 5)
    merged = stats_of(images[:2], mean_image=True).merge(stats_of(images[2:], mean_image=True))
    np.testing.assert_allclose(
        merged.mean_image, stats_of(images, mean_image=True).mean_image, rtol=1e-13
    )


def test_merge_refuses_different_channel_counts():
    color = stats_of(random_images(10, [(3, 3)]))
    gray = stats_of(random_images(10, [(3, 3)], channels=1))
    with pytest.raises(AugkitError, match="1 channel"):
        color.merge(gray)


def test_merge_refuses_mixing_stats_with_and_without_a_mean_image():
    images = random_images(11, [(3, 3)] * 2)
    with pytest.raises(AugkitError, match="mean image"):
        stats_of(images[:1], mean_image=True).merge(stats_of(images[1:]))


def test_merge_refuses_mean_images_of_different_sizes():
    a = stats_of(random_images(12, [(3, 3)]), mean_image=True)
    b = stats_of(random_images(12, [(4, 3)]), mean_image=True)
    with pytest.raises(AugkitError, match="different sizes"):
        a.merge(b)


# ---------------------------------------------------------------------------------------------
# save / load


def test_save_and_load_round_trip_exactly(tmp_path):
    stats = stats_of(random_images(13, [(9, 8), (3, 30)]))
    path = stats.save(tmp_path / "stats.json")
    loaded = ChannelStats.load(path)
    assert_identical_stats(loaded, stats)
    assert not list(tmp_path.glob("*.npy"))
    # Readable by people and by other tools: plain JSON with the documented keys.
    data = json.loads(path.read_text())
    assert data["format"] == "augkit.stats/1"
    assert {"count", "images", "channels", "mean", "std", "m2"} <= set(data)
    np.testing.assert_allclose(data["std"], stats.std, rtol=1e-15)


def test_save_and_load_round_trip_with_the_mean_image_in_a_sidecar(tmp_path):
    stats = stats_of(random_images(14, [(6, 7)] * 3), mean_image=True)
    path = stats.save(tmp_path / "stats.json")
    sidecar = tmp_path / "stats.mean_image.npy"
    assert json.loads(path.read_text())["mean_image"] == sidecar.name
    np.testing.assert_array_equal(np.load(sidecar, allow_pickle=False), stats.mean_image)

    # The pair moves together: the JSON names its sidecar relative to itself.
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in (path, sidecar):
        f.rename(moved / f.name)
    loaded = ChannelStats.load(moved / "stats.json")
    assert_identical_stats(loaded, stats)
    # And it keeps working as statistics with a mean image.
    loaded.update(np.zeros((6, 7, 3), dtype=np.uint8))
    assert loaded.images == 4


def _valid_stats_dict() -> dict:
    return stats_of(random_images(15, [(4, 4)])).to_dict()


def _edit(**changes):
    def edit(data: dict) -> dict:
        return {**data, **changes}

    return edit


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (None, "not found"),
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "expected a JSON object"),
        (lambda d: json.dumps(_edit(format="augkit.stats/2")(d)), "format is 'augkit.stats/2'"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "format"}), "format is None"),
        (lambda d: json.dumps(_edit(count="many")(d)), "'count' must be an integer"),
        (lambda d: json.dumps(_edit(mean=[0.5, 0.5])(d)), "'mean' must be a list of 3"),
        (lambda d: json.dumps(_edit(m2=[-1.0, 1.0, 1.0])(d)), "'m2' must not be negative"),
        (lambda d: json.dumps(_edit(std=[0.9, 0.9, 0.9])(d)), "'std'.*does not match"),
        (lambda d: json.dumps(_edit(images=0)(d)), "'count'.*'images'"),
        (lambda d: json.dumps(_edit(images=d["count"] + 1)(d)), r"'count' \(16\) counts pixels and cannot be less than 'images' \(17\)"),
        (lambda d: json.dumps(_edit(count=10**30)(d)), re.escape("'count' must be an integer in [0, 2**63 - 1]")),
        (lambda d: json.dumps(_edit(mean=[float("nan")] * 3)(d)), "'mean' must be a list of 3 finite numbers"),
        (lambda d: json.dumps(_edit(mean=[120.0, 118.0, 104.0])(d)), re.escape("are not on the [0, 1] pixel scale")),
        (lambda d: json.dumps(_edit(mean_image="gone.npy")(d)), "mean image gone.npy is missing"),
        (lambda d: json.dumps(_edit(mean_image="../x.npy")(d)), "file beside it"),
    ],
)
def test_load_reports_what_is_wrong_with_the_file_and_names_it(tmp_path, make_file, message):
    path = tmp_path / "stats.json"
    if make_file is not None:
        path.write_text(make_file(_valid_stats_dict()))
    with pytest.raises(AugkitError, match=re.escape(str(path)) + ".*" + message):
        ChannelStats.load(path)


# ---------------------------------------------------------------------------------------------
# statistics files that load but are wrong


def test_a_file_of_no_pixels_is_refused_instead_of_standardising_to_nan(tmp_path):
    path = ChannelStats(3).save(tmp_path / "empty.json")
    message = re.escape(f"{path}: holds the statistics of no pixels (count 0), which would standardise every image to NaN")
    with pytest.raises(AugkitError, match=message):
        ChannelStats.load(path)
    with pytest.raises(AugkitError, match=message):
        augkit.load_pipeline(f"standardize(stats={path})")
    # Empty statistics stay valid in memory (a shard whose files were all skipped has them).
    assert ChannelStats.from_dict(ChannelStats(3).to_dict()).count == 0


def test_standardize_refuses_a_file_whose_std_is_zero(tmp_path):
    path = ChannelStats().update(np.full((4, 4, 3), 7, dtype=np.uint8)).save(tmp_path / "flat.json")
    with pytest.raises(AugkitError, match=re.escape(f"{path}: a channel has std 0")):
        augkit.load_pipeline(f"standardize(stats={path})")


def _stats_with_mean_image(tmp_path: Path) -> tuple[Path, Path, ChannelStats]:
    stats = stats_of(random_images(14, [(6, 7)] * 3), mean_image=True)
    path = stats.save(tmp_path / "stats.json")
    return path, tmp_path / "stats.mean_image.npy", stats


def _write_npy(path: Path, shape: tuple[int, ...], dtype: object) -> None:
    """A .npy file that is only a header: it claims ``shape`` and ``dtype`` and holds no data."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)


def test_a_mean_image_header_claiming_224_gib_is_refused_before_anything_is_allocated(tmp_path):
    # Statistics of one 100000 x 100000 RGB image, and a 128-byte .npy that claims its mean image.
    path = tmp_path / "stats.json"
    count = 100_000 * 100_000
    path.write_text(json.dumps({
        "format": "augkit.stats/1", "count": count, "images": 1, "channels": 3, "mean": [0.5] * 3,
        "std": [0.1] * 3, "m2": [0.01 * count] * 3, "mean_image": "m.npy",
    }))  # fmt: skip
    _write_npy(tmp_path / "m.npy", (100_000, 100_000, 3), np.float64)
    with pytest.raises(AugkitError, match=re.escape(
        f"{path}: its mean image m.npy is 100000 x 100000 x 3: 30,000,000,000 values, more than 357,913,940"
    )):  # fmt: skip
        ChannelStats.load(path)


def test_a_mean_image_header_that_does_not_match_the_statistics_is_refused(tmp_path):
    path, sidecar, _ = _stats_with_mean_image(tmp_path)
    _write_npy(sidecar, (100_000, 100_000, 3), np.float64)
    with pytest.raises(AugkitError, match=re.escape(
        f"{path}: its mean image stats.mean_image.npy is 100000 x 100000 x 3; these statistics need shape "
        f"H x W x 3 with H x W = 42 (count / images)"
    )):  # fmt: skip
        ChannelStats.load(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-8], "is truncated: its header announces 1,008 bytes of data, the file holds 1,000"),
        (lambda b: b + b"\0" * 8, "has bytes after its data"),
        (lambda b: b"not a numpy file at all" * 8, "is not a readable .npy file"),
        (lambda b: b[:8], "is not a readable .npy file"),
    ],
)
def test_a_damaged_mean_image_file_is_one_line(tmp_path, damage, message):
    path, sidecar, _ = _stats_with_mean_image(tmp_path)
    sidecar.write_bytes(damage(sidecar.read_bytes()))
    with pytest.raises(AugkitError, match=re.escape(f"{path}: its mean image stats.mean_image.npy {message}")):
        ChannelStats.load(path)


def test_mean_images_in_fortran_order_or_npy_version_2_read_back_exactly(tmp_path):
    path, sidecar, stats = _stats_with_mean_image(tmp_path)
    np.save(sidecar, np.asfortranarray(stats.mean_image))
    np.testing.assert_array_equal(ChannelStats.load(path).mean_image, stats.mean_image)
    with open(sidecar, "wb") as f:
        np.lib.format.write_array(f, stats.mean_image.astype(np.float32), version=(2, 0))
    np.testing.assert_array_equal(ChannelStats.load(path).mean_image, stats.mean_image.astype(np.float32))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_mean_image_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    path, sidecar, _ = _stats_with_mean_image(tmp_path)
    sidecar.unlink()
    os.mkfifo(sidecar)
    with pytest.raises(AugkitError, match="the mean image is a FIFO, not a regular file"):
        ChannelStats.load(path)


def test_a_mean_image_beside_statistics_of_images_of_several_sizes_is_refused(tmp_path):
    path, _, _ = _stats_with_mean_image(tmp_path)
    data = json.loads(path.read_text())
    data.update(count=data["count"] + 1, std=[math.sqrt(m / (data["count"] + 1)) for m in data["m2"]])
    path.write_text(json.dumps(data))
    with pytest.raises(AugkitError, match="is not a multiple of 'images' .*: the images were not all one size"):
        ChannelStats.load(path)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        (np.zeros((4, 4, 1)), "shape H x W x 3"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (np.array(["a", "b"], dtype=object), "holds object values"),
        (np.full((4, 4, 3), 1, dtype=np.int64), "holds int64 values"),
        (np.full((4, 4, 3), 120.0), re.escape("statistics are on the [0, 1] pixel scale")),
    ],
)
def test_load_refuses_a_bad_mean_image(tmp_path, sidecar, message):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({**_valid_stats_dict(), "mean_image": "m.npy"}))
    np.save(tmp_path / "m.npy", sidecar, allow_pickle=True)
    with pytest.raises(AugkitError, match=re.escape(str(path)) + ".*" + message):
        ChannelStats.load(path)


# ---------------------------------------------------------------------------------------------
# compute_stats over a real folder of image files


@pytest.fixture
def png_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray], Path]:
    """An ImageFolder of PNGs of mixed sizes (runs of equal sizes too) and one truncated PNG."""
    root = tmp_path / "data"
    sizes = [(8, 8)] * 5 + [(5, 9), (16, 12), (16, 12), (3, 3)] + [(8, 8)] * 4
    images = random_images(16, sizes)
    for i, image in enumerate(images):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / f"{i:03d}.png", image)
    broken = root / "cat" / "broken.png"
    broken.write_bytes(encode_image(images[0], ".png")[:60])  # cut off mid-file
    return root, images, broken


def test_compute_stats_measures_every_readable_image_and_records_the_broken_one(png_folder):
    root, images, broken = png_folder
    dataset = open_dataset(root)
    result = compute_stats(dataset)
    assert result.skipped == [Skipped(str(broken), "truncated (PNG ends before its IEND chunk)")]
    stats = result.stats
    assert stats.images == len(images) == len(dataset) - 1
    everything = pixels_of(images)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)


def test_compute_stats_gives_bit_identical_results_for_any_number_of_workers(
    png_folder, monkeypatch
):
    root, images, broken = png_folder
    monkeypatch.setattr(augkit.stats.dataset, "CHUNK_IMAGES", 3)  # several chunks from a few files
    dataset = open_dataset(root)
    reports: dict[int, list[int]] = {1: [], 2: []}
    serial = compute_stats(dataset, workers=1, mean_image=False, progress=reports[1].append)
    parallel = compute_stats(dataset, workers=2, mean_image=False, progress=reports[2].append)
    assert_identical_stats(parallel.stats, serial.stats)
    assert (
        parallel.skipped
        == serial.skipped
        == [Skipped(str(broken), "truncated (PNG ends before its IEND chunk)")]
    )
    assert sum(reports[1]) == sum(reports[2]) == len(dataset)


def test_compute_stats_workers_also_run_where_there_is_no_fork(png_folder, monkeypatch):
    # Windows and macOS start workers with spawn: the job must survive pickling.
    root, _, _ = png_folder
    monkeypatch.setattr(augkit.stats.dataset, "CHUNK_IMAGES", 5)
    dataset = open_dataset(root)
    forked = compute_stats(dataset, workers=2)
    monkeypatch.setattr(augkit.processes.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    spawned = compute_stats(dataset, workers=2)
    assert_identical_stats(spawned.stats, forked.stats)
    assert spawned.skipped == forked.skipped


def test_compute_stats_in_workers_measures_the_same_as_numpy(png_folder, monkeypatch):
    root, images, _ = png_folder
    monkeypatch.setattr(augkit.stats.dataset, "CHUNK_IMAGES", 4)
    stats = compute_stats(open_dataset(root), workers=3).stats
    everything = pixels_of(images)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)


def test_compute_stats_gray_measures_the_gray_conversion(png_folder):
    root, _, broken = png_folder
    dataset = open_dataset(root)
    stats = compute_stats(dataset, gray=True).stats
    grays = [read_image(p, gray=True) for p in dataset.sources if p != str(broken)]
    assert stats.channels == 1
    everything = pixels_of(grays)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)


def test_compute_stats_mean_image_over_equal_sized_files(tmp_path, monkeypatch):
    images = random_images(17, [(6, 6)] * 7)
    for i, image in enumerate(images):
        write_image(tmp_path / f"{i}.png", image)
    monkeypatch.setattr(augkit.stats.dataset, "CHUNK_IMAGES", 3)
    for workers in (1, 2):
        stats = compute_stats(open_dataset(tmp_path), mean_image=True, workers=workers).stats
        expected = np.mean([im / 255.0 for im in images], axis=0)
        np.testing.assert_allclose(stats.mean_image, expected, rtol=1e-13)


def test_compute_stats_mean_image_refuses_files_of_different_sizes(png_folder):
    root, _, _ = png_folder
    with pytest.raises(AugkitError, match="augkit preprocess --size"):
        compute_stats(open_dataset(root), mean_image=True)


@pytest.mark.parametrize("workers", [0, -2, 1.5, True])
def test_compute_stats_refuses_a_worker_count_below_one(png_folder, workers):
    with pytest.raises(AugkitError, match="workers must be a positive integer"):
        compute_stats(open_dataset(png_folder[0]), workers=workers)


def test_compute_stats_fails_when_no_image_is_readable(tmp_path):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"not an image at all")
    with pytest.raises(AugkitError, match="no readable images in .*all 2 were skipped"):
        compute_stats(open_dataset(tmp_path))


def test_compute_stats_fails_on_an_empty_dataset(png_folder):
    with pytest.raises(AugkitError, match="no readable images in .*empty"):
        compute_stats(open_dataset(png_folder[0]).subset([]))


def test_compute_stats_over_in_memory_digits_matches_numpy():
    pytest.importorskip("sklearn")
    dataset = open_dataset("digits")
    stats = compute_stats(dataset).stats
    pixels = np.stack([dataset.read(i) for i in range(len(dataset))])
    assert pixels.shape == (1797, 8, 8, 1) and stats.channels == 1  # gray, as augkit train sees them
    everything = pixels.reshape(-1, 1).astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=RTOL)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=RTOL)
