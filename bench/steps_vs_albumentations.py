"""augkit's steps against their albumentations equivalents, one step at a time, single-threaded.

Each augkit step is timed as a pipeline runs it, the transform object called on an image
(``step(image=img)["image"]``, what ``Pipeline.__call__`` does for every step), and its
albumentations peer is called the same way. Images are the sample photos
(``augkit.sample_data_dir()/"photos"``) squashed to side x side squares, uint8 RGB. Every step
applies (p=1), so both sides do the same work per call and differ only in the values drawn.

  step             augkit                             albumentations
  standardize      standardize(mean, std)             Normalize(mean, std)
  subtract_mean    subtract_mean(mean)                Normalize(mean, std=1)
  scale            scale                              ToFloat(max_value=255)
  brightness       brightness(limit=0.2)              RandomBrightnessContrast(0.2, 0)
  contrast         contrast(limit=0.2)                RandomBrightnessContrast(0, 0.2)
  rotate           rotate(limit=15)  (reflect)        Rotate(15, border_mode=REFLECT_101)
  crop pad         crop(size=side, padding=side/8)    PadIfNeeded(side + 2*pad) + RandomCrop(side)
  crop center      crop(size=7/8 side, mode=center)   CenterCrop(7/8 side)
  crop rrc         crop(size=side, random_resized)    RandomResizedCrop(side)
  hflip, vflip     albumentations' own classes, registered under augkit's names: the same code
                   on both sides, so their ratio shows the measurement's noise

augkit's random-resized crop resizes with an area filter when it shrinks (``augkit.resize``);
albumentations' with linear interpolation, so that pair compares different resamplings.

The ratio is albumentations' time / augkit's (>= 1.0: augkit is not slower), the median of the
per-repeat ratios; repeats are interleaved and the first is dropped (``_repeats.interleaved``).

Each repeat calls a contender on the photos in turn for about ``--block-ms`` (the number of
calls is set once per step and size, from the slower contender, and is the same for both).

    python bench/steps_vs_albumentations.py [--repeats 9] [--block-ms 40] [--sides 32 64 128 224 512]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Callable

os.environ["OMP_NUM_THREADS"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import augkit  # noqa: E402
from _repeats import calls_for_block, interleaved, per_call_us  # noqa: E402
from augkit.pipeline import steps as T  # noqa: E402
from augkit.pipeline._albumentations import A  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
Step = Callable[..., dict]


def pairs(side: int) -> dict[str, tuple[Step, Step]]:
    """step name -> (augkit transform, albumentations equivalent), both called as ``t(image=img)``."""
    pad, center = side // 8, side * 7 // 8
    pad_to = side + 2 * pad
    pad_crop = [A.PadIfNeeded(pad_to, pad_to, border_mode=cv2.BORDER_CONSTANT, fill=0), A.RandomCrop(side, side)]
    return {
        "standardize": (T.Standardize(mean=MEAN, std=STD), A.Normalize(mean=MEAN, std=STD)),
        "subtract_mean": (T.SubtractMean(mean=MEAN), A.Normalize(mean=MEAN, std=(1.0, 1.0, 1.0))),
        "scale": (T.Scale(), A.ToFloat(max_value=255)),
        "brightness": (T.Brightness(limit=0.2, p=1.0), A.RandomBrightnessContrast(0.2, 0.0, p=1.0)),
        "contrast": (T.Contrast(limit=0.2, p=1.0), A.RandomBrightnessContrast(0.0, 0.2, p=1.0)),
        "rotate": (T.Rotate(limit=15, p=1.0), A.Rotate(limit=15, p=1.0, border_mode=cv2.BORDER_REFLECT_101)),
        "crop pad": (T.Crop(size=side, padding=pad), lambda image: pad_crop[1](**pad_crop[0](image=image))),
        "crop center": (T.Crop(size=center, mode="center"), A.CenterCrop(center, center)),
        "crop rrc": (T.Crop(size=side, mode="random_resized"), A.RandomResizedCrop((side, side))),
        "hflip": (augkit.create_step("hflip", p=1.0), A.HorizontalFlip(p=1.0)),
        "vflip": (augkit.create_step("vflip", p=1.0), A.VerticalFlip(p=1.0)),
    }


def photos(side: int) -> list[np.ndarray]:
    folder = augkit.sample_data_dir() / "photos"
    images = [augkit.read_image(path) for path in sorted(folder.iterdir())]
    return [cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA) for image in images]


def _called(step: Step) -> Callable[[np.ndarray, int], object]:
    return lambda image, i: step(image=image)


def calls_for(steps: tuple[Step, Step], images: list[np.ndarray], block_s: float) -> int:
    """How many calls make a block of about ``block_s`` seconds for the slower of ``steps``."""
    return calls_for_block([_called(step) for step in steps], images, block_s)


def measure(ours: Step, theirs: Step, images: list[np.ndarray], repeats: int, calls: int) -> dict[str, float]:
    """Per-call medians in microseconds, and the ratio albumentations / augkit (median of per-repeat ratios)."""
    runs = {"augkit": per_call_us(_called(ours), images, calls), "albumentations": per_call_us(_called(theirs), images, calls)}
    times = interleaved(runs, repeats)
    result = {name: statistics.median(t) for name, t in times.items()}
    result["ratio"] = statistics.median(b / a for a, b in zip(times["augkit"], times["albumentations"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--block-ms", type=float, default=40.0, help="time per contender per repeat")
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 224, 512])
    parser.add_argument("--steps", nargs="+", help="only these steps (default: all)")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"python {platform.python_version()}, albumentations {A.__version__}, opencv {cv2.__version__}, "
        f"numpy {np.__version__}"
    )
    print(f"{'step':<14} {'side':>5} {'augkit us':>10} {'albu us':>10} {'albu/augkit':>12}")
    for side in args.sides:
        images = photos(side)
        for name, (ours, theirs) in pairs(side).items():
            if args.steps and name not in args.steps:
                continue
            calls = calls_for((ours, theirs), images, args.block_ms / 1e3)
            t = measure(ours, theirs, images, args.repeats, calls)
            row = f"{name:<14} {side:>5} {t['augkit']:>10.1f} {t['albumentations']:>10.1f} {t['ratio']:>12.3f}"
            print(row, flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
