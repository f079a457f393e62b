"""augkit's resize against OpenCV's area filter and Pillow's antialiased resize: time and agreement.

Contenders, one thread each, on the same uint8 RGB photo crops:

  augkit        ``augkit.pipeline.functional.resize`` (``augkit.resize.resample``): OpenCV's area filter when
                both axes shrink; the shrinking axis alone with it, then linear, when one grows
  cv2 area      ``cv2.resize(..., INTER_AREA)``: what augkit used before (it aliases when one axis
                shrinks and the other grows)
  Pillow box    ``Image.resize(..., BOX)`` on a ready Pillow image (no array conversion timed)
  Pillow bilin  ``Image.resize(..., BILINEAR)``: Pillow's antialiased triangle filter, the reference
                of the "vs Pillow" columns

"vs Pillow" is the mean absolute difference from Pillow's BILINEAR result, in gray levels, on the
same photo crop, and on 1-pixel stripes (the pattern of augkit issue 9) of the same size.
Repeats are interleaved (``_repeats.interleaved``), the first dropped, medians reported.

    python bench/resize_quality.py [--repeats 11]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402

import augkit  # noqa: E402
from augkit.pipeline import functional as F  # noqa: E402
from augkit.resize import resize_to  # noqa: E402
from _repeats import interleaved  # noqa: E402  bench/, the folder of this script

# (source height, width) -> (output height, width): the typical shrinks, the mixed case,
# a random-resized crop's window (mixed), and an enlargement.
CASES = [
    ((512, 512), (224, 224)),
    ((256, 256), (64, 64)),
    ((32, 32), (24, 24)),
    ((64, 1024), (128, 128)),
    ((180, 320), (224, 224)),
    ((112, 112), (224, 224)),
]
TARGET_SECONDS = 0.02  # per contender per repeat


def photo(shape: tuple[int, int]) -> np.ndarray:
    """A crop of the astronaut photo, area-resized to ``shape``: real content at any size."""
    image = cv2.imread(str(augkit.sample_data_dir() / "photos" / "astronaut.jpg"), cv2.IMREAD_COLOR)[..., ::-1]
    h, w = shape
    side = min(image.shape[0], image.shape[1] * h // w)
    window = np.ascontiguousarray(image[:side, : side * w // h])
    return cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA if side >= h else cv2.INTER_LINEAR)


def stripes(shape: tuple[int, int]) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    image[:, ::2] = 255
    return image


def contenders(image: np.ndarray, size: tuple[int, int]) -> dict[str, Callable[[], np.ndarray]]:
    height, width = size
    pil = Image.fromarray(image)
    return {
        "augkit": lambda: F.resize(image, height, width),
        "cv2 area": lambda: cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
        "Pillow box": lambda: pil.resize((width, height), Image.Resampling.BOX),
        "Pillow bilin": lambda: pil.resize((width, height), Image.Resampling.BILINEAR),
    }


def per_call_us(run: Callable[[], object], calls: int) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            run()
        return (time.perf_counter() - start) / calls * 1e6

    return timed


def vs_pillow(image: np.ndarray, size: tuple[int, int]) -> dict[str, float]:
    """Mean absolute difference of augkit and cv2 area from Pillow's BILINEAR, in gray levels."""
    runs = contenders(image, size)
    reference = np.asarray(runs["Pillow bilin"](), np.float32)
    ours = {name: np.asarray(runs[name](), np.float32) for name in ("augkit", "cv2 area")}
    return {name: float(np.abs(out - reference).mean()) for name, out in ours.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the first is dropped)")
    cv2.setNumThreads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}; one thread; "
          f"{args.repeats} repeats (first dropped), medians")  # fmt: skip

    names = list(contenders(photo((8, 8)), (4, 4)))
    print(f"\n{'case':<22}" + "".join(f"{n + ' us':>16}" for n in names)
          + f"{'augkit/cv2':>11}{'augkit/box':>11}{'augkit/bilin':>13}"
          + "  vs Pillow, photo: augkit | cv2   stripes: augkit | cv2")  # fmt: skip
    for shape, size in CASES:
        image = photo(shape)
        runs = contenders(image, size)
        start = time.perf_counter()
        runs["augkit"]()
        calls = max(1, int(TARGET_SECONDS / max(time.perf_counter() - start, 1e-6)))
        kept = interleaved({name: per_call_us(run, calls) for name, run in runs.items()}, args.repeats)
        us = {name: statistics.median(times) for name, times in kept.items()}
        on_photo, on_stripes = vs_pillow(image, size), vs_pillow(stripes(shape), size)
        case = f"{shape[0]}x{shape[1]} -> {size[0]}x{size[1]}"
        print(f"{case:<22}" + "".join(f"{us[n]:>16.1f}" for n in names)
              + f"{us['augkit'] / us['cv2 area']:>11.2f}{us['augkit'] / us['Pillow box']:>11.2f}"
              + f"{us['augkit'] / us['Pillow bilin']:>13.2f}"
              + f"  {on_photo['augkit']:>21.2f} | {on_photo['cv2 area']:<5.2f} {on_stripes['augkit']:>15.2f} | "
              + f"{on_stripes['cv2 area']:.2f}")  # fmt: skip

    # Item 8 of the issue: the crop is computed from the source pixels it needs.
    line = np.random.default_rng(0).integers(0, 256, (1, 20000, 3), np.uint8)
    crop = per_call_us(lambda: resize_to(line, (224, 224), "center-crop"), 20)
    kept = interleaved({"center-crop": crop}, args.repeats)
    print(f"\nresize_to(1x20000x3, 224x224, center-crop): {statistics.median(kept['center-crop']):.0f} us per call "
          f"(scaling the whole image first needs 224 x 4480000 x 3 = 3.0 GB)")  # fmt: skip


if __name__ == "__main__":
    main()
