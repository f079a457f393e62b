"""Regenerate augkit's sample data from images that scikit-image and scikit-learn ship.

Writes, under the output folder (default: the folder this script lives in):

- ``photos/``: five colour photos (JPEG, quality 90, longer side at most 512 px)
  and one grayscale photo (PNG, longer side 256 px), for augmentation previews;
- ``digits/train/<class>/NNNN.png`` and ``digits/val/<class>/NNNN.png``: scikit-learn's
  1797 handwritten digits as 8x8 grayscale PNGs, split 80/20, stratified by class,
  with seed 0. ``NNNN`` is the sample's row index in ``sklearn.datasets.load_digits()``.

Only ``photos/`` and ``digits/`` are deleted and rewritten; nothing else in the output
folder is touched. The output is deterministic: two runs with the same library versions
give byte-identical files. Sources and licences are listed in README.md next to this script.

Needs OpenCV and numpy (installed with augkit) plus the two source packages.
Run from the repository root::

    pip install scikit-learn scikit-image
    python sample_data/make_sample_data.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from sklearn.datasets import load_digits, load_sample_image
from sklearn.model_selection import train_test_split

MAX_SIDE = 512  # longer side of the colour photos, in pixels
GRAY_SIDE = 256  # longer side of the grayscale photo, in pixels
JPEG_QUALITY = 90
PNG_COMPRESSION = 9  # zlib level 0..9
SPLIT_SEED = 0
VAL_FRACTION = 0.2


def colour_sources() -> dict[str, np.ndarray]:
    """The colour photos as RGB uint8 arrays, by output name (licences in README.md)."""
    return {
        "astronaut": skimage.data.astronaut(),  # NASA, public domain
        "chelsea": skimage.data.chelsea(),  # Stefan van der Walt, CC0
        "coffee": skimage.data.coffee(),  # Rachel Michetti, CC0
        "rocket": skimage.data.rocket(),  # SpaceX, public domain (CC0)
        "china": load_sample_image("china.jpg"),  # danielbuechele (Flickr), CC BY 2.0
    }


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Resize so the longer side is at most ``max_side``, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (round(width * scale), round(height * scale))  # cv2 wants (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_image(path: Path, image: np.ndarray, params: list[int]) -> None:
    """Encode ``image`` (gray, or BGR for colour) with OpenCV and write the bytes."""
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    path.write_bytes(encoded.tobytes())


def make_photos(folder: Path) -> int:
    """Write the colour JPEGs and the grayscale PNG; return how many files were written."""
    folder.mkdir(parents=True)
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
    sources = colour_sources()
    for name, rgb in sources.items():
        bgr = cv2.cvtColor(shrink(rgb, MAX_SIDE), cv2.COLOR_RGB2BGR)
        write_image(folder / f"{name}.jpg", bgr, jpeg_params)

    camera = shrink(skimage.data.camera(), GRAY_SIDE)  # Lav Varshney, CC0
    write_image(folder / "camera.png", camera, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    return len(sources) + 1


def make_digits(folder: Path) -> tuple[int, int]:
    """Write the digits split into train/ and val/; return (train count, val count)."""
    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)  # 0..16 -> 0..255
    labels = digits.target
    indices = np.arange(len(labels))
    train_idx, val_idx = train_test_split(
        indices, test_size=VAL_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    png_params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    for split, split_idx in (("train", train_idx), ("val", val_idx)):
        for index in sorted(split_idx):
            class_dir = folder / split / str(labels[index])
            class_dir.mkdir(parents=True, exist_ok=True)
            write_image(class_dir / f"{index:04d}.png", images[index], png_params)
    return len(train_idx), len(val_idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder to write photos/ and digits/ into (default: %(default)s)",
    )
    args = parser.parse_args()
    out: Path = args.out

    for managed in ("photos", "digits"):
        if (out / managed).exists():
            shutil.rmtree(out / managed)
    n_photos = make_photos(out / "photos")
    n_train, n_val = make_digits(out / "digits")
    print(f"wrote {n_photos} photos to {out / 'photos'}")
    print(f"wrote {n_train} train + {n_val} val digits to {out / 'digits'}")


if __name__ == "__main__":
    main()
