"""An epoch's batches of uint8 images, reproducible from (seed, epoch, index), augmented or not.

``load_augment`` turns ``--augment`` into the pipeline the workers run (a final normalisation
step is left to the device, ``augkit.train.device``); ``Loader`` gives each epoch's batches as
uint8 N x H x W x C tensors, augmented per image in DataLoader workers (``--augment-on cpu``)
or sliced from the array as they are (no augmentation, or ``--augment-on device``, where
``Loader.indexed_batches`` says which samples each batch holds, for the device's draws).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import augkit
from augkit.errors import AugkitError
from augkit.processes import exit_with_parent, worker_context
from augkit.train.distributed import Distributed, shard

if TYPE_CHECKING:  # albumentations loads only for runs that augment
    from augkit.pipeline import Pipeline


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
    return split_augment(spec, seed)[0]


def split_augment(spec: str | None, seed: int) -> tuple[Pipeline | None, tuple[str, Any] | None]:
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
                context = worker_context(preload=["augkit.train.batches", "augkit.pipeline.core"])
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
            for _, x, y in self.indexed_batches(epoch):
                yield x, y
            return
        if self._closed:
            raise RuntimeError("this loader was closed")
        self._sampler.epoch = epoch
        for batch in self._loader:
            if isinstance(batch, str):  # _stack's message about a misshapen image, from a worker
                raise AugkitError(batch)
            yield batch

    def indexed_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """(sample indices, images, labels) of each batch of ``epoch``, sliced from the array as
        they are: what ``--augment-on device`` augments, after the copy to the device.

        Raises:
            RuntimeError: the loader augments in its workers (its batches are ``batches``).
        """
        if self.augment is not None:
            raise RuntimeError("this loader augments per image: its batches are Loader.batches")
        for idx in self.batch_indices(epoch):
            x, y = torch.from_numpy(np.asarray(self.images[idx])), torch.from_numpy(self.labels[idx])
            if self.pin_memory:
                x, y = x.pin_memory(), y.pin_memory()
            yield idx, x, y

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
