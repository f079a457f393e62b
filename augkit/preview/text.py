"""The contact sheet's text: its fonts, their widths, and text wrapped by those widths.

Every text is wrapped by its measured width (``wrap_text``), never by a guess at how wide
characters are, so no caption runs into its neighbour and no title runs off the sheet.
The sheet's text is drawn with Pillow straight onto its pixels, in the font matplotlib's
figures use, and wrapped by that same font's widths; matplotlib's own measure (``text_width``)
serves the figures of ``augkit.train.plots``. matplotlib is imported only inside the functions
that need it (a font's path, a figure's measure): the core stays light.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import ImageFont

BLACK, DIMGRAY = (0, 0, 0), (105, 105, 105)  # captions and title; the legend (CSS's dimgray)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of a picture (a sheet, a tile); x1 and y1 exclusive


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
