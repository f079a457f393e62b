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

Every text is wrapped by its measured width (``wrap_text``), never by a guess at how wide
characters are, so no caption runs into its neighbour and no title runs off the sheet.
matplotlib is imported inside the functions that draw or measure: the core stays light.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from augkit.errors import AugkitError, AugkitWarning, ImageReadError
from augkit.io.datasets import Dataset, open_dataset, stored_channels
from augkit.io.images import is_image_file, read_image
from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.core import Pipeline
from augkit.pipeline.registry import COMPOSITIONS
from augkit.pipeline.steps import Scale, Standardize, SubtractMean
from augkit.pixels import to_uint8

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TILE = 176  # the longer side of a drawn tile at most, in pixels
FONT_PX = 11  # caption font size (pixels at 100 dpi)
LINE_PX = 14  # the height of one caption or title line, font size x line spacing (1.15) and a little
GAP = 8
MARGIN = 12
DPI = 100
SKIPPED_GRAY = 170  # the frame and cross of a step that did not apply, on the stages sheet
LEGEND = ("sizes: height x width in pixels; ×k: drawn k times its size (nearest pixels when enlarged); "
          "(y,x): a crop's top-left corner")

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


@dataclass(frozen=True)
class Source:
    """One row's input: its image, a label for the row, and the sample index that seeds it."""

    image: np.ndarray
    label: str
    index: int


@dataclass(frozen=True)
class Tile:
    """One cell of a sheet: a viewable image (uint8, H x W or H x W x C) and its caption.

    ``skipped``: a step that did not apply, on the stages sheet; ``image`` (its unchanged
    input) then only gives the cell its size, and the cell is drawn blank.
    """

    image: np.ndarray
    caption: str
    skipped: bool = False


def collect_sources(inputs: Sequence[str | Path], rows: int, seed: int) -> list[Source]:
    """Images named directly, plus ``rows`` images sampled (seeded) from each dataset named.

    An image named directly must be readable (ImageReadError says why not); files of a dataset
    that cannot be read are passed over, as every command passes them over, with a warning.
    """
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if is_image_file(path) and not path.is_dir():  # a FIFO or a broken link too: the reader says what it is
            # The gray rule (augkit.io.datasets) for an image on its own: a gray file stays one channel.
            sources.append(Source(read_image(path, gray=stored_channels(path) == 1), path.name, len(sources)))
            continue
        dataset = open_dataset(path)
        sources.extend(_sample(dataset, rows, seed))
    return sources


def _sample(dataset: Dataset, rows: int, seed: int) -> list[Source]:
    """``rows`` readable images of ``dataset``, in a seeded random order, shown by index."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    picked: list[tuple[int, np.ndarray]] = []
    skipped: list[ImageReadError] = []
    for i in order:
        try:
            picked.append((i, dataset.read(i)))
        except ImageReadError as error:
            skipped.append(error)
        if len(picked) == rows:
            break
    if skipped:
        first = skipped[0]
        if not picked:
            raise AugkitError(f"no readable image in {dataset.root}: all {len(skipped)} failed (the first, {first})")
        warnings.warn(f"passed over {len(skipped)} unreadable file(s) in {dataset.root}, e.g. {first}", AugkitWarning, stacklevel=2)
    sources = []
    for i, image in sorted(picked, key=lambda pick: pick[0]):
        label = Path(dataset.sources[i]).name
        if dataset.classes and dataset.labels[i] >= 0:
            label = f"{dataset.classes[dataset.labels[i]]}/{label}"
        sources.append(Source(image, label, i))
    return sources


def to_viewable(image: np.ndarray, normalizer: object | None) -> np.ndarray:
    """uint8 pixels for display: undo the last normalisation applied, clip, scale to 0..255.

    uint8 is shown as it is and uint16 rounded to 8 bits (``augkit.pixels``); float images are
    mapped back through the step that made them (or stretched when no step explains them).
    """
    if image.dtype in (np.uint8, np.uint16):
        return to_uint8(image)
    x = image.astype(np.float32)
    if isinstance(normalizer, Standardize):
        x = x * normalizer.std.astype(np.float32) + normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, SubtractMean):
        x = x + normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, A.Normalize) and normalizer.normalization == "standard":
        x = x * np.float32(normalizer.std) + np.float32(normalizer.mean)
    elif not isinstance(normalizer, Scale) and (x.min() < 0 or x.max() > 1):
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)  # unknown scale: stretch
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _last_normalizer(transforms: Sequence[object]) -> object | None:
    return next((t for t in reversed(transforms) if isinstance(t, _NORMALIZERS)), None)


def build_rows(pipeline: Pipeline, sources: Sequence[Source], n: int, stages: bool) -> list[list[Tile]]:
    """The tiles of every row: original first, then variants (or stages, skipped steps included).

    Captions say what was drawn; ``sheet`` adds each tile's true size.
    """
    rows = []
    for source in sources:
        row = [Tile(to_viewable(source.image, None), source.label)]
        if stages:
            row += _stage_tiles(pipeline, source)
        else:
            normalizer = _last_normalizer(pipeline.transforms)
            for epoch in range(n):
                image, applied = pipeline.replay(source.image, index=source.index, epoch=epoch)
                text = "  ".join(a.caption for a in applied if a.caption) or "(no change drawn)"
                row.append(Tile(to_viewable(image, normalizer), text))
        rows.append(row)
    return rows


def _stage_tiles(pipeline: Pipeline, source: Source) -> list[Tile]:
    """A tile per step of the pipeline, in order: the image after it, or, for a step whose
    probability did not fire (or that its OneOf/SomeOf did not pick), "NAME: skipped (p=P)"."""
    done = {id(applied.transform): (applied, image) for applied, image in pipeline.stages(source.image, index=source.index)}
    tiles, normalizer, previous = [], None, to_viewable(source.image, None)
    for (name, parent), transform in zip(_leaf_steps(pipeline.to_spec()["steps"]), pipeline.transforms):
        if id(transform) not in done:
            reason = f"in {parent}" if parent else f"p={transform.p:g}"
            tiles.append(Tile(previous, f"{name}: skipped ({reason})", skipped=True))
            continue
        applied, image = done[id(transform)]
        if isinstance(transform, _NORMALIZERS):
            normalizer = transform
        previous = to_viewable(image, normalizer)
        tiles.append(Tile(previous, applied.caption or applied.name))
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


def wrap_text(text: str, width: float, size: float, *, weight: str = "normal", breaks: Sequence[str] = (" ",)) -> list[str]:
    """``text`` in lines no wider than ``width`` points at font ``size``, by measured widths.

    Lines break at its newlines, then at the first of ``breaks`` that makes the pieces fit
    (the separator stays at the end of its line, trailing spaces dropped), then at "/" (a
    long path), and a piece wider than a line on its own at characters: nothing is cut off.
    """
    width *= 0.97  # hinting makes widths at other resolutions differ by a little
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += _wrap(paragraph, width, size, weight, (*breaks, "/"))
    return lines


def _wrap(text: str, width: float, size: float, weight: str, breaks: Sequence[str]) -> list[str]:
    if text_width(text, size, weight) <= width:
        return [text]
    if not breaks:  # characters: as many as fit on each line, one at least
        lines = [""]
        for char in text:
            if lines[-1] and text_width(lines[-1] + char, size, weight) > width:
                lines.append("")
            lines[-1] += char
        return lines
    separator, others = breaks[0], breaks[1:]
    units = text.split(separator)
    pieces = [unit + separator for unit in units[:-1]] + units[-1:]
    lines, line = [], ""
    for piece in pieces:
        if line and text_width((line + piece).rstrip(), size, weight) > width:
            lines.append(line.rstrip())
            line = ""
        body = piece.rstrip()
        if not line and text_width(body, size, weight) > width:
            parts = _wrap(body, width, size, weight, others)
            lines += parts[:-1]
            line = parts[-1] + piece[len(body):]
        else:
            line += piece
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


# ----------------------------------------------------------------------------- the sheet


def sheet(rows: Sequence[Sequence[Tile]], title: str) -> Figure:
    """The contact sheet as a matplotlib Figure (``render`` gives its PNG bytes).

    Each tile is drawn at ``_scale_for`` its size in a ``TILE``-wide cell, its caption below
    it with its true size ("24x24 px ×7") last; the title (bold) and ``LEGEND`` wrap to the
    sheet's width, the captions to the cell's, and each row is as tall as its longest caption.
    """
    from matplotlib.figure import Figure  # deferred: see the module docstring

    pt = 72 / DPI  # points per pixel
    drawn = []
    for row in rows:
        cells = []
        for tile in row:
            factor = _scale_for(tile.image.shape)
            image = _fit(tile.image, factor)
            if tile.skipped:
                image = _blank(image.shape)
                caption = tile.caption
            else:
                h, w = tile.image.shape[:2]
                caption = f"{tile.caption}\n{h}x{w} px{_factor_text(factor)}"
            lines = wrap_text(caption, (TILE - 4) * pt, FONT_PX * pt, breaks=("  ", " "))
            cells.append((image, lines))
        drawn.append(cells)
    columns = max(len(row) for row in drawn)
    width = 2 * MARGIN + columns * TILE + (columns - 1) * GAP
    title_lines = wrap_text(title, (width - 2 * MARGIN) * pt, (FONT_PX + 1) * pt, weight="bold", breaks=("; ", ", ", " "))
    legend_lines = wrap_text(LEGEND, (width - 2 * MARGIN) * pt, FONT_PX * pt, breaks=("; ", " "))
    header = (len(title_lines) + 1) * (LINE_PX + 1) + len(legend_lines) * LINE_PX + GAP
    heights = [max(image.shape[0] for image, _ in cells) + 4 + max(len(lines) for _, lines in cells) * LINE_PX + GAP
               for cells in drawn]  # fmt: skip
    height = 2 * MARGIN + header + sum(heights)

    canvas = np.full((height, width, 3), 255, np.uint8)
    texts = [(MARGIN, MARGIN + i * (LINE_PX + 1), line, "left", "bold", "black") for i, line in enumerate(title_lines)]
    top = MARGIN + len(title_lines) * (LINE_PX + 1) + 2
    texts += [(MARGIN, top + i * LINE_PX, line, "left", "normal", "dimgray") for i, line in enumerate(legend_lines)]
    top = MARGIN + header
    for cells, row_height in zip(drawn, heights):
        image_height = max(image.shape[0] for image, _ in cells)
        for c, (image, lines) in enumerate(cells):
            left = MARGIN + c * (TILE + GAP)
            h, w = image.shape[:2]
            x0, y0 = left + (TILE - w) // 2, top + (image_height - h) // 2
            canvas[y0 : y0 + h, x0 : x0 + w] = image
            texts += [(left + TILE / 2, top + image_height + 4 + i * LINE_PX, line, "center", "normal", "black")
                      for i, line in enumerate(lines)]  # fmt: skip
        top += row_height

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    figure.figimage(canvas, 0, 0, origin="upper")
    for x, y, line, align, weight, color in texts:
        size = (FONT_PX + (weight == "bold")) * pt
        figure.text(x / width, 1 - y / height, line, fontsize=size, weight=weight, color=color, va="top", ha=align,
                    parse_math=False)  # a "$" in a file name is a "$", not mathtext
    return figure


def render(rows: Sequence[Sequence[Tile]], title: str) -> bytes:
    """The contact sheet (``sheet``) as PNG bytes; the same rows give the same bytes."""
    buffer = io.BytesIO()
    sheet(rows, title).savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
