"""Write augkit's sample targets: hand-drawn masks and boxes of objects in four sample photos.

Writes, under the output folder (default: the folder this script lives in), from ``photos/``:

- ``segmentation/images/<stem>.jpg`` and ``segmentation/masks/<stem>.png``: the photos shrunk
  to ``SIDE`` px on the longer side, and one uint8 label mask each (0 background, else the
  class's number in ``CLASSES``, objects drawn in the order listed, later ones on top);
- ``detection/train/<stem>.jpg`` and ``detection/annotations/instances_train.json``: the same
  photos and a COCO detection file whose boxes are the bounding boxes of the same objects'
  masks ([x, y, width, height] in pixels, COCO's convention), category ids from ``CLASSES``.

The outlines were drawn by hand, as polygons and ellipses in the full-size photos' pixels, by
looking at the photos: rough, but each box holds its object. Shrinking: images with
``cv2.INTER_AREA``, masks with ``cv2.INTER_NEAREST`` (labels stay labels); boxes come from the
shrunk masks, so masks and boxes agree exactly. Deterministic (the same photos give the same
bytes); run from the repository root after ``make_sample_data.py``::

    python sample_data/make_targets.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

SIDE = 320  # longer side of the images in both folders, in pixels
JPEG_QUALITY = 90
CLASSES = ("eye", "nose", "saucer", "cup", "spoon", "face", "helmet", "shuttle", "rocket", "tower")

# Per photo: (class, shape) in drawing order; a shape is ("polygon", [(x, y), ...]) or
# ("ellipse", (cx, cy), (half width, half height)), in the full-size photo's pixels.
OBJECTS: dict[str, list[tuple[str, tuple]]] = {
    "chelsea": [
        ("eye", ("ellipse", (170, 117), (33, 27))),
        ("eye", ("ellipse", (320, 135), (24, 26))),
        ("nose", ("polygon", [(240, 228), (262, 224), (290, 232), (292, 245), (272, 262), (255, 262), (244, 248)])),
    ],
    "coffee": [
        ("saucer", ("ellipse", (238, 215), (172, 112))),
        ("cup", ("polygon", [(150, 75), (190, 55), (250, 48), (310, 55), (347, 75), (345, 120), (335, 175), (315, 215),
                             (280, 235), (230, 240), (215, 250), (205, 255), (180, 258), (166, 240), (165, 205),
                             (152, 170)])),  # fmt: skip
        ("spoon", ("polygon", [(278, 215), (300, 205), (330, 208), (338, 150), (345, 95), (348, 58), (360, 62),
                               (356, 100), (346, 160), (342, 215), (345, 235), (335, 265), (310, 275), (288, 268),
                               (277, 245)])),  # fmt: skip
    ],
    "astronaut": [
        ("face", ("ellipse", (226, 112), (40, 50))),
        ("shuttle", ("polygon", [(410, 5), (428, 8), (440, 60), (445, 200), (470, 250), (465, 262), (360, 262),
                                 (358, 250), (385, 200), (395, 60)])),  # fmt: skip
        ("helmet", ("ellipse", (395, 440), (118, 95))),
    ],
    "rocket": [
        ("tower", ("polygon", [(152, 100), (162, 100), (165, 320), (140, 320)])),
        ("tower", ("polygon", [(352, 100), (362, 100), (378, 320), (350, 320)])),
        ("rocket", ("polygon", [(258, 100), (270, 108), (272, 140), (270, 325), (248, 325), (247, 140), (248, 108)])),
    ],
}


def draw(shape: tuple, size: tuple[int, int]) -> np.ndarray:
    """One object's mask (bool, ``size`` = H, W) from its hand-drawn shape."""
    canvas = np.zeros(size, np.uint8)
    if shape[0] == "polygon":
        cv2.fillPoly(canvas, [np.array(shape[1], np.int32)], 1)
    else:
        cv2.ellipse(canvas, shape[1], shape[2], 0, 0, 360, 1, thickness=-1)
    return canvas.astype(bool)


def shrink(image: np.ndarray, interpolation: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = SIDE / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=interpolation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    out = parser.parse_args().out
    for folder in ("segmentation", "detection"):
        shutil.rmtree(out / folder, ignore_errors=True)
    for folder in ("segmentation/images", "segmentation/masks", "detection/train", "detection/annotations"):
        (out / folder).mkdir(parents=True)
    images, annotations = [], []
    for image_id, (stem, objects) in enumerate(sorted(OBJECTS.items()), 1):
        photo = cv2.imread(str(out / "photos" / f"{stem}.jpg"), cv2.IMREAD_COLOR)
        small = shrink(photo, cv2.INTER_AREA)
        label_mask = np.zeros(photo.shape[:2], np.uint8)
        instances = []
        for name, shape in objects:
            label = CLASSES.index(name) + 1
            instance = draw(shape, photo.shape[:2])
            label_mask[instance] = label
            instances.append((label, instance))
        label_mask = shrink(label_mask, cv2.INTER_NEAREST)
        for path in (out / "segmentation" / "images" / f"{stem}.jpg", out / "detection" / "train" / f"{stem}.jpg"):
            cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        cv2.imwrite(str(out / "segmentation" / "masks" / f"{stem}.png"), label_mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": small.shape[0], "width": small.shape[1]})
        for label, instance in instances:  # each object's own box, from its shrunk mask (not hidden by later ones)
            ys, xs = np.nonzero(shrink(instance.astype(np.uint8), cv2.INTER_NEAREST))
            x, y, w, h = int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
    coco = {
        "info": {"description": "augkit sample targets: hand-drawn objects in four sample photos (make_targets.py)"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in enumerate(CLASSES, 1)],
    }
    (out / "detection" / "annotations" / "instances_train.json").write_text(json.dumps(coco, indent=1) + "\n")


if __name__ == "__main__":
    main()
