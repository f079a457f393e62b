"""The compiled pipeline against albumentations' Compose and against itself step by step.

The chain (every step applied, p=1), on the sample photos squashed to side x side, uint8 RGB,
one thread:

  augkit                                      albumentations
  crop(size=side, padding=side/8)             PadIfNeeded(side + 2 pad) + RandomCrop(side)
    or crop(size=side, mode=random_resized)     or RandomResizedCrop(side)
  rotate(limit=15)  (reflect)                 Rotate(15, border_mode=REFLECT_101)
  brightness(limit=0.2)                       RandomBrightnessContrast(0.2, 0)
  contrast(limit=0.2)                         RandomBrightnessContrast(0, 0.2)
  hflip                                       HorizontalFlip
  [standardize(mean, std)]                    Normalize(mean, std)   (always: its float32 output)

"uint8 out" leaves standardisation to the device (what ``augkit train`` does), so augkit's
chain stops at hflip while albumentations' keeps its Normalize, as the issue's target states;
"float32 out" standardises on both sides. Contenders: albumentations' Compose, augkit's
pipeline compiled (the default) and the same spec with ``compile: false``, each called
``pipeline(image, index=i)`` / ``compose(image=image)`` on the photos in turn for about
``--block-ms``. Ratios are medians of per-repeat ratios; repeats are interleaved, the first
dropped (``_repeats.interleaved``).

    python bench/compiled_vs_albumentations.py [--repeats 9] [--block-ms 60] [--sides 32 224]
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
from augkit.pipeline._albumentations import A  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def augkit_spec(side: int, crop: str, standardize: bool, compiled: bool) -> dict:
    first = (
        {"crop": {"size": side, "padding": side // 8}}
        if crop == "pad"
        else {"crop": {"size": side, "mode": "random_resized"}}
    )
    steps = [
        first,
        {"rotate": {"limit": 15, "p": 1.0}},
        {"brightness": {"limit": 0.2, "p": 1.0}},
        {"contrast": {"limit": 0.2, "p": 1.0}},
        {"hflip": {"p": 1.0}},
    ]
    if standardize:
        steps.append({"standardize": {"mean": MEAN, "std": STD}})
    return {"seed": 0, "steps": steps, "compile": compiled}


def albumentations_compose(side: int, crop: str) -> A.Compose:
    pad_to = side + 2 * (side // 8)
    first = (
        [A.PadIfNeeded(pad_to, pad_to, border_mode=cv2.BORDER_CONSTANT, fill=0), A.RandomCrop(side, side)]
        if crop == "pad"
        else [A.RandomResizedCrop((side, side))]
    )
    return A.Compose([
        *first,
        A.Rotate(limit=15, p=1.0, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomBrightnessContrast(0.2, 0.0, p=1.0),
        A.RandomBrightnessContrast(0.0, 0.2, p=1.0),
        A.HorizontalFlip(p=1.0),
        A.Normalize(mean=MEAN, std=STD),
    ], seed=0)


def photos(side: int) -> list[np.ndarray]:
    folder = augkit.sample_data_dir() / "photos"
    images = [augkit.read_image(path) for path in sorted(folder.iterdir())]
    return [cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA) for image in images]


def contenders(side: int, crop: str, standardize: bool) -> dict[str, Callable[[np.ndarray, int], object]]:
    compiled = augkit.load_pipeline(augkit_spec(side, crop, standardize, True))
    plain = augkit.load_pipeline(augkit_spec(side, crop, standardize, False))
    compose = albumentations_compose(side, crop)
    return {
        "compiled": lambda image, i: compiled(image, index=i),
        "step by step": lambda image, i: plain(image, index=i),
        "albumentations": lambda image, i: compose(image=image),
    }


def measure(runs: dict[str, Callable], images: list[np.ndarray], repeats: int, block_s: float) -> dict[str, list[float]]:
    calls = calls_for_block(list(runs.values()), images, block_s)
    return interleaved({name: per_call_us(run, images, calls) for name, run in runs.items()}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--block-ms", type=float, default=60.0, help="time per contender per repeat")
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 224])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"python {platform.python_version()}, albumentations {A.__version__}, opencv {cv2.__version__}, "
        f"numpy {np.__version__}"
    )
    print(f"{'side':>4} {'crop':<4} {'out':<7} {'compiled us':>11} {'steps us':>9} {'albu us':>8} "
          f"{'albu/compiled':>13} {'steps/compiled':>14}")
    for side in args.sides:
        images = photos(side)
        for crop in ("pad", "rrc"):
            for standardize in (False, True):
                times = measure(contenders(side, crop, standardize), images, args.repeats, args.block_ms / 1e3)
                med = {name: statistics.median(t) for name, t in times.items()}
                vs_albu = statistics.median(b / a for a, b in zip(times["compiled"], times["albumentations"]))
                vs_steps = statistics.median(b / a for a, b in zip(times["compiled"], times["step by step"]))
                out = "float32" if standardize else "uint8"
                print(f"{side:>4} {crop:<4} {out:<7} {med['compiled']:>11.1f} {med['step by step']:>9.1f} "
                      f"{med['albumentations']:>8.1f} {vs_albu:>13.2f} {vs_steps:>14.2f}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
