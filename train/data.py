"""The torch bridge: a dataset as uint8 arrays, reproducible batches, normalisation on the device.

Three steps, in the order a run takes them:

1. ``open_splits(config)`` opens DATA (any layout augkit opens) as train and val arrays of uint8
   N x H x W x C images. A packed ``augkit preprocess`` output is used memory-mapped as it is;
   anything else is decoded once into memory, unreadable files skipped and listed.
2. ``Loader(...)`` gives each epoch's batches as uint8 tensors. The order and every
   augmentation are pure functions of (seed, epoch, index): the batches of an epoch are the same
   for any number of workers and whatever the state of any random generator, so a resumed run
   sees exactly the batches an uninterrupted one would have.
3. ``Normalizer`` turns a uint8 batch into standardised float32 N x C x H x W on the device:
   uint8 crosses the bus (a quarter of float32's bytes) and the arithmetic runs on the whole batch.
"""

from __future__ import annotations

import mmap
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

import augkit
from augkit.errors import AugkitError, ImageReadError
from augkit.io import packed
from augkit.io.datasets import Dataset, list_splits, open_dataset
from augkit.preprocess.plan import stratified_split
from augkit.processes import exit_with_parent, worker_context
from augkit.stats import MIN_STD, ChannelStats
from augkit.train.config import TrainConfig
from augkit.train.distributed import Distributed, shard

if TYPE_CHECKING:  # albumentations loads only for runs that augment
    from augkit.pipeline import Pipeline

# The fraction of train carved into val when DATA has no val split and --val-split is not given.
DEFAULT_VAL_SPLIT = 0.2

# The most bytes of decoded images open_splits holds in memory. Past it, the fix is a packed
# `augkit preprocess` output, which trains memory-mapped at any size.
MEMORY_BUDGET = 4 << 30

# Bytes of images per ChannelStats update in fit_normalizer: the training array may be a
# memory map larger than memory, so it is measured a slice at a time.
_STATS_CHUNK_BYTES = 64 << 20

STATS_FILE = "stats.json"


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


# ----------------------------------------------------------------------------- batches


# augkit's normalisation steps. One that ends --augment is taken out of the workers' pipeline
# and becomes the run's normalisation (fit_normalizer), in place of the harness's own: workers
# keep sending uint8 (a quarter of float32's bytes), the device normalises whole batches,
# validation batches are normalised the same way, and nothing is normalised twice.
NORMALIZATION_STEPS = ("standardize", "subtract_mean", "scale")


def load_augment(spec: str | None, seed: int) -> Pipeline | None:
    """The training augmentation for ``spec`` (a pipeline file or inline spec), seeded, less a final
    normalisation step, which ``fit_normalizer`` runs on the device instead; None: no steps left.

    Raises:
        AugkitError: a normalisation step anywhere but at the end (or inside a composition).
    """
    return _split_augment(spec, seed)[0]


def _split_augment(spec: str | None, seed: int) -> tuple[Pipeline | None, tuple[str, Any] | None]:
    """(the steps the workers run, or None; the final normalisation step's (name, transform), or None)."""
    if not spec:
        return None, None
    pipeline = augkit.load_pipeline(spec, seed=seed)
    full = pipeline.to_spec()
    steps = full["steps"]
    last = next(iter(steps[-1]))
    ends_normalized = last in NORMALIZATION_STEPS
    misplaced = next(_normalization_steps(steps[:-1] if ends_normalized else steps, len(steps)), None)
    if misplaced is not None:
        raise AugkitError(
            f"--augment: {misplaced}; a normalisation step ({', '.join(NORMALIZATION_STEPS)}) may only end the "
            f"pipeline, where the harness runs it on the device in place of its own normalisation: move it to "
            f"the end, or drop it and let --standardize normalise"
        )
    if not ends_normalized:
        return pipeline, None
    # The steps before it draw exactly as they did (whatever the last step draws comes after
    # theirs); only normalisation steps name files (stats), so where relative paths resolve is moot.
    rest = augkit.load_pipeline({**full, "steps": steps[:-1]}, seed=seed) if len(steps) > 1 else None
    return rest, (last, pipeline.transforms[-1])


def _normalization_steps(steps: list[dict[str, Any]], total: int, inside: str = "") -> Iterator[str]:
    """Where each normalisation step among ``steps`` (a spec's, compositions searched) is, in words."""
    for position, step in enumerate(steps, 1):
        (name, params), = step.items()
        if name in NORMALIZATION_STEPS:
            yield f"{name} is inside {inside}" if inside else f"{name} is step {position} of {total}"
        children = params.get("transforms") if isinstance(params, dict) else None
        if isinstance(children, list):
            yield from _normalization_steps(children, total, inside or f"{name} (step {position} of {total})")


class Loader:
    """An epoch's batches of (uint8 N x H x W x C images, int64 labels), as CPU tensors.

    Training: the order is a permutation drawn from ``default_rng([seed, epoch])`` and the last
    incomplete batch is dropped when there is more than one (BatchNorm cannot train on a batch
    of 1). Evaluation (``train=False``): every sample in order, never augmented.

    Without augmentation the batches are sliced from the array in this process. With it, a
    DataLoader runs ``augment(image, index=i, epoch=e)`` on each sample, in ``workers`` processes
    (started by forkserver, never fork: a child forked while OpenCV's thread pool is busy can
    hang), so each sample's augmentation depends only on (pipeline seed, epoch, index).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        train: bool,
        seed: int,
        augment: Pipeline | None = None,
        workers: int = 0,
        pin_memory: bool = False,
        distributed: Distributed | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 N x H x W x C, got {images.dtype} of shape {images.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        if batch_size < 1 or workers < 0:
            raise ValueError(f"batch_size must be at least 1 and workers at least 0, got {batch_size}, {workers}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.augment = augment if train else None
        self.pin_memory, self.distributed = pin_memory, distributed
        self._loader, self._closed = None, False
        if self.augment is not None:
            # Caught here, in this process and before any worker starts, in the common case of a
            # pipeline that always changes the size; _AugmentedImages checks every sample too.
            _check_augmented(images[0], self.augment(np.array(images[0]), index=0, epoch=0))
            # The sampler must not refer back to this object: a DataLoader freed by the cycle
            # collector, rather than by its last reference going, takes seconds to stop its workers.
            self._sampler = _EpochSampler(len(images), batch_size, train, seed, distributed)
            context = None
            if workers:
                # torch, albumentations and OpenCV imported once in the forkserver, not in every
                # worker it forks: 4 workers started in 19.7 s without this on 2 cores.
                context = worker_context(preload=["augkit.train.data", "augkit.pipeline.core"])
            self._loader = torch.utils.data.DataLoader(
                _AugmentedImages(images, self.labels, self.augment, shared=workers > 0),
                batch_sampler=self._sampler,
                num_workers=workers,
                collate_fn=_stack,
                pin_memory=pin_memory,
                multiprocessing_context=context,
                persistent_workers=workers > 0,
                worker_init_fn=_init_worker if workers else None,
                # Its own generator: otherwise starting the iterator draws a seed from torch's
                # global RNG, which dropout uses too, and a persistent iterator starts only in
                # the first epoch a process runs: a resumed run would draw at another moment.
                generator=torch.Generator().manual_seed(seed),
            )

    def __len__(self) -> int:
        return _batch_count(len(self.images), self.batch_size, self.train)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of ``epoch``'s batches, concatenated (dropped samples left out)."""
        return _epoch_order(len(self.images), self.batch_size, self.train, self.seed, epoch)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """Each batch's sample indices in ``epoch``: this process's share of them when distributed."""
        return _batch_indices(len(self.images), self.batch_size, self.train, self.seed, epoch, self.distributed)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``: the same for the same (seed, epoch), whatever came before."""
        if self.augment is None:
            for idx in self.batch_indices(epoch):
                x, y = torch.from_numpy(np.asarray(self.images[idx])), torch.from_numpy(self.labels[idx])
                yield (x.pin_memory(), y.pin_memory()) if self.pin_memory else (x, y)
            return
        if self._closed:
            raise RuntimeError("this loader was closed")
        self._sampler.epoch = epoch
        for batch in self._loader:
            if isinstance(batch, str):  # _stack's message about a misshapen image, from a worker
                raise AugkitError(batch)
            yield batch

    def close(self) -> None:
        """Stop the worker processes now, rather than when the loader is garbage-collected."""
        self._loader, self._closed = None, True  # its last reference: its iterator stops the workers


def _batch_count(n: int, batch_size: int, train: bool) -> int:
    if train:  # full batches only, unless there are not enough samples for one
        return max(1, n // batch_size) if n else 0
    return -(-n // batch_size)


def _epoch_order(n: int, batch_size: int, train: bool, seed: int, epoch: int) -> np.ndarray:
    if not train:
        return np.arange(n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[: _batch_count(n, batch_size, train) * batch_size]


def _batch_indices(
    n: int, batch_size: int, train: bool, seed: int, epoch: int, distributed: Distributed | None
) -> list[np.ndarray]:
    order = _epoch_order(n, batch_size, train, seed, epoch)
    return [shard(order[s : s + batch_size], distributed) for s in range(0, len(order), batch_size)]


class _EpochSampler:
    """The DataLoader's batch sampler: lists of (epoch, index), as ``Loader.batch_indices``."""

    def __init__(self, n: int, batch_size: int, train: bool, seed: int, distributed: Distributed | None) -> None:
        self.n, self.batch_size, self.train, self.seed, self.distributed = n, batch_size, train, seed, distributed
        self.epoch = 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # Built at once, not lazily, so a batch never sees an epoch set after iteration began.
        epoch = self.epoch
        batches = _batch_indices(self.n, self.batch_size, self.train, self.seed, epoch, self.distributed)
        return iter([[(epoch, int(i)) for i in idx] for idx in batches])

    def __len__(self) -> int:
        return _batch_count(self.n, self.batch_size, self.train)


class _AugmentedImages(torch.utils.data.Dataset):
    """Sample (epoch, index): the augmented image and its label, or a message if misshapen."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: Pipeline, *, shared: bool) -> None:
        self.images = _SharedImages(images) if shared else images
        self.labels, self.augment = labels, augment

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray | str, int]:
        epoch, index = key
        images = self.images.array if isinstance(self.images, _SharedImages) else self.images
        # A copy: a transform that writes in place must never change the training data.
        image = np.array(images[index])
        try:
            out = self.augment(image, index=index, epoch=epoch)
            _check_augmented(image, out)
        except AugkitError as e:
            return str(e), int(self.labels[index])
        return out, int(self.labels[index])

    def __len__(self) -> int:
        return len(self.labels)


class _SharedImages:
    """An image array that each worker process receives without a copy of its own.

    A memory map pickles as its file (each worker maps it: the page cache is shared); an array
    in memory is copied once into shared memory, which torch's pickler then hands to workers.
    """

    def __init__(self, array: np.ndarray) -> None:
        if _is_file_map(array):
            self.array, self._tensor = array, None
        else:
            self._tensor = torch.empty(array.shape, dtype=torch.uint8).share_memory_()
            self.array = self._tensor.numpy()
            self.array[...] = array

    def __getstate__(self) -> dict[str, Any]:
        if self._tensor is not None:
            return {"tensor": self._tensor}
        a = self.array
        return {"file": a.filename, "offset": a.offset, "shape": a.shape, "dtype": a.dtype.str}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._tensor = state.get("tensor")
        if self._tensor is not None:
            self.array = self._tensor.numpy()
        else:
            self.array = np.memmap(state["file"], np.dtype(state["dtype"]), "r", state["offset"], state["shape"])


def _is_file_map(array: np.ndarray) -> bool:
    """Whether ``array`` is a whole memory-mapped file region (not a slice of one, not a copy)."""
    return (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and array.filename is not None
        and array.flags.c_contiguous
    )


def _check_augmented(image: np.ndarray, out: Any) -> None:
    if isinstance(out, np.ndarray) and out.dtype == image.dtype and out.shape == image.shape:
        return
    got = f"{'x'.join(map(str, out.shape))} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
    resized = not isinstance(out, np.ndarray) or out.shape != image.shape
    fix = ("keep size and dtype (e.g. crop with padding)" if resized else
           f"keep uint8: to normalise, end the pipeline with {', '.join(NORMALIZATION_STEPS[:-1])} "
           f"or {NORMALIZATION_STEPS[-1]}, which the harness runs on the device")  # fmt: skip
    raise AugkitError(f"the augment pipeline turned a {'x'.join(map(str, image.shape))} uint8 image into {got}; {fix}")


def _stack(samples: list[tuple[np.ndarray | str, int]]) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Collate: one uint8 N x H x W x C tensor and the labels; or the first sample's error message."""
    message = next((image for image, _ in samples if isinstance(image, str)), None)
    if message is not None:
        return message  # raised in the training process, as one line, not as a worker traceback
    images = torch.from_numpy(np.stack([image for image, _ in samples]))
    return images, torch.tensor([label for _, label in samples], dtype=torch.int64)


def _init_worker(worker_id: int) -> None:
    import cv2

    # Its parent is the forkserver, which torch's own check watches: leave with the training process.
    exit_with_parent()
    # One OpenCV thread per worker: the workers are the parallelism, and a thread pool in each
    # would oversubscribe the cores.
    cv2.setNumThreads(1)


# ----------------------------------------------------------------------------- on the device


class Normalizer(nn.Module):
    """uint8 N x H x W x C -> float32 N x C x H x W: ``(x / 255 - mean) / std``, on the whole batch.

    ``mean`` is C x 1 x 1 (per channel) or C x H x W (the mean image); ``std`` is C x 1 x 1.
    Both are on the [0, 1] scale, as ``ChannelStats`` stores them; zeros and ones when not used.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float().contiguous())
        self.register_buffer("std", std.float().contiguous())
        # (x / 255 - mean) / std as one multiply and one subtract: x * scale - shift.
        self.register_buffer("scale", (1.0 / (255.0 * self.std)).contiguous(), persistent=False)
        self.register_buffer("shift", (self.mean / self.std).contiguous(), persistent=False)

    @classmethod
    def from_stats(
        cls, stats: ChannelStats | None, *, standardize: bool, mean_image: bool, channels: int
    ) -> Normalizer:
        """Subtract the mean image (``mean_image``) or, with ``standardize``, the per-channel mean;
        with ``standardize`` also divide by the per-channel std. Neither: scale to [0, 1] only.
        """
        mean, std = torch.zeros(channels, 1, 1), torch.ones(channels, 1, 1)
        if not (standardize or mean_image):
            return cls(mean, std)
        if stats is None or stats.channels != channels:
            found = "no statistics" if stats is None else f"statistics of {stats.channels} channels"
            raise ValueError(f"standardize/mean_image need statistics of {channels} channels, got {found}")
        if mean_image:
            if stats.mean_image is None:
                raise ValueError("mean_image needs statistics computed with mean_image=True")
            mean = torch.from_numpy(stats.mean_image).permute(2, 0, 1)
        else:
            mean = torch.from_numpy(stats.mean).view(channels, 1, 1)
        if standardize:
            # A constant channel (std below augkit.stats.MIN_STD, the floor the standardize
            # step holds numbers to: 0, or float noise) is only centred, instead of becoming NaN
            # or being blown up a million-fold.
            std = torch.from_numpy(np.where(stats.std >= MIN_STD, stats.std, 1.0)).view(channels, 1, 1)
        return cls(mean, std)

    @classmethod
    def from_step(cls, name: str, step: Any, splits: Splits) -> Normalizer:
        """The normalisation the augkit step ``name`` (``standardize``, ``subtract_mean`` or
        ``scale``; ``step`` its transform) does, ``(x / 255 - mean) / std``, for ``splits``' images.

        Raises:
            AugkitError: the step's mean or std has neither 1 nor the images' channel count of
                values, or its mean image is not of the images' size.
        """
        height, width, channels = splits.shape
        mean = step.mean if name in ("standardize", "subtract_mean") else np.zeros(channels)
        std = step.std if name == "standardize" else np.ones(channels)
        stats = getattr(step, "stats", None)
        if mean.ndim == 3:  # subtract_mean's mean image
            if mean.shape != (height, width, channels):
                raise AugkitError(
                    f"--augment: subtract_mean's mean image ({stats}) is {'x'.join(map(str, mean.shape))} but "
                    f"{splits.source}'s images are {height}x{width}x{channels}; "
                    f"{_recompute(splits, stats, gray=mean.shape[2] == 1, mean_image=True)}"
                )
            return cls(torch.from_numpy(mean).permute(2, 0, 1), torch.from_numpy(std).view(channels, 1, 1))
        for values in (mean, std):
            if values.size not in (1, channels):
                what, fix = (
                    (f"{name}'s statistics file {stats}", _recompute(splits, stats, gray=values.size == 1)) if stats
                    else (f"{name}'s mean/std", "give one value" if channels == 1 else f"give 1 or {channels} values")
                )  # fmt: skip
                raise AugkitError(_channels_message(f"--augment: {what}", values.size, splits, fix))
        return cls(*(torch.from_numpy(np.broadcast_to(v, channels).copy()).view(channels, 1, 1) for v in (mean, std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # permute of an N x H x W x C tensor is N x C x H x W in channels-last memory order.
        return x.permute(0, 3, 1, 2).float().mul_(self.scale).sub_(self.shift)


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device | str, normalizer: Normalizer, *, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 batch copied to ``device`` (non-blocking; from pinned memory on CUDA) and normalised.

    ``normalizer`` must already be on ``device``. Returns float32 N x C x H x W (channels-last
    memory format with ``channels_last``) and the labels.
    """
    x = normalizer(x.to(device, non_blocking=True))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format), y.to(device, non_blocking=True)


# On the CPU there is no bus to cross: a split that fits in this many bytes as float32 is
# normalised once, and its batches are slices of the result (what a hand-written loop does).
CPU_CACHE_BYTES = 1 << 30


class DeviceBatches:
    """A loader's batches as the model takes them: normalised float32 N x C x H x W on ``device``.

    On CUDA (and MPS) uint8 batches cross the bus and are normalised there, a whole batch at a
    time. On the CPU, without augmentation, the split is normalised once when it fits in
    ``CPU_CACHE_BYTES`` as float32: the same arithmetic, element by element, so the same values.
    """

    def __init__(self, loader: Loader, normalizer: Normalizer, device: torch.device, *, channels_last: bool) -> None:
        self.loader, self.normalizer, self.device, self.channels_last = loader, normalizer, device, channels_last
        self._cache: torch.Tensor | None = None
        if device.type == "cpu" and loader.augment is None and loader.images.nbytes * 4 <= CPU_CACHE_BYTES:
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            images = np.asarray(loader.images)
            if not images.flags.writeable:  # a packed dataset, memory-mapped read-only: torch wraps writable arrays only
                images = images.copy()  # uint8, a quarter of the float32 cache made from it
            with torch.no_grad():
                whole = normalizer(torch.from_numpy(images))
            self._cache = whole.contiguous(memory_format=memory_format)
            self._labels = torch.from_numpy(loader.labels)

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._cache is None:
            for x, y in self.loader.batches(epoch):
                yield to_device(x, y, self.device, self.normalizer, channels_last=self.channels_last)
            return
        for idx in self.loader.batch_indices(epoch):
            idx = torch.from_numpy(idx)
            yield self._cache[idx], self._labels[idx]  # indexing keeps the cache's memory format

    def close(self) -> None:
        self.loader.close()


def fit_normalizer(config: TrainConfig, splits: Splits, run_dir: Path, *, write: bool = True) -> Normalizer:
    """The normaliser for ``config``: statistics from ``config.stats``, else from the training split.

    Computed statistics are cached as ``run_dir/stats.json`` (unless ``write`` is False: the
    processes of a distributed run other than rank 0 compute the same statistics and write
    nothing); when that file exists (a resumed run) it is loaded instead. No statistics are
    needed without standardize and mean_image.

    When ``config.augment`` ends in a normalisation step (``NORMALIZATION_STEPS``), that step is
    the normaliser instead, with its own statistics or numbers, for training and validation
    batches alike; ``standardize`` is then not used, and ``stats`` or ``mean_image`` is refused
    (AugkitError) as a second, conflicting normalisation.
    """
    channels = splits.shape[2]
    final = _split_augment(config.augment, config.seed)[1]
    if final is not None:
        name, step = final
        for given, flag in ((config.stats is not None, "--stats"), (config.mean_image, "--mean-image")):
            if given:
                raise AugkitError(
                    f"--augment ends in {name}, which normalises the run in place of the harness's own "
                    f"normalisation; drop {flag}, or drop {name} from the pipeline to normalise with {flag}"
                )
        return Normalizer.from_step(name, step, splits)
    if not (config.standardize or config.mean_image):
        return Normalizer.from_stats(None, standardize=False, mean_image=False, channels=channels)
    if config.stats is not None:
        stats = ChannelStats.load(config.stats)
        _check_stats(stats, config.stats, splits, config.mean_image)
    else:
        cache = Path(run_dir) / STATS_FILE
        if cache.exists():
            stats = ChannelStats.load(cache)
            _check_stats(stats, cache, splits, config.mean_image, "it belongs to another run: use a new run folder")
        else:
            stats = ChannelStats(channels, mean_image=config.mean_image)
            images = splits.train_images
            rows = max(1, _STATS_CHUNK_BYTES // max(1, images[0].nbytes))
            for start in range(0, len(images), rows):
                stats.update(np.asarray(images[start : start + rows]))
            if write:
                cache.parent.mkdir(parents=True, exist_ok=True)
                stats.save(cache)
    return Normalizer.from_stats(stats, standardize=config.standardize, mean_image=config.mean_image, channels=channels)


def _check_stats(stats: ChannelStats, path: str | Path, splits: Splits, mean_image: bool, fix: str | None = None) -> None:
    """Statistics that fit ``splits``' images, or one line: ``fix`` (None: recompute ``path`` with `augkit stats`)."""
    height, width, channels = splits.shape
    if stats.channels != channels:
        fix = fix or _recompute(splits, path, gray=stats.channels == 1)
        raise AugkitError(_channels_message(f"stats file {path}", stats.channels, splits, fix))
    if not mean_image:
        return
    if stats.mean_image is None:
        raise AugkitError(
            f"stats file {path} has no mean image, which --mean-image needs; "
            f"compute one with `augkit stats DATA --mean-image -o FILE`, or drop --mean-image"
        )
    if stats.mean_image.shape[:2] != (height, width):
        h, w = stats.mean_image.shape[:2]
        raise AugkitError(
            f"stats file {path} has a {h}x{w} mean image but DATA's images are {height}x{width}; "
            f"{fix or _recompute(splits, path, mean_image=True)}"
        )


def _channels_message(what: str, found: int, splits: Splits, fix: str) -> str:
    """One line: ``what`` has statistics of ``found`` channels, DATA's images another count; ``fix``."""
    channels = splits.shape[2]
    kind = "gray: all its images are stored gray" if channels == 1 else "RGB"
    return f"{what} has {found} channel{'s' if found != 1 else ''} but {splits.source} has {channels} ({kind}); {fix}"


def _recompute(splits: Splits, path: str | Path, *, gray: bool = False, mean_image: bool = False) -> str:
    """How to compute statistics that fit ``splits``' DATA: into a new file, never over ``path``.

    ``path`` may hold the statistics of another dataset the user still needs, so the hint names a
    file after DATA (``flowers-stats.json``) and says to pass it.
    """
    option = " --mean-image" if mean_image else ""
    unless_gray = " (without --gray)" if gray and splits.shape[2] != 1 else ""
    name = Path(splits.source).name.removesuffix(".npz") or "data"
    fresh = Path(path).with_name(f"{name}-stats.json")
    if fresh == Path(path):
        fresh = Path(path).with_name(f"{name}-stats-{splits.shape[2]}ch.json")
    out = shlex.quote(str(fresh))
    return f"compute DATA's own with `augkit stats {shlex.quote(splits.source)}{option} -o {out}`{unless_gray} and pass --stats {out}"
