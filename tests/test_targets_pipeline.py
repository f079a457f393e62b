"""Targets through ``Pipeline.__call__``: the spec's ``targets``, the ``Augmented`` result, the
same draws as the image alone, and one line for every mistake (augkit.pipeline.targets)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import augkit
from augkit.errors import AugkitError, AugkitWarning, SpecError
from augkit.io.datasets import sample_data_dir
from augkit.io.images import read_image
from augkit.pipeline._albumentations import A
from augkit.pipeline.targets import Augmented

PHOTO = read_image(sample_data_dir() / "photos" / "chelsea.jpg")  # 300 x 451 x 3
BOX = [100.0, 50.0, 250.0, 150.0]  # pascal_voc: x_min, y_min, x_max, y_max


def rectangle_mask(box=BOX, label=3) -> np.ndarray:
    mask = np.zeros(PHOTO.shape[:2], np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = label
    return mask


def mask_box(mask: np.ndarray, label=3) -> list[float]:
    ys, xs = np.nonzero(mask == label)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def spec(*steps, **targets):
    return {"seed": 4, "targets": targets or {"bboxes": {"format": "pascal_voc"}, "keypoints": {"format": "xy"}},
            "steps": list(steps)}  # fmt: skip


AFFINE = {"Affine": {"rotate": [-25, 25], "scale": [0.8, 1.1], "p": 1}}


def test_without_targets_the_image_comes_back_alone():
    pipeline = augkit.load_pipeline(spec(AFFINE, "hflip"))
    assert isinstance(pipeline(PHOTO, index=0), np.ndarray)


@pytest.mark.parametrize("compile_", [False, True])
def test_the_image_is_the_one_the_image_alone_gets(compile_):
    steps = [{"crop": {"size": 0.8, "mode": "random_resized"}}, {"rotate": {"limit": 20, "p": 1}}, "hflip", {"brightness": {"p": 1}}]
    pipeline = augkit.load_pipeline({**spec(*steps), "compile": compile_})
    for index in range(4):
        alone = pipeline(PHOTO, index=index, epoch=2)
        together = pipeline(PHOTO, mask=rectangle_mask(), index=index, epoch=2).image
        if compile_:  # the plan merges the warps: OpenCV's rounding apart, the same image
            assert alone.shape == together.shape
            assert np.abs(alone.astype(np.float32) - together).mean() < 0.5
        else:
            np.testing.assert_array_equal(alone, together)


def test_a_mask_and_its_box_move_together_through_albumentations_steps():
    pipeline = augkit.load_pipeline(spec({"Affine": {"translate_px": [-40, 40], "scale": [0.7, 1.2], "p": 1}}, "hflip", "vflip"))
    for index in range(6):
        out = pipeline(PHOTO, mask=rectangle_mask(), bboxes=[BOX], labels=[3], index=index)
        assert isinstance(out, Augmented) and out.mask.shape == out.image.shape[:2]
        assert out.labels == [3]
        np.testing.assert_allclose(out.bboxes[0], mask_box(out.mask), atol=1.5)


def test_keypoints_land_where_a_one_pixel_mask_lands():
    pipeline = augkit.load_pipeline(spec({"Affine": {"translate_px": [-30, 30], "p": 1}}, "hflip"))
    x, y = 200, 120
    mask = np.zeros(PHOTO.shape[:2], np.uint8)
    mask[y, x] = 1
    for index in range(6):
        out = pipeline(PHOTO, mask=mask, keypoints=[[x + 0.5, y + 0.5]], index=index)  # the pixel's centre
        ys, xs = np.nonzero(out.mask)
        np.testing.assert_allclose(out.keypoints[0], [xs[0] + 0.5, ys[0] + 0.5], atol=1.0)


def test_boxes_that_leave_the_image_are_dropped_with_their_labels():
    pipeline = augkit.load_pipeline(spec({"Crop": {"x_min": 0, "y_min": 0, "x_max": 200, "y_max": 200}},
                                         bboxes={"format": "pascal_voc", "min_visibility": 0.5}))  # fmt: skip
    out = pipeline(PHOTO, bboxes=[[10, 10, 60, 60], [180, 10, 300, 60], [250, 250, 300, 290]], labels=[1, 2, 3], index=0)
    np.testing.assert_allclose(out.bboxes, [[10, 10, 60, 60]])  # [180, 300] keeps 20 of 120 px wide: < 0.5
    assert list(out.labels) == [1]


def test_the_same_sample_gets_the_same_targets_and_other_samples_others():
    pipeline = augkit.load_pipeline(spec(AFFINE))
    first = pipeline(PHOTO, bboxes=[BOX], labels=[0], index=7, epoch=1)
    again = augkit.load_pipeline(spec(AFFINE))(PHOTO, bboxes=[BOX], labels=[0], index=7, epoch=1)
    other = pipeline(PHOTO, bboxes=[BOX], labels=[0], index=8, epoch=1)
    np.testing.assert_array_equal(first.bboxes, again.bboxes)
    assert not np.array_equal(first.bboxes, other.bboxes)


def test_every_box_format_flips_as_its_definition_says():
    h, w = PHOTO.shape[:2]
    x0, y0, x1, y1 = BOX
    cases = {  # format: (the box given, the box after a horizontal flip: x -> w - x)
        "pascal_voc": (BOX, [w - x1, y0, w - x0, y1]),
        "coco": ([x0, y0, x1 - x0, y1 - y0], [w - x1, y0, x1 - x0, y1 - y0]),
        "yolo": ([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h],
                 [1 - (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]),
        "albumentations": ([x0 / w, y0 / h, x1 / w, y1 / h], [1 - x1 / w, y0 / h, 1 - x0 / w, y1 / h]),
    }  # fmt: skip
    for name, (given, flipped) in cases.items():
        pipeline = augkit.load_pipeline(spec({"hflip": {"p": 1}}, bboxes={"format": name}))
        np.testing.assert_allclose(pipeline(PHOTO, bboxes=[given], labels=[0]).bboxes[0], flipped, rtol=1e-5, atol=1e-4)


def test_several_masks_and_label_fields():
    pipeline = augkit.load_pipeline(spec({"hflip": {"p": 1}}, bboxes={"format": "coco", "label_fields": ["labels", "track"]}))
    masks = [rectangle_mask(), rectangle_mask([10, 10, 40, 40], 1)]
    out = pipeline(PHOTO, masks=masks, bboxes=[[10, 10, 30, 30]], labels=[5], track=["a"], index=0)
    assert len(out.masks) == 2 and out.masks[0].shape == PHOTO.shape[:2]
    assert out.fields == {"labels": [5], "track": ["a"]}


def test_targets_round_trip_through_the_spec_yaml_and_albumentations_files(tmp_path):
    declared = {"bboxes": {"format": "coco", "min_visibility": 0.3, "label_fields": ["labels"]}, "keypoints": {"format": "xyas"}}
    pipeline = augkit.load_pipeline({"seed": 1, "targets": declared, "steps": ["hflip"]})
    assert pipeline.to_spec()["targets"] == declared
    assert augkit.load_pipeline(pipeline.save(tmp_path / "p.yaml")).to_spec() == pipeline.to_spec()
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["targets"] == declared
    A.save(A.Compose([A.HorizontalFlip()], bbox_params=A.BboxParams(format="yolo", label_fields=["cls"], min_area=4),
                     keypoint_params=A.KeypointParams(format="xy", remove_invisible=False), seed=2), str(tmp_path / "a.json"))  # fmt: skip
    with pytest.warns(AugkitWarning, match="carries no seed"):  # albumentations saves none
        loaded = augkit.load_pipeline(tmp_path / "a.json")
    # albumentations' 0-pixel minimum sides (augkit's default is 1) are kept: the file means what it meant.
    assert loaded.to_spec()["targets"] == {
        "bboxes": {"format": "yolo", "label_fields": ["cls"], "min_area": 4.0, "min_width": 0.0, "min_height": 0.0},
        "keypoints": {"format": "xy", "remove_invisible": False}}  # fmt: skip
    assert A.to_dict(pipeline.compose)["transform"]["bbox_params"]["format"] == "coco"  # albumentations' file carries them too


@pytest.mark.parametrize(
    ("targets", "says"),
    [
        ({"bboxes": {"format": "cocoa"}}, "targets.bboxes.format must be one of pascal_voc, coco, yolo, albumentations"),
        ({"bboxes": {}}, "targets.bboxes needs at least a format"),
        ({"boxes": {"format": "coco"}}, "unknown target 'boxes'"),
        ({"bboxes": {"format": "coco", "min_visibility": 2}}, "targets.bboxes.min_visibility is a fraction in [0, 1]"),
        ({"bboxes": {"format": "coco", "min_area": -1}}, "min_area is a number of pixels >= 0"),
        ({"bboxes": {"format": "coco", "label_fields": "labels"}}, "label_fields must be a list of names"),
        ({"bboxes": {"format": "coco", "label_fields": ["index"]}}, "'index' is the name of an argument"),
        ({"bboxes": {"format": "coco"}, "keypoints": {"format": "xy", "label_fields": ["labels"]}}, "already a label field of bboxes"),
        ({"keypoints": {"format": "xy", "remove_invisible": "yes"}}, "remove_invisible must be true or false"),
        ({"bboxes": {"format": "coco", "clip": True, "colour": 1}}, "unknown key 'colour'"),
        ([], "'targets' maps bboxes and/or keypoints"),
    ],
)
def test_a_bad_targets_declaration_is_one_line(targets, says):
    with pytest.raises(SpecError) as raised:
        augkit.load_pipeline({"steps": ["hflip"], "targets": targets})
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_targets_the_spec_does_not_declare_are_one_line():
    plain = augkit.load_pipeline("hflip")
    with pytest.raises(AugkitError, match="declares no bboxes format: add 'targets: {bboxes: {format: pascal_voc}}'"):
        plain(PHOTO, bboxes=[BOX])
    with pytest.raises(AugkitError, match="declares no keypoints format"):
        plain(PHOTO, keypoints=[[1, 2]])
    declared = augkit.load_pipeline(spec("hflip"))
    with pytest.raises(AugkitError, match="label field 'labels' not given"):
        declared(PHOTO, bboxes=[BOX])
    with pytest.raises(AugkitError, match="labels given without the bboxes it labels"):
        declared(PHOTO, labels=[1])
    with pytest.raises(AugkitError, match="unknown argument or label field 'colour'"):
        declared(PHOTO, bboxes=[BOX], labels=[1], colour=["red"])
    with pytest.raises(AugkitError, match=r"bboxes\[1\] is \[10.0, 10.0, 5000.0, 60.0\] \(pascal_voc: x_min, y_min, x_max, "
                                          r"y_max in pixels\), outside the 451 x 300 image .* set 'clip: true'"):
        declared(PHOTO, bboxes=[BOX, [10, 10, 5000, 60]], labels=[1, 2])  # x_max past the image
    with pytest.raises(AugkitError, match=r"bboxes\[0\] is \[10.0, 10.0, -5.0, 20.0\] \(coco: .*\): it has no area"):
        augkit.load_pipeline(spec("hflip", bboxes={"format": "coco"}))(PHOTO, bboxes=[[10, 10, -5, 20]], labels=[1])
    clipped = augkit.load_pipeline(spec({"hflip": {"p": 1}}, bboxes={"format": "coco", "clip": True}))
    np.testing.assert_allclose(clipped(PHOTO, bboxes=[[400, 10, 80, 20]], labels=[1]).bboxes, [[0, 10, 51, 20]], atol=1e-3)
    with pytest.raises(AugkitError, match="mask"):
        declared(PHOTO, mask=np.zeros((10, 10), np.uint8))  # another size than the image


def test_replay_with_targets_gives_the_result_and_the_draws():
    pipeline = augkit.load_pipeline(spec(AFFINE, {"hflip": {"p": 1}}))
    out, applied = pipeline.replay(PHOTO, index=3, bboxes=[BOX], labels=[1])
    assert isinstance(out, Augmented) and [a.name for a in applied] == ["Affine", "hflip"]
    np.testing.assert_array_equal(out.bboxes, pipeline(PHOTO, bboxes=[BOX], labels=[1], index=3).bboxes)


def test_the_compiled_plan_moves_boxes_and_keypoints_as_the_steps_do():
    # Merged warps (crops, rotations, flips), a table, a step the plan runs as it is, a second warp.
    steps = [{"crop": {"size": 0.8, "mode": "random_resized", "scale": [0.3, 1]}}, {"rotate": {"limit": 30, "p": 1}},
             "hflip", "vflip", {"brightness": {"p": 1}}, {"GaussNoise": {"p": 1}}, {"crop": {"size": 200, "padding": 20}},
             {"rotate": {"limit": 20, "p": 1, "border": "constant", "rotate_method": "ellipse"}},
             {"crop": {"size": 0.5, "mode": "random_resized"}}]  # fmt: skip
    targets = {"bboxes": {"format": "pascal_voc", "min_visibility": 0.2}, "keypoints": {"format": "xyas", "label_fields": ["names"]}}
    compiled = augkit.load_pipeline({"seed": 2, "targets": targets, "steps": steps})
    one_by_one = augkit.load_pipeline({"seed": 2, "targets": targets, "steps": steps, "compile": False})
    given = {"bboxes": [BOX, [10, 10, 40, 60], [400, 250, 450, 300]], "labels": [1, 2, 3],
             "keypoints": [[120, 60, 30, 1], [300, 200, 0, 2], [5, 290, 100, 1]], "names": ["eye", "ear", "paw"]}  # fmt: skip
    kept = 0
    for index in range(30):
        fast, slow = compiled(PHOTO, index=index, **given), one_by_one(PHOTO, index=index, **given)
        np.testing.assert_array_equal(fast.image, compiled(PHOTO, index=index))  # the image as without targets
        assert list(fast.labels) == list(slow.labels) and list(fast.fields["names"]) == list(slow.fields["names"])
        np.testing.assert_allclose(fast.bboxes, slow.bboxes, atol=1e-3)
        if len(fast.keypoints):
            turn = np.abs(fast.keypoints[:, 2] - slow.keypoints[:, 2])
            np.testing.assert_allclose(np.minimum(turn, 360 - turn), 0, atol=1e-3)  # degrees, modulo a turn
            np.testing.assert_allclose(fast.keypoints[:, [0, 1, 3]], slow.keypoints[:, [0, 1, 3]], atol=1e-3)
        kept += len(fast.bboxes)
    assert 0 < kept < 90  # some boxes dropped by min_visibility, some kept: both paths filter alike


@pytest.mark.parametrize("flip", ["hflip", "vflip"])
def test_keypoint_angles_mirror_as_albumentations_flips_do(flip):
    # pi - angle for a horizontal flip, -angle for a vertical one, merged with a rotation by the plan or not.
    for compile_ in (True, False):
        pipeline = augkit.load_pipeline({"targets": {"keypoints": {"format": "xya"}}, "compile": compile_,
                                         "steps": [{"rotate": {"limit": [10, 10], "p": 1}}, {flip: {"p": 1}}]})  # fmt: skip
        (x, y, angle), = pipeline(PHOTO, keypoints=[[200, 100, 30]], index=0).keypoints
        expected = (180 - (30 + 10)) % 360 if flip == "hflip" else (-(30 + 10)) % 360
        assert abs(angle - expected) < 1e-3, (compile_, angle, expected)


def test_a_box_a_crop_cuts_to_nothing_does_not_come_back():
    # albumentations keeps a zero-width box (min_width 0) and a rotation then revives it;
    # augkit drops boxes under 1 px a side (torchvision's SanitizeBoundingBoxes).
    steps = [{"Crop": {"x_min": 0, "y_min": 0, "x_max": 200, "y_max": 200}}, {"rotate": {"limit": [30, 30], "p": 1}}]
    for compile_ in (True, False):
        pipeline = augkit.load_pipeline({"targets": {"bboxes": {"format": "pascal_voc"}}, "steps": steps, "compile": compile_})
        out = pipeline(PHOTO, bboxes=[[250, 50, 300, 100], [20, 20, 80, 80]], labels=[1, 2], index=0)
        assert list(out.labels) == [2], compile_
