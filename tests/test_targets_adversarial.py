"""Targets given wrongly: each mistake is one line naming what was wrong, and what is given
rightly comes back as given (labels of any type, masks of no instance), in every process and
whatever the pipeline was called with before (augkit.pipeline.targets, augkit.io.coco)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import augkit
from augkit.errors import AugkitError, AugkitWarning, DatasetError, SpecError
from augkit.io.datasets import open_dataset, sample_data_dir
from augkit.io.images import read_image
from augkit.io.targets import TargetReadError

PHOTO = read_image(sample_data_dir() / "photos" / "chelsea.jpg")  # 300 x 451 x 3
H, W = PHOTO.shape[:2]
BOX = [10.0, 10.0, 400.0, 290.0]  # pascal_voc, large enough to survive a 100 x 120 crop
CROP = [{"crop": {"size": [100, 120]}}, "hflip"]


def pipeline(compile_: bool = True, steps=CROP, **targets):
    targets = targets or {"bboxes": {"format": "pascal_voc"}, "keypoints": {"format": "xyas"}}
    return augkit.load_pipeline({"seed": 5, "compile": compile_, "targets": targets, "steps": steps})


def one_line(raised: pytest.ExceptionInfo) -> str:
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("compile_", [True, False])
@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"bboxes": [[1, 2, 3]], "labels": [0]}, "bboxes: expected N x 4 numbers, one row each (pascal_voc: x_min, y_min, x_max, y_max in pixels); got shape (1, 3)"),
        ({"bboxes": [1, 2, 30, 40], "labels": [0]}, "bboxes: expected N x 4 numbers, one row each (pascal_voc: x_min, y_min, x_max, y_max in pixels); got shape (4,)"),
        ({"bboxes": [[1, 2, 30, 40], [1, 2, 3]], "labels": [0, 1]}, "bboxes: expected N x 4 numbers"),
        ({"bboxes": [["1", "2", "30", "40"]], "labels": [0]}, "bboxes: expected N x 4 numbers"),
        ({"bboxes": np.ones((1, 4), bool), "labels": [0]}, "got shape (1, 4) of bool"),
        ({"bboxes": [[np.nan, 2, 30, 40]], "labels": [0]}, "bboxes[0] is [nan, 2.0, 30.0, 40.0]: NaN or infinity"),
        ({"keypoints": [[5.0, 6.0]]}, "keypoints: expected N x 4 numbers, one row each (xyas: x, y, a, s); got shape (1, 2)"),
        ({"keypoints": [[np.nan, 6.0, 0.0, 1.0]]}, "keypoints[0] is [nan, 6.0, 0.0, 1.0]: NaN or infinity"),
        ({"bboxes": [BOX, BOX], "labels": [0]}, "labels has 1 entries for 2 bboxes: give one per box"),
        ({"bboxes": [BOX, BOX], "labels": "ab"}, "labels must be a list or array, one entry per box; got 'ab'"),
        ({"mask": np.zeros((H + 1, W), np.uint8)}, f"mask: {H + 1} x {W} (height x width), but the image is {H} x {W}"),
        ({"masks": [np.zeros((H, W), np.uint8), np.zeros((H, W - 1), np.uint8)]}, f"masks[1]: {H} x {W - 1} (height x width)"),
        ({"masks": np.zeros((H, W), np.uint8)}, "masks: expected N x H x W labels (or N x H x W x C), got shape"),
        ({"masks": [np.zeros((H, W), np.float64)]}, "masks[0]: float64 masks are not label maps"),
    ],
)
def test_targets_of_the_wrong_shape_or_kind_are_one_line_naming_them(compile_, given, says):
    with pytest.raises(AugkitError) as raised:
        pipeline(compile_)(PHOTO, index=0, **given)
    assert says in one_line(raised)


@pytest.mark.parametrize("compile_", [True, False])
def test_a_list_of_masks_with_labels_past_int32_is_refused_not_wrapped(compile_):
    mask = np.zeros((H, W), np.int64)
    mask[50:150, 100:250] = 2**33 + 5  # int32 would keep 5 of it
    with pytest.raises(AugkitError) as raised:
        pipeline(compile_)(PHOTO, masks=[mask], index=0)
    assert "masks[0]: int64 labels from 0 to 8589934597 do not fit int32" in one_line(raised)


@pytest.mark.parametrize("compile_", [True, False])
def test_labels_come_back_as_given_whatever_came_before(compile_):
    # albumentations holds labels as float32 and keeps the first call's kind for every later one.
    run = pipeline(compile_)
    for labels in (np.array([1]), [0.7], ["cat"], [2**40 + 1], np.array([2**40 + 3]), [(1, "a")]):
        fields = run(PHOTO, bboxes=[BOX], labels=labels, index=0).fields
        assert type(fields["labels"]) is type(labels)
        assert list(fields["labels"]) == list(labels)
    stages = run.stages(PHOTO, bboxes=[BOX], labels=["dog"], index=0)
    assert [s[1].fields["labels"] for s in stages] == [["dog"]] * len(stages)


def test_labels_follow_the_boxes_each_crop_keeps():
    boxes = [[10, 10, 60, 60], BOX, [300, 200, 440, 290]]
    run = pipeline(steps=[{"crop": {"size": [100, 120], "mode": "random"}}])
    kept = set()
    for index in range(12):
        named = run(PHOTO, bboxes=boxes, labels=["a", "b", "c"], index=index)
        numbered = run(PHOTO, bboxes=boxes, labels=np.array([10, 20, 30]), index=index)
        np.testing.assert_array_equal(named.bboxes, numbered.bboxes)
        assert [{"a": 10, "b": 20, "c": 30}[name] for name in named.fields["labels"]] == numbered.fields["labels"].tolist()
        kept.add(len(named.bboxes))
    assert len(kept) > 1  # the crops kept different boxes: the labels followed them


@pytest.mark.parametrize("compile_", [True, False])
def test_an_image_without_instances_keeps_an_empty_array_of_masks(compile_):
    run = pipeline(compile_)
    out = run(PHOTO, masks=np.zeros((0, H, W), np.uint16), bboxes=np.zeros((0, 4)), labels=[], index=0)
    assert out.masks.shape == (0, 100, 120) and out.masks.dtype == np.uint16
    assert out.bboxes.shape == (0, 4) and out.fields["labels"] == []
    stages = run.stages(PHOTO, masks=np.zeros((0, H, W, 2), np.uint8), index=0)
    assert stages[-1][1].masks.shape == (0, 100, 120, 2)


@pytest.mark.parametrize("name", ["self", "force_apply"])
def test_a_label_field_named_as_a_call_argument_is_refused_in_the_spec(name):
    with pytest.raises(SpecError) as raised:
        pipeline(bboxes={"format": "coco", "label_fields": [name]})
    assert f"{name!r} is the name of an argument of the call" in one_line(raised)


def test_an_albumentations_file_whose_bbox_params_are_no_mapping_is_refused(tmp_path):
    saved = {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "seed": 1, "bbox_params": "coco",
                                                   "transforms": [{"__class_fullname__": "HorizontalFlip", "p": 1.0}]}}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(saved))
    with pytest.raises(SpecError) as raised:
        augkit.load_pipeline(tmp_path / "a.json")
    assert "bbox_params maps settings (format, label_fields, ...) to values, got 'coco'" in one_line(raised)


# ----------------------------------------------------------------------------- COCO files


def write_coco(root: Path, write_png, edit) -> Path:
    images = []
    for i, name in enumerate(("camera.png", "coffee.jpg")):
        crop = read_image(sample_data_dir() / "photos" / name)[:60, :80]
        write_png(root / "images" / f"im{i}.png", crop)
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": 80, "height": 60})
    data = {"images": images, "categories": [{"id": 7, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [5, 5, 20, 20], "category_id": 7}]}  # fmt: skip
    edit(data)
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


def test_an_image_entry_of_an_absurd_size_is_a_skipped_sample(tmp_path, write_png):
    path = write_coco(tmp_path, write_png, lambda data: data["images"][0].update(width=10**30))
    dataset = open_dataset(path)
    with pytest.raises(TargetReadError, match=r"gives no size \(width 1000000000000000000000000000000, height 60; "):
        dataset.read_targets(0)
    assert len(dataset.read_targets(1).bboxes) == 0
    done = subprocess.run([sys.executable, "-m", "augkit", "preprocess", str(path), str(tmp_path / "out"), "-q"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    skipped = json.loads((tmp_path / "out" / "manifest.json").read_text())["skipped"]
    assert [Path(s["path"]).name for s in skipped] == ["im0.png"]


def test_a_file_name_holding_nul_is_one_line_not_a_traceback(tmp_path, write_png):
    path = write_coco(tmp_path, write_png, lambda data: data["images"][0].update(file_name="im\x000.png"))
    with pytest.raises(DatasetError) as raised:
        open_dataset(path)
    assert "images[0]'s file_name 'im\\x000.png' holds a NUL character" in one_line(raised)
    done = subprocess.run([sys.executable, "-m", "augkit", "stats", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "holds a NUL character" in done.stderr


@pytest.mark.parametrize("name", ["../outside.png", "ABSOLUTE"])
def test_an_image_entry_naming_a_file_outside_the_images_folder_is_never_opened(tmp_path, write_png, name):
    outside = write_png(tmp_path / "outside.png", np.full((60, 80, 3), 200, np.uint8))
    name = str(outside) if name == "ABSOLUTE" else name
    path = write_coco(tmp_path / "coco", write_png, lambda data: data["images"][0].update(file_name=name))
    with pytest.warns(AugkitWarning, match="1 image entries name a file outside .* they are left out"):
        dataset = open_dataset(path)
    assert [Path(s).name for s in dataset.sources] == ["im1.png"]
    done = subprocess.run([sys.executable, "-m", "augkit", "preprocess", str(path), str(tmp_path / "out"), "-q"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["train"]["images"] == 1
