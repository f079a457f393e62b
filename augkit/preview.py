"""Contact sheets: what a pipeline does to real images, before training on it.

One row per source image: the original, then N augmented variants (the draws of epochs
0..N-1 for that sample, exactly what training would show it), each captioned with the
parameters applied; or, with ``stages``, the image after each step, and the steps that did
not apply marked as skipped. Each tile is drawn at a readable size whatever its true size: a
24x24 crop or an 8x8 digit enlarged by a whole factor with nearest pixels (so the pixels
stay visible), a 512x512 photo shrunk; the caption gives the true size and the factor
("24x24 px ×7"). One convention in every caption: sizes height x width, positions (y,x).
Float outputs (after standardize, subtract_mean, scale, Normalize) are mapped back to pixels
by inverting that step.

Targets (``Source.targets``, a ``Marks``: a label mask, boxes with their classes, keypoints;
read from a dataset that has them) go through the same draws as their image and are drawn over
every tile, the original's too: masks as translucent colours per label, boxes as outlines in
their class's colour tagged with its name, keypoints as ringed dots (``draw_marks``). They
change only the tiles' pixels: a sheet without targets is the same, byte for byte, as before.

Every text is wrapped by its measured width (``wrap_text``), never by a guess at how wide
characters are, so no caption runs into its neighbour and no title runs off the sheet.
The sheet's text is drawn with Pillow straight onto its pixels, in the font matplotlib's
figures use, and wrapped by that same font's widths; matplotlib's own measure (``text_width``)
serves the figures of ``augkit.train.plots``. matplotlib is imported only inside the functions
that need it (a font's path, a figure's measure): the core stays light.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from augkit.errors import AugkitError, AugkitWarning, ImageReadError
from augkit.io.datasets import Dataset, open_dataset, stored_channels
from augkit.io.images import is_image_file, read_image
from augkit.io.targets import mask_path
from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.core import Pipeline
from augkit.pipeline.registry import COMPOSITIONS
from augkit.pipeline.targets import Augmented
from augkit.pipeline.steps import Scale, Standardize, SubtractMean
from augkit.pixels import to_uint8

TILE = 176  # the longer side of a drawn tile at most, in pixels
FONT_PX = 11  # caption font size, pixels to the em (the title's is a pixel more)
LINE_PX = 14  # the height of one caption or title line, font size x line spacing (1.15) and a little
GAP = 8
MARGIN = 12
BLACK, DIMGRAY = (0, 0, 0), (105, 105, 105)  # captions and title; the legend (CSS's dimgray)
SKIPPED_GRAY = 170  # the frame and cross of a step that did not apply, on the stages sheet
LEGEND = ("sizes: height x width in pixels; ×k: drawn k times its size (nearest pixels when enlarged); "
          "(y,x): a crop's top-left corner")
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

# Steps whose float output to_viewable knows how to map back to pixels.
_NORMALIZERS = (Standardize, SubtractMean, Scale, A.Normalize)

DEFAULT_PIPELINE = {
    "seed": 0,
    "steps": [
        {"crop": {"size": 0.8, "mode": "random_resized", "scale": [0.5, 1.0]}},
        {"rotate": {"limit": 15, "p": 0.7}},
        {"brightness": {"limit": 0.2, "p": 0.7}},
        {"contrast": {"limit": 0.2, "p": 0.7}},
        {"hflip": {"p": 0.5}},
    ],
}


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


@dataclass(frozen=True)
class Source:
    """One row's input: its image, a label for the row, the sample index that seeds it, and
    its targets (``Marks`` in the image's pixels), drawn over every tile of its row.

    Raises:
        AugkitError: a mask of another height and width than the image.
    """

    image: np.ndarray
    label: str
    index: int
    targets: Marks | None = None

    def __post_init__(self) -> None:
        mask = None if self.targets is None else self.targets.mask
        if mask is not None and mask.shape != self.image.shape[:2]:
            raise AugkitError(f"{self.label}: its mask is {mask.shape[0]}x{mask.shape[1]}, the image "
                              f"{self.image.shape[0]}x{self.image.shape[1]} (height x width)")  # fmt: skip


@dataclass(frozen=True)
class Tile:
    """One cell of a sheet: a viewable image (uint8, H x W or H x W x C) and its caption.

    ``skipped``: a step that did not apply, on the stages sheet; ``image`` (its unchanged
    input) then only gives the cell its size, and the cell is drawn blank. ``size``: the true
    height x width of an image already shrunk to its drawn size (``_tile``); None otherwise.
    ``marks``: targets to draw over the image, in its pixels (``image``'s, shrunk with it).
    """

    image: np.ndarray
    caption: str
    skipped: bool = False
    size: tuple[int, int] | None = None
    marks: Marks | None = None


def _tile(image: np.ndarray, caption: str, skipped: bool = False, marks: Marks | None = None) -> Tile:
    """A tile holding its image at most at the size it is drawn: a large output is shrunk now
    (as ``sheet`` would shrink it), and its marks with it, so a sheet of big images never keeps
    them all at full size."""
    factor = _scale_for(image.shape)
    if factor >= 1:
        return Tile(image, caption, skipped, marks=marks)
    small = _fit(image, factor)
    marks = None if marks is None else marks.resized(image.shape, small.shape)
    return Tile(small, caption, skipped, size=(image.shape[0], image.shape[1]), marks=marks)


def collect_sources(
    inputs: Sequence[str | Path], rows: int, seed: int, *, confined: bool = False, targets: bool = True
) -> list[Source]:
    """Images named directly, plus ``rows`` images sampled (seeded) from each dataset named.

    An image named directly must be readable (ImageReadError says why not); files of a dataset
    that cannot be read are passed over, as every command passes them over, with a warning.
    ``confined``: a dataset's files that resolve outside its folder (a symlink out) are passed
    over too, silently, as if absent (``augkit studio`` reads only under the folders it is given).
    ``targets``: a dataset's masks or boxes come with its images (``Source.targets``); a sample
    whose targets are broken is passed over as an unreadable image is.
    """
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if is_image_file(path) and not path.is_dir():  # a FIFO or a broken link too: the reader says what it is
            # The gray rule (augkit.io.datasets) for an image on its own: a gray file stays one channel.
            sources.append(Source(read_image(path, gray=stored_channels(path) == 1), path.name, len(sources)))
            continue
        dataset = open_dataset(path)
        sources.extend(_sample(dataset, rows, seed, confined, targets and dataset.target_kind is not None))
    return sources


def _sample(dataset: Dataset, rows: int, seed: int, confined: bool = False, targets: bool = False) -> list[Source]:
    """``rows`` readable images of ``dataset`` (with their targets, if ``targets``), in a seeded
    random order, shown by index."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    if confined:
        order = [i for i in order if _inside(dataset, i, targets)]
    picked: list[tuple[int, np.ndarray, Marks | None]] = []
    skipped: list[ImageReadError] = []
    for i in order:
        try:
            image = dataset.read(i)
            picked.append((i, image, _read_marks(dataset, i, image.shape) if targets else None))
        except ImageReadError as error:  # a TargetReadError too
            skipped.append(error)
        if len(picked) == rows:
            break
    if skipped:
        first = skipped[0]
        if not picked:
            raise AugkitError(f"no readable image in {dataset.root}: all {len(skipped)} failed (the first, {first})")
        warnings.warn(f"passed over {len(skipped)} unreadable file(s) in {dataset.root}, e.g. {first}", AugkitWarning, stacklevel=2)
    sources = []
    for i, image, marks in sorted(picked, key=lambda pick: pick[0]):
        label = Path(dataset.sources[i]).name
        if dataset.classes and dataset.labels[i] >= 0:
            label = f"{dataset.classes[dataset.labels[i]]}/{label}"
        sources.append(Source(image, label, i, marks))
    return sources


def _read_marks(dataset: Dataset, i: int, shape: tuple[int, ...]) -> Marks:
    """Sample ``i``'s targets (``Dataset.read_targets``) as the sheet draws them; TargetReadError if broken."""
    targets = dataset.read_targets(i, shape)
    return Marks(mask=targets.mask, bboxes=targets.bboxes, labels=targets.labels, classes=dataset.classes)


def _inside(dataset: Dataset, i: int, targets: bool = False) -> bool:
    """Whether sample ``i`` of ``dataset`` resolves inside its root (array kinds read from the
    root itself), and, with ``targets``, its mask file too (boxes were read with the dataset)."""
    if dataset._store is not None or dataset.root is None:
        return True
    paths = [Path(dataset.sources[i])]
    if targets and dataset.target_kind == "masks":
        paths.append(mask_path(dataset.sources[i]))
    try:
        return all(dataset.root.resolve() in path.resolve().parents for path in paths)
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): not a file inside
        return False


def to_viewable(image: np.ndarray, normalizer: object | None) -> np.ndarray:
    """uint8 pixels for display: undo the last normalisation applied, clip, scale to 0..255.

    uint8 is shown as it is and uint16 rounded to 8 bits (``augkit.pixels``); float images are
    mapped back through the step that made them (or stretched when no step explains them).
    """
    if image.dtype in (np.uint8, np.uint16):
        return to_uint8(image)
    x = image.astype(np.float32)
    scale = shift = None
    if isinstance(normalizer, Standardize):
        scale, shift = normalizer.std.astype(np.float32), normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, SubtractMean):
        shift = normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, A.Normalize) and normalizer.normalization == "standard":
        scale, shift = np.float32(normalizer.std), np.float32(normalizer.mean)
    try:  # statistics with another channel count than the image (a Normalize of 2 means on RGB) explain nothing
        fits = all(np.broadcast_shapes(x.shape, np.shape(v)) == x.shape for v in (scale, shift) if v is not None)
    except ValueError:
        fits = False
    if fits and shift is not None:
        x = (x * scale if scale is not None else x) + shift
    elif not isinstance(normalizer, Scale) and (x.min() < 0 or x.max() > 1):
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)  # unknown scale: stretch
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _last_normalizer(transforms: Sequence[object]) -> object | None:
    return next((t for t in reversed(transforms) if isinstance(t, _NORMALIZERS)), None)


def build_rows(pipeline: Pipeline, sources: Sequence[Source], n: int, stages: bool, epoch: int = 0) -> list[list[Tile]]:
    """The tiles of every row: original first, then variants (or stages, skipped steps included).

    Variants are the draws of epochs ``epoch`` .. ``epoch + n - 1``; stages are epoch ``epoch``'s.
    Captions say what was drawn; ``sheet`` adds each tile's true size. A source's targets go
    through the same draws, and each tile carries them as they are after it (``Tile.marks``).
    """
    if any(source.targets is not None for source in sources):
        pipeline = _marking(pipeline, sources)
    rows = []
    for source in sources:
        row = [_tile(to_viewable(source.image, None), source.label, marks=source.targets)]
        if stages:
            row += _stage_tiles(pipeline, source, epoch)
        else:
            normalizer = _last_normalizer(pipeline.transforms)
            for variant in range(epoch, epoch + n):
                out, applied = pipeline.replay(source.image, index=source.index, epoch=variant, **_given(source.targets))
                image, marks = _moved(out, source.targets)
                text = "  ".join(a.caption for a in applied if a.caption) or "(no change drawn)"
                row.append(_tile(to_viewable(image, normalizer), text, marks=marks))
        rows.append(row)
    return rows


# The label fields the sheet passes beside boxes and keypoints: their numbers in the source's
# lists, to find each survivor's class and colour after steps dropped others.
_BOX_FIELD, _POINT_FIELD = "box_number", "point_number"


def _marking(pipeline: Pipeline, sources: Sequence[Source]) -> Pipeline:
    """``pipeline`` taking targets as the sheet passes them (``_given``): boxes in Pascal VOC
    pixels, keypoints as x, y, each with its number as a label field. The spec's own settings
    for them are kept (``min_visibility``, ...: the same boxes survive in any format); the
    steps, seed and so every draw are the pipeline's."""
    targets = {}
    for name, form, field_name in (("bboxes", "pascal_voc", _BOX_FIELD), ("keypoints", "xy", _POINT_FIELD)):
        if any(getattr(source.targets, name, None) is not None for source in sources):  # none declared: no warning for it
            targets[name] = {**pipeline.targets.get(name, {}), "format": form, "label_fields": [field_name]}
    if not targets:  # masks need no declaration
        return pipeline
    # Relative stats files resolve where the pipeline's did.
    return Pipeline({**pipeline.to_spec(), "targets": targets}, base_dir=pipeline.base_dir)


def _given(marks: Marks | None) -> dict[str, Any]:
    """``marks`` as a ``_marking`` pipeline takes them (keyword arguments)."""
    if marks is None:
        return {}
    given: dict[str, Any] = {} if marks.mask is None else {"mask": marks.mask}
    if marks.bboxes is not None:
        given.update(bboxes=marks.bboxes, **{_BOX_FIELD: np.arange(len(marks.bboxes))})
    if marks.keypoints is not None:
        given.update(keypoints=marks.keypoints, **{_POINT_FIELD: marks.keypoint_ids})
    return given


def _moved(out: Any, marks: Marks | None) -> tuple[np.ndarray, Marks | None]:
    """The image and the marks of what a ``_marking`` pipeline returned for ``marks`` (``_given``)."""
    if marks is None or not isinstance(out, Augmented):
        return out, None
    bboxes = labels = keypoints = ids = None
    if out.bboxes is not None:
        bboxes = out.bboxes
        kept = np.asarray(out.fields[_BOX_FIELD], np.int64)
        labels = None if marks.labels is None else marks.labels[kept]
    if out.keypoints is not None:
        keypoints, ids = out.keypoints, np.asarray(out.fields[_POINT_FIELD], np.int64)
    return out.image, Marks(out.mask, bboxes, labels, keypoints, ids, marks.classes)


def contact_sheet(pipeline: Pipeline, sources: Sequence[Source], *, n: int = 6, epoch: int = 0, stages: bool = False) -> bytes:
    """The PNG ``augkit preview`` writes (and ``augkit studio`` shows) for ``sources``, with
    the targets they carry drawn over their tiles.

    Titled with the pipeline's seed and inline spec (and the first epoch drawn, when not 0),
    so a sheet says what made it. The same arguments give the same bytes.
    """
    from augkit.pipeline.spec import format_inline

    first = f", {'epoch' if stages else 'epochs'} {epoch}{'' if stages else f'..{epoch + n - 1}'}" if epoch else ""
    title = f"seed {pipeline.seed}{first}: {format_inline(pipeline.to_spec())}"
    return render(build_rows(pipeline, sources, n=n, stages=stages, epoch=epoch), title)


def _stage_tiles(pipeline: Pipeline, source: Source, epoch: int) -> list[Tile]:
    """A tile per step of the pipeline, in order: the image after it, or, for a step whose
    probability did not fire (or that its OneOf/SomeOf did not pick), "NAME: skipped (p=P)"."""
    outs = pipeline.stages(source.image, index=source.index, epoch=epoch, **_given(source.targets))
    done = {id(applied.transform): (applied, out) for applied, out in outs}
    tiles, normalizer, previous = [], None, to_viewable(source.image, None)
    for (name, parent), transform in zip(_leaf_steps(pipeline.to_spec()["steps"]), pipeline.transforms):
        if id(transform) not in done:
            reason = f"in {parent}" if parent else f"p={transform.p:g}"
            tiles.append(_tile(previous, f"{name}: skipped ({reason})", skipped=True))
            continue
        applied, out = done[id(transform)]
        image, marks = _moved(out, source.targets)
        if isinstance(transform, _NORMALIZERS):
            normalizer = transform
        previous = to_viewable(image, normalizer)
        tiles.append(_tile(previous, applied.caption or applied.name, marks=marks))
    return tiles


def _leaf_steps(steps: Sequence[dict], parent: str | None = None) -> Iterator[tuple[str, str | None]]:
    """(name, composition it is in or None) of every step that is not a composition, in the
    order ``Pipeline.transforms`` lists their transforms (depth first, in spec order)."""
    for step in steps:
        ((name, params),) = step.items()
        if name in COMPOSITIONS:
            yield from _leaf_steps(params["transforms"], name)
        else:
            yield name, parent


def _scale_for(shape: tuple[int, ...]) -> float:
    """The factor a tile of ``shape`` is drawn at: a whole number for small images (crisp
    pixels), at least half of ``TILE`` a side; a shrink for images larger than ``TILE``."""
    side = max(shape[:2])
    if side * 2 <= TILE:
        return float(TILE // side)
    return min(1.0, TILE / side)


def _factor_text(factor: float) -> str:
    if factor == 1:
        return ""
    return f" ×{factor:.0f}" if factor > 1 else f" ×{factor:.2g}"


def _fit(image: np.ndarray, factor: float) -> np.ndarray:
    """An H x W x C tile as RGB, scaled by ``factor``: gray (1 or 2 channels) shown as gray,
    the first three channels of wider images (RGBA, multispectral) as colour."""
    if image.ndim == 2:
        image = image[..., None]
    image = np.repeat(image[..., :1], 3, axis=2) if image.shape[2] < 3 else np.ascontiguousarray(image[..., :3])
    if factor == 1.0:
        return image
    h, w = image.shape[:2]
    height, width = max(1, round(h * factor)), max(1, round(w * factor))
    if factor > 1:  # whole multiples only (``_scale_for``): every pixel a crisp block
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    return F.resize(image, height, width)


def _blank(shape: tuple[int, ...]) -> np.ndarray:
    """A skipped step's cell: white, framed and crossed in gray, unlike any image a step makes."""
    h, w = shape[:2]
    image = np.full((h, w, 3), 255, np.uint8)
    color = (SKIPPED_GRAY,) * 3
    cv2.rectangle(image, (0, 0), (w - 1, h - 1), color, 1)
    cv2.line(image, (0, 0), (w - 1, h - 1), color, 1, cv2.LINE_AA)
    cv2.line(image, (0, h - 1), (w - 1, 0), color, 1, cv2.LINE_AA)
    return image


# ----------------------------------------------------------------------------- marks


def _colour(k: int) -> tuple[int, int, int]:
    return PALETTE[k % len(PALETTE)]


def draw_marks(picture: np.ndarray, marks: Marks) -> np.ndarray:
    """``picture`` (H x W x 3 uint8 RGB, not changed) with ``marks`` (in its pixels) drawn over it.

    The mask as a tint of its labels' colours (``MASK_ALPHA``) with an opaque one-pixel outline
    inside each region's edge; each box as a ``BOX_PX`` outline inside its edges in its class's
    colour, tagged at its top-left (above the box where there is room, else inside it; always
    inside the picture) with its class's name, or number, in black or white, whichever reads
    better on the colour; each keypoint as a dot of its number's colour in a dark ring. Tags
    go on last, so no other mark covers one.
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
        if label is None:
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


# ----------------------------------------------------------------------------- text


@functools.lru_cache(maxsize=1)
def _renderer() -> Any:
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, 72)  # at 72 dpi a pixel is a point


@functools.lru_cache(maxsize=65536)
def text_width(text: str, size: float, weight: str = "normal") -> float:
    """The width in points of one line of ``text`` at font ``size`` (points), as matplotlib
    draws it (its default font; no mathtext: draw with ``parse_math=False``)."""
    from matplotlib.font_manager import FontProperties

    width, _, _ = _renderer().get_text_width_height_descent(text, FontProperties(size=size, weight=weight), ismath=False)
    return width


@functools.lru_cache(maxsize=4)
def _font(size: int, weight: str) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (``weight`` "bold": DejaVu Sans Bold) at ``size`` pixels to the em, from the
    files matplotlib ships: the face its figures use, and the same file whatever a matplotlibrc
    says, so a sheet's bytes do not depend on the user's settings. Pillow's basic layout (no
    libraqm): the same glyph positions on every install."""
    import matplotlib  # only for the path of its fonts

    name = "DejaVuSans-Bold.ttf" if weight == "bold" else "DejaVuSans.ttf"
    path = Path(matplotlib.get_data_path(), "fonts", "ttf", name)
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=65536)
def pixel_width(text: str, size: float, weight: str = "normal") -> float:
    """The width in pixels of the ink of one line of ``text`` at font ``size`` (pixels to the
    em, a whole number), as the contact sheet draws it (``_font``, Pillow)."""
    left, _, right, _ = _font(int(size), weight).getbbox(text, anchor="ls")
    return right - left


def wrap_text(
    text: str,
    width: float,
    size: float,
    *,
    weight: str = "normal",
    breaks: Sequence[str] = (" ",),
    measure: Callable[[str, float, str], float] = text_width,
) -> list[str]:
    """``text`` in lines no wider than ``width`` at font ``size``, by widths ``measure`` gives.

    ``measure(line, size, weight)``: the width of a line, in ``width``'s unit; ``text_width``
    (points, matplotlib's figures) or ``pixel_width`` (pixels, the contact sheet).
    Lines break at its newlines, then at the first of ``breaks`` that makes the pieces fit
    (the separator stays at the end of its line, trailing spaces dropped), then at "/" (a
    long path), and a piece wider than a line on its own at characters: nothing is cut off.
    """
    # Headroom: matplotlib draws at other resolutions than it measures, and hinting moves widths
    # by a little. Pillow draws what it measures; the sheet keeps the headroom, and so its breaks.
    width *= 0.97

    def fits(line: str) -> bool:
        return measure(line, size, weight) <= width

    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += _wrap(paragraph, fits, (*breaks, "/"))
    return lines


def _wrap(text: str, fits: Callable[[str], bool], breaks: Sequence[str]) -> list[str]:
    if fits(text):
        return [text]
    if not breaks:  # characters: as many as fit on each line, one at least
        lines = [""]
        for char in text:
            if lines[-1] and not fits(lines[-1] + char):
                lines.append("")
            lines[-1] += char
        return lines
    separator, others = breaks[0], breaks[1:]
    units = text.split(separator)
    pieces = [unit + separator for unit in units[:-1]] + units[-1:]
    lines, line = [], ""
    for piece in pieces:
        if line and not fits((line + piece).rstrip()):
            lines.append(line.rstrip())
            line = ""
        body = piece.rstrip()
        if not line and not fits(body):
            parts = _wrap(body, fits, others)
            lines += parts[:-1]
            line = parts[-1] + piece[len(body):]
        else:
            line += piece
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


# ----------------------------------------------------------------------------- the sheet


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the sheet; x1 and y1 exclusive


@dataclass(frozen=True)
class Line:
    """One line of text placed on a sheet.

    Drawn at (``x``, ``baseline``) with Pillow's ``anchor`` ("ls": from the left, "ms": centred
    on ``x``), at ``size`` pixels to the em, in ``color`` (RGB). ``box``: where its ink lies, as
    Pillow measures it; ``cell``: the part of the sheet it belongs to (its tile's cell, or the
    header above the tiles).
    """

    text: str
    x: int
    baseline: int
    anchor: str
    size: int
    weight: str
    color: tuple[int, int, int]
    box: Box
    cell: Box


@dataclass(frozen=True)
class Sheet:
    """A laid-out contact sheet: ``canvas`` (H x W x 3 uint8 RGB, the tiles on white, no text)
    and the ``lines`` of text to draw over it (``draw``); ``tiles``: where each tile's picture
    lies on the canvas, row by row (skipped steps' blank cells included)."""

    canvas: np.ndarray
    lines: list[Line]
    tiles: list[list[Box]] = field(default_factory=list)

    def draw(self) -> np.ndarray:
        """The sheet as a picture: a copy of ``canvas`` with every line drawn, anti-aliased."""
        picture = Image.fromarray(self.canvas)
        pen = ImageDraw.Draw(picture)
        for line in self.lines:
            pen.text((line.x, line.baseline), line.text, fill=line.color, font=_font(line.size, line.weight), anchor=line.anchor)
        return np.asarray(picture)


def _place(text: str, x: int, top: int, anchor: str, size: int, weight: str, color: tuple[int, int, int], cell: Box) -> Line:
    """``text`` with the top of its line at ``top``, where matplotlib's ``va="top"`` put it: the
    baseline that far below as "l" rises above it (matplotlib measures a line's top on "lp")."""
    font = _font(size, weight)
    baseline = top - font.getbbox("lp", anchor="ls")[1]
    x0, y0, x1, y1 = font.getbbox(text, anchor=anchor)
    return Line(text, x, baseline, anchor, size, weight, color, (x + x0, baseline + y0, x + x1, baseline + y1), cell)


def sheet(rows: Sequence[Sequence[Tile]], title: str) -> Sheet:
    """The contact sheet laid out: its canvas and its lines of text (``render`` gives its PNG).

    Each tile is drawn at ``_scale_for`` its size in a ``TILE``-wide cell, its caption below
    it with its true size ("24x24 px ×7") last; the title (bold) and ``LEGEND`` wrap to the
    sheet's width, the captions to the cell's, and each row is as tall as its longest caption.
    Text: DejaVu Sans at ``FONT_PX`` pixels (the title bold, a pixel larger), black; the legend
    dim gray; wrapped by the widths of the very font that draws it (``pixel_width``).
    """
    drawn = []
    for row in rows:
        cells = []
        for tile in row:
            h, w = tile.size or tile.image.shape[:2]
            factor = _scale_for((h, w))
            image = _fit(tile.image, 1.0 if tile.size else factor)  # a tile with a size is drawn as it is
            if tile.skipped:
                image = _blank(image.shape)
                caption = tile.caption
            else:
                caption = f"{tile.caption}\n{h}x{w} px{_factor_text(factor)}"
                if tile.marks is not None:
                    image = draw_marks(image, tile.marks.resized(tile.image.shape, image.shape))
            lines = wrap_text(caption, TILE - 4, FONT_PX, breaks=("  ", " "), measure=pixel_width)
            cells.append((image, lines))
        drawn.append(cells)
    columns = max(len(row) for row in drawn)
    width = 2 * MARGIN + columns * TILE + (columns - 1) * GAP
    title_lines = wrap_text(title, width - 2 * MARGIN, FONT_PX + 1, weight="bold", breaks=("; ", ", ", " "), measure=pixel_width)
    legend_lines = wrap_text(LEGEND, width - 2 * MARGIN, FONT_PX, breaks=("; ", " "), measure=pixel_width)
    header = (len(title_lines) + 1) * (LINE_PX + 1) + len(legend_lines) * LINE_PX + GAP
    heights = [max(image.shape[0] for image, _ in cells) + 4 + max(len(lines) for _, lines in cells) * LINE_PX + GAP
               for cells in drawn]  # fmt: skip
    height = 2 * MARGIN + header + sum(heights)

    canvas = np.full((height, width, 3), 255, np.uint8)
    head = (MARGIN, MARGIN, width - MARGIN, MARGIN + header)
    texts = [_place(line, MARGIN, MARGIN + i * (LINE_PX + 1), "ls", FONT_PX + 1, "bold", BLACK, head)
             for i, line in enumerate(title_lines)]  # fmt: skip
    top = MARGIN + len(title_lines) * (LINE_PX + 1) + 2
    texts += [_place(line, MARGIN, top + i * LINE_PX, "ls", FONT_PX, "normal", DIMGRAY, head)
              for i, line in enumerate(legend_lines)]  # fmt: skip
    top = MARGIN + header
    places: list[list[Box]] = []
    for cells, row_height in zip(drawn, heights):
        image_height = max(image.shape[0] for image, _ in cells)
        places.append([])
        for c, (image, lines) in enumerate(cells):
            left = MARGIN + c * (TILE + GAP)
            h, w = image.shape[:2]
            x0, y0 = left + (TILE - w) // 2, top + (image_height - h) // 2
            canvas[y0 : y0 + h, x0 : x0 + w] = image
            places[-1].append((x0, y0, x0 + w, y0 + h))
            cell = (left, top, left + TILE, top + row_height - GAP)
            texts += [_place(line, left + TILE // 2, top + image_height + 4 + i * LINE_PX, "ms", FONT_PX, "normal", BLACK, cell)
                      for i, line in enumerate(lines)]  # fmt: skip
        top += row_height
    return Sheet(canvas, texts, places)


def render(rows: Sequence[Sequence[Tile]], title: str) -> bytes:
    """The contact sheet (``sheet``) as PNG bytes; the same rows give the same bytes.

    zlib level 1 with the "up" filter: for the studio's 1052x1304 sheet 35 ms, against 51 ms with
    libpng's own filter choice and 206 ms at Pillow's level 6 (what matplotlib's savefig used),
    for 4% and 16% more bytes (bench/preview_render.py). No metadata, no timestamp.
    """
    picture = cv2.cvtColor(sheet(rows, title).draw(), cv2.COLOR_RGB2BGR)
    _, png = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    return png.tobytes()
