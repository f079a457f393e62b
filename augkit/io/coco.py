"""COCO detection annotations: an ``instances_*.json`` file and the folder of the images it names.

Found as people have them:

- a folder holding ``annotations/instances_<name>.json`` (COCO's own layout: ``coco/`` with
  ``annotations/instances_train2017.json``, ``annotations/instances_val2017.json``,
  ``train2017/``, ``val2017/``): one split per file, "val" for a name holding "val", "train"
  for one holding "train" (a single file is "train", whatever its name);
- the path of such a JSON file: one split, "train".

A file's images are in the first folder that exists of: ``<above annotations>/<name>``,
``<above annotations>/images/<name>``, ``<beside the file>/<name>``, ``<beside the file>/images``.

Samples are the file's ``images`` entries, sorted by ``file_name`` (then id); those without
annotations are samples without boxes. Class names are the ``categories``' names, sorted, and a
box's label is its category's index among them (COCO's ids, 1 to 90 with gaps, are not kept).
Boxes come as ``augkit.io.targets.BOX_FORMAT`` ([x, y, w, h] -> [x, y, x + w, y + h]); crowd
annotations (``iscrowd``) are boxes like the others. An image whose annotations are broken (see
``targets.boxes_from_rows``), or whose entry has no size, is a sample whose ``read_targets``
says why, and ``augkit preprocess`` skips and lists it; an entry whose name leaves the images
folder (absolute, ``..``) is left out with a warning, never opened.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from augkit.documents import MAX_MANIFEST_BYTES, DocumentError, read_document, short_repr
from augkit.errors import AugkitWarning, DatasetError
from augkit.io.packed import is_relative_path
from augkit.io.targets import BoxTable, boxes_from_rows

ANNOTATIONS_FOLDER = "annotations"
# The largest width or height an image entry may give: past any image's, and within int64 and
# float64's exact integers, which the boxes are checked and packed in.
MAX_GIVEN_SIDE = 2**31 - 1
_INSTANCES = re.compile(r"instances_(.+)\.json")


class CocoSplit(NamedTuple):
    """One annotation file, read: sorted class names, image paths, and their boxes."""

    classes: tuple[str, ...]
    sources: list[str]
    boxes: BoxTable


def coco_splits(path: Path) -> dict[str, Path] | None:
    """split -> annotation file of the COCO dataset at ``path`` (a folder or a JSON file), or
    None if it is not one. Raises DatasetError for a folder whose files name no split."""
    if path.is_file():
        return {"train": path} if path.suffix.lower() == ".json" else None
    folder = path / ANNOTATIONS_FOLDER
    files = sorted(folder.glob("instances_*.json")) if folder.is_dir() else []
    if len(files) <= 1:
        return {"train": files[0]} if files else None
    splits: dict[str, Path] = {}
    for file in files:
        name = _INSTANCES.fullmatch(file.name).group(1).lower()
        split = "val" if "val" in name else "train" if "train" in name else None
        if split is None or split in splits:
            raise DatasetError(
                f"{folder}: {len(files)} annotation files ({', '.join(f.name for f in files)}) and no way to tell "
                f"the train one from the val one by their names; pass the path of one of them"
            )
        splits[split] = file
    return {s: splits[s] for s in ("train", "val") if s in splits}


def images_folder(annotations: Path) -> Path:
    """The folder of the images ``annotations`` (an instances JSON file) names (module docstring)."""
    match = _INSTANCES.fullmatch(annotations.name)
    name = match.group(1) if match else None
    beside, above = annotations.parent, annotations.parent.parent
    candidates = [above / name, above / "images" / name, beside / name] if name else []
    candidates.append(beside / "images")
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DatasetError(
        f"{annotations}: no folder of its images; looked for {', '.join(str(c) for c in candidates)}"
    )


def read_coco(annotations: Path) -> CocoSplit:
    """Read one COCO instances file: its classes, its images (as paths) and their boxes.

    Raises:
        DatasetError: the file is not JSON, or not of COCO's structure where no sample could be
            listed without guessing (no ``images`` list, an image without an integer id or a
            string file name, a file name holding NUL, two images or two categories with one id,
            two categories with one name).
    """
    data = _read_json(annotations)
    folder = images_folder(annotations)
    classes, to_label = _categories(data, annotations)
    images = _list(data, "images", annotations)
    seen: set[int] = set()
    for n, image in enumerate(images):
        if not (isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)):
            raise DatasetError(f"{annotations}: images[{n}] is {short_repr(image)}, expected an object with an "
                               "integer 'id' and a string 'file_name'")  # fmt: skip
        if "\0" in image["file_name"]:  # no file has such a name, and the OS refuses to look one up
            raise DatasetError(f"{annotations}: images[{n}]'s file_name {short_repr(image['file_name'])} holds a NUL "
                               "character; no file can be named so")  # fmt: skip
        if image["id"] in seen:
            raise DatasetError(f"{annotations}: two images have the id {image['id']}")
        seen.add(image["id"])
    # A name that leaves the images folder (absolute, "..") is no sample: no command may open it.
    outside = [image["file_name"] for image in images if not is_relative_path(image["file_name"])]
    if outside:
        warnings.warn(
            f"{annotations}: {len(outside)} image entries name a file outside {folder} (the first: "
            f"{short_repr(outside[0])}); they are left out",
            AugkitWarning,
            stacklevel=2,
        )
        images = [image for image in images if is_relative_path(image["file_name"])]
    images.sort(key=lambda image: (image["file_name"], image["id"]))

    per_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in images}
    orphans = []
    for n, row in enumerate(_list(data, "annotations", annotations, missing_ok=True)):
        image_id = row.get("image_id") if isinstance(row, dict) else None
        if _is_int(image_id) and image_id in per_image:
            per_image[image_id].append(row)
        else:
            orphans.append(n)
    if orphans:
        warnings.warn(
            f"{annotations}: {len(orphans)} annotations name no image of the file (the first: annotations"
            f"[{orphans[0]}]); they are left out",
            AugkitWarning,
            stacklevel=2,
        )

    boxes, labels, counts, sizes, problems = [], [], [], np.zeros((len(images), 2), np.int64), {}
    for i, image in enumerate(images):
        found, marks, problem = _image_boxes(image, per_image[image["id"]], to_label)
        if problem is not None:
            problems[i] = problem
        else:
            sizes[i] = image["height"], image["width"]
        boxes.append(found)
        labels.append(marks)
        counts.append(len(found))
    table = BoxTable(
        np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        sizes,
        problems,
    )
    return CocoSplit(classes, [str(folder / image["file_name"]) for image in images], table)


def _image_boxes(
    image: dict[str, Any], rows: list[dict[str, Any]], to_label: dict[int, int]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(boxes, labels, None) of one image entry and its annotations, or (empty, empty, why not)."""
    width, height = image.get("width"), image.get("height")
    if not (_is_int(width) and _is_int(height) and 0 < width <= MAX_GIVEN_SIDE and 0 < height <= MAX_GIVEN_SIDE):
        reason = (f"its image entry gives no size (width {short_repr(width)}, height {short_repr(height)}; "
                  f"each a whole number of pixels, 1 to {MAX_GIVEN_SIDE})")  # fmt: skip
    else:
        return boxes_from_rows(rows, width, height, to_label)
    return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), reason


def _categories(data: dict[str, Any], path: Path) -> tuple[tuple[str, ...], dict[int, int]]:
    """Sorted category names, and category id -> index among them."""
    names: dict[int, str] = {}
    for n, category in enumerate(_list(data, "categories", path)):
        if not (isinstance(category, dict) and _is_int(category.get("id")) and isinstance(category.get("name"), str)):
            raise DatasetError(f"{path}: categories[{n}] is {short_repr(category)}, expected an object with an "
                               "integer 'id' and a string 'name'")  # fmt: skip
        if category["id"] in names:
            raise DatasetError(f"{path}: two categories have the id {category['id']}")
        names[category["id"]] = category["name"]
    classes = tuple(sorted(names.values()))
    if len(set(classes)) < len(classes):
        twice = next(name for name in classes if classes.count(name) > 1)
        raise DatasetError(f"{path}: two categories are named {twice!r}; class names must be unique")
    return classes, {identifier: classes.index(name) for identifier, name in names.items()}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = read_document(path, what="COCO annotation file", format="json", max_bytes=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except DocumentError as error:
        raise DatasetError(str(error)) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a COCO annotation file holds an object, not {type(data).__name__}")
    return data


def _list(data: dict[str, Any], key: str, path: Path, missing_ok: bool = False) -> list[Any]:
    value = data.get(key, [] if missing_ok else None)
    if not isinstance(value, list):
        raise DatasetError(f"{path}: {key!r} is {short_repr(value)}, expected a list (COCO's instances format)")
    return value


def _is_int(value: Any) -> bool:
    return type(value) is int
