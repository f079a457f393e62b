"""The torch bridge: a dataset as uint8 arrays, reproducible batches, normalisation on the device.

Three steps, in the order a run takes them, each in its own module:

1. ``open_splits(config)`` (here) opens DATA (any layout augkit opens) as train and val arrays
   of uint8 N x H x W x C images. A packed ``augkit preprocess`` output is used memory-mapped as
   it is; anything else is decoded once into memory, unreadable files skipped and listed.
2. ``Loader(...)`` (``augkit.train.batches``) gives each epoch's batches as uint8 tensors. The
   order and every augmentation are pure functions of (seed, epoch, index): the batches of an
   epoch are the same for any number of workers and whatever the state of any random
   generator, so a resumed run sees exactly the batches an uninterrupted one would have.
3. ``DeviceBatches`` (``augkit.train.device``) moves them to the device, where ``--augment-on
   device`` augments whole batches (``augkit.train.device_augment``), and ``Normalizer`` turns
   them into standardised float32 N x C x H x W: uint8 crosses the bus (a quarter of float32's
   bytes) and the arithmetic runs on the whole batch.

The names of the three modules are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import augkit
from augkit.errors import AugkitError, ImageReadError
from augkit.io import packed
from augkit.io.datasets import Dataset, list_splits, open_dataset
from augkit.preprocess.plan import stratified_split
from augkit.train.batches import NORMALIZATION_STEPS, Loader, _SharedImages, load_augment  # noqa: F401
from augkit.train.config import TrainConfig
from augkit.train.device import (  # noqa: F401
    CPU_CACHE_BYTES, STATS_FILE, DeviceBatches, Normalizer, augments_on_device, create_device_augment, fit_normalizer,
    to_device,
)  # fmt: skip

# The fraction of train carved into val when DATA has no val split and --val-split is not given.
DEFAULT_VAL_SPLIT = 0.2

# The most bytes of decoded images open_splits holds in memory. Past it, the fix is a packed
# `augkit preprocess` output, which trains memory-mapped at any size.
MEMORY_BUDGET = 4 << 30


# ----------------------------------------------------------------------------- opening the data


@dataclass
class Splits:
    """The training and validation images of a run, as uint8 arrays, and where they came from."""

    train_images: np.ndarray  # uint8 N x H x W x C, in memory or memory-mapped
    train_labels: np.ndarray  # int64 N, index into classes
    val_images: np.ndarray
    val_labels: np.ndarray
    classes: list[str]
    source: str  # what was opened, for messages
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable files: (path, reason)
    val_split: float | None = None  # the fraction of train carved into val; None: DATA's own val

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


def open_splits(config: TrainConfig) -> Splits:
    """The train and val images of ``config.data`` (None: the sample digits), checked for training.

    DATA's own val split is used when it has one; otherwise ``config.val_split`` of each class
    (``DEFAULT_VAL_SPLIT``, 0.2, when None: the caller should say so) is carved from train,
    stratified and seeded. ``config.train_subset`` then keeps that many training images, an equal
    share per class as far as the classes allow. Images have ``Dataset.channels`` channels: 1
    when every image of DATA is stored gray, 3 (RGB) otherwise (the gray rule of
    ``augkit.io.datasets``, which ``augkit stats`` follows too).

    Raises:
        AugkitError: DATA is missing, empty, unreadable or has one class; an image of train or
            val has no class (label -1: a flat folder, or a packed output of one); images
            differ in size; a split would be empty; the subset is larger than train; or the
            decoded images would not fit in ``MEMORY_BUDGET``. Each message says how to fix it.
    """
    path = Path(config.data) if config.data is not None else augkit.sample_data_dir() / "digits"
    source = str(path)
    splits = list_splits(path)
    train = open_dataset(path, "train")
    _check_classes(train, source)
    _check_labelled(train, source)

    carved: float | None = None
    if "val" in splits:
        if config.val_split is not None:
            raise AugkitError(f"{source}: DATA already has a val split; drop --val-split")
        val = open_dataset(path, "val")
        _check_labelled(val, source)
        train_idx, val_idx = np.arange(len(train)), np.arange(len(val))
    else:
        carved = DEFAULT_VAL_SPLIT if config.val_split is None else config.val_split
        train_idx, val_idx = stratified_split(train.labels, carved, config.seed)
        val = train
        _check_carved(train, train_idx, val_idx, carved, source)

    if config.train_subset is not None:
        if config.train_subset > len(train_idx):
            what = "after carving val" if carved is not None else "in DATA"
            raise AugkitError(
                f"{source}: --train-subset {config.train_subset} is more than the {len(train_idx)} "
                f"training images {what}; choose at most {len(train_idx)}"
            )
        train_idx = train_idx[stratified_subset(train.labels[train_idx], config.train_subset, config.seed)]

    train_set, val_set = train.subset(train_idx), val.subset(val_idx)
    skipped: list[tuple[str, str]] = []
    if train.kind == "packed":
        train_images, val_images = _packed_arrays(train, train_idx, val, val_idx, source)
    else:
        (train_images, val_images), keep, skipped = _decode([train_set, val_set], source)
        train_set, val_set = train_set.subset(keep[0]), val_set.subset(keep[1])
    return Splits(
        train_images, train_set.labels, val_images, val_set.labels,
        list(train.classes), source, skipped, carved,
    )  # fmt: skip


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of ``count`` samples: an equal share of each class, as far as it has images.

    A class with fewer images than its share gives all it has and the rest is shared among the
    others; the few classes that get one image more than the rest are drawn with ``seed``.
    """
    names, sizes = np.unique(labels, return_counts=True)
    rng = np.random.default_rng([seed, 0x5B5E7])  # a stream of its own, apart from the val carve
    quota, remaining, left = sizes.copy(), count, len(names)
    order = np.argsort(sizes, kind="stable")
    for position, k in enumerate(order):  # smallest classes first: they may not fill a share
        share = remaining // left
        if sizes[k] > share:  # this class and every larger one take an equal share
            larger = order[position:]
            quota[larger] = share
            remaining -= share * len(larger)
            quota[rng.permutation(larger)[:remaining]] += 1  # the images an equal split leaves over
            break
        remaining, left = remaining - sizes[k], left - 1
    chosen = [rng.permutation(np.flatnonzero(labels == name))[:q] for name, q in zip(names, quota)]
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)


def _check_classes(train: Dataset, source: str) -> None:
    present = [train.classes[i] for i in np.unique(train.labels) if i >= 0]
    if len(present) >= 2:
        return
    if not train.classes:
        raise AugkitError(
            f"{source}: training needs at least 2 classes; DATA has none (its images are not in "
            f"class folders): put them in {source}/<class>/ folders"
        )
    listed = ", ".join(present) if present else "none with images"
    raise AugkitError(
        f"{source}: training needs at least 2 classes; DATA has {len(present)}: {listed}; "
        f"add a folder of images per class ({source}/<class>/<image>)"
    )


def _check_labelled(dataset: Dataset, source: str) -> None:
    """Every image of ``dataset`` has a class: the loss and the accuracy need one (a label of -1,
    which a packed output of unlabelled images holds, would index no class)."""
    unlabelled = int(np.count_nonzero(dataset.labels < 0))
    if unlabelled:
        fix = ("preprocess a source whose every image is in a <class>/ folder" if dataset.kind == "packed"
               else "put every image in a class folder (<class>/<image>)")  # fmt: skip
        raise AugkitError(
            f"{source}: its {dataset.split} split holds {unlabelled} unlabelled image(s) (label -1) among "
            f"{len(dataset)}; training and evaluation need a class for every image: {fix}"
        )


def _check_carved(train: Dataset, train_idx: np.ndarray, val_idx: np.ndarray, fraction: float, source: str) -> None:
    if len(val_idx) and len(train_idx):
        return
    left = "val" if not len(val_idx) else "train"
    classes = len(np.unique(train.labels))
    fix = "raise --val-split or add images" if left == "val" else "lower --val-split or add images"
    raise AugkitError(
        f"{source}: --val-split {fraction:g} leaves the {left} split empty ({len(train)} images in "
        f"{classes} classes, {fraction:g} of each class rounded); {fix}"
    )


def _packed_arrays(
    train: Dataset, train_idx: np.ndarray, val: Dataset, val_idx: np.ndarray, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """The packed output's memory maps; rows picked out of them (carve, subset) are copied."""
    maps = {split: packed.open_packed(train.root, (split,))[3].array(0) for split in {train.split, val.split}}
    arrays = []
    for dataset, idx in ((train, train_idx), (val, val_idx)):
        whole = maps[dataset.split]
        if len(idx) == len(whole):  # every row, in order: the map itself, no copy
            arrays.append(whole)
            continue
        _check_budget(len(idx) * whole[0].nbytes, source, "copying the selected rows of")
        arrays.append(whole[idx])
    return arrays[0], arrays[1]


def _decode(
    datasets: Sequence[Dataset], source: str
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[str, str]]]:
    """Each dataset's images as one uint8 array, one size for all; unreadable files skipped.

    Returns (arrays, kept indices per dataset, skipped (path, reason)).
    """
    total = sum(len(d) for d in datasets)
    first: tuple[str, tuple[int, ...]] | None = None  # (source, shape) of the first image read
    gray = datasets[0].channels == 1  # one answer for all: the datasets are splits of one DATA
    buffers, kept, skipped = [], [], []
    for dataset in datasets:
        buffer, keep = None, []
        for i in range(len(dataset)):
            try:
                image = dataset.read(i, gray=gray)
            except ImageReadError as e:
                skipped.append((e.path, e.reason))
                continue
            if first is None:
                first = (dataset.sources[i], image.shape)
                _check_budget(total * image.nbytes, source, "decoding")
            elif image.shape != first[1]:
                raise AugkitError(_sizes_message(source, first, (dataset.sources[i], image.shape)))
            if buffer is None:
                buffer = np.empty((len(dataset), *image.shape), dtype=np.uint8)
            buffer[len(keep)] = image
            keep.append(i)
        buffers.append(buffer[: len(keep)] if buffer is not None else None)
        kept.append(np.array(keep, dtype=np.int64))

    for dataset, buffer in zip(datasets, buffers):
        if buffer is None or not len(buffer):
            reason = f"; the first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
            raise AugkitError(
                f"{source}: none of the {len(dataset)} images of the {dataset.split} split could be "
                f"read ({len(skipped)} unreadable{reason}); fix or remove the broken files"
            )
    return buffers, kept, skipped


def _sizes_message(source: str, a: tuple[str, tuple[int, ...]], b: tuple[str, tuple[int, ...]]) -> str:
    (path_a, (h_a, w_a, _)), (path_b, (h_b, w_b, _)) = a, b
    size = f"{h_a}" if h_a == w_a else f"{h_a}x{w_a}"
    return (
        f"{source}: images differ in size ({path_a} is {h_a}x{w_a}, {path_b} is {h_b}x{w_b}, "
        f"height x width); a batch needs one size: run `augkit preprocess {source} OUT --size {size}` "
        f"and train on OUT"
    )


def _check_budget(nbytes: int, source: str, doing: str) -> None:
    if nbytes <= MEMORY_BUDGET:
        return
    raise AugkitError(
        f"{source}: {doing} the images needs {nbytes / 2**30:.1f} GiB of memory, over the "
        f"{MEMORY_BUDGET / 2**30:g} GiB limit; write a packed dataset with `augkit preprocess "
        f"{source} OUT --size 32` (add --split-val 0.2 if DATA has no val split) and train on "
        f"OUT, which is read memory-mapped, or train on fewer images with --train-subset"
    )
