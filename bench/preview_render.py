"""The contact sheet's renderer (``augkit.preview.render``) against the matplotlib Figure it replaced.

The sheet ``augkit studio`` redraws on every change: the first 4 sampled photos of
``sample_data/photos`` resized to 256x256, ``DEFAULT_PIPELINE``, 6 variants each (a 1052x1304
sheet). Both renderers start from the same rows (``build_rows``, timed apart):

- augkit: ``render``, the layout (``sheet``: tiles and wrapped lines), the text drawn with Pillow
  on the canvas (``Sheet.draw``), PNG by OpenCV at zlib level 1 with the "up" filter;
- matplotlib: the same layout drawn as before, a Figure at 100 dpi with the canvas as a figimage
  and one ``figure.text`` per line, saved as matplotlib saves PNG (Pillow, zlib level 6).

Then where augkit's time goes, and the PNG encoders it could use, on the same drawn sheet.
Repeats are interleaved (bench/_repeats.py), the first dropped; medians, and the median of the
per-repeat ratios.

    python bench/preview_render.py [--repeats 11]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _repeats import interleaved  # noqa: E402

import augkit  # noqa: E402
from augkit.pipeline.spec import format_inline  # noqa: E402
from augkit.preview import DEFAULT_PIPELINE, Sheet, Source, build_rows, collect_sources, render, sheet  # noqa: E402
from augkit.preview.text import _font  # noqa: E402


def matplotlib_png(layout: Sheet) -> bytes:
    """The peer: ``layout`` drawn the way augkit drew its sheets before, each line's top where
    Pillow puts it (its baseline less the ascent of "lp", as matplotlib's ``va="top"`` does)."""
    from matplotlib.figure import Figure

    height, width = layout.canvas.shape[:2]
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    figure.figimage(layout.canvas, 0, 0, origin="upper")
    for line in layout.lines:
        top = line.baseline + _font(line.size, line.weight).getbbox("lp", anchor="ls")[1]
        figure.text(line.x / width, 1 - top / height, line.text, fontsize=line.size * 72 / 100, weight=line.weight,
                    color=np.array(line.color) / 255, va="top", ha="left" if line.anchor == "ls" else "center",
                    parse_math=False)  # fmt: skip
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def timed(run: Callable[[], object]) -> Callable[[], float]:
    """A repeat for ``interleaved``: one call of ``run``, in milliseconds."""

    def go() -> float:
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1e3

    return go


def pillow_png(picture: np.ndarray, level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def opencv_png(picture: np.ndarray, *params: int) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, *params])[1].tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"python {platform.python_version()}, matplotlib {matplotlib.__version__}, Pillow {PIL.__version__}, "
          f"OpenCV {cv2.__version__}")  # fmt: skip
    pipeline = augkit.load_pipeline(DEFAULT_PIPELINE)
    photos = collect_sources([augkit.sample_data_dir() / "photos"], rows=4, seed=pipeline.seed)
    sources = [Source(cv2.resize(s.image, (256, 256), interpolation=cv2.INTER_AREA), s.label, s.index) for s in photos]
    title = f"seed {pipeline.seed}: {format_inline(pipeline.to_spec())}"
    rows = build_rows(pipeline, sources, n=6, stages=False)
    layout = sheet(rows, title)
    picture = layout.draw()
    print(f"sheet {picture.shape[0]}x{picture.shape[1]}, {len(layout.lines)} lines of text")

    times = interleaved(
        {
            "build_rows": timed(lambda: build_rows(pipeline, sources, n=6, stages=False)),
            "augkit": timed(lambda: render(rows, title)),
            "matplotlib": timed(lambda: matplotlib_png(sheet(rows, title))),
            "sheet": timed(lambda: sheet(rows, title)),
            "draw": timed(layout.draw),
            "encode": timed(lambda: opencv_png(picture, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP)),
        },
        args.repeats,
    )
    ratio = statistics.median(m / a for m, a in zip(times["matplotlib"], times["augkit"]))
    print(f"\n{'render':<12} {'ms':>8}\n{'matplotlib':<12} {statistics.median(times['matplotlib']):>8.1f}")
    print(f"{'augkit':<12} {statistics.median(times['augkit']):>8.1f}   (matplotlib / augkit: {ratio:.1f}x)")
    sheet_ms, draw_ms, encode_ms, rows_ms = (statistics.median(times[k]) for k in ("sheet", "draw", "encode", "build_rows"))
    print(f"  of which sheet {sheet_ms:.1f}, draw {draw_ms:.1f}, encode {encode_ms:.1f}; build_rows before it {rows_ms:.1f}")

    encoders = {
        "opencv level 1, up": lambda: opencv_png(picture, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP),
        "opencv level 1": lambda: opencv_png(picture, 1),
        "pillow level 1": lambda: pillow_png(picture, 1),
        "pillow level 6": lambda: pillow_png(picture, 6),
    }
    times = interleaved({name: timed(encode) for name, encode in encoders.items()}, args.repeats)
    print(f"\n{'PNG encoder':<20} {'ms':>6} {'MB':>6}")
    for name, encode in encoders.items():
        print(f"{name:<20} {statistics.median(times[name]):>6.1f} {len(encode()) / 1e6:>6.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
