"""Datasets with targets: segmentation folders and COCO files read, broken targets skipped with their
reason, and `augkit preprocess` packing masks and boxes that move with the pixels, resumable.

Every dataset is drawn at test time: crops of the sample photos, with a rectangle (label 1) and an
ellipse (label 2) drawn into each mask, and the same two shapes' bounding boxes as COCO boxes.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from augkit.errors import DatasetError, ImageReadError
from augkit.io.datasets import list_splits, open_dataset
from augkit.io.targets import BOX_FORMAT, TargetReadError
from augkit.resize import resize_boxes_to, resize_mask_to, resize_to
from augkit.stats import compute_stats
from test_preprocess_faults import fill_the_disk_at

SIZE = (60, 80)  # height, width of every drawn image
RECTANGLE, ELLIPSE = 1, 2  # mask labels
CATEGORIES = [{"id": 18, "name": "rectangle"}, {"id": 3, "name": "ellipse"}]  # COCO ids, not in name order
CLASSES = ("ellipse", "rectangle")  # sorted names: the class indices boxes get
CATEGORY_OF = {RECTANGLE: 18, ELLIPSE: 3}
CLASS_OF = {RECTANGLE: CLASSES.index("rectangle"), ELLIPSE: CLASSES.index("ellipse")}


@dataclass
class Scene:
    """One drawn sample: a photo crop, its label mask, and the boxes round its two shapes."""

    name: str
    image: np.ndarray  # H x W x 3 uint8 RGB
    mask: np.ndarray  # H x W uint8: 0, RECTANGLE, ELLIPSE
    boxes: dict[int, list[int]]  # mask label -> [x_min, y_min, x_max, y_max], pixel edges


def bounding_box(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(ys) else None


@pytest.fixture(scope="session")
def draw_scenes(photo_crops):
    def draw(count: int, seed: int = 0) -> list[Scene]:
        rng = np.random.default_rng(seed)
        scenes = []
        for i, image in enumerate(photo_crops(count, sizes=(SIZE,), seed=seed)):
            mask = np.zeros(SIZE, np.uint8)
            x0, y0 = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            mask[y0 : y0 + int(rng.integers(5, 25)), x0 : x0 + int(rng.integers(5, 35))] = RECTANGLE
            centre = (int(rng.integers(15, 65)), int(rng.integers(15, 45)))
            cv2.ellipse(mask, centre, (int(rng.integers(4, 14)), int(rng.integers(4, 12))), 30, 0, 360, ELLIPSE, -1)
            boxes = {label: bounding_box(mask == label) for label in (RECTANGLE, ELLIPSE)}
            scenes.append(Scene(f"s{i:04d}", image, mask, {k: v for k, v in boxes.items() if v}))
        return scenes

    return draw


def write(path: Path, pixels: np.ndarray, ext: str = ".png") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_segmentation(folder: Path, scenes: list[Scene], ext: str = ".png") -> Path:
    for scene in scenes:
        write(folder / "images" / f"{scene.name}{ext}", scene.image, ext)
        write(folder / "masks" / f"{scene.name}.png", scene.mask)
    return folder


def coco_document(scenes: list[Scene]) -> dict:
    images, annotations = [], []
    for n, scene in enumerate(scenes):
        images.append({"id": 100 + n, "file_name": f"{scene.name}.png", "width": SIZE[1], "height": SIZE[0]})
        for label, (x0, y0, x1, y1) in scene.boxes.items():
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + n, "category_id": CATEGORY_OF[label],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_coco(root: Path, scenes: list[Scene], name: str = "train2017", edit=None) -> Path:
    """COCO's own layout: root/<name>/*.png and root/annotations/instances_<name>.json."""
    for scene in scenes:
        write(root / name / f"{scene.name}.png", scene.image)
    document = coco_document(scenes)
    if edit is not None:
        edit(document, root / name)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{name}.json").write_text(json.dumps(document))
    return root


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- resizing targets


@settings(max_examples=300, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    size=st.tuples(st.integers(1, 64), st.integers(1, 64)),
    mode=st.sampled_from(["center-crop", "pad", "exact", "shorter"]),
    corners=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_a_resized_box_stays_within_half_a_pixel_of_its_resized_masks_bounding_box(shape, size, mode, corners):
    h, w = shape
    x0, x1 = sorted(int(c * w) for c in corners[:2])
    y0, y1 = sorted(int(c * h) for c in corners[2:])
    assume(x1 > x0 and y1 > y0)
    mask = np.zeros(shape, np.uint8)
    mask[y0:y1, x0:x1] = 5
    resized = resize_mask_to(mask, size, mode)
    assert resized.shape == resize_to(np.zeros((h, w, 3), np.uint8), size, mode).shape[:2]
    boxes, kept = resize_boxes_to(np.array([[x0, y0, x1, y1]], np.float32), shape, size, mode)
    drawn = bounding_box(resized == 5)
    if drawn is None:  # no output pixel centre falls inside it: the box is gone or under a pixel wide
        assert not kept[0] or min(boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]) < 1
    else:
        assert kept[0] and np.abs(boxes[0] - drawn).max() <= 0.5 + 1e-4, (boxes, drawn)


# ----------------------------------------------------------------------------- reading


def test_segmentation_folder_gives_each_image_the_mask_of_its_stem(tmp_path, draw_scenes):
    scenes = draw_scenes(3)
    root = write_segmentation(tmp_path / "seg", scenes[::-1], ext=".jpg")  # masks stay PNG
    (tmp_path / "seg" / "masks" / "orphan.png").write_bytes((tmp_path / "seg" / "masks" / "s0000.png").read_bytes())
    ds = open_dataset(root)
    assert (ds.kind, ds.target_kind, ds.classes, ds.labels.tolist()) == ("segmentation", "masks", (), [-1] * 3)
    assert [Path(s).name for s in ds.sources] == ["s0000.jpg", "s0001.jpg", "s0002.jpg"]  # the orphan mask is no sample
    for i, scene in enumerate(scenes):
        targets = ds.read_targets(i, ds.read(i).shape)
        assert targets.mask.dtype == np.uint8 and targets.size == SIZE
        np.testing.assert_array_equal(targets.mask, scene.mask)
        assert targets.as_kwargs().keys() == {"mask"}


def test_segmentation_splits_sit_above_images_and_masks(tmp_path, draw_scenes):
    scenes = draw_scenes(5)
    write_segmentation(tmp_path / "seg" / "train", scenes[:3])
    write_segmentation(tmp_path / "seg" / "val", scenes[3:])
    assert list_splits(tmp_path / "seg") == ("train", "val")
    val = open_dataset(tmp_path / "seg", "val")
    assert val.kind == "segmentation" and len(val) == 2
    np.testing.assert_array_equal(val.read_targets(1).mask, scenes[4].mask)
    assert len(open_dataset(tmp_path / "seg", "all")) == 5


def test_palette_and_16_bit_masks_read_as_their_labels_not_their_colours(tmp_path, draw_scenes):
    [scene] = draw_scenes(1)
    root = write_segmentation(tmp_path / "seg", [scene])
    palette = Image.fromarray(scene.mask * 100, mode="L").convert("P")  # Pascal VOC's way: indices are labels
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    indices = np.asarray(palette)
    palette.save(root / "masks" / "s0000.png")
    np.testing.assert_array_equal(open_dataset(root).read_targets(0).mask, indices)

    wide = scene.mask.astype(np.uint16) * 300  # labels past 255 need 16 bits
    write(root / "masks" / "s0000.png", wide)
    mask = open_dataset(root).read_targets(0).mask
    assert mask.dtype == np.uint16
    np.testing.assert_array_equal(mask, wide)


def test_coco_folder_gives_boxes_in_pascal_voc_pixels_and_class_indices_by_sorted_name(tmp_path, draw_scenes):
    scenes = draw_scenes(4)
    root = write_coco(tmp_path / "coco", scenes, edit=lambda doc, folder: doc["images"].reverse())
    ds = open_dataset(root)
    assert (ds.kind, ds.target_kind, ds.classes, BOX_FORMAT) == ("coco", "boxes", CLASSES, "pascal_voc")
    assert [Path(s).name for s in ds.sources] == [f"{s.name}.png" for s in scenes]  # sorted by file name
    for i, scene in enumerate(scenes):
        targets = ds.read_targets(i, ds.read(i).shape)
        assert targets.bboxes.dtype == np.float32 and targets.labels.dtype == np.int64
        assert targets.bboxes.tolist() == list(scene.boxes.values())
        assert targets.labels.tolist() == [CLASS_OF[label] for label in scene.boxes]
        assert targets.as_kwargs().keys() == {"bboxes", "labels"}


def test_coco_image_without_annotations_has_no_boxes_and_strays_are_warned_of(tmp_path, draw_scenes):
    def edit(document, folder):
        document["annotations"] = [a for a in document["annotations"] if a["image_id"] != 101]
        document["annotations"].append({"id": 99, "image_id": 555, "category_id": 3, "bbox": [1, 1, 2, 2]})

    root = write_coco(tmp_path / "coco", draw_scenes(2), edit=edit)
    with pytest.warns(UserWarning, match="1 annotations name no image"):
        ds = open_dataset(root)
    empty = ds.read_targets(1)
    assert empty.bboxes.shape == (0, 4) and empty.labels.shape == (0,)


def test_a_coco_json_path_opens_with_its_images_folder_beside_it(tmp_path, draw_scenes):
    scenes = draw_scenes(2)
    for scene in scenes:
        write(tmp_path / "shapes" / "images" / f"{scene.name}.png", scene.image)
    (tmp_path / "shapes" / "labels.json").write_text(json.dumps(coco_document(scenes)))
    ds = open_dataset(tmp_path / "shapes" / "labels.json")
    assert ds.kind == "coco" and len(ds) == 2 and Path(ds.sources[0]).parent == tmp_path / "shapes" / "images"
    assert ds.read_targets(0).bboxes.tolist() == list(scenes[0].boxes.values())


def test_coco_train_and_val_files_are_two_splits(tmp_path, draw_scenes):
    scenes = draw_scenes(5)
    write_coco(tmp_path / "coco", scenes[:3], "train2017")
    write_coco(tmp_path / "coco", scenes[3:], "val2017")
    assert list_splits(tmp_path / "coco") == ("train", "val")
    both = open_dataset(tmp_path / "coco", "all")
    assert len(both) == 5
    assert both.read_targets(4).bboxes.tolist() == list(scenes[4].boxes.values())
    assert both.subset([4, 0]).read_targets(0).bboxes.tolist() == list(scenes[4].boxes.values())


def test_coco_channels_follow_the_gray_rule_over_every_split(tmp_path, draw_scenes):
    scenes = draw_scenes(3)
    gray = [Scene(s.name, cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY), s.mask, s.boxes) for s in scenes[:2]]
    write_coco(tmp_path / "coco", gray, "train2017")
    assert open_dataset(tmp_path / "coco").channels == 1
    assert open_dataset(tmp_path / "coco").read(0).shape == (*SIZE, 1)
    write_coco(tmp_path / "coco", scenes[2:], "val2017")  # one colour image in val makes train RGB too
    assert open_dataset(tmp_path / "coco", "train").channels == 3


def test_image_only_datasets_have_no_targets(tmp_path, write_image_folder):
    ds = open_dataset(write_image_folder(tmp_path / "pets", {"cat": 1}))
    assert ds.target_kind is None and ds._targets is None
    with pytest.raises(DatasetError, match="has no targets"):
        ds.read_targets(0)


# ----------------------------------------------------------------------------- broken targets


def mask_of_another_size(root, scene):
    write(root / "masks" / "s0001.png", cv2.resize(scene.mask, (40, 30), interpolation=cv2.INTER_NEAREST))


BROKEN_SEGMENTATION = {
    "mask of another size": (mask_of_another_size, "its mask is 40 x 30 pixels, the image 80 x 60"),
    "RGB mask": (lambda root, scene: write(root / "masks" / "s0001.png", scene.image), "not a label image: RGB"),
    "JPEG mask": (
        lambda root, scene: (root / "masks" / "s0001.png").write_bytes(cv2.imencode(".jpg", scene.mask)[1].tobytes()),
        "not a label image: a JPEG",
    ),
    "no mask": (lambda root, scene: (root / "masks" / "s0001.png").unlink(), "its mask masks/s0001.png: file not found"),
}


def box_at(x: float, y: float, w: float, h: float):
    def edit(document, folder):
        document["annotations"][2]["bbox"] = [x, y, w, h]  # the second image's first box

    return edit


def category(document, folder):
    document["annotations"][2]["category_id"] = 7


def missing_file(document, folder):
    (folder / "s0001.png").unlink()


def sized(document, folder):
    document["images"][1].update(width=100, height=100)


BROKEN_COCO = {
    "box outside the image": (box_at(70, 10, 20, 10), "reaches outside the 80 x 60 image"),
    "box without area": (box_at(10, 10, 0, 5), "has no area"),
    "unknown category": (category, "category_id 7 is not one of the file's categories"),
    "annotation naming a missing file": (missing_file, "file not found"),
    "annotation of another size": (sized, "its annotation is for an image of 100 x 100 pixels, the image 80 x 60"),
}


@pytest.mark.parametrize("case", [*BROKEN_SEGMENTATION, *BROKEN_COCO])
def test_a_broken_target_skips_its_sample_with_the_reason_and_the_run_succeeds(tmp_path, draw_scenes, preprocess_cli, case):
    scenes = draw_scenes(3)
    if case in BROKEN_SEGMENTATION:
        src = write_segmentation(tmp_path / "src", scenes)
        damage, reason = BROKEN_SEGMENTATION[case]
        damage(src, scenes[1])
        source = src / "images" / "s0001.png"
    else:
        edit, reason = BROKEN_COCO[case]
        src = write_coco(tmp_path / "src", scenes, edit=edit)
        source = src / "train2017" / "s0001.png"
    ds = open_dataset(src)
    with pytest.raises(ImageReadError) as info:  # what a Python user meets: the same reason
        ds.read_targets(1, ds.read(1).shape)
    assert reason in str(info.value) and str(source) in str(info.value)

    result = preprocess_cli(src, tmp_path / "out", "--size", "30x40")
    assert result.exit_code == 0, result.output
    [skipped] = manifest(tmp_path / "out")["skipped"]
    assert skipped["path"] == str(source) and reason in skipped["reason"], skipped
    assert f"skipped {source}: {skipped['reason']}" in result.output
    assert len(open_dataset(tmp_path / "out")) == 2


def test_read_targets_raises_target_read_error_for_a_broken_mask(tmp_path, draw_scenes):
    scenes = draw_scenes(2)
    src = write_segmentation(tmp_path / "src", scenes)
    write(src / "masks" / "s0001.png", scenes[1].image)
    with pytest.raises(TargetReadError) as info:
        open_dataset(src).read_targets(1)
    assert info.value.path == str(src / "images" / "s0001.png") and "masks/s0001.png" in info.value.reason


# ----------------------------------------------------------------------------- preprocess


@pytest.mark.parametrize("mode", ["center-crop", "pad", "exact"])
def test_packed_masks_keep_their_labels_and_packed_boxes_stay_round_their_shapes(tmp_path, draw_scenes, preprocess_cli, mode):
    """The masks (nearest) and the boxes (moved as the pixels move) of the same shapes, packed by two
    runs, agree within a pixel after a resize of every mode: each box is its shape's mask's bounding box."""
    scenes = draw_scenes(12, seed=3)
    edge = scenes[0].mask.copy()
    edge[edge == RECTANGLE] = 0
    edge[5:15, 0:10] = RECTANGLE  # in the 15 columns center-crop cuts from each side
    scenes[0] = Scene(scenes[0].name, scenes[0].image, edge, {RECTANGLE: [0, 5, 10, 15], ELLIPSE: bounding_box(edge == ELLIPSE)})
    seg, boxes = tmp_path / "seg-out", tmp_path / "coco-out"
    size = "36x30"  # taller and narrower than 60 x 80: center-crop cuts the sides, pad adds rows
    assert preprocess_cli(write_segmentation(tmp_path / "seg", scenes), seg, "--size", size, "--resize-mode", mode).exit_code == 0
    assert preprocess_cli(write_coco(tmp_path / "coco", scenes), boxes, "--size", size, "--resize-mode", mode).exit_code == 0
    masks, detections = open_dataset(seg), open_dataset(boxes)
    assert masks.target_kind == "masks" and detections.target_kind == "boxes" and detections.classes == CLASSES
    assert np.load(seg / "train_masks.npy").shape == (12, 36, 30) and np.load(seg / "train_masks.npy").dtype == np.uint8
    cut = 0
    for i in range(len(scenes)):
        mask = masks.read_targets(i).mask
        assert set(np.unique(mask)) <= {0, RECTANGLE, ELLIPSE}  # nearest: no label blended into another
        targets = detections.read_targets(i)
        packed = dict(zip((int(k) for k in targets.labels), targets.bboxes.tolist()))
        for label in (RECTANGLE, ELLIPSE):
            drawn = bounding_box(mask == label)
            box = packed.get(CLASS_OF[label])
            if drawn is None:  # cut away by center-crop (or never drawn): gone from the mask, so its box is dropped
                assert box is None or min(box[2] - box[0], box[3] - box[1]) < 1, (label, box)
                cut += box is None and label in scenes[i].boxes
            else:
                assert box is not None and np.abs(np.subtract(box, drawn)).max() <= 1, (mode, i, label, box, drawn)
        assert np.all(targets.bboxes >= 0) and np.all(targets.bboxes[:, 2:] <= (30, 36))
    counts = manifest(boxes)["counts"]["train"]
    assert counts["boxes"] + counts["boxes_dropped"] == sum(len(s.boxes) for s in scenes)
    assert counts["boxes_dropped"] == cut == (mode == "center-crop")


def test_16_bit_labels_are_packed_as_uint16_and_read_back(tmp_path, draw_scenes, preprocess_cli):
    scenes = draw_scenes(2)
    src = write_segmentation(tmp_path / "seg", scenes)
    write(src / "masks" / "s0001.png", scenes[1].mask.astype(np.uint16) * 1000)
    assert preprocess_cli(src, tmp_path / "out", "--size", "30x40", "--resize-mode", "exact").exit_code == 0
    packed = open_dataset(tmp_path / "out")
    assert np.load(tmp_path / "out" / "train_masks.npy").dtype == np.uint16
    np.testing.assert_array_equal(packed.read_targets(1).mask, resize_mask_to(scenes[1].mask * np.uint16(1000), (30, 40), "exact"))
    np.testing.assert_array_equal(packed.read_targets(0).mask, resize_mask_to(scenes[0].mask, (30, 40), "exact"))


def test_packed_targets_travel_to_worker_processes_as_file_paths(tmp_path, draw_scenes, preprocess_cli):
    scenes = draw_scenes(3)
    assert preprocess_cli(write_coco(tmp_path / "coco", scenes), tmp_path / "out", "--size", "30x40").exit_code == 0
    ds = open_dataset(tmp_path / "out")
    sent = pickle.dumps(ds.subset([2, 0]))
    assert len(sent) < 2000  # paths and a few numbers, never the arrays
    back = pickle.loads(sent)
    np.testing.assert_array_equal(back.read_targets(0).bboxes, ds.read_targets(2).bboxes)
    expected, _ = resize_boxes_to(np.array(list(scenes[2].boxes.values()), np.float32), SIZE, (30, 40), "center-crop")
    np.testing.assert_allclose(back.read_targets(0).bboxes, expected)


@pytest.mark.parametrize("state", ["complete", "stopped at its manifest"])
@pytest.mark.parametrize("layout", ["segmentation", "coco"])
def test_overwrite_of_a_run_with_targets_deletes_its_target_arrays_and_ends_as_a_clean_run(
    tmp_path, draw_scenes, preprocess_cli, tree_digest, monkeypatch, layout, state
):
    scenes = draw_scenes(5)
    src = write_segmentation(tmp_path / "seg", scenes) if layout == "segmentation" else write_coco(tmp_path / "coco", scenes)
    flags, other = ["--size", "30x40", "--shard-size", "2"], ["--size", "20", "--shard-size", "2"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(src, clean, *flags).exit_code == 0
    if state == "complete":
        assert preprocess_cli(src, out, *other).exit_code == 0
    else:  # the final arrays written, its targets' too, and the disk full at the manifest that lists them
        fill_the_disk_at(monkeypatch, "augkit.preprocess.assembly", 1)
        assert preprocess_cli(src, out, *other).exit_code == 1
        monkeypatch.undo()
        last = "train_masks.npy" if layout == "segmentation" else "train_box_offsets.npy"
        assert manifest(out)["complete"] is False and (out / last).is_file()
    result = preprocess_cli(src, out, *flags, "--overwrite")
    assert result.exit_code == 0, result.output
    assert tree_digest(out) == tree_digest(clean)
    assert "already complete" in preprocess_cli(src, out, *flags).output


def test_targets_need_the_packed_format_and_no_copies(tmp_path, draw_scenes, preprocess_cli, assert_fails):
    src = write_segmentation(tmp_path / "seg", draw_scenes(2))
    assert_fails(preprocess_cli(src, tmp_path / "a", "--size", "30", "--format", "folder"), 2, "use --format packed")
    assert_fails(preprocess_cli(src, tmp_path / "b", "--size", "30", "--copies", "1", "-p", "hflip"), 2, "--copies")


def test_stats_of_a_segmentation_dataset_are_those_of_its_images(tmp_path, draw_scenes):
    src = write_segmentation(tmp_path / "seg", draw_scenes(4))
    with_masks = compute_stats(open_dataset(src)).stats
    images_alone = compute_stats(open_dataset(src / "images")).stats
    assert with_masks.to_dict() == images_alone.to_dict()


# ----------------------------------------------------------------------------- a killed run

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="kills a process group")
RUN = ["--workers", "2", "--shard-size", "10", "--size", "32", "-q"]


def start(src: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "augkit", "preprocess", str(src), str(out), *RUN]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)  # no signal sent: only whether a process of the group is left
    except ProcessLookupError:
        return False
    return True


def run_to_the_end(src: Path, out: Path) -> str:
    process = start(src, out)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stdout


@linux_only
@pytest.mark.parametrize("layout", ["segmentation", "coco"])
def test_a_run_killed_mid_way_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, draw_scenes, tree_digest, layout):
    scenes = draw_scenes(600, seed=1)
    src = write_segmentation(tmp_path / "src", scenes) if layout == "segmentation" else write_coco(tmp_path / "src", scenes)
    clean = tmp_path / "clean"
    run_to_the_end(src, clean)

    out = tmp_path / "out"
    process = start(src, out)
    deadline = time.monotonic() + 120
    while not any((out / ".shards").glob("*.json")):  # a first shard recorded: the run is mid-way
        assert process.poll() is None, "the run ended before a shard was recorded"
        assert time.monotonic() < deadline, "no shard was recorded"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=120)
    while group_alive(process.pid):  # its workers too, before the rerun writes where they did
        assert time.monotonic() < deadline, "the killed run's processes did not end"
        time.sleep(0.01)
    assert manifest(out)["complete"] is False  # it really stopped mid-way

    assert "resumed:" in run_to_the_end(src, out)
    assert tree_digest(out) == tree_digest(clean)
    assert open_dataset(out).target_kind == ("masks" if layout == "segmentation" else "boxes")
