"""What a preprocessing run will do: its settings, its splits, and its shards.

The plan is a pure function of the settings and the source's index (file list and labels):
the same command plans the same shards on any machine, whatever the number of workers. A
shard is a contiguous range of one split's samples and the unit of everything after: it runs
as one task, writes its outputs under temporary names, and is recorded as done only when they
are complete. That is what lets a run resume after a crash, and what would let shards run on
other machines (docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from augkit.documents import short_repr
from augkit.errors import AugkitError
from augkit.io.datasets import Dataset, list_splits, open_dataset
from augkit.io.images import DEFAULT_MAX_PIXELS, WHITE, background_color
from augkit.pixels import MAX_SIDE
from augkit.resize import RESIZE_MODES

FORMATS = ("packed", "folder")
IMAGE_FORMATS = ("png", "jpg")
# Steps whose float output cannot be stored as uint8 images: standardise at training time.
_FLOAT_STEPS = ("standardize", "subtract_mean", "scale", "Normalize", "ToFloat")
# The most augmented copies per training image: each is a full image written to OUT, and planned
# and held as one (a thousand 224 x 224 copies of one image are already 150 MB).
MAX_COPIES = 1000
# The most bytes of output images a shard holds: a worker keeps a shard's images in memory
# until it writes them (and their .npy bytes while it does: twice this at the peak), so
# --size 9459 makes shards of one image, not of 256 (68 GB). See PreprocessConfig.samples_per_shard.
MAX_SHARD_BYTES = 64 << 20
# The longest file name, in bytes, on the filesystems augkit writes to (ext4, XFS, APFS, NTFS).
NAME_MAX = 255


@dataclass(frozen=True)
class PreprocessConfig:
    """Every setting that shapes a run's output (workers and verbosity do not)."""

    size: tuple[int, int] | None = None  # (height, width); None keeps each image's size
    resize_mode: str = "center-crop"  # see augkit.resize
    jpeg_draft: bool = True  # decode JPEGs at 1/2-1/8 scale when --size shrinks them 2x more (augkit.resize)
    gray: bool = False  # one channel instead of RGB
    exif_orientation: bool = True  # read photos as shown (read_image); False: as stored
    background: tuple[int, int, int] = WHITE  # (R, G, B) that alpha is composited onto (read_image)
    format: str = "packed"  # "packed": N x H x W x C .npy per split; "folder": a class tree of image files
    image_format: str = "png"  # folder format only: "png" (lossless) or "jpg"
    jpeg_quality: int = 95
    copies: int = 0  # augmented copies per training image, besides the original
    pipeline: dict[str, Any] | None = field(default=None, hash=False)  # canonical spec for the copies
    split_val: float | None = None  # carve this fraction of train into val (stratified, seeded)
    split_seed: int = 0
    shard_size: int = 256  # most samples per shard (samples_per_shard): small enough to keep every worker busy

    def __post_init__(self) -> None:
        object.__setattr__(self, "background", background_color(self.background))  # also from "black", "R,G,B"
        if self.resize_mode not in RESIZE_MODES:
            raise AugkitError(f"unknown resize mode {self.resize_mode!r}; choose one of: {', '.join(RESIZE_MODES)}")
        if self.format not in FORMATS:
            raise AugkitError(f"unknown format {self.format!r}; choose one of: {', '.join(FORMATS)}")
        if self.image_format not in IMAGE_FORMATS:
            raise AugkitError(f"unknown image format {self.image_format!r}; choose one of: {', '.join(IMAGE_FORMATS)}")
        if self.format == "packed" and self.resize_mode == "shorter":
            raise AugkitError(
                "--resize-mode shorter gives images of different sizes, which a packed array cannot hold; "
                "use center-crop, pad or exact, or --format folder"
            )
        if self.size is not None:
            _check_size(self.size, self.resize_mode)
        if self.shard_size < 1:
            raise AugkitError(f"--shard-size must be at least 1, got {self.shard_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise AugkitError(f"JPEG quality must be 1 to 100, got {self.jpeg_quality}")
        if not 0 <= self.copies <= MAX_COPIES:
            raise AugkitError(
                f"--copies must be 0 to {MAX_COPIES} (augmented copies per training image), got {self.copies}"
            )
        if self.copies and self.pipeline is None:
            raise AugkitError("--copies needs a pipeline (-p) to make the copies with")
        if self.pipeline is not None and not self.copies:
            raise AugkitError("-p makes augmented copies: give --copies K too (K copies per training image)")
        if self.pipeline is not None:
            names = {name for step in self.pipeline["steps"] for name in step}
            floats = sorted(names & set(_FLOAT_STEPS))
            if floats:
                raise AugkitError(
                    f"the copies' pipeline has {', '.join(floats)}, whose float output cannot be saved as "
                    "images; keep offline copies uint8 and standardise at training time"
                )
        if self.split_val is not None and not 0 < self.split_val < 1:
            raise AugkitError(f"--split-val is a fraction between 0 and 1, got {self.split_val}")

    def samples_per_shard(self, split: str) -> int:
        """How many samples of ``split`` a shard holds: ``shard_size``, or fewer where that many
        samples' output images (a training sample's copies included) would pass
        ``MAX_SHARD_BYTES``; at least 1. A function of the settings alone, so the plan is the
        same for any number of workers, and on a resume.

        Only where ``size`` fixes the output size: with ``resize_mode`` "shorter" the output is
        at least ``size[0]`` squared, and that is what counts; without ``size`` nothing is known
        before the images are read, and ``shard_size`` stands.
        """
        if self.size is None:
            return self.shard_size
        height, width = self.size
        pixels = height * (height if self.resize_mode == "shorter" else width)
        images = 1 + (self.copies if split == "train" else 0)
        sample_bytes = pixels * (1 if self.gray else 3) * images
        return max(1, min(self.shard_size, MAX_SHARD_BYTES // sample_bytes))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size) if self.size else None
        data["background"] = list(self.background)  # as JSON gives it back, so a resume compares equal
        return data


def _check_size(size: tuple[int, int], mode: str) -> None:
    """Refuse an output size that no image can be resized to: a side past ``MAX_SIDE``, or more
    pixels than the pixel limit (with ``mode`` "shorter", a square of the shorter side, the
    least it makes)."""
    height, width = size
    if not all(type(side) is int and 1 <= side <= MAX_SIDE for side in size):
        raise AugkitError(
            f"--size {height}x{width}: each side must be a whole number of pixels from 1 to {MAX_SIDE}; "
            "choose a smaller --size"
        )
    least = height * (height if mode == "shorter" else width)
    if least > DEFAULT_MAX_PIXELS:
        raise AugkitError(
            f"--size {height}x{width} with --resize-mode {mode} makes images of {least:,} pixels"
            f"{' or more' if mode == 'shorter' else ''}, more than the pixel limit of {DEFAULT_MAX_PIXELS:,}; "
            "choose a smaller --size"
        )


@dataclass(frozen=True)
class Shard:
    """One unit of work: samples ``start`` to ``stop`` of split ``split``."""

    id: str  # "train-00003": also the name of its files
    split: str
    start: int
    stop: int
    inputs: str  # digest of the shard's source paths and labels: a changed source means redo
    targets: str | None = None  # "masks" or "boxes" packed beside the images (Dataset.target_kind)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ``fraction`` of each class, drawn with ``seed``, each kept in order."""
    val = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, int(label) + 1])  # +1: -1 (unlabelled) is a valid label
        count = int(round(fraction * len(members)))
        val.append(rng.permutation(members)[:count])
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def open_splits(source: Any, config: PreprocessConfig) -> dict[str, Dataset]:
    """The splits to write, in order: the source's own, or train and a carved val."""
    available = list_splits(source)
    if config.split_val is None:
        splits = {split: open_dataset(source, split) for split in available}
        first = splits[available[0]]
        for split, dataset in splits.items():  # one class list for the output (COCO files each carry theirs)
            if dataset.classes != first.classes:
                raise AugkitError(
                    f"{source}: its {split} split has other classes than its {available[0]} split "
                    f"({short_repr(dataset.classes)}, {short_repr(first.classes)}); give both the same"
                )
        return splits
    if "val" in available:
        raise AugkitError(f"{source} already has a val split; drop --split-val to keep it")
    train = open_dataset(source, "train")
    train_idx, val_idx = stratified_split(train.labels, config.split_val, config.split_seed)
    for split, indices in (("train", train_idx), ("val", val_idx)):
        if not len(indices):
            raise AugkitError(
                f"--split-val {config.split_val} of {len(train)} images leaves no image in {split} "
                f"({config.split_val} of each class, rounded); choose another fraction"
            )
    return {"train": train.subset(train_idx), "val": train.subset(val_idx)}


def make_shards(splits: dict[str, Dataset], config: PreprocessConfig) -> list[Shard]:
    """Every split cut into contiguous shards of ``config.samples_per_shard(split)`` samples (the
    last may be shorter)."""
    shards = []
    for split, dataset in splits.items():
        shard_size = config.samples_per_shard(split)
        for number, start in enumerate(range(0, len(dataset), shard_size)):
            stop = min(start + shard_size, len(dataset))
            digest = hashlib.sha256()
            digest.update("\n".join(dataset.sources[start:stop]).encode("utf-8", "surrogateescape"))
            digest.update(np.ascontiguousarray(dataset.labels[start:stop], dtype=np.int64).tobytes())
            shards.append(Shard(f"{split}-{number:05d}", split, start, stop, digest.hexdigest(), dataset.target_kind))
    return shards


def output_names(dataset: Dataset, copies: int = 0) -> list[str]:
    """File stems for the folder format: the source's own, numbered where two would collide.

    Images from in-memory sets (CIFAR, digits) are named by their index. Sub-folders inside a
    class folder are flattened, so ``a/x.jpg`` and ``b/x.png`` become ``x`` and ``x_1``. A
    stem also takes its copies' names (``x_aug1`` ... ``x_aug<copies>``), so a source named
    ``x_aug1.png`` beside ``x.png`` becomes ``x_aug1_1`` rather than be overwritten by a copy.
    A stem is cut short where its longest file name (``<stem>_aug<copies>.png``) would pass
    ``NAME_MAX`` bytes.
    """
    names, used = [], set()
    tail = (f"_aug{copies}" if copies else "") + "." + max(IMAGE_FORMATS, key=len)  # of the longest name
    for index, source in enumerate(dataset.sources):
        stem = f"{index:06d}" if dataset.kind in ("cifar10", "cifar100", "digits", "packed") else _stem(source)
        label, candidate, number = int(dataset.labels[index]), _fitted(stem, tail), 0
        while used.intersection((label, name) for name in _with_copies(candidate, copies)):
            number += 1
            candidate = f"{_fitted(stem, f'_{number}{tail}')}_{number}"
        used.update((label, name) for name in _with_copies(candidate, copies))
        names.append(candidate)
    return names


def _with_copies(stem: str, copies: int) -> list[str]:
    return [stem, *(f"{stem}_aug{k}" for k in range(1, copies + 1))]


def _fitted(stem: str, tail: str) -> str:
    """``stem``, cut short a character at a time until ``stem + tail`` is a file name of at most
    ``NAME_MAX`` bytes (as the filesystem counts them: ``os.fsencode``)."""
    while len(os.fsencode(stem + tail)) > NAME_MAX and stem:
        stem = stem[:-1]
    return stem


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name
