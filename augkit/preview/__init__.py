"""Contact sheets: what a pipeline does to real images, before training on it.

One row per source image: the original, then N augmented variants (the draws of epochs
0..N-1 for that sample, exactly what training would show it), each captioned with the
parameters applied; or, with ``stages``, the image after each step, and the steps that did
not apply marked as skipped. Each tile is drawn at a readable size whatever its true size: a
24x24 crop or an 8x8 digit enlarged by a whole factor with nearest pixels (so the pixels
stay visible), a 512x512 photo shrunk; the caption gives the true size and the factor
("24x24 px ×7"). One convention in every caption: sizes height x width, positions (y,x).
Float outputs (after standardize, subtract_mean, scale, Normalize) are mapped back to pixels
by inverting that step. A source's targets (a label mask, boxes, keypoints) go through the same
draws as its image and are drawn over every tile.

Where things live (imports point down this list, never up):

- ``rows``: the tiles of a sheet from a pipeline and its sources (``build_rows``, ``to_viewable``),
  and the PNG ``augkit preview`` writes (``contact_sheet``); ``DEFAULT_PIPELINE``.
- ``sources``: the images a sheet shows, and their targets (``Source``, ``collect_sources``).
- ``layout``: a sheet laid out (``Tile``, ``sheet``, ``Sheet``, ``Line``) and drawn to PNG (``render``).
- ``marks``: targets drawn over a tile (``Marks``, ``draw_marks``).
- ``text``: the fonts, their widths, and text wrapped by them (``wrap_text``, ``pixel_width``,
  ``text_width``).
"""

from augkit.preview.layout import FONT_PX, GAP, LEGEND, LINE_PX, MARGIN, SKIPPED_GRAY, TILE, Line, Sheet, Tile, render, sheet
from augkit.preview.marks import BOX_PX, DOT_RADIUS, MASK_ALPHA, PALETTE, RING, TAG_PX, Marks, draw_marks
from augkit.preview.rows import DEFAULT_PIPELINE, build_rows, contact_sheet, to_viewable
from augkit.preview.sources import Source, collect_sources
from augkit.preview.text import BLACK, DIMGRAY, Box, pixel_width, text_width, wrap_text

__all__ = [
    "BLACK", "BOX_PX", "DEFAULT_PIPELINE", "DIMGRAY", "DOT_RADIUS", "FONT_PX", "GAP", "LEGEND", "LINE_PX",
    "MARGIN", "MASK_ALPHA", "PALETTE", "RING", "SKIPPED_GRAY", "TAG_PX", "TILE", "Box", "Line", "Marks",
    "Sheet", "Source", "Tile", "build_rows", "collect_sources", "contact_sheet", "draw_marks",
    "pixel_width", "render", "sheet", "text_width", "to_viewable", "wrap_text",
]  # fmt: skip
