"""Targets drawn over a contact sheet's tiles (``Marks``, ``draw_marks``).

Targets (``Source.targets``, a ``Marks``: a label mask, boxes with their classes, keypoints;
read from a dataset that has them) go through the same draws as their image and are drawn over
every tile, the original's too: masks as translucent colours per label, boxes as outlines in
their class's colour tagged with its name, keypoints as ringed dots (``draw_marks``). They
change only the tiles' pixels: a sheet without targets is the same, byte for byte, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from augkit.errors import AugkitError
from augkit.preview.text import BLACK, Box, _font, pixel_width

# Targets drawn over the tiles (``Marks``). Label k's colour, in masks and boxes alike, is
# PALETTE[k % 12]: Okabe and Ito's colour-blind-safe eight (black left out: it is the rings'
# colour) and four more of matplotlib's tab10, bright enough to tell apart on photos.
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (148, 103, 189), (23, 190, 207), (188, 189, 34), (227, 119, 194), (44, 160, 44))  # fmt: skip
MASK_ALPHA = 0.45  # a mask's tint over the pixels: the image still shows through; its outline is opaque
BOX_PX = 2  # a box's outline, drawn inside its edges
TAG_PX = 10  # the font size of a box's tag (its class), pixels to the em
DOT_RADIUS = 3.5  # a keypoint's dot, pixels; ringed in RING, dark on any colour
RING = (32, 32, 32)


@dataclass(frozen=True, eq=False)
class Marks:
    """An image's targets, as a sheet draws them over its tile (``draw_marks``).

    Attributes:
        mask: H x W integer labels (bool, uint8, uint16, int32), the image's height and width;
            0 is background (not drawn), label k a tint of ``PALETTE[k % 12]``. None: no mask.
        bboxes: N x 4 float32 [x_min, y_min, x_max, y_max] in pixels (Pascal VOC's format,
            ``augkit.io.targets.BOX_FORMAT``; edges: the pixel at (y,x) alone is [x, y, x + 1,
            y + 1]). More columns are dropped. None: no boxes.
        labels: N int64, each box's class: its colour (as a mask's label k) and its tag
            (``classes[k]``, else the number). None: unlabelled boxes, drawn in ``PALETTE[0]``
            without a tag.
        keypoints: K x 2 float32 [x, y] in pixels (a pixel's centre at +0.5), or None.
        keypoint_ids: K int64, each keypoint's place in the image's list: its colour
            (``PALETTE[id % 12]``), the same on every tile when others left the image. None: 0..K-1.
        classes: the class names labels index.

    Raises:
        AugkitError: boxes that are not N x 4, labels or ids not one per box or keypoint, a mask
            that is not H x W.
    """

    mask: np.ndarray | None = None
    bboxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_ids: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def table(name: str, value: Any, columns: int) -> np.ndarray:
            rows = np.asarray(value, np.float32)
            if rows.size == 0:
                rows = rows.reshape(0, columns)
            if rows.ndim != 2 or rows.shape[1] < columns:
                raise AugkitError(f"{name}: {columns} numbers a row expected, got an array of shape {rows.shape}")
            return np.ascontiguousarray(rows[:, :columns])

        def numbers(name: str, value: Any, count: int, of: str) -> np.ndarray:
            ints = np.asarray(value).astype(np.int64).reshape(-1)
            if len(ints) != count:
                raise AugkitError(f"{name}: one per {of} expected ({count}), got {len(ints)}")
            return ints

        if self.mask is not None:
            object.__setattr__(self, "mask", np.asarray(self.mask))
            if self.mask.ndim != 2:
                raise AugkitError(f"mask: H x W labels expected, got an array of shape {self.mask.shape}")
        if self.bboxes is not None:
            object.__setattr__(self, "bboxes", table("bboxes", self.bboxes, 4))
            if self.labels is not None:
                object.__setattr__(self, "labels", numbers("labels", self.labels, len(self.bboxes), "box"))
        elif self.labels is not None:
            raise AugkitError("labels given without the bboxes they label")
        if self.keypoints is not None:
            object.__setattr__(self, "keypoints", table("keypoints", self.keypoints, 2))
            ids = np.arange(len(self.keypoints)) if self.keypoint_ids is None else self.keypoint_ids
            object.__setattr__(self, "keypoint_ids", numbers("keypoint_ids", ids, len(self.keypoints), "keypoint"))
        object.__setattr__(self, "classes", tuple(self.classes))

    def resized(self, before: tuple[int, ...], after: tuple[int, ...]) -> Marks:
        """These marks on the image of shape ``before`` resized to ``after`` (H x W...): points
        and boxes scaled, the mask by nearest neighbour (labels stay labels)."""
        if before[:2] == after[:2]:
            return self
        (h, w), (height, width) = before[:2], after[:2]
        scale = np.array([width / w, height / h], np.float32)
        mask = self.mask
        if mask is not None:
            if mask.dtype not in (np.uint8, np.uint16, np.int16, np.int32, np.float32):  # what OpenCV resizes
                mask = mask.astype(np.int32)
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        bboxes = None if self.bboxes is None else self.bboxes * np.tile(scale, 2)
        keypoints = None if self.keypoints is None else self.keypoints * scale
        return Marks(mask, bboxes, self.labels, keypoints, self.keypoint_ids, self.classes)


MAX_TAGS = 64  # class tags drawn per tile at most


def _colour(k: int) -> tuple[int, int, int]:
    return PALETTE[k % len(PALETTE)]


def draw_marks(picture: np.ndarray, marks: Marks) -> np.ndarray:
    """``picture`` (H x W x 3 uint8 RGB, not changed) with ``marks`` (in its pixels) drawn over it.

    The mask as a tint of its labels' colours (``MASK_ALPHA``) with an opaque one-pixel outline
    inside each region's edge; each box as a ``BOX_PX`` outline inside its edges in its class's
    colour, tagged at its top-left (above the box where there is room, else inside it; always
    inside the picture) with its class's name, or number, in black or white, whichever reads
    better on the colour; each keypoint as a dot of its number's colour in a dark ring. Tags
    go on last, so no other mark covers one; the first ``MAX_TAGS`` boxes are tagged (a tile
    holds no more readable tags, and placing each is linear in those placed).
    """
    out = picture.copy()
    if marks.mask is not None:
        _tint(out, marks.mask)
    if marks.bboxes is None and marks.keypoints is None:
        return out
    image = Image.fromarray(out)
    pen = ImageDraw.Draw(image)
    height, width = out.shape[:2]
    boxes = [] if marks.bboxes is None else np.rint(marks.bboxes).astype(np.int64).tolist()
    labels = [None] * len(boxes) if marks.labels is None else marks.labels.tolist()
    for (x0, y0, x1, y1), label in zip(boxes, labels):
        pen.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=_colour(label or 0), width=BOX_PX)
    if marks.keypoints is not None:
        for (x, y), k in zip(marks.keypoints.tolist(), marks.keypoint_ids.tolist()):
            cx, cy = x - 0.5, y - 0.5  # Pillow's pixel (0, 0) is centred on (0, 0); a keypoint's pixel centre on (0.5, 0.5)
            r = DOT_RADIUS
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(k), outline=RING, width=1)
    font = _font(TAG_PX, "bold")
    ascent, descent = font.getmetrics()
    placed: list[Box] = []
    for (x0, y0, _, _), label in zip(boxes, labels):
        if label is None or len(placed) == MAX_TAGS:  # past MAX_TAGS, boxes go untagged
            continue
        text = _fitting(marks.classes[label] if 0 <= label < len(marks.classes) else str(label), width - 4)
        ink_left, _, ink_right, _ = font.getbbox(text, anchor="ls")
        tag_w, tag_h = ink_right - ink_left + 4, ascent + descent
        left = min(max(x0, 0), max(width - tag_w, 0))
        top = y0 - tag_h if y0 >= tag_h else y0  # above the box, or inside its top edge
        for _ in placed:  # below any tag already there, so none hides another
            hit = next((p for p in placed if p[0] < left + tag_w and left < p[2] and p[1] < top + tag_h and top < p[3]), None)
            if hit is None:
                break
            top = hit[3]
        top = min(max(top, 0), max(height - tag_h, 0))
        placed.append((left, top, left + tag_w, top + tag_h))
        colour = _colour(label)
        pen.rectangle((left, top, left + tag_w - 1, top + tag_h - 1), fill=colour)
        pen.text((left + 2 - ink_left, top + ascent), text, fill=_ink_on(colour), font=font, anchor="ls")
    return np.asarray(image)


def _fitting(text: str, width: int) -> str:
    """``text``, or as much of it as fits ``width`` pixels in a tag with "…" after it."""
    if pixel_width(text, TAG_PX, "bold") <= width:
        return text
    while len(text) > 1 and pixel_width(text + "…", TAG_PX, "bold") > width:
        text = text[:-1]
    return text + "…"


def _tint(picture: np.ndarray, mask: np.ndarray) -> None:
    """Tint ``picture`` (H x W x 3 uint8) in place with ``mask``'s colours; outline each region."""
    inside = mask != 0
    labels = (mask if mask.dtype.kind in "iu" else mask.astype(np.int32)) % len(PALETTE)
    colours = np.asarray(PALETTE, np.uint8)[labels]
    blend = cv2.addWeighted(picture, 1 - MASK_ALPHA, colours, MASK_ALPHA, 0)
    # A region's edge: a pixel of it with a 4-neighbour of another label (the picture's border is no edge).
    edge = np.zeros_like(inside)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    np.copyto(blend, colours, where=edge[..., None])
    np.copyto(picture, blend, where=inside[..., None])


def _ink_on(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``colour`` (WCAG 2's relative luminance)."""
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return BLACK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else (255, 255, 255)
