"""The contact sheet draws targets: masks tinted only inside them, boxes outlined in their
class's colour where the augmented boxes are, keypoints as dots where they land, on every tile
and stage; tags inside their tiles, never over a caption or another tag; and a sheet without
targets exactly as before (augkit.preview's ``Marks``, ``draw_marks``).

Targets are drawn by hand on the sample photos (a cat's eyes, a cup and its spoon, an
astronaut's face); where they should be drawn is found from the pipeline's own ``replay`` with
the targets declared in another box format than the sheet's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit
from augkit.cli.main import cli
from augkit.errors import AugkitError, AugkitWarning
from augkit.io.images import read_image
from augkit.pipeline.core import Pipeline
from augkit.preview import (
    PALETTE,
    TAG_PX,
    Marks,
    Source,
    Tile,
    build_rows,
    collect_sources,
    contact_sheet,
    draw_marks,
    pixel_width,
    sheet,
)
from augkit.preview.marks import _fitting
from tests.test_pictures import assert_captions_whole, assert_sheet_fits

PHOTOS = augkit.sample_data_dir() / "photos"
SPEC = "crop(size=0.7, mode=random_resized, scale=[0.4, 1.0]); rotate(limit=25, p=0.8); hflip"
CUP_BOX = [145, 15, 355, 200]  # coffee.jpg, Pascal VOC [x_min, y_min, x_max, y_max]


def ellipses(shape: tuple[int, ...], *items: tuple[int, tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """An H x W uint8 label mask of filled ellipses: (label, centre x, y, semi-axes)."""
    mask = np.zeros(shape[:2], np.uint8)
    for label, centre, axes in items:
        cv2.ellipse(mask, centre, axes, 0, 0, 360, label, -1)
    return mask


def coffee(**marks) -> Source:
    return Source(read_image(PHOTOS / "coffee.jpg"), "coffee.jpg", 2, Marks(**marks) if marks else None)


def coffee_mask() -> np.ndarray:  # the saucer (1), the coffee (2), the spoon's bowl (3)
    return ellipses((341, 512), (1, (232, 195), (168, 135)), (2, (249, 110), (95, 55)), (3, (310, 240), (35, 30)))


def declared(targets: dict, spec: str = SPEC) -> Pipeline:
    """``spec`` with ``targets`` declared: the same draws the sheet's pipeline makes."""
    return augkit.load_pipeline({**augkit.load_pipeline(spec).to_spec(), "targets": targets})


def tiles_of(layout, rows) -> list[tuple[np.ndarray, object, tuple[int, int, int, int]]]:
    """(drawn picture, tile, its place on the canvas) of every tile, row by row."""
    picture = layout.draw()
    return [(picture[y0:y1, x0:x1], tile, (x0, y0, x1, y1))
            for row, places in zip(rows, layout.tiles) for tile, (x0, y0, x1, y1) in zip(row, places)]  # fmt: skip


def outcomes(pipeline: Pipeline, image: np.ndarray, index: int, epochs: range, **targets) -> list:
    """What each tile of a variants row shows: the source's targets (None), then each epoch's."""
    return [None] + [pipeline.replay(image, index=index, epoch=epoch, **targets)[0] for epoch in epochs]


def drawn_box(box, true_shape, picture) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1 on an image of ``true_shape``) in the pixels of its drawn ``picture``."""
    sy, sx = picture.shape[0] / true_shape[0], picture.shape[1] / true_shape[1]
    x0, y0, x1, y1 = box
    return round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)


def outlined(picture: np.ndarray, box, colour) -> bool:
    """Whether a line of ``colour`` runs along the bottom edge of ``box`` (drawn pixels, x1 and
    y1 exclusive) and the lower half of its right edge (the tag may sit inside its top-left
    corner), within a pixel of rounding."""
    x0, y0, x1, y1 = box
    height, width = picture.shape[:2]
    bottom = any((picture[y, x0 + 3 : x1 - 3] == colour).all() for y in range(max(y1 - 3, 0), min(y1 + 1, height)))
    right = any((picture[(y0 + y1) // 2 : y1 - 3, x] == colour).all() for x in range(max(x1 - 3, 0), min(x1 + 1, width)))
    return bottom and right


# ----------------------------------------------------------------------------- where marks are drawn


@pytest.mark.parametrize(
    ("spec", "box", "stages"),
    [
        (SPEC, CUP_BOX, False),
        (SPEC, CUP_BOX, True),
        ("crop(size=48); hflip", [64, 60, 400, 330], False),  # the saucer in 48 px crops, drawn ×3
    ],
)
def test_a_box_is_outlined_in_its_class_colour_where_the_augmented_box_is(spec, box, stages):
    source = coffee(bboxes=[box], labels=[2], classes=("saucer", "spoon", "cup"))
    rows = build_rows(augkit.load_pipeline(spec), [source], n=6, stages=stages, epoch=1)
    layout = sheet(rows, "t")
    # The check: in COCO's format, x, y, width, height (the sheet passes Pascal VOC's).
    check = declared({"bboxes": {"format": "coco"}}, spec)
    x0, y0, x1, y1 = box
    given = {"bboxes": [[x0, y0, x1 - x0, y1 - y0]], "labels": ["cup"]}
    if stages:  # the steps that applied (the others' cells are blank)
        expected = [None] + [out for _, out in check.stages(source.image, index=2, epoch=1, **given)]
    else:
        expected = outcomes(check, source.image, 2, range(1, 7), **given)
    shown = [drawn for drawn in tiles_of(layout, rows) if not drawn[1].skipped]
    assert len(shown) == len(expected)
    drawn = 0
    for (picture, tile, _), out in zip(shown, expected):
        boxes = [[x0, y0, x1, y1]] if out is None else [[x, y, x + w, y + h] for x, y, w, h in out.bboxes.tolist()]
        shape = source.image.shape if out is None else out.image.shape
        assert len(tile.marks.bboxes) == len(boxes), tile.caption
        for box in boxes:
            assert outlined(picture, drawn_box(box, shape, picture), PALETTE[2]), (tile.caption, box)
            drawn += 1
    assert drawn >= (3 if stages else 5)  # most tiles keep the cup


def test_a_mask_tints_only_inside_itself_on_every_tile():
    source = coffee(mask=coffee_mask())
    pipeline = augkit.load_pipeline(SPEC)
    rows = build_rows(pipeline, [source], n=6, stages=False)
    plain = sheet(build_rows(pipeline, [coffee()], n=6, stages=False), "t")
    layout = sheet(rows, "t")
    assert layout.tiles == plain.tiles and layout.lines == plain.lines  # the marks change no layout
    expected = outcomes(pipeline, source.image, 2, range(6), mask=source.targets.mask)
    for (picture, tile, (x0, y0, x1, y1)), out in zip(tiles_of(layout, rows), expected):
        mask = source.targets.mask if out is None else out.mask
        mask = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)  # as the tile was shrunk
        before = plain.canvas[y0:y1, x0:x1].astype(np.int16)
        changed = (picture != before).any(axis=2)
        assert not (changed & (mask == 0)).any(), tile.caption  # nothing outside the mask
        assert changed[mask > 0].mean() > 0.97, tile.caption  # everything inside
        # A tint: 55% the pixel, 45% the label's colour (the outline, a pixel wide, opaque).
        inner = cv2.erode((mask == 2).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        tinted = before[inner] * 0.55 + np.array(PALETTE[2]) * 0.45
        assert inner.sum() > 100 and np.abs(picture[inner] - tinted).max() <= 1
    np.testing.assert_array_equal(plain.canvas[:, :12], layout.canvas[:, :12])


def test_keypoints_are_dots_of_their_own_colour_where_they_land():
    points = [[194.5, 97.5], [239.5, 97.5]]  # the astronaut's eyes: a flip swaps their places, not their colours
    image = read_image(PHOTOS / "astronaut.jpg")
    source = Source(image, "astronaut.jpg", 1, Marks(keypoints=points))
    rows = build_rows(augkit.load_pipeline(SPEC), [source], n=6, stages=False)
    expected = outcomes(declared({"keypoints": {"format": "xy", "label_fields": ["eye"]}}), image, 1, range(6),
                        keypoints=points, eye=[0, 1])  # fmt: skip
    seen = 0
    for (picture, tile, _), out in zip(tiles_of(sheet(rows, "t"), rows), expected):
        landed = zip(points, [0, 1]) if out is None else zip(out.keypoints.tolist(), out.fields["eye"])
        shape = image.shape if out is None else out.image.shape
        for (x, y), eye in landed:
            col, row = int(x * picture.shape[1] / shape[1]), int(y * picture.shape[0] / shape[0])
            if 3 <= col < picture.shape[1] - 3 and 3 <= row < picture.shape[0] - 3:
                assert (picture[row, col] == PALETTE[int(eye)]).all(), (tile.caption, eye)
                assert picture[row, col - 4 : col + 5].min() < 60  # a dark ring around it
                seen += 1
    assert seen >= 8


# ----------------------------------------------------------------------------- text and layout


def test_tags_stay_inside_their_tiles_apart_from_each_other_and_the_captions():
    cat = read_image(PHOTOS / "chelsea.jpg")
    sources = [
        coffee(mask=coffee_mask(), bboxes=[CUP_BOX, [265, 50, 370, 280]], labels=[2, 3],
               classes=("saucer", "coffee", "cup", "spoon")),
        Source(cat, "chelsea.jpg", 0, Marks(bboxes=[[0, 0, 451, 300], [440, 290, 451, 300]], labels=[0, 7],
                                            keypoints=[[175, 115], [318, 133]], classes=("a-cat-with-a-long-name",))),
    ]  # fmt: skip
    for stages in (False, True):
        rows = build_rows(augkit.load_pipeline(SPEC + "; brightness(p=0.5)"), sources, n=4, stages=stages)
        layout = sheet(rows, "t")
        assert_sheet_fits(layout)  # captions on white, apart; the tags are part of the tiles' pictures
        assert_captions_whole(layout, rows)
        plain = sheet([[Tile(tile.image, tile.caption, tile.skipped, tile.size) for tile in row] for row in rows], "t")
        outside = np.ones(layout.canvas.shape[:2], bool)
        for x0, y0, x1, y1 in (place for places in layout.tiles for place in places):
            outside[y0:y1, x0:x1] = False
        assert (layout.canvas[outside] == plain.canvas[outside]).all()  # every mark inside its tile


def test_tags_at_one_corner_are_stacked_not_hidden():
    picture = np.full((120, 160, 3), 128, np.uint8)
    marks = Marks(bboxes=[[4, 4, 100, 100]] * 3, labels=[0, 1, 2], classes=("one", "two", "three"))
    drawn = draw_marks(picture, marks)
    column = drawn[:, 6]  # through every tag's left end
    rows_of = {label: np.flatnonzero((column == PALETTE[label]).all(axis=1)) for label in range(3)}
    assert all(len(rows) >= 8 for rows in rows_of.values()), rows_of  # each tag shows whole, none under another
    assert len(set(np.concatenate(list(rows_of.values())).tolist())) == sum(len(r) for r in rows_of.values())


def test_a_tag_at_the_edge_is_kept_inside_the_picture_whole():
    picture = np.full((60, 160, 3), 200, np.uint8)
    name = "a-long-class-name"
    drawn = draw_marks(picture, Marks(bboxes=[[155, 55, 160, 60]], labels=[4], classes=("a", "b", "c", "d", name)))
    rows, cols = np.nonzero((drawn == PALETTE[4]).all(axis=2))
    assert cols.max() == 159 and rows.max() == 59  # pushed left and up from the corner, not cut
    assert cols.max() - cols.min() + 1 >= pixel_width(name, TAG_PX, "bold") + 4
    # Narrower than its name, a picture shows as much of the name as fits, and says so.
    narrow = draw_marks(picture[:, :60], Marks(bboxes=[[0, 20, 60, 60]], labels=[0], classes=(name,)))
    tag = (narrow == PALETTE[0]).all(axis=2)
    spans = np.flatnonzero(tag[:20].any(axis=0))  # above the box
    assert spans.min() == 0 and spans.max() >= 45
    assert tag[:20][tag[:20].any(axis=1), spans.max()].all()  # its right end is the tag's, not a letter cut off
    assert _fitting(name, 56).endswith("…") and pixel_width(_fitting(name, 56), TAG_PX, "bold") <= 56


# ----------------------------------------------------------------------------- no targets, as before


def test_a_sheet_without_targets_draws_nothing_over_its_tiles():
    pipeline = augkit.load_pipeline(SPEC)
    sources = [coffee(), Source(read_image(PHOTOS / "camera.png"), "camera.png", 0)]
    rows = build_rows(pipeline, sources, n=3, stages=False)
    assert all(tile.marks is None for row in rows for tile in row)
    with_marks = build_rows(pipeline, [coffee(bboxes=[CUP_BOX]), sources[1]], n=3, stages=False)
    assert [tile.caption for row in rows for tile in row] == [tile.caption for row in with_marks for tile in row]
    for plain, marked in zip((t for row in rows for t in row), (t for row in with_marks for t in row)):
        np.testing.assert_array_equal(plain.image, marked.image)  # the same pixels under the marks


def test_no_targets_gives_the_sheet_of_the_images_alone(tmp_path, write_png):
    root = segmentation_folder(tmp_path / "seg", write_png)
    runner = CliRunner()
    args = ["preview", "-p", SPEC, "-n", "3", "--rows", "2"]
    for name, extra in (("marked", [str(root)]), ("bare", [str(root), "--no-targets"]), ("flat", [str(root / "images")])):
        result = runner.invoke(cli, [*args, *extra, "-o", str(tmp_path / f"{name}.png")])
        assert result.exit_code == 0, result.output
    bare, flat, marked = ((tmp_path / f"{name}.png").read_bytes() for name in ("bare", "flat", "marked"))
    assert bare == flat  # the same images, indices and captions: the same bytes
    assert marked != bare
    a, b = (cv2.imread(str(tmp_path / f"{name}.png")) for name in ("marked", "bare"))
    assert a.shape == b.shape and (a != b).any(axis=2).mean() > 0.02


# ----------------------------------------------------------------------------- datasets and the stages sheet


def segmentation_folder(root: Path, write_png) -> Path:
    """images/ + masks/ of two sample photos: the cat's eyes (1, 2); the saucer, coffee, spoon."""
    (root / "images").mkdir(parents=True)
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(PHOTOS / name, root / "images" / name)
    write_png(root / "masks" / "chelsea.png", ellipses((300, 451), (1, (175, 115), (32, 28)), (2, (318, 133), (28, 26))))
    write_png(root / "masks" / "coffee.png", coffee_mask())
    return root


def coco_folder(root: Path) -> Path:
    """COCO's layout: annotations/instances_train.json naming two photos in train/, with boxes."""
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    for name in ("astronaut.jpg", "coffee.jpg"):
        shutil.copy(PHOTOS / name, root / "train" / name)
    boxes = {1: [(1, [150, 15, 155, 155]), (5, [275, 340, 237, 172]), (3, [350, 0, 110, 290])], 2: [(7, [145, 15, 210, 185])]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "astronaut.jpg", "width": 512, "height": 512},
                   {"id": 2, "file_name": "coffee.jpg", "width": 512, "height": 341}],
        "categories": [{"id": k, "name": name} for k, name in ((1, "person"), (3, "rocket"), (5, "helmet"), (7, "cup"))],
        "annotations": [{"id": 10 * image + k, "image_id": image, "category_id": category, "bbox": box}
                        for image, rows in boxes.items() for k, (category, box) in enumerate(rows)],
    }))  # fmt: skip
    return root


def test_datasets_bring_their_masks_and_boxes_with_class_names(tmp_path, write_png):
    seg = segmentation_folder(tmp_path / "seg", write_png)
    coco = coco_folder(tmp_path / "coco")
    sources = collect_sources([seg, coco], rows=2, seed=0)
    by_name = {source.label: source.targets for source in sources}
    assert set(np.unique(by_name["chelsea.jpg"].mask).tolist()) == {0, 1, 2}
    astronaut = by_name["astronaut.jpg"]
    assert astronaut.classes == ("cup", "helmet", "person", "rocket")  # the categories' names, sorted
    assert [astronaut.classes[k] for k in astronaut.labels] == ["person", "helmet", "rocket"]
    np.testing.assert_allclose(astronaut.bboxes[0], [150, 15, 305, 170])  # COCO's x, y, w, h as corners
    assert all(source.targets is None for source in collect_sources([seg, coco], rows=2, seed=0, targets=False))


def test_a_spec_declaring_another_box_format_keeps_its_settings(tmp_path):
    """The sheet passes boxes in its own format whatever the spec declares; the spec's
    min_visibility still decides which boxes a crop keeps."""
    sources = collect_sources([coco_folder(tmp_path / "coco")], rows=2, seed=0)
    spec = {**augkit.load_pipeline(SPEC).to_spec(), "targets": {"bboxes": {"format": "yolo", "min_visibility": 0.9}}}
    strict, loose = (build_rows(augkit.load_pipeline(s), sources, n=6, stages=False)
                     for s in (spec, SPEC))  # fmt: skip
    kept = [sum(len(tile.marks.bboxes) for tile in row[1:]) for rows in (strict, loose) for row in rows]
    assert sum(kept[:2]) < sum(kept[2:])


def test_stages_carry_targets_step_by_step_to_what_replay_returns():
    source = coffee(mask=coffee_mask(), bboxes=[CUP_BOX, [265, 50, 370, 280]], labels=[0, 1])
    pipeline = declared({"bboxes": {"format": "pascal_voc", "min_visibility": 0.3}})
    given = {"mask": source.targets.mask, "bboxes": [CUP_BOX, [265, 50, 370, 280]], "labels": [0, 1]}
    for epoch in range(8):
        stages = pipeline.stages(source.image, index=2, epoch=epoch, **given)
        final, applied = pipeline.replay(source.image, index=2, epoch=epoch, **given)
        assert [step.name for step, _ in stages] == [step.name for step in applied]
        last = stages[-1][1]
        np.testing.assert_array_equal(last.image, final.image)
        np.testing.assert_array_equal(last.mask, final.mask)
        np.testing.assert_allclose(last.bboxes, final.bboxes, atol=1e-4)
        assert list(last.labels) == list(final.labels)
        for _, out in stages:  # each stage's boxes lie on its own image
            h, w = out.image.shape[:2]
            assert out.mask.shape == (h, w)
            assert ((out.bboxes >= -1e-3) & (out.bboxes <= np.array([w, h, w, h]) + 1e-3)).all()
    alone = pipeline.stages(source.image, index=2, epoch=0)
    assert all(isinstance(out, np.ndarray) for _, out in alone)  # no targets: images, as before


# ----------------------------------------------------------------------------- mistakes


def test_broken_targets_are_one_line_or_passed_over(tmp_path, write_png):
    image = read_image(PHOTOS / "coffee.jpg")
    with pytest.raises(AugkitError, match="labels: one per box expected"):
        Marks(bboxes=[CUP_BOX], labels=[1, 2])
    with pytest.raises(AugkitError, match="bboxes: 4 numbers a row expected"):
        Marks(bboxes=[[1, 2, 3]])
    with pytest.raises(AugkitError, match="coffee.jpg: its mask is 10x10, the image 341x512"):
        Source(image, "coffee.jpg", 0, Marks(mask=np.zeros((10, 10), np.uint8)))
    root = segmentation_folder(tmp_path / "seg", write_png)
    write_png(root / "masks" / "coffee.png", np.zeros((20, 20), np.uint8))  # another size than its image
    with pytest.warns(AugkitWarning, match="passed over 1 unreadable"):
        sources = collect_sources([root], rows=2, seed=0)
    assert [source.label for source in sources] == ["chelsea.jpg"]


def test_a_confined_sheet_reads_no_mask_outside_its_folder(tmp_path, write_png):
    root = segmentation_folder(tmp_path / "seg", write_png)
    outside = write_png(tmp_path / "elsewhere" / "coffee.png", coffee_mask())
    (root / "masks" / "coffee.png").unlink()
    (root / "masks" / "coffee.png").symlink_to(outside)
    assert [s.label for s in collect_sources([root], rows=2, seed=0, confined=True)] == ["chelsea.jpg"]
    assert len(collect_sources([root], rows=2, seed=0)) == 2  # unconfined, the link is followed


def test_the_python_api_sheet_is_the_cli_sheet(tmp_path, write_png):
    root = segmentation_folder(tmp_path / "seg", write_png)
    result = CliRunner().invoke(cli, ["preview", str(root), "-p", SPEC, "-n", "2", "--stages", "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    pipeline = augkit.load_pipeline(SPEC)
    png = contact_sheet(pipeline, collect_sources([root], rows=4, seed=pipeline.seed), n=2, stages=True)
    assert png == (tmp_path / "s.png").read_bytes()


def test_past_max_tags_boxes_are_drawn_untagged(monkeypatch):
    from augkit.preview import marks as marks_module

    boxes = np.array([[10, 40, 60, 90], [100, 40, 150, 90]], np.float32)
    marks = marks_module.Marks(None, boxes, np.array([0, 1]), None, None, ("cat", "dog"))
    blank = np.full((120, 176, 3), 255, np.uint8)
    both = marks_module.draw_marks(blank, marks)
    monkeypatch.setattr(marks_module, "MAX_TAGS", 1)
    first = marks_module.draw_marks(blank, marks)
    above_second = (slice(20, 40), slice(100, 150))  # where the second box's tag goes, above it
    assert (both[above_second] != 255).any() and (first[above_second] == 255).all()
    assert (first[40:90, 100:150] != 255).any()  # its box is still drawn
