"""What ``augkit.read_image``'s checks cost against OpenCV's bare ``imread``, in one run.

``read_image`` reads the header with Pillow first (format, size, EXIF orientation, mode), refuses
files that are too large or of too many pixels before decoding, applies the orientation and
composites alpha; ``cv2.imread`` only decodes. Both read the same files (PNG and JPEG of real
photos at 32, 224 and 1024 pixels a side, from ``sample_data/photos``), from the page cache.

The second table is what the checks buy: a decompression bomb (a small file that declares a
huge image) refused from its header, against decoding it.

Repeats are interleaved (bench/_repeats.py); the first is dropped; medians of per-repeat ratios.

    python bench/read_image.py [--repeats 11]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402

import augkit  # noqa: E402
from _repeats import interleaved  # noqa: E402


def make_files(folder: Path) -> dict[str, list[Path]]:
    """PNG and JPEG copies of the sample photos at each size: {"png 32": [...], ...}."""
    photos = [augkit.read_image(p) for p in sorted((augkit.sample_data_dir() / "photos").glob("*.jpg"))]
    files: dict[str, list[Path]] = {}
    for side in (32, 224, 1024):
        for ext in ("png", "jpg"):
            group = files.setdefault(f"{ext} {side}", [])
            for n, photo in enumerate(photos):
                path = folder / f"{n}_{side}.{ext}"
                resized = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA if side < 512 else cv2.INTER_CUBIC)
                cv2.imwrite(str(path), cv2.cvtColor(resized, cv2.COLOR_RGB2BGR))
                group.append(path)
    return files


def per_file(read, paths: list[Path], rounds: int):
    def go() -> float:
        start = time.perf_counter()
        for _ in range(rounds):
            for path in paths:
                read(path)
        return (time.perf_counter() - start) / (rounds * len(paths)) * 1e6
    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp))
        print(f"{'files':>9} {'read_image us':>14} {'cv2.imread us':>14} {'ratio':>6}")
        for name, paths in files.items():
            rounds = max(1, 2000 // int(name.split()[1]))
            times = interleaved(
                {
                    "augkit": per_file(augkit.read_image, paths, rounds),
                    "opencv": per_file(lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), paths, rounds),
                },
                args.repeats,
            )
            ratio = statistics.median(a / b for a, b in zip(times["augkit"], times["opencv"]))
            print(f"{name:>9} {statistics.median(times['augkit']):>14.1f} {statistics.median(times['opencv']):>14.1f} {ratio:>6.2f}")

        # A bomb: a PNG that declares 30000 x 30000 (900 Mpx, 2.7 GB decoded) in 0.9 MB.
        bomb = Path(tmp) / "bomb.png"
        buffer = io.BytesIO()
        Image.new("L", (30000, 30000)).save(buffer, format="PNG", compress_level=9)
        bomb.write_bytes(buffer.getvalue())
        start = time.perf_counter()
        try:
            augkit.read_image(bomb)
        except augkit.ImageReadError as error:
            refused = time.perf_counter() - start
            print(f"\nbomb ({bomb.stat().st_size / 1e6:.1f} MB, 30000 x 30000): read_image refused it in {refused * 1e3:.2f} ms: {error}")
        start = time.perf_counter()
        decoded = cv2.imread(str(bomb), cv2.IMREAD_GRAYSCALE)
        print(f"cv2.imread decoded it in {time.perf_counter() - start:.2f} s ({decoded.nbytes / 1e9:.2f} GB)", file=sys.stdout)


if __name__ == "__main__":
    main()
