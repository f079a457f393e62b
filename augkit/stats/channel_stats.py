"""Per-channel mean and standard deviation of a dataset, streamed and mergeable.

The statistics are those of every pixel of every image, each pixel weighing the same whatever
its image's size: not the average of per-image means and standard deviations, a common recipe
that weights a 32 x 32 thumbnail like a 12-megapixel photo and, for the std, leaves out how much
the images differ from each other.

``ChannelStats`` keeps, per channel, the pixel count ``n``, the mean, and ``M2``, the sum of
squared deviations from the mean (variance = M2 / n), in float64. A batch of images is reduced
to its own (n, mean, M2), and two such summaries combine exactly by the parallel formula of
Chan, Golub and LeVeque (1979), a generalisation of Welford's one-at-a-time update:

    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

so memory never grows with the dataset, and statistics of shards computed in other processes
or on other machines merge into those of the whole. Unlike the textbook E[x**2] - E[x]**2, no
step subtracts two large, nearly equal numbers.

For uint8 images (the common case, and the hot path of ``augkit stats``) a batch's sum and sum
of squares are exact integers, so its mean and M2 = (n * sum(x**2) - sum(x)**2) / n are formed
from Python integers and rounded once. float32 images are reduced in two passes in float64 (mean,
then squared deviations from it). Pixels follow augkit's pixel contract (``augkit.pixels``:
uint8, uint16, or float32 on [0, 1]; anything else is refused) and statistics are on the [0, 1]
scale (uint8 / 255, uint16 / 65535), the convention of torchvision's and albumentations'
``Normalize``: an image and the same image in 16 bits (x * 257) have the same statistics.

Per pixel (``mean_image=True``, ``std_image=True``; ``augkit stats --per-pixel``) the same
scheme runs with images as the samples: the mean image and, per pixel, M2 (H x W x C float64),
a batch reduced in two passes in float64 (its mean image from exact sums, then the squared
deviations from it) and merged by the same formula, element-wise. ``std_image`` is then the
lecture's ``X.std(axis=0)`` over the training images X (N x H x W x C), and ``floored_std`` what
per-pixel standardisation divides by.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from augkit.documents import read_document, short_repr
from augkit.errors import AugkitError
from augkit.files import atomic_write
from augkit.pixels import FULL_SCALE, check_image
from augkit.stats.stats_file import (
    FORMAT,
    check_fields,
    checked_mean_image,
    checked_std_image,
    read_mean_image,
    shape_text,
)

# Per-channel statistics are on the [0, 1] scale; below MIN_STD a channel is constant to
# within a 16-bit step (1 / 65535 = 1.5e-5), and dividing by it would blow pixels up to 1e6+:
# the standardize step refuses such a std, the training harness only centres such a channel.
MIN_STD = 1e-6

# Per-pixel standardisation divides by a pixel's std over the training images, floored at one
# 8-bit gray level (see floored_std): a pixel constant or nearly so in training (the digits'
# borders) is then amplified at most 255-fold, not 1e7-fold as with an epsilon of 1e-8.
PIXEL_STD_FLOOR = 1 / 255

MAX_CHANNELS = 65535  # far past hyperspectral cubes (hundreds of bands); bounds what a stats file may claim

# Integer pixel types and the value that maps to 1.0.
_SCALES = {dtype: int(scale) for dtype, scale in FULL_SCALE.items() if dtype.kind == "u"}

# update_many stacks consecutive images of the same shape into batches of up to this many
# bytes before updating: an update costs ~5 us of Python and numpy overhead, more than measuring
# a 32 x 32 image (~1 us in a batch), while a 224 x 224 RGB image (150 kB) is updated alone,
# straight after decoding, while it is still in the CPU cache (stacking 20 of them measured
# slower). 256 kB stays well inside a core's L2 cache.
BATCH_BYTES = 1 << 18

# The per-pixel second pass converts this many bytes of float64 at a time: a batch handed to
# update may be a 64 MB slice of a memory-mapped training array (8x that as float64).
_PIXEL_BLOCK_BYTES = 1 << 23

_RESIZE_HINT = "resize them to one size first (for example `augkit preprocess --size 224`)"


def floored_std(std: np.ndarray) -> np.ndarray:
    """What per-pixel standardisation divides by: ``std`` (the std image, H x W x C on the
    [0, 1] scale) with constant and near-constant pixels handled; float64, same shape.

    The lecture's ``X /= X.std(axis=0)`` divides by 0 at a pixel that is the same in every
    training image (the digits' borders) and by almost 0 at one that nearly is; an epsilon
    (``std + 1e-8``) avoids the NaN but not the blow-up: a validation image whose border pixel
    is 0.1 where training had only 0 becomes 1e7. The rule here:

    - a constant pixel (std below ``MIN_STD``, the rule for a constant channel) is divided by 1,
      only centred: scikit-learn's ``StandardScaler`` treats a constant feature so
      (``_handle_zeros_in_scale``), and the training harness a constant channel;
    - any other pixel's std is floored at ``PIXEL_STD_FLOOR`` = 1/255, one 8-bit gray level (a
      spread finer than the data's own quantisation step is not measured by it): no pixel is
      amplified more than 255-fold, so a value on [0, 1] lands within +-255, whatever the
      validation images hold. Above one gray level, pixels are divided by their own std, the
      lecture's formula exactly.
    """
    std = np.asarray(std, dtype=np.float64)
    return np.where(std < MIN_STD, 1.0, np.maximum(std, PIXEL_STD_FLOOR))


class ChannelStats:
    """Streaming, mergeable per-channel pixel statistics: count, mean, std (and per-pixel images).

    Args:
        channels: the number of channels; None: fixed by the first update.
        mean_image: also keep the mean image (AlexNet-style mean subtraction); every image must
            then have the same height and width.
        std_image: also keep the per-pixel std image (per-pixel standardisation), and with it
            the mean image.

    Example:
        >>> stats = ChannelStats()
        >>> for image in images:
        ...     stats.update(image)  # uint8 H x W x C, H x W, or a N x H x W x C batch
        >>> stats.mean, stats.std  # float64 [C], on the [0, 1] scale
    """

    def __init__(self, channels: int | None = None, *, mean_image: bool = False, std_image: bool = False) -> None:
        if channels is not None and (
            isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS
        ):
            raise AugkitError(f"channels must be an integer in [1, {MAX_CHANNELS}] or None, got {short_repr(channels)}")
        self.count = 0  # pixels seen per channel
        self.images = 0
        self.channels = channels
        self.mean_image: np.ndarray | None = None  # H x W x C float64, once an image was seen
        self._keeps_mean_image = bool(mean_image or std_image)
        self._keeps_std_image = bool(std_image)
        self._m2_image: np.ndarray | None = None  # per pixel: sum of squared deviations from the mean image
        self._std_image: np.ndarray | None = None  # as loaded, so that a file reads back bit for bit
        # Per channel, as Python floats: for 1 to 4 channels, plain float arithmetic is several
        # times faster than numpy's per-call overhead, and it runs once per image.
        self._mean: list[float] = [0.0] * (channels or 0)
        self._m2: list[float] = [0.0] * (channels or 0)

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean, float64 [C], [0, 1] scale; NaN before any pixel was seen."""
        return np.array(self._mean) if self.count else np.full(self.channels or 0, np.nan)

    @property
    def var(self) -> np.ndarray:
        """Per-channel population variance (ddof=0), [0, 1] scale; NaN before any pixel."""
        if not self.count:
            return np.full(self.channels or 0, np.nan)
        return np.array(self._m2) / self.count

    @property
    def std(self) -> np.ndarray:
        """Per-channel population std (ddof=0), [0, 1] scale; NaN before any pixel was seen."""
        return np.sqrt(self.var)

    @property
    def std_image(self) -> np.ndarray | None:
        """Per-pixel population std (ddof=0) over the images, float64 H x W x C on the [0, 1]
        scale (numpy's ``X.std(axis=0)``); None unless kept (``std_image=True``) and an image was seen."""
        if self._std_image is not None or self._m2_image is None:
            return self._std_image
        return np.sqrt(self._m2_image / self.images)

    def update(self, batch: np.ndarray) -> ChannelStats:
        """Add one image (H x W x C, or H x W gray) or a batch (N x H x W x C); returns self.

        uint8 pixels are divided by 255 and uint16 by 65535; float32 pixels must already be on
        the [0, 1] scale.

        Raises:
            PixelError: pixels outside the contract (float64, int32, float32 outside [0, 1], ...).
        """
        x = _as_nhwc(np.asarray(batch))
        n_images, height, width, channels = x.shape
        self._check_channels(channels, "an image")
        if n_images == 0:
            return self
        if (
            self._keeps_mean_image
            and self.mean_image is not None
            and self.mean_image.shape[:2] != (height, width)
        ):
            raise AugkitError(
                f"the mean image needs all images to be the same size: got {height} x {width} "
                f"after {self.mean_image.shape[0]} x {self.mean_image.shape[1]}; {_RESIZE_HINT}"
            )

        scale = _SCALES.get(x.dtype)
        if scale is not None:
            n, sums, squares = _integer_moments(x)
            # Exact integers in, one rounding out: int / int is correctly rounded in Python.
            mean = [s / (n * scale) for s in sums]
            m2 = [(n * q - s * s) / (n * scale * scale) for s, q in zip(sums, squares)]
        else:
            n, mean, m2 = _float_moments(x)
        self._mean, self._m2 = _chan_merge(self.count, self._mean, self._m2, n, mean, m2)
        self.count += n

        if self._keeps_mean_image:
            if scale is not None:
                # Summed exactly in integers (2**64 / 65535 images before it could overflow).
                image_mean = x.sum(axis=0, dtype=np.uint64) / (n_images * scale)
            else:
                image_mean = x.sum(axis=0, dtype=np.float64) / n_images
            if self._keeps_std_image:
                image_m2 = _pixel_m2(x, scale, image_mean) if n_images > 1 else None  # one image: M2 is 0
                self._m2_image = _merge_m2(self.images, self.mean_image, self._m2_image, n_images, image_mean, image_m2)
                self._std_image = None
            self.mean_image = _merge_means(self.images, self.mean_image, n_images, image_mean)
        self.images += n_images
        return self

    def update_many(self, images: Iterable[np.ndarray]) -> ChannelStats:
        """Add many images; runs of same-sized ones are measured as one batch; returns self.

        Equal to calling ``update`` on each (to float rounding), and much faster for small
        images, whose per-call overhead outweighs the arithmetic.
        """
        for batch in _same_shape_batches(images, BATCH_BYTES):
            self.update(batch)
        return self

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Add the statistics of ``other`` (other images) to these, in place; returns self.

        The result is that of one pass over both sets of images, up to float rounding.
        """
        if not isinstance(other, ChannelStats):
            raise TypeError(f"can only merge ChannelStats, got {type(other).__name__}")
        if other.channels is not None:
            self._check_channels(other.channels, "statistics")
        if other.count == 0:
            return self
        if self.count == 0:
            # Copy rather than apply the formula, so that merging into empty stats (as
            # compute_stats does first) is an exact identity.
            self.count, self.images = other.count, other.images
            self._mean, self._m2 = list(other._mean), list(other._m2)
            self._keeps_mean_image, self._keeps_std_image = other._keeps_mean_image, other._keeps_std_image
            images = (other.mean_image, other._m2_image, other._std_image)
            self.mean_image, self._m2_image, self._std_image = (None if a is None else a.copy() for a in images)
            return self

        if self._keeps_mean_image != other._keeps_mean_image:
            raise AugkitError(
                "cannot merge statistics with a mean image and statistics without one; "
                "compute both with the same mean_image setting (--mean-image)"
            )
        if self._keeps_std_image != other._keeps_std_image:
            raise AugkitError(
                "cannot merge statistics with a std image and statistics without one; "
                "compute both with the same std_image setting (--per-pixel)"
            )
        if self.mean_image is not None and self.mean_image.shape != other.mean_image.shape:
            raise AugkitError(
                f"cannot merge mean images of different sizes "
                f"({shape_text(self.mean_image)} and {shape_text(other.mean_image)}); "
                f"{_RESIZE_HINT}"
            )
        self._mean, self._m2 = _chan_merge(
            self.count, self._mean, self._m2, other.count, other._mean, other._m2
        )
        if self._m2_image is not None:
            self._m2_image = _merge_m2(
                self.images, self.mean_image, self._m2_image, other.images, other.mean_image, other._m2_image
            )
            self._std_image = None
        if self.mean_image is not None:
            self.mean_image = _merge_means(
                self.images, self.mean_image, other.images, other.mean_image
            )
        self.count += other.count
        self.images += other.images
        return self

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict (format, count, images, channels, mean, std, m2).

        ``m2`` (per-channel sum of squared deviations) is what an exact merge needs; ``std`` is
        there for people reading the file. The mean and std images, arrays, are not included:
        ``save`` writes them to files of their own, and ``from_dict`` takes them as arguments.
        """
        return {
            "format": FORMAT,
            "count": self.count,
            "images": self.images,
            "channels": self.channels,
            "mean": list(self._mean),
            "std": [math.sqrt(q / self.count) if self.count else 0.0 for q in self._m2],
            "m2": list(self._m2),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, mean_image: np.ndarray | None = None, std_image: np.ndarray | None = None
    ) -> ChannelStats:
        """Statistics from a dict made by ``to_dict`` (and the mean and std images, if there were).

        Every value must be one that ``to_dict`` can write (``stats_file.check_fields``): counts
        that fit int64, with at least one pixel per image; finite means on [0, 1] and variances of
        at most 1/4 (the largest a value on [0, 1] can have), so a file on another scale (0..255)
        is refused, not used; a std that is not sqrt(m2 / count) (edited by hand) likewise.

        Raises:
            AugkitError: a missing or invalid value; the message names the key.
        """
        fields = check_fields(data)
        stats = cls(fields.channels, mean_image=mean_image is not None, std_image=std_image is not None)
        stats.count, stats.images = fields.count, fields.images
        stats._mean, stats._m2 = fields.mean, fields.m2
        if mean_image is not None:
            stats.mean_image = checked_mean_image(mean_image, fields.channels, fields.count, fields.images)
        if std_image is not None:
            # Kept as given (it reads back bit for bit); its M2 is what further merges need.
            stats._std_image = checked_std_image(std_image, stats.mean_image)
            stats._m2_image = np.square(stats._std_image) * stats.images
        return stats

    def save(self, path: str | Path) -> Path:
        """Write the statistics to ``path`` as JSON, atomically; returns the path.

        The mean image, when there is one, goes to ``<stem>.mean_image.npy`` beside it, and the
        std image to ``<stem>.std_image.npy`` (float64 H x W x C; written first, so the JSON
        never names a file that is not there yet).
        """
        path = Path(path)
        data = self.to_dict()
        for key, image in (("mean_image", self.mean_image), ("std_image", self.std_image)):
            if image is None:
                continue
            sidecar = self.image_path(path, key)
            buffer = io.BytesIO()
            np.save(buffer, image, allow_pickle=False)
            atomic_write(sidecar, buffer.getvalue())
            data[key] = sidecar.name  # relative: the files can be moved together
        # One key per line, lists kept on it. json writes floats with repr, which reads back
        # to the same float64 bits.
        lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(val)}" for key, val in data.items())
        return atomic_write(path, "{\n" + lines + "\n}\n")

    @staticmethod
    def image_path(path: str | Path, key: str) -> Path:
        """Where ``save`` writes the mean image (``key`` "mean_image") or the std image
        ("std_image") of statistics saved at ``path``: ``<stem>.<key>.npy`` beside it."""
        path = Path(path)
        return path.with_name(f"{path.stem}.{key}.npy")

    @classmethod
    def load(cls, path: str | Path) -> ChannelStats:
        """Read statistics written by ``save``.

        A file is statistics of at least one pixel: one of none (count 0) would standardise
        every image to NaN. It is read through ``augkit.documents`` (size, depth and number
        limits), and its mean and std images are checked from their .npy headers before they are read.

        Raises:
            AugkitError: the file (or its mean image) is missing, not JSON, of another format,
                or holds invalid values; the message names the path and what is wrong.
        """
        path = Path(path)
        try:
            data = read_document(path, what="statistics file", format="json")
        except FileNotFoundError:
            raise AugkitError(f"{path}: statistics file not found") from None
        try:
            stats = cls.from_dict(data)
            if stats.count == 0:
                raise AugkitError(
                    "holds the statistics of no pixels (count 0), which would standardise every "
                    "image to NaN; compute them with `augkit stats DATA -o FILE`"
                )
            images = {}
            for key in ("mean_image", "std_image"):
                if data.get(key) is not None:
                    images[key] = read_mean_image(
                        path, data[key], count=stats.count, images=stats.images, channels=stats.channels, key=key
                    )
            if images:
                stats = cls.from_dict(data, **images)
            return stats
        except AugkitError as e:
            raise AugkitError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        def numbers(values: np.ndarray) -> str:
            return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"

        extra = "" if self.mean_image is None else f", mean_image={shape_text(self.mean_image)}"
        extra += "" if self._m2_image is None else f", std_image={shape_text(self._m2_image)}"
        return (
            f"ChannelStats(channels={self.channels}, images={self.images}, count={self.count}, "
            f"mean={numbers(self.mean)}, std={numbers(self.std)}{extra})"
        )

    def _check_channels(self, channels: int, what: str) -> None:
        if self.channels is None:
            self.channels = channels
            self._mean, self._m2 = [0.0] * channels, [0.0] * channels
        elif channels != self.channels:
            raise AugkitError(
                f"got {what} with {channels} channel(s), but these statistics have "
                f"{self.channels}; measure color and gray images separately (gray: --gray)"
            )


def _same_shape_batches(images: Iterable[np.ndarray], max_bytes: int) -> Iterator[np.ndarray]:
    """Runs of consecutive same-shaped images as N x H x W x C batches of at most ``max_bytes``.

    An image larger than ``max_bytes`` is a batch of its own. A batch is handed on as soon as
    it is full, not when the next image arrives: holding a large image while the next one is
    decoded costs fresh memory pages (about 36 page faults, 30-60 us, per 256x256 image).
    """
    run: list[np.ndarray] = []
    for image in images:
        if run and image.shape != run[0].shape:
            yield np.stack(run) if len(run) > 1 else run[0][None]
            run = []
        run.append(image)
        if (len(run) + 1) * image.nbytes > max_bytes:  # the next one would not fit
            yield np.stack(run) if len(run) > 1 else run[0][None]
            run = []
    if run:
        yield np.stack(run) if len(run) > 1 else run[0][None]


# ---------------------------------------------------------------------------------------------
# Arithmetic


def _as_nhwc(x: np.ndarray) -> np.ndarray:
    """An image (H x W, H x W x C) or batch (N x H x W x C) as a N x H x W x C view."""
    if x.ndim not in (2, 3, 4):
        raise AugkitError(
            f"expected an image (H x W or H x W x C) or a batch of images (N x H x W x C), "
            f"got an array of shape {x.shape}"
        )
    if 0 in x.shape[-3 if x.ndim == 4 else 0 :]:
        raise AugkitError(f"got an empty image (shape {x.shape})")
    check_image(x, "statistics")  # the pixel contract: uint8, uint16, float32 on [0, 1]
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        x = x[None]
    return x


def _integer_moments(x: np.ndarray) -> tuple[int, list[int], list[int]]:
    """Pixels per channel and exact per-channel sums and sums of squares of integer N x H x W x C.

    Benchmark of exact uint8 sums (timeit, best of 7, on a shared 2-core Xeon VM; Python 3.11,
    numpy 2.4, OpenCV 5.0), microseconds per RGB image, alone / in a batch of 256:

        method                                                 32 x 32       224 x 224
        cv2.sumElems of x and of np.square(x, dtype=uint16)    4.0 / 0.74    22
        cv2.calcHist per channel, then hist @ values          16   / 1.4     71
        np.bincount(x + 256 * channel), then hist @ values    13   / 9.2    411
        x.sum(dtype=uint64), uint16 table of squares [x]      38   / 34    1570
        for scale, decoding a real photo (PNG / JPEG q95)     23   / 22    1100 / 250-500

    Straight after decoding it costs more than alone (~35 us for a 224 x 224 JPEG, its cache
    state differs): compute_stats measured 0.87-0.88x the throughput of a read-only loop on
    224 x 224 JPEGs and 0.95-0.97x on 32 x 32 PNGs (batched), on the same VM.

    OpenCV sums 8-bit data (and the 16-bit squares) in int32 blocks it sizes so they cannot
    overflow, then adds the blocks in float64: exact while a sum stays below 2**53, i.e. for
    batches under 10**11 pixels. It takes 1 to 4 channels; other integer images go through
    numpy in uint64, in blocks small enough not to overflow.
    """
    n_images, height, width, channels = x.shape
    n = n_images * height * width
    if x.dtype == np.uint8 and channels <= 4:
        planes = np.ascontiguousarray(x).reshape(n_images * height, width, channels)
        sums = cv2.sumElems(planes)[:channels]
        squares = cv2.sumElems(np.square(planes, dtype=np.uint16))[:channels]  # 255**2 fits
        return n, [int(s) for s in sums], [int(q) for q in squares]

    flat = x.reshape(n, channels)
    sums, squares = [0] * channels, [0] * channels
    block = 1 << 24  # 2**24 * 65535**2 < 2**64: one block's sum of squares fits uint64
    for start in range(0, n, block):
        part = flat[start : start + block].astype(np.uint64)
        sums = [a + int(b) for a, b in zip(sums, part.sum(axis=0))]
        squares = [a + int(b) for a, b in zip(squares, (part * part).sum(axis=0))]
    return n, sums, squares


def _float_moments(x: np.ndarray) -> tuple[int, list[float], list[float]]:
    """Pixels per channel, mean and M2 of float N x H x W x C, in two passes in float64."""
    channels = x.shape[-1]
    # Channel-major and contiguous, so numpy sums each channel pairwise (error ~ log n, not n).
    planes = np.moveaxis(x, -1, 0).reshape(channels, -1).astype(np.float64)
    n = planes.shape[1]
    mean = planes.sum(axis=1) / n
    m2 = np.square(planes - mean[:, None]).sum(axis=1)
    return n, mean.tolist(), m2.tolist()


def _chan_merge(
    n_a: int,
    mean_a: list[float],
    m2_a: list[float],
    n_b: int,
    mean_b: list[float],
    m2_b: list[float],
) -> tuple[list[float], list[float]]:
    """Per-channel (mean, M2) of the union of two sets of pixels, from each set's (n, mean, M2)."""
    n = n_a + n_b
    deltas = [b - a for a, b in zip(mean_a, mean_b)]
    mean = [a + d * (n_b / n) for a, d in zip(mean_a, deltas)]
    m2 = [qa + qb + d * d * (n_a * n_b / n) for qa, qb, d in zip(m2_a, m2_b, deltas)]
    return mean, m2


def _pixel_m2(x: np.ndarray, scale: int | None, mean: np.ndarray) -> np.ndarray:
    """Per-pixel sum of squared deviations of the N x H x W x C batch ``x`` (divided by
    ``scale``, None for float) from its mean image ``mean``, in float64: the second pass of the
    two-pass algorithm, a block of images at a time."""
    rows = max(1, _PIXEL_BLOCK_BYTES // (mean.size * 8))
    m2 = np.zeros_like(mean)
    for start in range(0, len(x), rows):
        deviations = x[start : start + rows].astype(np.float64)
        if scale is not None:
            deviations /= scale
        deviations -= mean
        np.square(deviations, out=deviations)
        m2 += deviations.sum(axis=0)
    return m2


def _merge_m2(
    n_a: int, mean_a: np.ndarray | None, m2_a: np.ndarray | None, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray | None
) -> np.ndarray:
    """Chan et al.'s M2 of n_a + n_b images, pixel by pixel, from each part's mean and M2 images
    (``mean_a`` and ``m2_a`` None when n_a is 0; ``m2_b`` None for zeros, a part of one image)."""
    if mean_a is None or m2_a is None:
        return np.zeros_like(mean_b) if m2_b is None else m2_b
    m2 = np.square(mean_b - mean_a)
    m2 *= n_a * n_b / (n_a + n_b)
    m2 += m2_a
    if m2_b is not None:
        m2 += m2_b
    return m2


def _merge_means(n_a: int, mean_a: np.ndarray | None, n_b: int, mean_b: np.ndarray) -> np.ndarray:
    """The mean of n_a + n_b items from the means of each part (mean_a None when n_a is 0)."""
    if mean_a is None:
        return mean_b
    return mean_a + (mean_b - mean_a) * (n_b / (n_a + n_b))
