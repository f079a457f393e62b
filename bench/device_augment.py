"""``--augment-on device`` against the per-image compiled CPU path, per core, on CPU tensors.

Both contenders augment the same 256 images of 32 x 32 x 3 (crops of the sample photos, area
resized) with the same draws, one batch of 256 per call, on one thread (``torch.set_num_threads(1)``,
``cv2.setNumThreads(1)``):

  cpu      ``pipeline(image, index=i, epoch=e)`` for each image: the compiled plan
           (``augkit.pipeline.plan``), what a DataLoader worker runs per image
  device   ``DeviceAugment(pipeline)(batch, indices, e)`` on the uint8 N x C x H x W tensor:
           the host-side draws (``Pipeline.draw_batch``) included, then the steps applied to
           the whole batch with torch

for the chains

  long     crop(size=32, padding=4); hflip; rotate(limit=15, p=1); brightness(p=1); contrast(p=1)
  short    crop(size=32, padding=4); hflip

The target (issue 11 item 4): device / cpu >= 1.5 in images/s. "draws" is the share of the
device path's time spent drawing on the host (``DeviceAugment.draws``), which no batching removes.

Method: each repeat times every contender for ``--batches`` batches (epochs 0, 1, ...); repeats
are interleaved, their order rotating, the first dropped (bench/_repeats.py); the ratio is the
median of the per-repeat ratios, with its min and max.

    python bench/device_augment.py [--repeats 7] [--batches 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version

os.environ["OMP_NUM_THREADS"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import augkit  # noqa: E402
from _repeats import interleaved  # noqa: E402 (bench/, the folder of this script)
from augkit.train.device_augment import DeviceAugment  # noqa: E402

CHAINS = {
    "long": "crop(size=32, padding=4); hflip; rotate(limit=15, p=1); brightness(p=1); contrast(p=1)",
    "short": "crop(size=32, padding=4); hflip",
}
BATCH, SIDE = 256, 32
TARGET = 1.5


def photo_crops(count: int, side: int) -> np.ndarray:
    """``count`` distinct RGB crops of the sample photos, area-resized to side x side: uint8 N x H x W x 3."""
    folder = augkit.sample_data_dir() / "photos"
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in sorted(folder.glob("*.[jp][pn]g"))]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - 3 * side), rng.integers(0, photo.shape[1] - 3 * side)
        window = np.ascontiguousarray(photo[y : y + 3 * side, x : x + 3 * side])
        crops.append(cv2.resize(window, (side, side), interpolation=cv2.INTER_AREA))
    return np.stack(crops)


def contenders(spec: str, images: np.ndarray) -> dict[str, Callable[[int], None]]:
    """name -> a run of one batch for an epoch: the CPU path, the device path, and its draws alone."""
    pipeline = augkit.load_pipeline(spec, seed=0)
    augment = DeviceAugment(pipeline)
    indices = np.arange(BATCH) * 7 + 3  # as a shuffled epoch's indices are: not 0..N-1
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # the Loader's N x H x W x C, seen as N x C x H x W

    def cpu(epoch: int) -> None:
        for image, index in zip(images, indices):
            pipeline(image, index=int(index), epoch=epoch)

    return {
        "cpu": cpu,
        "device": lambda epoch: augment(batch, indices, epoch),
        "draws": lambda epoch: augment.draws(images.shape[1:], indices, epoch),
    }


def rate(run: Callable[[int], None], batches: int) -> Callable[[], float]:
    """One timing: images per second of ``run`` over ``batches`` batches (epochs 0, 1, ...)."""

    def once() -> float:
        started = time.perf_counter()
        for epoch in range(batches):
            run(epoch)
        return batches * BATCH / (time.perf_counter() - started)

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repeats of every contender (the first is dropped)")
    parser.add_argument("--batches", type=int, default=8, help=f"batches of {BATCH} per contender and repeat")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (the first is dropped), got {args.repeats}")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images = photo_crops(BATCH, SIDE)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {version('torch')}, opencv {cv2.__version__}; 1 thread; batch {BATCH} of {SIDE}x{SIDE}x3 uint8, "
          f"{args.batches} batches per run, {args.repeats} repeats (first dropped)")  # fmt: skip
    print(f"\n{'chain':>6} {'cpu img/s':>10} {'device img/s':>13} {'draws':>6} {'device/cpu':>11} {'min':>6} {'max':>6}  target")
    for name, spec in CHAINS.items():
        runs = {key: rate(run, args.batches) for key, run in contenders(spec, images).items()}
        kept = interleaved(runs, args.repeats)
        ratios = [device / cpu for device, cpu in zip(kept["device"], kept["cpu"])]
        ratio = statistics.median(ratios)
        cpu_rate, device_rate, draw_rate = (statistics.median(kept[key]) for key in ("cpu", "device", "draws"))
        print(f"{name:>6} {cpu_rate:>10.0f} {device_rate:>13.0f} {device_rate / draw_rate:>6.0%} {ratio:>11.2f} "
              f"{min(ratios):>6.2f} {max(ratios):>6.2f}  >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}")  # fmt: skip
    for name, spec in CHAINS.items():
        print(f"{name}: {spec}")


if __name__ == "__main__":
    main()
