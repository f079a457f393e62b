"""What augkit's Pipeline costs on top of albumentations, single-threaded, in one run.

Three contenders augment the same images with the same recipe (pad+crop, rotate,
brightness, horizontal flip, standardize; "+noise" adds albumentations' GaussNoise, which
draws from numpy, so augkit must re-seed its numpy generator per sample too):

  augkit      ``Pipeline(image, index=i, epoch=0)``: re-seeds per sample, then runs its Compose
  by hand     the same Compose (augkit's steps) built by hand and called directly, seeded once
  albu-native the recipe from albumentations' own classes (PadIfNeeded, RandomCrop, Rotate,
              RandomBrightnessContrast, HorizontalFlip, Normalize), called directly

"augkit / by hand" is the price of augkit's wrapper (per-sample seeding, the call); the target
is at most 1.05. "augkit / albu-native" compares augkit's step implementations as well.
Every step applies with p=1, so all contenders do the same work per call and differ only in
the values drawn (with p<1, which steps happen to run would dominate the comparison).

Repeats are interleaved so that machine noise hits all contenders alike; the first repeat
(which pays for fresh memory and warm-up) is dropped and medians are reported.

    python bench/pipeline_overhead.py [--repeats 15] [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import augkit  # noqa: E402
from augkit.pipeline import steps as T  # noqa: E402
from augkit.pipeline._albumentations import A  # noqa: E402
from _repeats import interleaved, per_call_us  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def contenders(side: int, noise: bool):
    crop = side * 7 // 8
    pad = side // 8
    spec = {
        "seed": 0,
        "steps": [
            {"crop": {"size": crop, "padding": pad}},
            {"rotate": {"limit": 15, "p": 1.0}},
            {"brightness": {"limit": 0.2, "p": 1.0}},
            {"hflip": {"p": 1.0}},
            *([{"GaussNoise": {"p": 1.0}}] if noise else []),
            {"standardize": {"mean": MEAN, "std": STD}},
        ],
    }
    pipeline = augkit.load_pipeline(spec)
    by_hand = A.Compose(
        [
            T.Crop(size=crop, padding=pad),
            T.Rotate(limit=15, p=1.0),
            T.Brightness(limit=0.2, p=1.0),
            A.HorizontalFlip(p=1.0),
            *([A.GaussNoise(p=1.0)] if noise else []),
            T.Standardize(mean=MEAN, std=STD),
        ],
        seed=0,
    )
    native = A.Compose(
        [
            A.PadIfNeeded(side + 2 * pad, side + 2 * pad, border_mode=cv2.BORDER_CONSTANT),
            A.RandomCrop(crop, crop),
            A.Rotate(limit=15, p=1.0, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0, p=1.0),
            A.HorizontalFlip(p=1.0),
            *([A.GaussNoise(p=1.0)] if noise else []),
            A.Normalize(mean=MEAN, std=STD),
        ],
        seed=0,
    )
    return {
        "augkit": lambda img, i: pipeline(img, index=i, epoch=0),
        "by hand": lambda img, i: by_hand(image=img)["image"],
        "albu-native": lambda img, i: native(image=img)["image"],
    }


def measure(side: int, noise: bool, repeats: int, calls: int) -> dict[str, float]:
    """Per-call medians in microseconds, and each ratio as the median of the per-repeat ratios."""
    images = np.random.default_rng(0).integers(0, 256, (16, side, side, 3), dtype=np.uint8)

    times = interleaved({name: per_call_us(run, images, calls) for name, run in contenders(side, noise).items()}, repeats)
    result = {name: statistics.median(t) for name, t in times.items()}
    for peer in ("by hand", "albu-native"):
        result[f"augkit/{peer}"] = statistics.median(a / b for a, b in zip(times["augkit"], times[peer]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 224])
    args = parser.parse_args()
    cv2.setNumThreads(1)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"albumentations {A.__version__}, opencv {cv2.__version__}, numpy {np.__version__}")
    print(f"{'image':>9} {'recipe':>9} {'augkit us':>10} {'by hand us':>11} {'native us':>10} {'augkit/by hand':>15} {'augkit/native':>14}")
    for noise in (False, True):
        for side in args.sides:
            calls = args.calls if side <= 64 else max(100, args.calls // 8)
            t = measure(side, noise, args.repeats, calls)
            print(f"{side:>4}x{side:<4} {'+noise' if noise else 'base':>9} {t['augkit']:>10.1f} {t['by hand']:>11.1f} "
                  f"{t['albu-native']:>10.1f} {t['augkit/by hand']:>15.3f} {t['augkit/albu-native']:>14.3f}")


if __name__ == "__main__":
    main()
