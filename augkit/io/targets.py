"""What a sample carries beside its pixels: a label mask, or boxes with their labels.

``Dataset.read_targets(i)`` gives a ``Targets``, shaped for the Pipeline API as it is:
``pipeline(image, **targets.as_kwargs())`` with a spec declaring ``bboxes: {format: pascal_voc}``
(``BOX_FORMAT``). One box format for every source: COCO's [x, y, width, height] is converted
when read, and ``augkit preprocess`` packs boxes in it.

Masks are label images: one channel of uint8 or uint16 labels in a PNG (8 or 16 bits gray, or
palette, whose indices are the labels, as Pascal VOC stores them), read as stored: never
resampled, converted or turned by an EXIF orientation. Anything else (a JPEG, whose
compression changes labels; RGB colours; an alpha channel) is "not a label image".

Targets that are broken or do not fit their image raise ``TargetReadError``, an
``ImageReadError``: every command that skips an unreadable image and lists it with its reason
(``augkit preprocess``) does the same for them.
"""

from __future__ import annotations

import collections.abc
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augkit.documents import short_repr
from augkit.errors import ImageReadError
from augkit.io.images import DEFAULT_MAX_PIXELS, _check_pixels, _open_header, _read_file, default_max_bytes

BOX_FORMAT = "pascal_voc"  # [x_min, y_min, x_max, y_max] in pixels, edges (a one-pixel box is [x, y, x + 1, y + 1])
MASKS_FOLDER = "masks"
MASK_EXTENSION = ".png"

# Pillow's modes of a PNG that holds one channel of labels, and the dtype they are read as.
_LABEL_MODES = {"1": np.uint8, "L": np.uint8, "P": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I": np.uint16}


class TargetReadError(ImageReadError):
    """A sample whose targets cannot be read, or do not fit its image: ``path`` is the sample's
    source, ``reason`` names the mask file or the annotation and what is wrong."""


@dataclass(frozen=True, eq=False)
class Targets:
    """A sample's targets: a label mask (segmentation) or boxes and their labels (detection).

    ``size`` is the (height, width) of the image they belong to; ``as_kwargs`` gives the rest
    as the Pipeline API takes them.
    """

    size: tuple[int, int]
    mask: np.ndarray | None = None  # H x W uint8 or uint16 labels, H x W = size
    bboxes: np.ndarray | None = None  # N x 4 float32, BOX_FORMAT, within size
    labels: np.ndarray | None = None  # N int64: each box's class index into Dataset.classes

    def as_kwargs(self) -> dict[str, np.ndarray]:
        """``mask=`` or ``bboxes=`` and ``labels=``, for ``pipeline(image, **targets.as_kwargs())``."""
        if self.mask is not None:
            return {"mask": self.mask}
        return {"bboxes": self.bboxes, "labels": self.labels}

    def check_fits(self, image_shape: tuple[int, ...], source: str) -> None:
        """Raise TargetReadError unless these targets belong to an image of ``image_shape`` (H x W x C)."""
        if tuple(image_shape[:2]) == self.size:
            return
        (h, w), (ih, iw) = self.size, image_shape[:2]
        what = "its mask is" if self.mask is not None else "its annotation is for an image of"
        raise TargetReadError(source, f"{what} {w} x {h} pixels, the image {iw} x {ih}")

    def resized(self, size: tuple[int, int], mode: str) -> Targets:
        """The targets of the image ``augkit.resize.resize_to(image, size, mode)`` makes: the mask by
        nearest neighbour, the boxes moved with the pixels (those cut away dropped, with their labels)."""
        from augkit.resize import placement, resize_boxes_to, resize_mask_to

        out = placement(self.size, size, mode)[2]
        if self.mask is not None:
            return Targets(out, mask=resize_mask_to(self.mask, size, mode))
        boxes, kept = resize_boxes_to(self.bboxes, self.size, size, mode)
        return Targets(out, bboxes=boxes, labels=self.labels[kept])


def read_mask(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The label image at ``path``: H x W uint8 (8-bit gray, palette indices, 1-bit) or uint16.

    Raises:
        ImageReadError: the file cannot be read (missing, not a regular file, too large, too
            many pixels, truncated), is not a PNG, or holds no single channel of labels.
    """
    data = _read_file(path, default_max_bytes(max_pixels))
    kind, header = _open_header(path, data, max_pixels)
    if kind != "PNG":
        raise ImageReadError(path, f"not a label image: a {kind} (masks are PNG; lossy formats change labels)")
    _check_pixels(path, *header.size, max_pixels)
    if header.mode not in _LABEL_MODES:
        raise ImageReadError(
            path, f"not a label image: {header.mode} pixels (masks hold one channel of labels: gray or palette)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the size was checked against max_pixels
            labels = np.asarray(header)
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's ways of failing on damaged pixel data
        raise ImageReadError(path, f"corrupt or truncated PNG ({error})") from None
    if header.mode == "I" and labels.size and (labels.min() < 0 or labels.max() > 0xFFFF):
        raise ImageReadError(path, f"not a label image: labels from {labels.min()} to {labels.max()} (0..65535)")
    return np.ascontiguousarray(labels, dtype=_LABEL_MODES[header.mode])


def mask_path(source: str) -> Path:
    """The mask of the image ``<split>/images/<stem>.<ext>``: ``<split>/masks/<stem>.png``."""
    image = Path(source)
    return image.parent.parent / MASKS_FOLDER / (image.stem + MASK_EXTENSION)


class MaskFiles:
    """The masks of a segmentation folder, found from each image's path (nothing held per sample)."""

    kind = "masks"

    def read(self, i: int, source: str) -> Targets:
        path = mask_path(source)
        try:
            mask = read_mask(path)
        except ImageReadError as error:
            raise TargetReadError(source, f"its mask {_shown(path)}: {error.reason}") from None
        return Targets(mask.shape, mask=mask)

    def take(self, indices: np.ndarray) -> MaskFiles:
        return self


def _shown(path: Path) -> str:
    """``masks/<name>`` as a reason names a mask: the image's path is already given beside it."""
    return f"{path.parent.name}/{path.name}"


class BoxTable:
    """Boxes of many samples as one ragged table (COCO annotations, read into memory).

    Sample i's boxes are rows ``offsets[i]:offsets[i + 1]`` of ``boxes`` (M x 4 float32,
    BOX_FORMAT) and ``labels`` (M int64); ``sizes`` (N x 2) the (height, width) its annotation
    gives; ``problems`` maps a sample to why its annotation is broken (it is then skipped).
    """

    kind = "boxes"

    def __init__(
        self, boxes: np.ndarray, labels: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
        problems: dict[int, str] | None = None,
    ) -> None:  # fmt: skip
        self.boxes, self.labels, self.offsets, self.sizes = boxes, labels, offsets, sizes
        self.problems = problems or {}

    def read(self, i: int, source: str) -> Targets:
        if i in self.problems:
            raise TargetReadError(source, self.problems[i])
        rows = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        height, width = self.sizes[i]
        return Targets((int(height), int(width)), bboxes=self.boxes[rows].copy(), labels=self.labels[rows].copy())

    @classmethod
    def joined(cls, tables: collections.abc.Sequence[BoxTable]) -> BoxTable:
        """One table of the samples of ``tables``, one after another (the splits of "all")."""
        if len(tables) == 1:
            return tables[0]
        starts = np.cumsum([0, *(len(t.sizes) for t in tables)])
        offsets = [tables[0].offsets[:1]]
        for table in tables:
            offsets.append(table.offsets[1:] + offsets[-1][-1])
        problems = {int(start) + i: reason for start, t in zip(starts, tables) for i, reason in t.problems.items()}
        return cls(
            np.concatenate([t.boxes for t in tables]), np.concatenate([t.labels for t in tables]),
            np.concatenate(offsets), np.concatenate([t.sizes for t in tables]), problems,
        )  # fmt: skip

    def take(self, indices: np.ndarray) -> BoxTable:
        """The samples at ``indices``, their boxes copied into a table of their own (small to
        send to a worker process: a shard's boxes, not the dataset's)."""
        counts = np.diff(self.offsets)[indices]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Row r of the new table is row (r - its sample's new start) + that sample's old start.
        rows = np.arange(offsets[-1]) + np.repeat(self.offsets[indices] - offsets[:-1], counts)
        problems = {new: self.problems[old] for new, old in enumerate(indices.tolist()) if old in self.problems}
        return BoxTable(self.boxes[rows], self.labels[rows], offsets, self.sizes[indices], problems)


def boxes_from_rows(
    rows: collections.abc.Sequence[dict[str, Any]], width: int, height: int, to_label: dict[int, int]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Boxes and labels of one image from its COCO annotations, or why they are broken.

    Args:
        rows: the image's annotations, each a dict with "bbox" [x, y, width, height] in pixels
            and "category_id".
        width, height: the image's size, as its annotation gives it.
        to_label: category id -> class index.

    Returns:
        (boxes N x 4 float32 in BOX_FORMAT, labels N int64, None), or (empty, empty, reason)
        for the first broken annotation: a box that is not four finite numbers, has no area,
        or reaches more than ``EDGE_SLACK`` pixels past the image (within it, it is clipped:
        COCO's float coordinates pass the edge by a fraction of a pixel where a box touches
        it), or a category the file does not list.
    """
    boxes, labels = np.zeros((len(rows), 4)), np.zeros(len(rows), np.int64)
    for n, row in enumerate(rows):
        name = f"annotation {row.get('id', n)!r}"
        box = row.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            return *_NO_BOXES, f"{name}: bbox {short_repr(box)} is not [x, y, width, height] in pixels"
        x, y, w, h = map(float, box)
        if not (w > 0 and h > 0):
            return *_NO_BOXES, f"{name}: box {short_repr(box)} has no area (width and height must be positive)"
        if x < -EDGE_SLACK or y < -EDGE_SLACK or x + w > width + EDGE_SLACK or y + h > height + EDGE_SLACK:
            return *_NO_BOXES, f"{name}: box {short_repr(box)} reaches outside the {width} x {height} image"
        category = row.get("category_id")
        if isinstance(category, bool) or not isinstance(category, int) or category not in to_label:
            return *_NO_BOXES, f"{name}: category_id {short_repr(category)} is not one of the file's categories"
        boxes[n] = (x, y, x + w, y + h)
        labels[n] = to_label[category]
    np.clip(boxes, 0, (width, height, width, height), out=boxes)
    return boxes.astype(np.float32), labels, None


EDGE_SLACK = 1.0  # pixels a COCO box may pass the image's edge by, and be clipped rather than refused
_NO_BOXES = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and bool(np.isfinite(value))
