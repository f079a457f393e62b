"""A 3-channel bilinear warp through 4 channels against OpenCV's 3-channel warp, single-threaded.

OpenCV 5's ``warpAffine`` runs 4-channel images about twice as fast as 3-channel ones, so
``augkit.pipeline.functional.warp_affine`` adds a fourth channel (``cvtColor``), warps and drops
it (the same values, bit for bit: ``tests/test_step_equivalence.py``). This measures where that
pays: the ratio is the 3-channel warp's time / the 4-channel route's (> 1: the route is faster),
the median of per-repeat ratios, a rotation by 10 degrees with reflected borders, the sample
photo squashed to side x side, per dtype.

    python bench/warp_channels.py [--repeats 9] [--sides 32 48 64 96 128 224 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["OMP_NUM_THREADS"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import augkit  # noqa: E402
from _repeats import interleaved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 48, 64, 96, 128, 224, 512])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    photo = augkit.read_image(augkit.sample_data_dir() / "photos" / "astronaut.jpg")
    print(f"opencv {cv2.__version__}, load {os.getloadavg()[0]:.2f}")
    print(f"{'side':>5} {'dtype':<8} {'3 ch us':>8} {'via 4 ch us':>11} {'ratio':>6}")
    for side in args.sides:
        base = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), 10, 1.0)
        for dtype in ("uint8", "uint16", "float32"):
            image = {"uint8": base, "uint16": base.astype(np.uint16) * 257, "float32": base.astype(np.float32) / 255}[dtype]
            calls = max(20, round(2e6 / (side * side)))

            def three() -> float:
                start = time.perf_counter()
                for _ in range(calls):
                    cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                return (time.perf_counter() - start) / calls * 1e6

            def four() -> float:
                start = time.perf_counter()
                for _ in range(calls):
                    wide = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
                    out = cv2.warpAffine(wide, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                    cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
                return (time.perf_counter() - start) / calls * 1e6

            times = interleaved({"3": three, "4": four}, args.repeats)
            ratio = statistics.median(a / b for a, b in zip(times["3"], times["4"]))
            print(f"{side:>5} {dtype:<8} {statistics.median(times['3']):>8.1f} {statistics.median(times['4']):>11.1f} {ratio:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
