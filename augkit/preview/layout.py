"""A contact sheet laid out (tiles in cells at their drawn size, captions, title and legend) and drawn to PNG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw

from augkit.pipeline import functional as F
from augkit.preview.marks import Marks, draw_marks
from augkit.preview.text import BLACK, DIMGRAY, Box, _font, pixel_width, wrap_text

TILE = 176  # the longer side of a drawn tile at most, in pixels
FONT_PX = 11  # caption font size, pixels to the em (the title's is a pixel more)
LINE_PX = 14  # the height of one caption or title line, font size x line spacing (1.15) and a little
GAP = 8
MARGIN = 12
SKIPPED_GRAY = 170  # the frame and cross of a step that did not apply, on the stages sheet
LEGEND = ("sizes: height x width in pixels; ×k: drawn k times its size (nearest pixels when enlarged); "
          "(y,x): a crop's top-left corner")


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
