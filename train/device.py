"""The device side of a batch: augmentation of whole batches (optional), then normalisation.

``fit_normalizer`` decides a run's normalisation (the harness's statistics, or a normalisation
step that ends ``--augment``); ``Normalizer`` applies it to uint8 N x H x W x C batches on the
device; ``DeviceBatches`` gives a loader's batches as the model takes them, after
``--augment-on device``'s ``DeviceAugment`` (``create_device_augment``) where the run has one.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.stats import MIN_STD, ChannelStats, floored_std
from augkit.train.batches import Loader, _check_augmented, split_augment
from augkit.train.config import TrainConfig

if TYPE_CHECKING:
    from augkit.pipeline import Pipeline
    from augkit.train.data import Splits
    from augkit.train.device_augment import DeviceAugment

# Bytes of images per ChannelStats update in fit_normalizer: the training array may be a
# memory map larger than memory, so it is measured a slice at a time.
_STATS_CHUNK_BYTES = 64 << 20

STATS_FILE = "stats.json"


class Normalizer(nn.Module):
    """uint8 N x H x W x C -> float32 N x C x H x W: ``(x / 255 - mean) / std``, on the whole batch.

    ``mean`` is C x 1 x 1 (per channel) or C x H x W (the mean image); ``std`` is C x 1 x 1, or
    C x H x W (per pixel: ``floored_std`` of the std image). Both are on the [0, 1] scale, as
    ``ChannelStats`` stores them; zeros and ones when not used.
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
        cls, stats: ChannelStats | None, *, standardize: str, mean_image: bool, channels: int
    ) -> Normalizer:
        """``standardize`` "channel": subtract the per-channel mean (the mean image with
        ``mean_image``) and divide by the per-channel std; "pixel": subtract the mean image and
        divide by the std image, floored (``augkit.stats.floored_std``: a constant pixel only
        centred, any other std at least 1/255); "none": subtract the mean image with
        ``mean_image``, else only scale to [0, 1].
        """
        mean, std = torch.zeros(channels, 1, 1), torch.ones(channels, 1, 1)
        if standardize == "none" and not mean_image:
            return cls(mean, std)
        if stats is None or stats.channels != channels:
            found = "no statistics" if stats is None else f"statistics of {stats.channels} channels"
            raise ValueError(f"standardize/mean_image need statistics of {channels} channels, got {found}")
        if standardize == "pixel":
            if stats.std_image is None:
                raise ValueError("standardize pixel needs statistics computed with std_image=True")
            images = (stats.mean_image, floored_std(stats.std_image))
            return cls(*(torch.from_numpy(image).permute(2, 0, 1) for image in images))
        if mean_image:
            if stats.mean_image is None:
                raise ValueError("mean_image needs statistics computed with mean_image=True")
            mean = torch.from_numpy(stats.mean_image).permute(2, 0, 1)
        else:
            mean = torch.from_numpy(stats.mean).view(channels, 1, 1)
        if standardize == "channel":
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
        if mean.ndim == 3:  # subtract_mean's mean image; standardize(mode=pixel)'s mean image and floored std image
            if mean.shape != (height, width, channels):
                per_pixel = name == "standardize"
                raise AugkitError(
                    f"--augment: {name}'s {'per-pixel statistics' if per_pixel else 'mean image'} ({stats}) "
                    f"{'are of' if per_pixel else 'is'} {'x'.join(map(str, mean.shape))} but {splits.source}'s images "
                    f"are {height}x{width}x{channels}; "
                    f"{_recompute(splits, stats, gray=mean.shape[2] == 1, mean_image=True, per_pixel=per_pixel)}"
                )
            std = torch.from_numpy(std)
            std = std.permute(2, 0, 1) if std.ndim == 3 else std.view(channels, 1, 1)
            return cls(torch.from_numpy(mean).permute(2, 0, 1), std)
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
    time. With ``augment`` (``--augment-on device``; the loader must not augment), each batch is
    augmented there first, with the draws of its samples' (seed, epoch, index). On the CPU,
    without augmentation, the split is normalised once when it fits in ``CPU_CACHE_BYTES`` as
    float32: the same arithmetic, element by element, so the same values.
    """

    def __init__(
        self, loader: Loader, normalizer: Normalizer, device: torch.device, *, channels_last: bool,
        augment: DeviceAugment | None = None,
    ) -> None:  # fmt: skip
        if augment is not None and loader.augment is not None:
            raise ValueError("augment on the device or in the loader's workers, not both")
        self.loader, self.normalizer, self.device, self.channels_last = loader, normalizer, device, channels_last
        self.augment = augment
        self._cache: torch.Tensor | None = None
        unchanged = loader.augment is None and augment is None
        if device.type == "cpu" and unchanged and loader.images.nbytes * 4 <= CPU_CACHE_BYTES:
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
        if self.augment is not None:
            for idx, x, y in self.loader.indexed_batches(epoch):
                # N x H x W x C seen as N x C x H x W (channels-last memory), and back: no copies.
                x = self.augment(x.to(self.device, non_blocking=True).permute(0, 3, 1, 2), idx, epoch)
                yield to_device(x.permute(0, 2, 3, 1), y, self.device, self.normalizer, channels_last=self.channels_last)
            return
        if self._cache is None:
            for x, y in self.loader.batches(epoch):
                yield to_device(x, y, self.device, self.normalizer, channels_last=self.channels_last)
            return
        for idx in self.loader.batch_indices(epoch):
            idx = torch.from_numpy(idx)
            yield self._cache[idx], self._labels[idx]  # indexing keeps the cache's memory format

    def close(self) -> None:
        self.loader.close()


def augments_on_device(config: TrainConfig, pipeline: Pipeline) -> tuple[bool, str]:
    """Whether ``config.augment_on`` puts ``pipeline`` on the device, and why (for the run's log).

    "device": always (a step without a batched form is then refused by ``create_device_augment``);
    "cpu": never; "auto": when every top-level step has a batched form, none is a random-resized
    crop (whose shrinking the device path does not antialias) and no ``--workers`` were asked for.
    """
    if config.augment_on != "auto":
        return config.augment_on == "device", f"--augment-on {config.augment_on}"
    if config.workers:
        return False, f"--augment-on auto: --workers {config.workers} asked for worker processes"
    from augkit.train.device_augment import BATCHED_STEPS  # torch-side steps: only for runs that use them

    kinds = {"HorizontalFlip": "hflip", "VerticalFlip": "vflip"}
    for name, transform in zip(pipeline.steps, pipeline.compose.transforms):
        if kinds.get(name, name) not in BATCHED_STEPS:
            return False, f"--augment-on auto: {name} has no batched form"
        if getattr(transform, "mode", None) == "random_resized":
            return False, f"--augment-on auto: {name}(mode=random_resized) is antialiased per image only"
    return True, "--augment-on auto: every step has a batched form"


def create_device_augment(pipeline: Pipeline, images: np.ndarray) -> DeviceAugment:
    """``pipeline`` as ``--augment-on device`` runs it, checked like the workers' pipeline (``Loader``):
    on the first of ``images`` (uint8 N x H x W x C), it must keep the size and the dtype.

    Raises:
        AugkitError: a step without a batched form, or an output of another size.
    """
    from augkit.train.device_augment import DeviceAugment  # torch-side steps: only for runs that use them

    augment = DeviceAugment(pipeline)
    first = np.array(images[:1])
    out = augment(torch.from_numpy(first).permute(0, 3, 1, 2), [0], 0)
    _check_augmented(first[0], out.permute(0, 2, 3, 1)[0].numpy())
    return augment


def fit_normalizer(config: TrainConfig, splits: Splits, run_dir: Path, *, write: bool = True) -> Normalizer:
    """The normaliser for ``config``: statistics from ``config.stats``, else from the training split.

    Computed statistics are cached as ``run_dir/stats.json`` (unless ``write`` is False: the
    processes of a distributed run other than rank 0 compute the same statistics and write
    nothing); when that file exists (a resumed run) it is loaded instead. No statistics are
    needed with standardize "none" and without mean_image; "pixel" computes the mean and std
    images too (``stats.mean_image.npy``, ``stats.std_image.npy`` beside ``stats.json``).

    When ``config.augment`` ends in a normalisation step (``NORMALIZATION_STEPS``), that step is
    the normaliser instead, with its own statistics or numbers, for training and validation
    batches alike; ``standardize`` is then not used, and ``stats`` or ``mean_image`` is refused
    (AugkitError) as a second, conflicting normalisation.
    """
    channels = splits.shape[2]
    final = split_augment(config.augment, config.seed)[1]
    if final is not None:
        name, step = final
        for given, flag in ((config.stats is not None, "--stats"), (config.mean_image, "--mean-image")):
            if given:
                raise AugkitError(
                    f"--augment ends in {name}, which normalises the run in place of the harness's own "
                    f"normalisation; drop {flag}, or drop {name} from the pipeline to normalise with {flag}"
                )
        return Normalizer.from_step(name, step, splits)
    if config.standardize == "none" and not config.mean_image:
        return Normalizer.from_stats(None, standardize="none", mean_image=False, channels=channels)
    per_pixel = config.standardize == "pixel"
    if config.stats is not None:
        stats = ChannelStats.load(config.stats)
        _check_stats(stats, config.stats, splits, config.mean_image, per_pixel=per_pixel)
    else:
        cache = Path(run_dir) / STATS_FILE
        if cache.exists():
            stats = ChannelStats.load(cache)
            fix = "it belongs to another run: use a new run folder"
            _check_stats(stats, cache, splits, config.mean_image, fix, per_pixel=per_pixel)
        else:
            stats = ChannelStats(channels, mean_image=config.mean_image, std_image=per_pixel)
            images = splits.train_images
            rows = max(1, _STATS_CHUNK_BYTES // max(1, images[0].nbytes))
            for start in range(0, len(images), rows):
                stats.update(np.asarray(images[start : start + rows]))
            if write:
                cache.parent.mkdir(parents=True, exist_ok=True)
                stats.save(cache)
    return Normalizer.from_stats(stats, standardize=config.standardize, mean_image=config.mean_image, channels=channels)


def _check_stats(
    stats: ChannelStats, path: str | Path, splits: Splits, mean_image: bool, fix: str | None = None, *,
    per_pixel: bool = False,
) -> None:  # fmt: skip
    """Statistics that fit ``splits``' images, or one line: ``fix`` (None: recompute ``path`` with `augkit stats`)."""
    height, width, channels = splits.shape
    if stats.channels != channels:
        fix = fix or _recompute(splits, path, gray=stats.channels == 1)
        raise AugkitError(_channels_message(f"stats file {path}", stats.channels, splits, fix))
    if not (mean_image or per_pixel):
        return
    if per_pixel and stats.std_image is None:
        raise AugkitError(
            f"stats file {path} has no std image, which --standardize pixel needs; compute the mean and std images "
            f"with `augkit stats DATA --per-pixel -o FILE`, or use --standardize channel"
        )
    if stats.mean_image is None:
        raise AugkitError(
            f"stats file {path} has no mean image, which --mean-image needs; "
            f"compute one with `augkit stats DATA --mean-image -o FILE`, or drop --mean-image"
        )
    if stats.mean_image.shape[:2] != (height, width):
        h, w = stats.mean_image.shape[:2]
        what = f"per-pixel statistics of {h}x{w} images" if per_pixel else f"a {h}x{w} mean image"
        raise AugkitError(
            f"stats file {path} has {what} but DATA's images are {height}x{width}; "
            f"{fix or _recompute(splits, path, mean_image=True, per_pixel=per_pixel)}"
        )


def _channels_message(what: str, found: int, splits: Splits, fix: str) -> str:
    """One line: ``what`` has statistics of ``found`` channels, DATA's images another count; ``fix``."""
    channels = splits.shape[2]
    kind = "gray: all its images are stored gray" if channels == 1 else "RGB"
    return f"{what} has {found} channel{'s' if found != 1 else ''} but {splits.source} has {channels} ({kind}); {fix}"


def _recompute(
    splits: Splits, path: str | Path, *, gray: bool = False, mean_image: bool = False, per_pixel: bool = False
) -> str:
    """How to compute statistics that fit ``splits``' DATA: into a new file, never over ``path``.

    ``path`` may hold the statistics of another dataset the user still needs, so the hint names a
    file after DATA (``flowers-stats.json``) and says to pass it.
    """
    option = " --per-pixel" if per_pixel else " --mean-image" if mean_image else ""
    unless_gray = " (without --gray)" if gray and splits.shape[2] != 1 else ""
    name = Path(splits.source).name.removesuffix(".npz") or "data"
    fresh = Path(path).with_name(f"{name}-stats.json")
    if fresh == Path(path):
        fresh = Path(path).with_name(f"{name}-stats-{splits.shape[2]}ch.json")
    out = shlex.quote(str(fresh))
    return f"compute DATA's own with `augkit stats {shlex.quote(splits.source)}{option} -o {out}`{unless_gray} and pass --stats {out}"
