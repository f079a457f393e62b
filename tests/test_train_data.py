"""augkit.train.data: every layout opens as uint8 arrays, batches are reproducible for any number of
workers, and the device-side normaliser computes what numpy computes.

Datasets are built at test time; the loaders with workers start real worker processes.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import augkit
from augkit.errors import AugkitError
from augkit.stats import ChannelStats
from augkit.train import data
from augkit.train.config import TrainConfig

CLASSES = {"a": 10, "b": 20, "c": 30}  # unequal on purpose: stratification shows in the counts
AUGMENT = "rotate(limit=30); hflip"


def config(data_path: Path | str | None = None, **fields) -> TrainConfig:
    return TrainConfig(data=None if data_path is None else str(data_path), **fields)


def counts(labels: np.ndarray, classes: int = 3) -> list[int]:
    return np.bincount(labels, minlength=classes).tolist()


def rows(images: np.ndarray) -> set[bytes]:
    """Each image's bytes: comparing sets shows which images went where, whatever the order."""
    return {image.tobytes() for image in images}


@pytest.fixture(scope="module")
def digits() -> data.Splits:
    return data.open_splits(config())


@pytest.fixture
def folder(make_image_folder) -> Path:
    """An ImageFolder without val: classes a, b, c of 10, 20, 30 distinct 32 x 32 photo crops."""
    return make_image_folder(CLASSES)


def all_batches(loader: data.Loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.batches(epoch))


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


# ----------------------------------------------------------------------------- opening


def test_sample_digits_open_by_default_as_gray_8x8_with_their_own_val(digits):
    assert digits.shape == (8, 8, 1)
    assert digits.train_images.dtype == np.uint8 and digits.train_labels.dtype == np.int64
    assert (len(digits.train_images), len(digits.val_images)) == (1437, 360)
    assert digits.classes == [str(d) for d in range(10)]
    assert digits.val_split is None and digits.skipped == []
    # sample_data/README.md's table of images per class.
    assert counts(digits.train_labels, 10) == [142, 146, 142, 146, 145, 145, 145, 143, 139, 144]
    assert counts(digits.val_labels, 10) == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]
    first = sorted((augkit.sample_data_dir() / "digits" / "train" / "0").glob("*.png"))[0]
    np.testing.assert_array_equal(digits.train_images[0, ..., 0], cv2.imread(str(first), cv2.IMREAD_GRAYSCALE))


def test_imagefolder_without_val_is_carved_stratified_and_the_same_for_the_same_seed(folder):
    splits = data.open_splits(config(folder, val_split=0.2))
    assert splits.shape == (32, 32, 3) and splits.val_split == 0.2
    assert counts(splits.val_labels) == [2, 4, 6] and counts(splits.train_labels) == [8, 16, 24]
    assert not rows(splits.train_images) & rows(splits.val_images)
    assert len(rows(splits.train_images) | rows(splits.val_images)) == 60

    again = data.open_splits(config(folder, val_split=0.2))
    np.testing.assert_array_equal(again.val_images, splits.val_images)
    other = data.open_splits(config(folder, val_split=0.2, seed=1))
    assert rows(other.val_images) != rows(splits.val_images)
    assert counts(other.val_labels) == [2, 4, 6]


def test_no_val_split_given_carves_the_default_fraction_and_says_so(folder):
    splits = data.open_splits(config(folder))
    assert splits.val_split == data.DEFAULT_VAL_SPLIT == 0.2
    assert counts(splits.val_labels) == [2, 4, 6]


def test_train_subset_takes_an_equal_share_per_class_from_train_only(folder):
    full = data.open_splits(config(folder))
    splits = data.open_splits(config(folder, train_subset=9))
    assert counts(splits.train_labels) == [3, 3, 3]
    assert rows(splits.train_images) <= rows(full.train_images)
    np.testing.assert_array_equal(splits.val_images, full.val_images)  # val is untouched
    # a has 8 training images, fewer than a third of 30: the others share what it cannot take.
    assert counts(data.open_splits(config(folder, train_subset=30)).train_labels) == [8, 11, 11]

    same = data.open_splits(config(folder, train_subset=9))
    np.testing.assert_array_equal(same.train_images, splits.train_images)
    other = data.open_splits(config(folder, train_subset=9, seed=3))
    assert rows(other.train_images) != rows(splits.train_images)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=2, max_size=6), fraction=st.floats(0, 1), seed=st.integers(0, 9))
def test_stratified_subset_is_as_equal_as_the_classes_allow(sizes, fraction, seed):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    count = round(fraction * len(labels))
    chosen = data.stratified_subset(labels, count, seed)
    taken = np.bincount(labels[chosen], minlength=len(sizes))
    assert len(chosen) == len(set(chosen.tolist())) == count and (np.diff(chosen) > 0).all()
    short = taken < np.array(sizes)  # classes that could have given more
    if short.any():
        # Equal shares to one image: no class got two more than one that could have given more.
        assert taken.max() <= taken[short].min() + 1
    np.testing.assert_array_equal(data.stratified_subset(labels, count, seed), chosen)


def test_packed_preprocess_output_is_used_memory_mapped(make_image_folder, preprocess_cli, tmp_path):
    src = make_image_folder({"cat": 6, "dog": 6})
    out = tmp_path / "out"
    result = preprocess_cli(src, out, "--size", "16", "--split-val", "0.25")
    assert result.exit_code == 0, result.output
    splits = data.open_splits(config(out))
    manifest = json.loads((out / "manifest.json").read_text())
    for images, labels, split in ((splits.train_images, splits.train_labels, "train"),
                                  (splits.val_images, splits.val_labels, "val")):  # fmt: skip
        assert isinstance(images, np.memmap) or isinstance(images.base, np.memmap)
        np.testing.assert_array_equal(images, np.load(out / f"{split}_images.npy"))
        np.testing.assert_array_equal(labels, np.load(out / f"{split}_labels.npy"))
    assert splits.classes == manifest["classes"] == ["cat", "dog"]
    assert splits.shape == (16, 16, 3) and splits.val_split is None


def test_training_on_a_read_only_packed_output_prints_no_warning(make_image_folder, preprocess_cli, tmp_path):
    # The README's main workflow: torch warned on every run that the memory-mapped array is
    # not writable (the normaliser only reads it).
    src, out = make_image_folder({"cat": 6, "dog": 6}), tmp_path / "out"
    assert preprocess_cli(src, out, "--size", "16", "--split-val", "0.25").exit_code == 0
    done = subprocess.run([sys.executable, "-m", "augkit", "train", str(out), "--epochs", "1", "-q", "-o", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_packed_output_without_val_is_carved_from_its_rows(make_packed):
    built = make_packed({"train": 30})
    splits = data.open_splits(config(built.root))
    train_idx, val_idx = augkit.preprocess.plan.stratified_split(built.labels["train"], 0.2, 0)
    np.testing.assert_array_equal(splits.train_images, built.images["train"][train_idx])
    np.testing.assert_array_equal(splits.val_images, built.images["train"][val_idx])
    np.testing.assert_array_equal(splits.val_labels, built.labels["train"][val_idx])


def test_cifar_batches_open_with_their_test_batch_as_val(make_cifar):
    cifar = make_cifar("cifar10", rows=4)
    splits = data.open_splits(config(cifar.root))
    assert splits.shape == (32, 32, 3) and len(splits.classes) == 10
    assert (len(splits.train_images), len(splits.val_images)) == (20, 4)
    first = cifar.train_rows[0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(splits.train_images[0], first)
    np.testing.assert_array_equal(splits.train_labels, cifar.train_labels)


def test_unreadable_files_are_skipped_and_listed(folder):
    broken = folder / "b" / "0003.png"
    broken.write_bytes(broken.read_bytes()[:40])
    splits = data.open_splits(config(folder, val_split=0.2))
    assert len(splits.train_images) + len(splits.val_images) == 59
    assert len(splits.train_labels) == len(splits.train_images) and len(splits.val_labels) == len(splits.val_images)
    assert [path for path, _ in splits.skipped] == [str(broken)] and "truncated" in splits.skipped[0][1]


# ----------------------------------------------------------------------------- errors


def one_class(root: Path, write_png) -> Path:
    for i in range(3):
        write_png(root / "cat" / f"{i}.png", np.full((4, 4, 3), i, np.uint8))
    return root


def mixed_sizes(root: Path, write_png) -> Path:
    write_png(root / "train" / "cat" / "0.png", np.zeros((32, 32, 3), np.uint8))
    write_png(root / "train" / "dog" / "0.png", np.zeros((24, 40, 3), np.uint8))
    write_png(root / "val" / "cat" / "0.png", np.zeros((32, 32, 3), np.uint8))
    return root


def broken(root: Path, write_png) -> Path:
    for name in ("train/cat/0.png", "train/dog/0.png", "val/cat/0.png"):
        (root / name).parent.mkdir(parents=True)
        (root / name).write_bytes(b"not a png")
    return root


def flat(root: Path, write_png) -> Path:
    for i in range(3):
        write_png(root / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
    return root


@pytest.mark.parametrize(
    ("build", "fields", "fragments"),
    [
        (None, {}, ["no such file or directory"]),
        (lambda root, _: root, {}, ["no dataset found", "class folders"]),
        (one_class, {}, ["needs at least 2 classes; DATA has 1: cat", "<class>"]),
        (flat, {}, ["needs at least 2 classes", "class folders"]),
        (mixed_sizes, {}, ["images differ in size", "32x32", "24x40", "augkit preprocess", "--size 32"]),
        (mixed_sizes, {"val_split": 0.2}, ["DATA already has a val split; drop --val-split"]),
        (broken, {}, ["could be read", "fix or remove"]),
    ],
    ids=["missing", "empty", "one-class", "unlabelled", "mixed-sizes", "val-split-with-val", "unreadable"],
)
def test_bad_data_is_one_clear_error_before_training(tmp_path, write_png, build, fields, fragments):
    root = tmp_path / "data"
    if build is not None:
        root.mkdir()
        build(root, write_png)
    with pytest.raises(AugkitError) as error:
        data.open_splits(config(root, **fields))
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_a_val_split_too_small_for_the_data_is_refused(folder):
    with pytest.raises(AugkitError, match=r"leaves the val split empty.*raise --val-split"):
        data.open_splits(config(folder, val_split=0.01))


def test_a_subset_larger_than_train_is_refused_naming_the_most(folder):
    with pytest.raises(AugkitError, match=r"--train-subset 49 is more than the 48 training images.*at most 48"):
        data.open_splits(config(folder, train_subset=49))


def test_data_over_the_memory_budget_points_to_the_packed_format(folder, monkeypatch):
    monkeypatch.setattr(data, "MEMORY_BUDGET", 32 * 32 * 3 * 10)
    with pytest.raises(AugkitError, match=r"GiB limit.*augkit preprocess.*memory-mapped"):
        data.open_splits(config(folder))
    monkeypatch.setattr(data, "MEMORY_BUDGET", 32 * 32 * 3 * 60)
    assert len(data.open_splits(config(folder)).train_images) == 48


# ----------------------------------------------------------------------------- batches


def test_training_batches_are_a_pure_function_of_seed_and_epoch(digits):
    make = lambda: data.Loader(digits.train_images, digits.train_labels, batch_size=100,
                                    train=True, seed=5, augment=None, workers=0, pin_memory=False)  # fmt: skip
    loader = make()
    first = all_batches(loader, 3)
    np.random.seed(1), torch.manual_seed(1)  # no global generator takes part
    all_batches(loader, 0)
    assert same_batches(all_batches(make(), 3), first) and same_batches(all_batches(loader, 3), first)
    assert not same_batches(all_batches(loader, 4), first)

    assert len(loader) == len(first) == 1437 // 100  # the incomplete last batch is dropped
    assert all(x.shape == (100, 8, 8, 1) and x.dtype == torch.uint8 and y.dtype == torch.int64 for x, y in first)
    order = np.concatenate([loader.order(3)])
    assert len(set(order.tolist())) == len(order) == 1400  # each sample at most once
    x = torch.cat([x for x, _ in first]).numpy()
    np.testing.assert_array_equal(x, digits.train_images[order])
    np.testing.assert_array_equal(torch.cat([y for _, y in first]).numpy(), digits.train_labels[order])


def test_a_training_set_smaller_than_a_batch_is_one_batch(digits):
    loader = data.Loader(digits.train_images[:10], digits.train_labels[:10], batch_size=64, train=True,
                              seed=0, augment=None, workers=0, pin_memory=False)  # fmt: skip
    (x, _), = all_batches(loader, 0)
    assert len(loader) == 1 and len(x) == 10


def test_evaluation_batches_cover_every_sample_in_order_without_augmentation(digits):
    pipeline = data.load_augment(AUGMENT, 0)
    loader = data.Loader(digits.val_images, digits.val_labels, batch_size=64, train=False,
                              seed=0, augment=pipeline, workers=0, pin_memory=False)  # fmt: skip
    batches = all_batches(loader, 7)
    assert len(loader) == len(batches) == 6 and len(batches[-1][0]) == 360 - 5 * 64
    np.testing.assert_array_equal(torch.cat([x for x, _ in batches]).numpy(), digits.val_images)
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), digits.val_labels)


@pytest.fixture(params=["in-memory", "memory-mapped"])
def train_arrays(request, digits, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """The first 300 training digits, as an array in memory or as a memory-mapped .npy file."""
    images, labels = digits.train_images[:300], digits.train_labels[:300]
    if request.param == "memory-mapped":
        np.save(tmp_path / "images.npy", images)
        images = np.load(tmp_path / "images.npy", mmap_mode="r")
    return images, labels


def test_augmented_batches_are_identical_for_any_number_of_workers(train_arrays):
    images, labels = train_arrays
    loaders = [
        data.Loader(images, labels, batch_size=64, train=True, seed=0,
                         augment=data.load_augment(AUGMENT, 0), workers=workers, pin_memory=False)
        for workers in (0, 2)
    ]  # fmt: skip
    serial, parallel = all_batches(loaders[0], 1), all_batches(loaders[1], 1)
    assert len(serial) == 4 and same_batches(serial, parallel)
    assert same_batches(all_batches(loaders[1], 1), serial)  # the persistent workers, again
    assert not same_batches(all_batches(loaders[1], 2), serial)

    order = loaders[0].order(1)
    x = torch.cat([x for x, _ in serial]).numpy()
    assert x.dtype == np.uint8 and x.shape == (256, 8, 8, 1)
    assert (x != images[order]).any(axis=(1, 2, 3)).mean() > 0.5  # augmented, not copied
    np.testing.assert_array_equal(torch.cat([y for _, y in serial]).numpy(), labels[order])
    pipeline = data.load_augment(AUGMENT, 0)
    np.testing.assert_array_equal(x[5], pipeline(np.array(images[order[5]]), index=int(order[5]), epoch=1))


def test_a_memory_mapped_array_reaches_workers_as_its_file_not_its_bytes(tmp_path):
    np.save(tmp_path / "images.npy", np.arange(4 * 64 * 64 * 3, dtype=np.uint32).astype(np.uint8).reshape(4, 64, 64, 3))
    images = np.load(tmp_path / "images.npy", mmap_mode="r")
    pickled = pickle.dumps(data._SharedImages(images))
    assert len(pickled) < 1000
    received = pickle.loads(pickled).array
    assert isinstance(received, np.memmap)
    np.testing.assert_array_equal(received, images)


def test_an_augmentation_that_changes_the_size_is_refused_before_workers_start(digits):
    with pytest.raises(AugkitError) as error:
        data.Loader(digits.train_images, digits.train_labels, batch_size=64, train=True, seed=0,
                         augment=data.load_augment("crop(size=6)", 0), workers=2, pin_memory=False)  # fmt: skip
    assert str(error.value) == (
        "the augment pipeline turned a 8x8x1 uint8 image into 6x6x1 uint8; keep size and dtype "
        "(e.g. crop with padding)"
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_an_augmentation_that_sometimes_changes_the_size_is_refused_when_it_does(digits, workers):
    images, labels = digits.train_images[:300], digits.train_labels[:300]
    spec = "crop(size=6, p=0.5)"
    # A seed whose draw for the first sample keeps the size, so the check at start passes.
    seed = next(s for s in range(50) if data.load_augment(spec, s)(images[0], index=0, epoch=0).shape == (8, 8, 1))
    loader = data.Loader(images, labels, batch_size=64, train=True, seed=seed,
                              augment=data.load_augment(spec, seed), workers=workers, pin_memory=False)  # fmt: skip
    with pytest.raises(AugkitError, match=r"^the augment pipeline turned a 8x8x1 uint8 image into 6x6x1 uint8;"):
        all_batches(loader, 0)


# ----------------------------------------------------------------------------- normalisation


@pytest.fixture
def rgb_batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)


def test_standardizing_matches_numpy_per_channel(rgb_batch):
    stats = ChannelStats().update(rgb_batch)
    normalizer = data.Normalizer.from_stats(stats, standardize="channel", mean_image=False, channels=3)
    out = normalizer(torch.from_numpy(rgb_batch))
    expected = ((rgb_batch / 255 - stats.mean) / stats.std).transpose(0, 3, 1, 2)
    assert out.dtype == torch.float32 and out.shape == (6, 3, 5, 4)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    assert normalizer.mean.shape == normalizer.std.shape == (3, 1, 1)


@pytest.mark.parametrize("tiny", [0.0, 1e-9, 9.9e-7])
def test_a_channel_with_std_below_the_floor_is_only_centred(rgb_batch, tiny):
    # One floor (augkit.stats.MIN_STD) for the standardize step and the harness: a --stats file
    # with std 1e-9 blew pixels up a billion-fold and ended as a misleading "diverged".
    from augkit.stats import MIN_STD

    real = ChannelStats().update(rgb_batch)
    stats = SimpleNamespace(channels=3, mean=real.mean, std=np.array([real.std[0], tiny, real.std[2]]), mean_image=None)
    out = data.Normalizer.from_stats(stats, standardize="channel", mean_image=False, channels=3)(torch.from_numpy(rgb_batch))
    np.testing.assert_allclose(out[:, 1].numpy(), rgb_batch[..., 1] / 255 - stats.mean[1], atol=1e-5)
    assert tiny < MIN_STD and float(out.abs().max()) < 10


def test_mean_image_subtraction_matches_numpy(rgb_batch):
    stats = ChannelStats(mean_image=True).update(rgb_batch)
    for standardize, std in (("none", 1.0), ("channel", stats.std)):
        normalizer = data.Normalizer.from_stats(stats, standardize=standardize, mean_image=True, channels=3)
        expected = ((rgb_batch / 255 - stats.mean_image) / std).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(normalizer(torch.from_numpy(rgb_batch)).numpy(), expected, atol=1e-5)
        assert normalizer.mean.shape == (3, 5, 4)


def test_without_statistics_the_normalizer_only_scales(rgb_batch):
    normalizer = data.Normalizer.from_stats(None, standardize="none", mean_image=False, channels=3)
    np.testing.assert_allclose(normalizer(torch.from_numpy(rgb_batch)).numpy(),
                               (rgb_batch / 255).transpose(0, 3, 1, 2), atol=1e-7)  # fmt: skip


@pytest.mark.parametrize("channels_last", [False, True])
def test_to_device_returns_normalised_input_in_the_memory_format_asked(rgb_batch, channels_last):
    normalizer = data.Normalizer.from_stats(None, standardize="none", mean_image=False, channels=3)
    y = torch.arange(6)
    x, labels = data.to_device(torch.from_numpy(rgb_batch), y, "cpu", normalizer, channels_last=channels_last)
    assert x.shape == (6, 3, 5, 4) and x.dtype == torch.float32 and torch.equal(labels, y)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert x.is_contiguous(memory_format=fmt)


def test_fit_normalizer_measures_train_only_caches_stats_json_and_reuses_it(digits, tmp_path):
    normalizer = data.fit_normalizer(config(), digits, tmp_path)
    expected = ChannelStats().update(digits.train_images)
    cached = ChannelStats.load(tmp_path / "stats.json")
    np.testing.assert_allclose(cached.mean, expected.mean)
    assert cached.images == 1437
    np.testing.assert_allclose(normalizer.mean.flatten().numpy(), expected.mean, rtol=1e-6)
    np.testing.assert_allclose(normalizer.std.flatten().numpy(), expected.std, rtol=1e-6)

    # A resumed run reads the cache rather than measuring again.
    ChannelStats().update(np.full((1, 2, 2, 1), 51, np.uint8)).update(np.zeros((1, 2, 2, 1), np.uint8)).save(
        tmp_path / "stats.json"
    )
    resumed = data.fit_normalizer(config(), digits, tmp_path)
    assert resumed.mean.item() == pytest.approx(0.1) and resumed.std.item() == pytest.approx(0.1)


def test_fit_normalizer_without_standardizing_needs_no_statistics(digits, tmp_path):
    normalizer = data.fit_normalizer(config(standardize="none"), digits, tmp_path)
    assert not (tmp_path / "stats.json").exists()
    assert normalizer.mean.sum().item() == 0 and normalizer.std.prod().item() == 1


def test_fit_normalizer_uses_a_given_stats_file(digits, tmp_path):
    path = ChannelStats().update(np.full((1, 2, 2, 1), 102, np.uint8)).update(np.zeros((1, 2, 2, 1), np.uint8)).save(
        tmp_path / "given.json"
    )
    normalizer = data.fit_normalizer(config(stats=str(path)), digits, tmp_path / "run")
    assert normalizer.mean.item() == pytest.approx(0.2) and not (tmp_path / "run" / "stats.json").exists()


def test_a_stats_file_for_other_channels_or_without_a_mean_image_is_refused(digits, rgb_batch, tmp_path):
    rgb = ChannelStats().update(rgb_batch).save(tmp_path / "rgb.json")
    own = tmp_path / f"{Path(digits.source).name}-stats.json"  # a new file: rgb.json may be another dataset's
    with pytest.raises(AugkitError) as error:
        data.fit_normalizer(config(stats=str(rgb)), digits, tmp_path)
    assert str(error.value) == (
        f"stats file {rgb} has 3 channels but {digits.source} has 1 (gray: all its images are stored gray); "
        f"compute DATA's own with `augkit stats {digits.source} -o {own}` and pass --stats {own}"
    )
    gray = ChannelStats().update(digits.train_images).save(tmp_path / "gray.json")
    with pytest.raises(AugkitError, match=r"has no mean image.*--mean-image"):
        data.fit_normalizer(config(stats=str(gray), mean_image=True), digits, tmp_path)
    small = ChannelStats(mean_image=True).update(np.zeros((1, 4, 4, 1), np.uint8)).save(tmp_path / "small.json")
    with pytest.raises(AugkitError, match=r"has a 4x4 mean image but DATA's images are 8x8"):
        data.fit_normalizer(config(stats=str(small), mean_image=True), digits, tmp_path)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_batches_from_the_normalised_split_equal_batches_normalised_one_by_one(make_image_folder, channels_last):
    src = make_image_folder({"a": 6, "b": 5}, sizes=((8, 6),))
    splits = data.open_splits(TrainConfig(data=str(src), val_split=0.3))
    stats = ChannelStats().update(splits.train_images)
    normalizer = data.Normalizer.from_stats(stats, standardize="channel", mean_image=False, channels=3)
    loader = data.Loader(splits.train_images, splits.train_labels, batch_size=3, train=True, seed=1)
    cached = data.DeviceBatches(loader, normalizer, torch.device("cpu"), channels_last=channels_last)
    assert cached._cache is not None  # the split is small: normalised once
    layout = torch.channels_last if channels_last else torch.contiguous_format
    pairs = list(zip(cached.batches(2), loader.batches(2)))
    assert len(pairs) == len(cached) == len(splits.train_labels) // 3
    for (x, y), (raw_x, raw_y) in pairs:
        expected, expected_y = data.to_device(raw_x, raw_y, "cpu", normalizer, channels_last=channels_last)
        assert torch.equal(x, expected) and torch.equal(y, expected_y)  # the same values, bit for bit
        assert x.is_contiguous(memory_format=layout)


# ----------------------------------------------------------------------------- --augment ending in a normalisation


README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def readme_pipelines() -> tuple[str, str]:
    """The README's two pipelines that end in standardize: the Python API's inline one, the YAML file."""
    import re

    [inline] = re.findall(r'load_pipeline\("([^"]*standardize[^"]*)"\)', README)
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "standardize" in b]
    return inline, block


@pytest.mark.parametrize(
    "step", ["standardize(stats=STATS)", "subtract_mean(stats=STATS)", "subtract_mean(stats=STATS, mode=image)", "scale",
             "standardize(mean=0.3, std=0.4)"],  # fmt: skip
)
def test_a_final_normalisation_step_runs_on_the_device_and_equals_the_step(digits, tmp_path, step):
    stats = ChannelStats(mean_image=True).update(digits.train_images).save(tmp_path / "s.json")
    spec = f"crop(size=8, padding=1); rotate(limit=10); {step.replace('STATS', str(stats))}"
    full = augkit.load_pipeline(spec, seed=3)
    workers = data.load_augment(spec, 3)
    assert workers.steps == ["crop", "rotate"]  # the step is taken out of the workers' pipeline...
    normalizer = data.fit_normalizer(config(augment=spec, seed=3), digits, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # ...and nothing of the harness's own is computed
    for i in range(5):
        image = digits.train_images[i]
        uint8 = workers(image, index=i, epoch=2)  # what a worker sends: uint8, the same draws
        assert uint8.dtype == np.uint8 and uint8.shape == image.shape
        on_device = normalizer(torch.from_numpy(uint8[None]))[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(on_device, full(image, index=i, epoch=2), atol=2e-5)  # ...normalised once


def test_a_pipeline_of_only_a_normalisation_leaves_no_worker_augmentation(digits, tmp_path):
    stats = ChannelStats().update(digits.train_images).save(tmp_path / "s.json")
    assert data.load_augment(f"standardize(stats={stats})", 0) is None
    normalizer = data.fit_normalizer(config(augment=f"standardize(stats={stats})"), digits, tmp_path)
    harness = data.fit_normalizer(config(stats=str(stats)), digits, tmp_path)
    assert torch.equal(normalizer.mean, harness.mean) and torch.equal(normalizer.std, harness.std)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("standardize(mean=0.5, std=0.2); hflip", "--augment: standardize is step 1 of 2; a normalisation step"),
        ("hflip; OneOf(transforms=[scale, vflip])", "--augment: scale is inside OneOf (step 2 of 2)"),
        ("scale; standardize(mean=0.5, std=0.2)", "--augment: scale is step 1 of 2"),
    ],
)
def test_a_normalisation_step_anywhere_but_last_is_refused_before_training(spec, expected):
    with pytest.raises(AugkitError) as error:
        data.load_augment(spec, 0)
    assert str(error.value).startswith(expected) and "may only end the pipeline" in str(error.value)


def test_a_final_normalisation_with_the_harness_statistics_options_is_refused(digits, tmp_path):
    stats = ChannelStats(mean_image=True).update(digits.train_images).save(tmp_path / "s.json")
    spec = "hflip; scale"
    with pytest.raises(AugkitError, match=r"^--augment ends in scale, which normalises the run .*; drop --stats"):
        data.fit_normalizer(config(augment=spec, stats=str(stats)), digits, tmp_path)
    with pytest.raises(AugkitError, match=r"drop --mean-image"):
        data.fit_normalizer(config(augment=spec, mean_image=True), digits, tmp_path)


def test_a_final_standardize_of_other_channels_says_both_counts_and_the_fix(digits, rgb_batch, tmp_path):
    rgb = ChannelStats().update(rgb_batch).save(tmp_path / "rgb.json")
    own = tmp_path / f"{Path(digits.source).name}-stats.json"  # a new file: rgb.json may be another dataset's
    with pytest.raises(AugkitError) as error:
        data.fit_normalizer(config(augment=f"hflip; standardize(stats={rgb})"), digits, tmp_path)
    assert str(error.value) == (
        f"--augment: standardize's statistics file {rgb} has 3 channels but {digits.source} has 1 "
        f"(gray: all its images are stored gray); compute DATA's own with `augkit stats {digits.source} -o {own}` "
        f"and pass --stats {own}"
    )
    with pytest.raises(AugkitError, match=r"mean/std has 2 channels but .* has 1 .*; give one value$"):
        data.fit_normalizer(config(augment="standardize(mean=[0.1, 0.2], std=[0.3, 0.3])"), digits, tmp_path)


def test_the_readme_api_pipeline_trains_with_workers_and_evaluates_alike(tmp_path, monkeypatch):
    """The README's `crop; rotate; standardize(stats=stats.json)`, stats from `augkit stats`, as --augment."""
    from click.testing import CliRunner

    from augkit.cli.main import cli

    inline, _ = readme_pipelines()
    monkeypatch.chdir(tmp_path)  # stats.json, as the README writes it, in the current folder
    run = lambda *args: CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)  # noqa: E731
    assert run("stats", "-o", "stats.json", "-q").exit_code == 0
    quick = ["--model", "mlp", "--hidden", "32", "--epochs", "1", "-q", "--augment", inline]
    results = {}
    for workers in (0, 2):
        done = run("train", *quick, "--workers", workers, "-o", f"run{workers}")
        assert done.exit_code == 0, done.output
        results[workers] = json.loads((tmp_path / f"run{workers}" / "summary.json").read_text())["final_val_acc"]
        assert not (tmp_path / f"run{workers}" / "stats.json").exists()  # the pipeline's statistics, not the harness's
    assert results[0] == results[2] > 0.3  # the same run for any number of workers
    evaluated = run("evaluate", "run0", "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.output)["accuracy"] == results[0]


def test_the_readme_yaml_pipeline_trains_on_rgb_images(make_image_folder, tmp_path):
    from click.testing import CliRunner

    from augkit.cli.main import cli

    _, block = readme_pipelines()
    src = make_image_folder({"a": 6, "b": 6}, sizes=((24, 24),))  # its crop keeps 24 x 24: training needs one size
    assert CliRunner().invoke(cli, ["stats", str(src), "-o", str(tmp_path / "stats.json"), "-q"]).exit_code == 0
    (tmp_path / "aug.yaml").write_text(block)  # stats.json resolves beside the file
    done = CliRunner().invoke(cli, ["train", str(src), "--augment", str(tmp_path / "aug.yaml"), "--model", "mlp",
                                    "--hidden", "16", "--epochs", "1", "-q", "-o", str(tmp_path / "run")])  # fmt: skip
    assert done.exit_code == 0, done.output
