"""Contact sheets: what a pipeline does to real images, before training on it.

One row per source image: the original, then N augmented variants (the draws of epochs
0..N-1 for that sample, exactly what training would show it), each captioned with the
parameters applied; or, with ``stages``, the image after each step. Tiles of one row share
one scale, so crops look smaller than their source; 8x8 digits are enlarged with visible
pixels and 512x512 photos shrunk, to a common tile size. Float outputs (after standardize,
subtract_mean, scale, Normalize) are mapped back to pixels by inverting that step.

matplotlib is imported inside ``render`` only: the core stays light for everyone else.
"""

from __future__ import annotations

import io
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from augkit import functional as F
from augkit._albumentations import A
from augkit.datasets import Dataset, open_dataset
from augkit.errors import AugkitError, AugkitWarning, ImageReadError
from augkit.images import is_image_file, read_image
from augkit.pipeline import Pipeline
from augkit.transforms import Scale, Standardize, SubtractMean

TILE = 176  # target side of a tile in pixels
FONT_PX = 11  # caption font size (pixels at 100 dpi)
LINE_PX = 14
CAPTION_LINES = 3
GAP = 8
MARGIN = 12
HEADER_PX = 26
TITLE_LINE_PX = 15  # each further line of a wrapped title
TITLE_CHAR_EM = 0.66  # the bold title font's mean character width, in font sizes (DejaVu Sans Bold)
DPI = 100

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
    image: np.ndarray  # uint8 HWC, already viewable
    caption: str


def collect_sources(inputs: Sequence[str | Path], rows: int, seed: int) -> list[Source]:
    """Images named directly, plus ``rows`` images sampled (seeded) from each dataset named.

    An image named directly must be readable (ImageReadError says why not); files of a dataset
    that cannot be read are passed over, as every command passes them over, with a warning.
    """
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if is_image_file(path) and not path.is_dir():  # a FIFO or a broken link too: the reader says what it is
            sources.append(Source(read_image(path), path.name, len(sources)))
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
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(x * 255 / 65535)
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
    """The tiles of every row: original first, then variants (or stages)."""
    rows = []
    for source in sources:
        h, w = source.image.shape[:2]
        row = [Tile(to_viewable(source.image, None), f"{source.label}\n{w}x{h}")]
        if stages:
            normalizer = None
            for applied, image in pipeline.stages(source.image, index=source.index, epoch=0):
                if isinstance(applied.transform, _NORMALIZERS):
                    normalizer = applied.transform
                row.append(Tile(to_viewable(image, normalizer), applied.caption or applied.name))
        else:
            normalizer = _last_normalizer(pipeline.transforms)
            for epoch in range(n):
                image, applied = pipeline.replay(source.image, index=source.index, epoch=epoch)
                text = "  ".join(a.caption for a in applied if a.caption) or "(no change drawn)"
                row.append(Tile(to_viewable(image, normalizer), text))
        rows.append(row)
    return rows


def _scale_for(row: Sequence[Tile]) -> float:
    """One scale per row, set by its largest tile (a variant may be larger than its source):
    integer enlargement for small images (crisp pixels), area shrink for big ones; no tile
    comes out larger than ``TILE`` a side, so the sheet's size never depends on a step's output."""
    side = max(max(tile.image.shape[:2]) for tile in row)
    if side * 2 <= TILE:
        return float(TILE // side)
    return min(1.0, TILE / side)


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


def _caption_lines(caption: str, chars_per_line: int) -> list[str]:
    """Pack caption items (separated by two spaces or newlines) into lines without splitting an item."""
    lines: list[str] = []
    for paragraph in caption.split("\n"):
        line = ""
        for item in paragraph.split("  "):
            if line and len(line) + 2 + len(item) > chars_per_line:
                lines.append(line)
                line = item
            else:
                line = f"{line}  {item}" if line else item
        lines.append(line)
    return lines[:CAPTION_LINES]


def _title_lines(title: str, chars_per_line: int) -> list[str]:
    """The title in lines of at most ``chars_per_line``, broken after a step's ";" where it can."""
    steps = title.split("; ")
    words = [f"{step};" for step in steps[:-1]] + steps[-1:]
    lines: list[str] = []
    for word in words:
        for part in textwrap.wrap(word, chars_per_line, break_on_hyphens=False) or [word]:
            if lines and len(lines[-1]) + 1 + len(part) <= chars_per_line:
                lines[-1] += " " + part
            else:
                lines.append(part)
    return lines


def render(rows: Sequence[Sequence[Tile]], title: str) -> bytes:
    """The contact sheet as PNG bytes; the same rows give the same bytes."""
    from matplotlib.figure import Figure  # deferred: see the module docstring

    scaled = [[Tile(_fit(t.image, _scale_for(row)), t.caption) for t in row] for row in rows]
    cell_w = max(TILE, max(t.image.shape[1] for row in scaled for t in row))
    row_heights = [max(t.image.shape[0] for t in row) for row in scaled]
    columns = max(len(row) for row in scaled)
    caption_h = CAPTION_LINES * LINE_PX + GAP
    width = 2 * MARGIN + columns * cell_w + (columns - 1) * GAP
    # The title (the pipeline, which can be long) wraps at its steps to the sheet's width.
    title_lines = _title_lines(title, max(20, int((width - 2 * MARGIN) / ((FONT_PX + 1) * TITLE_CHAR_EM))))
    header = HEADER_PX + (len(title_lines) - 1) * TITLE_LINE_PX
    height = 2 * MARGIN + header + sum(row_heights) + len(scaled) * caption_h

    canvas = np.full((height, width, 3), 255, np.uint8)
    texts = []
    chars_per_line = max(8, int(cell_w / (FONT_PX * 0.58)))
    top = MARGIN + header
    for row, row_h in zip(scaled, row_heights):
        for c, tile in enumerate(row):
            left = MARGIN + c * (cell_w + GAP)
            h, w = tile.image.shape[:2]
            x0, y0 = left + (cell_w - w) // 2, top + (row_h - h) // 2
            canvas[y0 : y0 + h, x0 : x0 + w] = tile.image
            texts.append((left + cell_w / 2, top + row_h + 3, "\n".join(_caption_lines(tile.caption, chars_per_line))))
        top += row_h + caption_h

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    figure.figimage(canvas, 0, 0, origin="upper")
    title_pt = (FONT_PX + 1) * 72 / DPI
    figure.text(MARGIN / width, 1 - MARGIN / height, "\n".join(title_lines), fontsize=title_pt, va="top",
                ha="left", weight="bold", linespacing=1.15)  # fmt: skip
    for x, y, text in texts:
        figure.text(x / width, 1 - y / height, text, fontsize=FONT_PX * 72 / DPI, va="top", ha="center", linespacing=1.15)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
