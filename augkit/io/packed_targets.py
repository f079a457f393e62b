"""The targets of a packed ``augkit preprocess`` output: masks memory-mapped, boxes as a ragged table.

Beside each split's images (``augkit.io.packed``) the manifest names, for a dataset with targets,
``<split>_masks.npy`` (N x H x W uint8 or uint16, H x W the images'), or ``<split>_boxes.npy``
(M x 4 float32, ``targets.BOX_FORMAT``), ``<split>_box_labels.npy`` (M int64 class indices) and
``<split>_box_offsets.npy`` (N + 1 int64: sample i's boxes are rows offsets[i]:offsets[i + 1]).
As for the images, nothing is trusted: each file's header is checked against the images' before
it is mapped, and the boxes' offsets, labels and coordinates before the first read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augkit.errors import DatasetError
from augkit.io.packed import DAMAGED, _load_npy, npy_header, split_entries
from augkit.io.targets import Targets


def open_packed_targets(root: Path, splits: Sequence[str]) -> PackedMasks | PackedBoxes | None:
    """The targets of the packed ``splits`` (in that order) at ``root``; None for images alone.

    Raises:
        DatasetError: a target file missing, or not what the manifest and the images say.
    """
    classes, entries = split_entries(root, splits)
    if not entries[0].targets:
        return None
    images = [npy_header(entry.images)[0] for entry in entries]  # N, H, W, C: checked by open_packed
    if "masks" in entries[0].targets:
        return PackedMasks([entry.targets["masks"] for entry in entries], [shape[:3] for shape in images])
    return PackedBoxes([entry.targets for entry in entries], [shape[:3] for shape in images], len(classes))


class PackedMasks:
    """The masks files of a packed output, each memory-mapped on first use in this process.

    Read by (split number, row), as ``PackedImages``; pickles as the file paths and shapes.
    """

    kind = "masks"

    def __init__(self, files: Sequence[Path], shapes: Sequence[tuple[int, ...]]) -> None:
        self.files, self.shapes = tuple(files), tuple(tuple(s) for s in shapes)
        self._maps: dict[int, np.ndarray] = {}
        for part in range(len(self.files)):
            self._map(part)  # checked now, not at the first read in some worker

    def read(self, key: tuple[int, int], source: str) -> Targets:
        part, row = key
        mask = np.array(self._map(part)[row])
        return Targets(mask.shape, mask=mask)

    def take(self, indices: np.ndarray) -> PackedMasks:
        return self  # read by (split number, row): a subset carries its own

    def _map(self, part: int) -> np.ndarray:
        if part not in self._maps:
            path, shape = self.files[part], self.shapes[part]
            found, dtype = npy_header(path)
            if found != shape or dtype not in (np.uint8, np.uint16):
                raise DatasetError(
                    f"{path}: expected uint8 or uint16 masks of shape {shape} (N x H x W of the images), "
                    f"found {dtype} of shape {found}; {DAMAGED}"
                )
            self._maps[part] = _load_npy(path, mmap_mode="r")
        return self._maps[part]

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "shapes": self.shapes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["shapes"])


class PackedBoxes:
    """The boxes of a packed output: per split, offsets and labels loaded (8 bytes a sample and a
    box), coordinates memory-mapped. Read by (split number, row); pickles as the file paths."""

    kind = "boxes"

    def __init__(self, parts: Sequence[dict[str, Path]], shapes: Sequence[tuple[int, ...]], classes: int) -> None:
        self.parts, self.shapes, self.classes = tuple(parts), tuple(tuple(s) for s in shapes), classes
        self.offsets, self.labels, self.boxes = [], [], []
        for files, (count, height, width) in zip(self.parts, self.shapes):
            boxes = _checked(files["boxes"], np.float32, 2)
            rows = boxes.shape[0]
            if boxes.shape[1:] != (4,):
                raise DatasetError(f"{files['boxes']}: boxes of shape {boxes.shape}, expected M x 4; {DAMAGED}")
            offsets = np.asarray(_checked(files["box_offsets"], np.int64, 1, count + 1))
            if offsets.size != count + 1 or offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0):
                raise DatasetError(
                    f"{files['box_offsets']}: not the {count + 1} increasing offsets from 0 to {rows} of {count} "
                    f"images' boxes; {DAMAGED}"
                )
            labels = np.asarray(_checked(files["box_labels"], np.int64, 1, rows))
            if labels.size and (labels.min() < 0 or labels.max() >= classes):
                raise DatasetError(f"{files['box_labels']}: labels outside 0..{classes - 1}; {DAMAGED}")
            inside = (boxes[:, :2] >= 0) & (boxes[:, 2:] <= (width, height)) & (boxes[:, 2:] > boxes[:, :2])
            if not inside.all():
                raise DatasetError(
                    f"{files['boxes']}: boxes outside the {width} x {height} images, or without area; {DAMAGED}"
                )
            self.offsets.append(offsets)
            self.labels.append(labels)
            self.boxes.append(boxes)

    def read(self, key: tuple[int, int], source: str) -> Targets:
        part, row = key
        rows = slice(int(self.offsets[part][row]), int(self.offsets[part][row + 1]))
        size = self.shapes[part][1:3]
        return Targets(size, bboxes=np.array(self.boxes[part][rows]), labels=self.labels[part][rows].copy())

    def take(self, indices: np.ndarray) -> PackedBoxes:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"parts": self.parts, "shapes": self.shapes, "classes": self.classes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["parts"], state["shapes"], state["classes"])


def _checked(path: Path, dtype: type, ndim: int, rows: int | None = None) -> np.ndarray:
    """The .npy array at ``path``, memory-mapped, once its header says ``dtype``, ``ndim``
    dimensions and (if given) ``rows`` rows."""
    shape, found = npy_header(path)
    if found != dtype or len(shape) != ndim or (rows is not None and shape[0] != rows):
        expected = f"{np.dtype(dtype)} of {ndim} dimensions" + (f", {rows} rows" if rows is not None else "")
        raise DatasetError(f"{path}: expected {expected}, found {found} of shape {shape}; {DAMAGED}")
    return _load_npy(path, mmap_mode="r")
