"""What the pixel contract's check costs a pipeline call, single-threaded, in one run.

``Pipeline.__call__`` checks every image it is given (``augkit.pixels.check_image``): the dtype
for all, and for float32 images also the value range (numpy's min and max, one pass each).
This runs the same pipeline (the issue's chain: padded crop, rotate +-15, brightness, contrast,
horizontal flip, standardize, all p=1) with the check and with it replaced by a no-op, on
uint8 and on float32 images of real photos, and reports the ratio (the median of the
per-repeat ratios; target: under 1.02 at 224) and the check's own time on the same images as
a share of the call, which resolves what the ratio's noise (about +-2% here) cannot.

Repeats are interleaved (bench/_repeats.py); the first is dropped and medians are reported.

    python bench/pixel_contract.py [--repeats 11] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import augkit  # noqa: E402
import augkit.pipeline.core  # noqa: E402
from _repeats import interleaved  # noqa: E402


def photos(side: int) -> list[np.ndarray]:
    folder = augkit.sample_data_dir() / "photos"
    return [cv2.resize(augkit.read_image(p), (side, side), interpolation=cv2.INTER_AREA) for p in sorted(folder.glob("*.jpg"))]


def timed(pipeline: augkit.Pipeline, images: list[np.ndarray], calls: int, check: bool) -> float:
    """Microseconds per call."""
    real = augkit.pipeline.core.check_image
    augkit.pipeline.core.check_image = real if check else (lambda image, what="image": 1.0)
    try:
        start = time.perf_counter()
        for i in range(calls):
            pipeline(images[i % len(images)], index=i)
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        augkit.pipeline.core.check_image = real


def alone(images: list[np.ndarray], calls: int) -> float:
    """Microseconds per ``check_image`` call on the pipeline's inputs, in the same order."""
    check = augkit.pipeline.core.check_image
    start = time.perf_counter()
    for i in range(calls):
        check(images[i % len(images)])
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}, numpy {np.__version__}")
    for side in (32, 224):
        spec = (
            f"crop(size={side * 7 // 8}, padding={side // 8}); rotate(limit=15, p=1); brightness(p=1); "
            f"contrast(p=1); hflip(p=1); standardize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])"
        )
        pipeline = augkit.load_pipeline(spec)
        u8 = photos(side)
        f32 = [image.astype(np.float32) / 255 for image in u8]
        runs = {
            f"{dtype} {'checked' if check else 'unchecked'}": (lambda images=images, check=check: timed(pipeline, images, args.calls, check))
            for dtype, images in (("uint8", u8), ("float32", f32))
            for check in (True, False)
        }
        # The check alone, on the same images: the difference of two noisy pipeline times
        # cannot resolve a cost near 1%, so its share is also measured directly.
        runs.update({f"{dtype} check alone": (lambda images=images: alone(images, args.calls)) for dtype, images in (("uint8", u8), ("float32", f32))})
        times = interleaved(runs, args.repeats)
        for dtype in ("uint8", "float32"):
            checked, unchecked, check = times[f"{dtype} checked"], times[f"{dtype} unchecked"], times[f"{dtype} check alone"]
            ratio = statistics.median(c / u for c, u in zip(checked, unchecked))
            share = statistics.median(k / c for k, c in zip(check, checked))
            print(
                f"{side:>4} px {dtype:<8} checked {statistics.median(checked):8.1f} us  unchecked {statistics.median(unchecked):8.1f} us  "
                f"ratio {ratio:.3f}  check alone {statistics.median(check):5.2f} us = {share:.2%} of the call"
            )

if __name__ == "__main__":
    main()
