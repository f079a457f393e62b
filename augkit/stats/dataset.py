"""Statistics of a whole dataset: ``compute_stats`` reads every image and merges the results.

The dataset is cut into chunks of ``CHUNK_IMAGES`` images, measured in this process or in a
pool of worker processes, and the chunks' ``ChannelStats`` are merged in chunk order, so the
answer is bit-identical whatever the number of workers. Files that cannot be read are skipped
and listed (``Skipped``), never measured as zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from augkit.errors import AugkitError, ImageReadError
from augkit.processes import worker_pool
from augkit.stats.channel_stats import ChannelStats

if TYPE_CHECKING:
    from augkit.io.datasets import Dataset

# Images per unit of work in compute_stats. The chunks, and the order in which their results
# are merged, depend only on the dataset, never on the number of workers: that is what makes
# the result bit-identical for any --workers. 256 small images are a few milliseconds of work,
# enough to hide the cost of sending a task to a process.
CHUNK_IMAGES = 256


@dataclass(frozen=True)
class Skipped:
    """A file that was not measured, and why."""

    path: str
    reason: str


@dataclass
class StatsResult:
    """What ``compute_stats`` found: the statistics, and the files it skipped."""

    stats: ChannelStats
    skipped: list[Skipped]


def compute_stats(
    dataset: Dataset,
    *,
    workers: int = 1,
    mean_image: bool = False,
    std_image: bool = False,
    gray: bool = False,
    progress: Callable[[int], None] | None = None,
) -> StatsResult:
    """Per-channel statistics of every image of ``dataset``; unreadable files are skipped.

    The statistics have ``dataset.channels`` channels (1 for a gray dataset, 3 otherwise: the
    gray rule of ``augkit.io.datasets``), the channels ``augkit train`` sees in the same dataset,
    so a statistics file computed here always fits training on it.

    Args:
        dataset: the images, e.g. ``open_dataset(path, split="train")``.
        workers: processes reading images at the same time; the result does not depend on it.
        mean_image: also compute the mean image (all images must be the same size).
        std_image: also compute the per-pixel std image (``augkit stats --per-pixel``), and
            with it the mean image.
        gray: measure every image converted to one gray channel (luma), also in a colour
            dataset; False: the dataset's own channels.
        progress: called with the number of images finished since its last call.

    Raises:
        AugkitError: ``workers`` < 1, or no image could be read.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise AugkitError(f"workers must be a positive integer, got {workers!r}")
    if len(dataset) == 0:
        raise AugkitError(f"no readable images in {_describe(dataset)}: it is empty")
    chunks = [
        (start, min(start + CHUNK_IMAGES, len(dataset)))
        for start in range(0, len(dataset), CHUNK_IMAGES)
    ]
    # The gray rule's answer found here, once, rather than in every worker.
    job = _Job(dataset, gray or dataset.channels == 1, mean_image, std_image)
    workers = min(workers, len(chunks))
    if workers == 1:
        results = _run_serial(job, chunks, progress)
    else:
        results = _run_pool(job, chunks, workers, progress)

    total = ChannelStats(mean_image=mean_image, std_image=std_image)
    skipped: list[Skipped] = []
    for part, part_skipped in results:  # in chunk order, whatever order they finished in
        total.merge(part)
        skipped += part_skipped
    if total.count == 0:
        first = skipped[0]
        raise AugkitError(
            f"no readable images in {_describe(dataset)}: all {len(skipped)} were skipped "
            f"(the first, {first.path}: {first.reason})"
        )
    return StatsResult(total, skipped)


# ---------------------------------------------------------------------------------------------
# compute_stats: chunks of images, in this process or in a pool


@dataclass(frozen=True)
class _Job:
    dataset: Dataset
    gray: bool  # one channel (True) or RGB
    mean_image: bool
    std_image: bool = False


def _chunk_stats(
    job: _Job, start: int, stop: int, progress: Callable[[int], None] | None = None
) -> tuple[ChannelStats, list[Skipped]]:
    """Statistics of images ``start`` to ``stop`` of the job's dataset, and the files skipped."""
    stats = ChannelStats(mean_image=job.mean_image, std_image=job.std_image)
    skipped: list[Skipped] = []
    stats.update_many(_readable_images(job, range(start, stop), skipped, progress))
    return stats, skipped


def _readable_images(
    job: _Job,
    indices: Iterable[int],
    skipped: list[Skipped],
    progress: Callable[[int], None] | None,
) -> Iterator[np.ndarray]:
    """The images at ``indices`` that can be read; the others are appended to ``skipped``."""
    for i in indices:
        try:
            image = job.dataset.read(i, gray=job.gray)
        except ImageReadError as e:
            skipped.append(Skipped(e.path, e.reason))
        else:
            yield image
        if progress is not None:
            progress(1)


def _run_serial(
    job: _Job, chunks: Sequence[tuple[int, int]], progress: Callable[[int], None] | None
) -> Iterator[tuple[ChannelStats, list[Skipped]]]:
    for start, stop in chunks:
        yield _chunk_stats(job, start, stop, progress)


def _run_pool(
    job: _Job,
    chunks: Sequence[tuple[int, int]],
    workers: int,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[ChannelStats, list[Skipped]]]:
    # Not "fork" (augkit.processes): a child forked while OpenCV's thread pool is in use
    # inherits its locks held and hangs in its first parallel OpenCV call (seen here:
    # cv2.setNumThreads in a forked worker never returned). The dataset index is pickled once
    # per worker, and each task is only a pair of indices.
    with worker_pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        # imap hands results back in chunk order; progress therefore moves one chunk at a time.
        for (start, stop), result in zip(chunks, pool.imap(_worker_chunk_stats, chunks)):
            if progress is not None:
                progress(stop - start)
            yield result


_worker_job: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _worker_job
    _worker_job = job
    # One OpenCV thread per worker: the pool already keeps every core busy.
    cv2.setNumThreads(1)


def _worker_chunk_stats(bounds: tuple[int, int]) -> tuple[ChannelStats, list[Skipped]]:
    assert _worker_job is not None, "the pool initializer sets the job"
    return _chunk_stats(_worker_job, *bounds)


def _describe(dataset: Dataset) -> str:
    where = dataset.root if dataset.root is not None else f"the {dataset.kind} dataset"
    return f"{where} (split {dataset.split!r})"
