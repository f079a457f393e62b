"""Pictures people can read: tiles at a readable size, one caption convention, no text clipped
by its own picture or drawn over another, and the evidence each picture is there to show.

Every figure is drawn for real (matplotlib's Agg) and every text it draws is measured:
``drawn_texts`` records the texts matplotlib actually draws (not the ticks it leaves out)
with their boxes in pixels. A contact sheet is drawn for real too (Pillow on its canvas), and
``assert_sheet_fits`` checks its laid-out lines against the pixels that drawing changed.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit
from augkit.cli.main import cli
from augkit.preview import (
    GAP,
    MARGIN,
    TILE,
    Sheet,
    Tile,
    build_rows,
    collect_sources,
    pixel_width,
    sheet,
    text_width,
    wrap_text,
)

PHOTOS = augkit.sample_data_dir() / "photos"
DIGITS = augkit.sample_data_dir() / "digits"
LONG_PATH = "/home/someone/projects/" + "/".join(f"a-rather-long-folder-name-{i}" for i in range(6)) + "/digits-64x64-packed"


def drawn_texts(figure, dpi: float = 110) -> list[tuple[str, object]]:
    """(text, box in pixels) of every non-empty text matplotlib draws for ``figure`` at ``dpi``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    drawn = []
    original = Text.draw

    def record(self, renderer):  # noqa: ANN001, ANN202
        drawn.append(self)
        return original(self, renderer)

    Text.draw = record  # instrumentation only: the real drawing still happens
    try:
        canvas.draw()
    finally:
        Text.draw = original
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn if t.get_visible() and t.get_text().strip()]


def assert_texts_fit(figure, dpi: float = 110) -> list[tuple[str, object]]:
    """Every text lies inside the figure and no two texts overlap (by more than a pixel)."""
    texts = drawn_texts(figure, dpi)
    width, height = figure.get_figwidth() * dpi, figure.get_figheight() * dpi
    for text, box in texts:
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (
            f"{text!r} at {box.bounds} leaves the {width:.0f}x{height:.0f} figure")
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert overlap_w <= 1 or overlap_h <= 1, f"{a!r} {box_a.bounds} overlaps {b!r} {box_b.bounds}"
    return texts


def assert_sheet_fits(layout: Sheet) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Every line of a contact sheet lies inside the sheet and inside its cell (a caption: its
    tile's column of the grid, below the header; the title and legend: the header), on white
    (never over a tile), apart from every other line; drawn for real, its ink lies inside its
    box, and nothing else on the sheet changes (nothing clipped, nothing drawn where it was not
    measured). Returns (text, box) of each line, as ``drawn_texts`` does."""
    canvas = layout.canvas
    height, width = canvas.shape[:2]
    lines = [line for line in layout.lines if line.text.strip()]
    header = max(line.cell[3] for line in lines if line.anchor == "ls")
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, f"{line.text!r} at {line.box} leaves the {width}x{height} sheet"
        left, top, right, bottom = line.cell
        assert left <= x0 and top <= y0 and x1 <= right and y1 <= bottom, f"{line.text!r} at {line.box} leaves {line.cell}"
        if line.anchor == "ms":  # a caption: centred in a tile's column of the grid, under the header
            assert (left - MARGIN) % (TILE + GAP) == 0 and right - left == TILE and top >= header, line.cell
            assert line.x == (left + right) // 2, line
        else:
            assert (left, top, right) == (MARGIN, MARGIN, width - MARGIN), line.cell
        assert (canvas[y0:y1, x0:x1] == 255).all(), f"{line.text!r} is drawn over a tile"
    for i, a in enumerate(lines):
        for b in lines[i + 1 :]:
            overlap_w = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
            overlap_h = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
            assert overlap_w <= 0 or overlap_h <= 0, f"{a.text!r} {a.box} overlaps {b.text!r} {b.box}"
    changed = (layout.draw() != canvas).any(axis=2)
    boxed = np.zeros_like(changed)
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert changed[y0:y1, x0:x1].any(), f"{line.text!r} left no ink"
        boxed[y0:y1, x0:x1] = True
    assert not (changed & ~boxed).any(), f"ink outside every box, e.g. at (y,x) {np.argwhere(changed & ~boxed)[0]}"
    return [(line.text, line.box) for line in lines]


def assert_captions_whole(layout: Sheet, rows: list[list[Tile]]) -> None:
    """Each tile's caption is drawn whole (wrapped, never cut) in its own cell, row by row."""
    cells: dict[tuple[int, int, int, int], str] = {}
    for line in layout.lines:
        if line.anchor == "ms":
            cells[line.cell] = cells.get(line.cell, "") + line.text
    ordered = [cells[cell] for cell in sorted(cells, key=lambda cell: (cell[1], cell[0]))]
    assert len(ordered) == sum(len(row) for row in rows)
    for drawn, tile in zip(ordered, [tile for row in rows for tile in row]):
        assert squash(drawn).startswith(squash(tile.caption)), (drawn, tile.caption)


def strings(texts: list[tuple[str, object]]) -> list[str]:
    return [text for text, _ in texts]


def squash(text: str) -> str:
    """``text`` without its white space: a wrapped text squashes to the same as the unwrapped."""
    return "".join(text.split())


def drawn_whole(text: str, texts: list[tuple[str, object]]) -> bool:
    """Whether ``text`` is drawn whole, in one text or wrapped over consecutive lines."""
    return squash(text) in squash("".join(strings(texts)))


# ----------------------------------------------------------------------------- wrapping


@pytest.mark.parametrize(("measure", "size"), [(text_width, 9), (pixel_width, 12)])  # matplotlib's points, the sheet's pixels
def test_wrap_text_keeps_every_character_and_every_line_within_its_width(measure, size):
    title = "seed 0: " + "; ".join(f"rotate(limit={i}, p=0.5)" for i in range(12)) + "; " + "x" * 90
    for width in (120, 300, 700):
        lines = wrap_text(title, width, size, weight="bold", breaks=("; ", " "), measure=measure)
        assert all(measure(line, size, "bold") <= width for line in lines)
        assert squash("".join(lines)) == squash(title)
    lines = wrap_text(title, 400, size, weight="bold", breaks=("; ", " "), measure=measure)
    assert all(line.endswith(";") for line in lines[:-2])  # broken after a step, not inside one


def test_a_long_path_breaks_at_its_slashes():
    lines = wrap_text(f"accuracy 0.9806 on 360 images: run (best.pt) on {LONG_PATH}", 260, 9)
    assert lines[0].startswith("accuracy 0.9806")
    assert all(text_width(line, 9) <= 260 for line in lines)
    assert all(line.endswith("/") for line in lines[1:-1])
    assert squash("".join(lines)) == squash(f"accuracy 0.9806 on 360 images: run (best.pt) on {LONG_PATH}")


# ----------------------------------------------------------------------------- contact sheets


@pytest.mark.parametrize(
    ("image", "spec", "factor", "size"),
    [
        ("chelsea.jpg", "crop(size=24, padding=4)", 7, (24, 24)),  # the README's crop: 24 px photos, not specks
        ("coffee.jpg", "crop(size=[12, 40])", 4, (12, 40)),
    ],
)
def test_small_tiles_are_enlarged_with_whole_pixels_and_say_their_true_size(image, spec, factor, size):
    pipeline = augkit.load_pipeline(spec)
    sources = collect_sources([PHOTOS / image], rows=1, seed=0)
    (row,) = build_rows(pipeline, sources, n=2, stages=False)
    layout = sheet([row], "t")
    texts = strings(assert_sheet_fits(layout))
    tile = row[1].image
    assert tile.shape[:2] == size
    enlarged = np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)  # nearest: each pixel a block
    assert max(enlarged.shape[:2]) >= TILE // 2  # readable whatever the crop
    canvas = layout.draw()
    _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(canvas, enlarged, cv2.TM_SQDIFF))
    h, w = enlarged.shape[:2]
    np.testing.assert_array_equal(canvas[y : y + h, x : x + w], enlarged)  # drawn exactly so on the sheet
    assert f"{size[0]}x{size[1]} px ×{factor}" in texts
    h, w = sources[0].image.shape[:2]
    assert any(text.startswith(f"{h}x{w} px ×0.") for text in texts)  # the source: height x width, shrunk


def test_an_8x8_digit_is_enlarged_to_a_readable_tile():
    pipeline = augkit.load_pipeline("hflip(p=1)")
    (row,) = build_rows(pipeline, collect_sources([DIGITS], rows=1, seed=0), n=1, stages=False)
    texts = strings(assert_sheet_fits(sheet([row], "t")))
    assert texts.count("8x8 px ×22") == 2


def test_a_landscape_source_is_captioned_height_by_width(tmp_path, write_png):
    path = write_png(tmp_path / "wide.png", np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    (row,) = build_rows(augkit.load_pipeline("hflip(p=1)"), collect_sources([path], rows=1, seed=0), n=1, stages=False)
    assert "30x50 px ×3" in [line.text for line in sheet([row], "t").lines]


def test_captions_never_show_a_signed_zero():
    rotate, brightness = augkit.load_pipeline("rotate(limit=10, p=1); brightness(p=1)").transforms
    assert rotate.describe({"angle": -0.04}) == "rot 0.0°"
    assert rotate.describe({"angle": 0.04}) == "rot 0.0°"
    assert rotate.describe({"angle": -0.06}) == "rot -0.1°"
    assert rotate.describe({"angle": 14.96}) == "rot +15.0°"
    assert brightness.describe({"delta": -0.004}) == "bright 0.00"


def test_stages_mark_the_steps_that_did_not_apply():
    spec = "crop(size=24); rotate(limit=15, p=0); OneOf(transforms=[Blur(p=1), GaussNoise(p=1)], p=1); hflip(p=1)"
    (row,) = build_rows(augkit.load_pipeline(spec), collect_sources([PHOTOS / "rocket.jpg"], rows=1, seed=0), n=1, stages=True)
    captions = [tile.caption for tile in row[1:]]
    assert captions[0].startswith("crop (") and captions[1] == "rotate: skipped (p=0)" and captions[4] == "hflip"
    blur, noise = captions[2:4]  # the OneOf picked one of them: the other says so
    assert blur.startswith("Blur") and noise.startswith("GaussNoise")
    assert sorted([blur.endswith(": skipped (in OneOf)"), noise.endswith(": skipped (in OneOf)")]) == [False, True]
    assert [tile.skipped for tile in row[1:]] == [False, True, "skipped" in blur, "skipped" in noise, False]
    texts = strings(assert_sheet_fits(sheet([row], "t")))
    assert "rotate: skipped (p=0)" in texts
    assert "24x24 px ×7" in texts  # the skipped step has no size: it drew nothing


LONG_PIPELINE = ("crop(size=24, padding=2, mode=random, border=reflect); rotate(limit=15, p=0.5); brightness(limit=0.2, p=0.5); "
                 "contrast(limit=0.3, p=0.9); OneOf(transforms=[Blur, GaussNoise], p=0.3); RandomGamma(p=0.3); hflip")


@pytest.mark.parametrize(
    ("inputs", "spec", "n", "stages"),
    [
        ([PHOTOS], None, 6, False),  # the default sheet
        ([PHOTOS / "chelsea.jpg"], LONG_PIPELINE, 1, False),  # two tiles under a long title
        ([PHOTOS / "chelsea.jpg"], "rotate(limit=15, p=0.5)", 1, True),  # the narrowest stages sheet
        ([PHOTOS / "camera.png", DIGITS], LONG_PIPELINE, 1, True),
    ],
)
def test_sheet_texts_stay_inside_apart_and_off_the_tiles(tmp_path, inputs, spec, n, stages):
    from augkit.pipeline.spec import format_inline
    from augkit.preview import DEFAULT_PIPELINE

    pipeline = augkit.load_pipeline(spec if spec is not None else DEFAULT_PIPELINE)
    sources = collect_sources(inputs, rows=2, seed=0)
    long_name = tmp_path / ("a-photo-with-a-name-longer-than-any-tile-" * 3 + ".png")
    shutil.copy(PHOTOS / "coffee.jpg", long_name)
    sources += collect_sources([long_name], rows=1, seed=0)
    rows = build_rows(pipeline, sources, n=n, stages=stages)
    title = f"seed {pipeline.seed}: {format_inline(pipeline.to_spec())}"
    layout = sheet(rows, title)
    texts = assert_sheet_fits(layout)  # inside, apart, on white, ink where measured
    assert_captions_whole(layout, rows)
    assert drawn_whole(title, texts)  # wrapped, never cut off


# ----------------------------------------------------------------------------- the run's figures


def _rows(epochs: int) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 1.5 / e, "val_loss": 1.2 / e**0.5, "train_acc": 1 - 0.4 / e**1.5,
             "val_acc": 0.97 - 0.3 / e**2} for e in range(1, epochs + 1)]  # fmt: skip


def test_curves_show_the_generalisation_gap_and_the_error_rate_on_a_log_axis():
    from augkit.train.plots import draw_curves

    rows = _rows(8)
    figure = draw_curves(rows, "run: mlp 64x32, tanh")
    loss, error, gap = figure.axes
    assert error.get_yscale() == "log" and "1 − accuracy" in error.get_ylabel()
    (line,) = [line for line in gap.get_lines() if line.get_label() == "train − val"]
    np.testing.assert_allclose(line.get_ydata(), [r["train_acc"] - r["val_acc"] for r in rows])
    assert all(axes.get_legend() is not None for axes in figure.axes)


def test_a_training_set_learnt_to_100_percent_keeps_the_error_rate_on_a_log_axis():
    from augkit.train.plots import draw_curves

    rows = _rows(8)
    for row in rows[4:]:
        row["train_acc"] = 1.0  # the default run's digits: no training error left after a few epochs
    figure = draw_curves(rows)
    error, gap = figure.axes[1:]
    assert error.get_yscale() == "symlog" and error.get_ylim()[0] <= 0  # zero shown as 0, the rest in decades
    assert gap.get_yscale() == "symlog"  # -0.3 at epoch 1 and +0.03 at the end, both readable
    assert_texts_fit(figure)


def test_the_curves_title_names_the_runs_tricks():
    from augkit.train.config import TrainConfig
    from augkit.train.plots import describe_tricks

    config = TrainConfig(model="mlp", hidden=(64, 32), activation="tanh", init="normal", init_std=0.02, batchnorm=False,
                         dropout=0.3, weight_decay=1e-4, augment="crop(size=8, padding=1); hflip", optimizer="adam", lr=0.001)  # fmt: skip
    tricks = describe_tricks(config)
    for trick in ("mlp 64x32", "tanh", "init normal(0.02)", "no batchnorm", "dropout 0.3", "L2 0.0001",
                  "augment crop(size=8, padding=1); hflip", "standardized", "adam lr 0.001"):  # fmt: skip
        assert trick in tricks
    assert "no dropout" in describe_tricks(TrainConfig()) and "no augmentation" in describe_tricks(TrainConfig())


@pytest.mark.parametrize("epochs", [1, 60])
@pytest.mark.parametrize("title", ["r", "run-20261126-101500: " + "cnn 32-64, relu, init kaiming_normal, batchnorm, " * 4 + LONG_PATH])
def test_curves_keep_their_text_inside_and_apart(epochs, title):
    from augkit.train.plots import draw_curves

    assert drawn_whole(title, assert_texts_fit(draw_curves(_rows(epochs), title)))


@pytest.mark.parametrize("n", [2, 10, 40, 150])
@pytest.mark.parametrize("long_names", [False, True])
def test_confusion_matrices_keep_their_text_inside_and_apart(n, long_names):
    from augkit.train.plots import draw_confusion

    rng = np.random.default_rng(n)
    confusion = rng.integers(0, 3, (n, n)) + np.diag(rng.integers(100, 12000, n))
    classes = [f"{'a-class-with-a-really-long-name-' if long_names else 'c'}{i}" for i in range(n)]
    title = f"accuracy 0.9806 on {confusion.sum()} images: run (best.pt) on {LONG_PATH}"
    texts = assert_texts_fit(draw_confusion(confusion, classes, title))
    assert drawn_whole(title, texts) and any(text.startswith("accuracy 0.9806 on") for text in strings(texts))


# describe_tricks of a run with most tricks on: the longest titles a run's pictures carry.
TRICKS = ("cnn 32-64-128, leaky_relu(0.01), init normal(0.02), batchnorm, dropout 0.3, L2 0.0005, L1 1e-05, "
          "augment crop(size=24, padding=4); rotate(limit=15); hflip; brightness(limit=0.2), standardized, "
          "label smoothing 0.1, clip 1, adamw lr 0.001 cosine")  # fmt: skip


def _layer(name: str, scale: float = 1.0) -> dict:
    hist = np.histogram(np.random.default_rng(0).normal(0, scale, 5000), bins=40, range=(-4, 4))[0]
    return {"layer": name, "hist": hist.tolist(), "range": [-4, 4], "std": scale, "saturated": 0.2, "dead": 0.1}


@pytest.mark.parametrize("count", [1, 9])
def test_diagnosis_and_probe_keep_their_text_inside_and_apart(count):
    from augkit.train.plots import draw_diagnosis, draw_probe

    layers = [_layer(f"stages.{i}.blocks.0.a_long_activation_name_{i}", 1 + i / 4) for i in range(count)]
    history = {row["layer"]: {"steps": [0, 10, 20], "hist": [row["hist"]] * 3, "range": [-4, 4]} for row in layers}
    assert_texts_fit(draw_diagnosis(layers, history, title=f"run (best.pt) on {LONG_PATH}: {TRICKS}"))
    cases = [(f"tanh, normal 0.0{i}", layers) for i in range(1, count + 1)]
    assert_texts_fit(draw_probe(cases, title="MLP without biases, depth 6, width 4096, batch 16 of unit-Gaussian inputs, seed 0"))


# ----------------------------------------------------------------------------- ablation


def _bar(label: str, acc: float, std: float = 0.002, **extra) -> dict:
    curve = [acc - 0.2, acc - 0.05, acc] if not math.isnan(acc) else []
    return {"label": label, "acc": acc, "acc_std": std, "gap": 0.02, "gap_std": 0.004, "curve": curve, **extra}


def _error_bar_boxes(axes) -> list:
    """The window boxes of the error bars (and caps) drawn in ``axes``."""
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import Bbox

    boxes = []
    for collection in axes.findobj(LineCollection):
        for segment in collection.get_segments():
            if len(segment):
                boxes.append(Bbox(axes.transData.transform(segment)[[0, -1]]))
    return boxes


@pytest.mark.parametrize("found", [True, False])
def test_the_lr_range_test_keeps_its_text_inside_and_apart(found):
    from augkit.train.lr_find import LRFinding, draw_lr_find, suggest

    lrs = list(np.logspace(-7, 1, 100))
    losses = list(2.3 - np.tanh(np.log10(lrs) + 3) + np.where(np.log10(lrs) > 0, 5 * np.log10(lrs), 0))
    if not found:
        losses = list(np.linspace(2.3, 9, 100))
    minimum, steepest = suggest(lrs, losses)
    assert (minimum is not None) == found
    finding = LRFinding(lrs, losses, losses, None if minimum is None else minimum / 10, None if minimum is None else minimum / 10,
                        minimum, steepest, "reached --max-lr 10")  # fmt: skip
    assert_texts_fit(draw_lr_find(finding, title=f"lr range test: resnet on {LONG_PATH}, sgd, batch 64 (reached --max-lr 10)"))


def test_the_ablation_accuracy_axis_tells_0978_from_0981():
    from augkit.train.plots import draw_ablation

    bars = [_bar("a=1", 0.981), _bar("a=2", 0.978), _bar("a=3", 0.1028, std=0.0)]  # one at chance: drawn off the axis
    figure = draw_ablation([{"title": "t", "chance": 0.1, "seeds": 3, "bars": bars}])
    texts = assert_texts_fit(figure)
    accuracy = figure.subfigs[0].axes[0]
    low, high = accuracy.get_xlim()
    assert high - low < 0.05  # zoomed to the data, not 0..1
    first, second = (accuracy.transData.transform((x, 0))[0] for x in (0.981, 0.978))
    assert first - second > 40  # pixels apart
    assert "◀: far below, off the axis" in accuracy.get_xlabel() and "0.1028 ± 0.0000" in strings(texts)
    for axes in figure.subfigs[0].axes[:2]:  # the values never sit on an error bar
        for box in _error_bar_boxes(axes):
            for text, text_box in texts:
                assert not text_box.overlaps(box), text


def test_ablation_ties_legends_and_seeds_are_said_as_they_are():
    from augkit.train.plots import draw_ablation

    bars = [_bar("a=1", 0.97, rank=1, tie=True), _bar("a=2", 0.97, rank=1, tie=True), _bar("a=3", 0.95, rank=3),
            _bar("a=4", math.nan, rank=4)]  # fmt: skip
    one = draw_ablation([{"title": "one seed", "chance": None, "seeds": 1, "bars": bars}])
    texts = strings(assert_texts_fit(one))
    assert texts.count("0.9700 tie") == 2 and "0.9500" in texts and "failed" in texts
    assert texts.count("★ a=1") == 2 and "★ a=2" in texts  # both best, in the labels and the legend
    assert not any("mean" in text or "±" in text for text in texts), texts
    curves = one.subfigs[0].axes[2]
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["★ a=1", "★ a=2", "a=3"]
    three = strings(assert_texts_fit(draw_ablation([{"title": "t", "chance": None, "seeds": 3, "bars": bars}])))
    assert any("mean ± std over 3 seeds" in text for text in three) and "0.9700 ± 0.0020 tie" in three


@pytest.mark.parametrize("count", [1, 14])
def test_ablation_pictures_keep_their_text_inside_and_apart(count):
    from augkit.train.plots import draw_ablation

    long = "augment=crop(size=64, padding=4); hflip; RandomGamma(p=0.3)\nweight_decay=0.0005\ndropout=0.5"
    bars = [_bar(long if i % 3 == 0 else f"dropout={i / 20}", 0.99 - i * 0.004, rank=i + 1) for i in range(count)]
    panels = [{"title": "A study with a title long enough to need wrapping: " + "words " * 40, "chance": 0.1, "seeds": 2, "bars": bars},
              {"title": "validation accuracy", "chance": 0.5, "seeds": 1, "bars": bars[:1]}]  # fmt: skip
    assert_texts_fit(draw_ablation(panels))


def test_report_ranks_tie_equal_means_to_four_decimals():
    from augkit.train.report import Configuration, _ranks

    def configuration(*accs: float) -> Configuration:
        return Configuration(None, {}, [{"status": "ok", "best_val_acc": acc} for acc in accs])  # type: ignore[arg-type]

    ranked = [configuration(0.9736), configuration(0.9722), configuration(0.97081), configuration(0.97079),
              Configuration(None, {}, [{"status": "failed"}])]  # type: ignore[arg-type]  # fmt: skip
    assert _ranks(ranked) == [(1, False), (2, False), (3, True), (3, True), (5, False)]


# ----------------------------------------------------------------------------- the commands


def test_train_and_evaluate_write_the_figures_they_are_checked_for(tmp_path):
    """A real run on data under a long path: curves.png is the checked figure with the run's
    tricks in its title, confusion.png the checked figure with the accuracy and the whole path."""
    from augkit.train.config import TrainConfig
    from augkit.train.evaluate import confusion_title
    from augkit.train.plots import describe_tricks, draw_confusion, draw_curves, plot_confusion, plot_curves

    data = tmp_path.joinpath(*[f"a-rather-long-folder-name-{i}" for i in range(5)], "digits")
    shutil.copytree(DIGITS, data)
    run = tmp_path / "run"
    args = ["train", str(data), "--model", "mlp", "--hidden", "32", "--dropout", "0.2", "--epochs", "2", "-q", "-o", str(run)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = TrainConfig.load(run / "config.yaml")
    with open(run / "metrics.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    title = f"run: {describe_tricks(config)}"
    assert "dropout 0.2" in title and "mlp 32" in title
    # metrics.csv rounds the numbers the run plotted, so the curves may differ by a pixel: the
    # band above the panels, the title, must be the same pixels.
    figure = draw_curves(rows, title)
    texts = assert_texts_fit(figure)
    (box,) = [box for text, box in texts if squash(text) == squash(title)]
    band = math.ceil(figure.get_figheight() * 110 - box.y0) + 2
    again = cv2.imread(str(plot_curves(rows, tmp_path / "again.png", title=title)))
    np.testing.assert_array_equal(cv2.imread(str(run / "curves.png"))[:band], again[:band])

    evaluated = CliRunner().invoke(cli, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    title = confusion_title(run, Path(report["checkpoint"]), report["data"], report["accuracy"], report["images"])
    assert str(data) in title and title.startswith("accuracy ")
    confusion = np.array(report["confusion"])
    again = plot_confusion(confusion, report["classes"], tmp_path / "again-confusion.png", title=title)
    assert again.read_bytes() == (run / "confusion.png").read_bytes()
    assert drawn_whole(title, assert_texts_fit(draw_confusion(confusion, report["classes"], title)))
