"""augkit.io.datasets / augkit.io.cifar: each layout is found, indexed in a fixed order, and read exactly."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

import augkit.io.datasets
from augkit.errors import DatasetError, ImageReadError
from augkit.io import cifar, packed
from augkit.io.datasets import Dataset, list_splits, open_dataset, sample_data_dir


def color(i: int) -> np.ndarray:
    """A 3 x 4 RGB image whose pixels identify ``i`` (so a wrong file or order shows)."""
    return np.full((3, 4, 3), (i, 255 - i, (7 * i) % 256), dtype=np.uint8)


def cifar_row_as_image(row: np.ndarray) -> np.ndarray:
    """What the CIFAR docs say a row is: 1024 red, then 1024 green, then 1024 blue, row-major."""
    red, green, blue = row[:1024], row[1024:2048], row[2048:]
    return np.stack([red.reshape(32, 32), green.reshape(32, 32), blue.reshape(32, 32)], axis=2)


# ----------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def imagefolder(tmp_path, write_png):
    """root/<class>/...: nested files, a hidden file and folder, a non-image, an empty class."""
    root = tmp_path / "pets"
    for i, rel in enumerate(["dog/b.png", "dog/A.png", "dog/sub/a.png", "dog/img10.png", "dog/img2.png",
                             "cat/x.PNG", "Zebra/z.png", "cat/.hidden.png", "cat/.cache/c.png"]):  # fmt: skip
        write_png(root / rel, color(i))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def test_imagefolder_classes_are_sorted_folder_names_including_empty_ones(imagefolder):
    ds = open_dataset(imagefolder)
    assert (ds.kind, ds.root, ds.split) == ("imagefolder", imagefolder, "train")
    # Code-point order ("Z" < "c"); "empty" has no images but keeps its index.
    assert ds.classes == ("Zebra", "cat", "dog", "empty")


def test_imagefolder_files_are_sorted_by_path_inside_the_class_and_hidden_ones_skipped(imagefolder):
    ds = open_dataset(imagefolder)
    rel = [os.path.relpath(s, imagefolder) for s in ds.sources]
    assert rel == ["Zebra/z.png", "cat/x.PNG", "dog/A.png", "dog/b.png", "dog/img10.png", "dog/img2.png",
                   "dog/sub/a.png"]  # fmt: skip
    assert ds.labels.tolist() == [0, 1, 2, 2, 2, 2, 2]
    assert ds.labels.dtype == np.int64


def test_imagefolder_sample_is_the_pixels_and_label_of_its_file(imagefolder):
    ds = open_dataset(imagefolder)
    image, label = ds[4]  # dog/img10.png, written fourth (i=3)
    np.testing.assert_array_equal(image, color(3))
    assert label == 2 and ds.classes[label] == "dog"
    assert ds.read(4, gray=True).shape == (3, 4, 1)
    np.testing.assert_array_equal(ds[-1][0], color(2))  # dog/sub/a.png


def test_plain_imagefolder_has_only_a_train_split_and_says_how_to_get_val(imagefolder):
    assert list_splits(imagefolder) == ("train",)
    assert len(open_dataset(imagefolder, "all")) == len(open_dataset(imagefolder))
    with pytest.raises(DatasetError) as info:
        open_dataset(imagefolder, "val")
    message = str(info.value)
    assert "no val split" in message and f"{imagefolder}/train/" in message and "train, all" in message


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "test"])
def test_split_folders_are_found_under_each_val_name(tmp_path, write_png, val_name):
    write_png(tmp_path / "train" / "a" / "1.png", color(1))
    write_png(tmp_path / val_name / "a" / "2.png", color(2))
    assert list_splits(tmp_path) == ("train", "val")
    val = open_dataset(tmp_path, "val")
    assert (val.kind, val.split, len(val)) == ("imagefolder", "val", 1)
    np.testing.assert_array_equal(val.read(0), color(2))


def test_val_folder_is_preferred_over_test(tmp_path, write_png):
    write_png(tmp_path / "train" / "a" / "1.png", color(1))
    write_png(tmp_path / "test" / "a" / "2.png", color(2))
    write_png(tmp_path / "val" / "a" / "3.png", color(3))
    np.testing.assert_array_equal(open_dataset(tmp_path, "val").read(0), color(3))


def test_split_class_indices_agree_even_when_a_class_is_missing_from_one_split(tmp_path, write_png):
    write_png(tmp_path / "train" / "b" / "1.png", color(1))
    write_png(tmp_path / "train" / "c" / "2.png", color(2))
    write_png(tmp_path / "val" / "a" / "3.png", color(3))
    write_png(tmp_path / "val" / "c" / "4.png", color(4))
    train, val, both = (open_dataset(tmp_path, s) for s in ("train", "val", "all"))
    assert train.classes == val.classes == both.classes == ("a", "b", "c")
    assert train.labels.tolist() == [1, 2] and val.labels.tolist() == [0, 2]
    assert both.split == "all" and both.labels.tolist() == [1, 2, 0, 2]  # train first
    np.testing.assert_array_equal(both.read(2), color(3))


def test_unreadable_file_in_a_dataset_raises_image_read_error_on_read_only(tmp_path, write_png):
    write_png(tmp_path / "a" / "good.png", color(1))
    (tmp_path / "a" / "bad.png").write_bytes(b"")
    ds = open_dataset(tmp_path)  # opening never decodes
    with pytest.raises(ImageReadError, match="empty file"):
        ds.read(0)
    np.testing.assert_array_equal(ds.read(1), color(1))


@pytest.mark.parametrize("name", ["a\\..\\..\\x", "C:"])
def test_class_name_that_could_escape_an_output_folder_is_refused(tmp_path, write_png, name):
    write_png(tmp_path / name / "1.png", color(1))
    with pytest.raises(DatasetError, match="refusing class name"):
        open_dataset(tmp_path)


# ----------------------------------------------------------------------------- flat folder


def test_flat_folder_is_unlabelled_and_sorted(tmp_path, write_png):
    for i, name in enumerate(["b.png", "a.jpg.png", "C.png", ".hidden.png"]):
        write_png(tmp_path / name, color(i))
    (tmp_path / "readme.md").write_text("hi")
    ds = open_dataset(tmp_path)
    assert (ds.kind, ds.classes, list_splits(tmp_path)) == ("folder", (), ("train",))
    assert [os.path.basename(s) for s in ds.sources] == ["C.png", "a.jpg.png", "b.png"]
    assert ds.labels.tolist() == [-1, -1, -1] and ds.labels.dtype == np.int64
    image, label = ds[0]
    np.testing.assert_array_equal(image, color(2))
    assert label == -1


def test_folder_with_both_images_and_subfolders_is_refused_as_ambiguous(tmp_path, write_png):
    write_png(tmp_path / "loose.png", color(1))
    write_png(tmp_path / "cls" / "x.png", color(2))
    with pytest.raises(DatasetError, match="both images .* and folders"):
        open_dataset(tmp_path)


# ----------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes keys (official)", "str keys"])
def test_cifar10_rows_read_back_exactly_in_rgb(make_cifar, str_keys):
    fake = make_cifar("cifar10", rows=3, str_keys=str_keys)
    train = open_dataset(fake.root)
    assert (train.kind, len(train), train.classes) == ("cifar10", 15, tuple(fake.names))
    for i in (0, 4, 14):  # first row, a row of data_batch_2, last row of data_batch_5
        image, label = train[i]
        np.testing.assert_array_equal(image, cifar_row_as_image(fake.train_rows[i]))
        assert image.flags.c_contiguous and label == fake.train_labels[i]
    assert train.sources[4] == f"{fake.root / 'data_batch_2'}[1]"
    np.testing.assert_array_equal(train.labels, fake.train_labels)


def test_cifar10_red_plane_comes_first(make_cifar):
    fake = make_cifar("cifar10", rows=1)
    image = open_dataset(fake.root).read(0)
    assert image[0, 1, 0] == fake.train_rows[0, 1]  # red of pixel (0, 1): byte 1
    assert image[0, 1, 2] == fake.train_rows[0, 2048 + 1]  # its blue: byte 2049


def test_cifar10_val_is_the_test_batch_and_all_is_train_then_val(make_cifar):
    fake = make_cifar("cifar10", rows=2)
    assert list_splits(fake.root) == ("train", "val")
    val, both = open_dataset(fake.root, "val"), open_dataset(fake.root, "all")
    np.testing.assert_array_equal(val.labels, fake.val_labels)
    np.testing.assert_array_equal(both.labels, np.concatenate([fake.train_labels, fake.val_labels]))
    np.testing.assert_array_equal(both.read(10), cifar_row_as_image(fake.val_rows[0]))
    assert val.sources[1] == f"{fake.root / 'test_batch'}[1]"


def test_cifar100_uses_fine_labels_reindexed_to_sorted_class_names(make_cifar):
    names = [f"fine{i:02d}" for i in range(100)][::-1]  # meta order not sorted
    fake = make_cifar("cifar100", rows=30, names=names)
    ds = open_dataset(fake.root)
    assert ds.kind == "cifar100" and ds.classes == tuple(sorted(names))
    # Same class name for every sample, whatever the index convention.
    assert [ds.classes[i] for i in ds.labels] == [names[i] for i in fake.train_labels]
    np.testing.assert_array_equal(ds.read(7), cifar_row_as_image(fake.train_rows[7]))


def test_cifar_dataset_pickles_without_its_pixels_and_reads_the_same_after(make_cifar):
    fake = make_cifar("cifar10", rows=50)
    ds = open_dataset(fake.root)
    ds.read(0)  # loads the batches
    blob = pickle.dumps(ds)
    assert len(blob) < fake.train_rows.nbytes / 10
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.read(123), ds.read(123))
    np.testing.assert_array_equal(clone.labels, ds.labels)


def test_incomplete_cifar10_folder_names_the_missing_files(make_cifar):
    fake = make_cifar("cifar10", rows=1)
    (fake.root / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="incomplete CIFAR-10 folder, missing data_batch_4"):
        open_dataset(fake.root)


def test_cifar_batch_with_wrong_data_is_not_a_cifar_batch(make_cifar):
    fake = make_cifar("cifar10", rows=1)
    (fake.root / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((1, 10), np.uint8),
                                                           b"labels": [0]}, protocol=2))  # fmt: skip
    with pytest.raises(DatasetError, match="data_batch_1: 'data' is not an N x 3072 uint8 array"):
        open_dataset(fake.root)


def test_cifar_class_name_that_could_escape_an_output_folder_is_refused(make_cifar):
    fake = make_cifar("cifar10", rows=1, names=["../../etc"] + [f"c{i}" for i in range(9)])
    with pytest.raises(DatasetError, match="refusing class name '../../etc'"):
        open_dataset(fake.root)


class _Payload:
    """Unpickling this runs ``function(argument)``: the classic pickle exploit."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def _payloads(marker):
    return {
        "os.system": _Payload(os.system, f"touch {shlex.quote(str(marker))}"),
        "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec"])
@pytest.mark.parametrize("target", ["data_batch_1", "batches.meta"])
def test_malicious_cifar_pickle_is_refused_and_its_payload_never_runs(make_cifar, tmp_path, payload, target):
    if payload == "os.system" and sys.platform == "win32":
        pytest.skip("needs a POSIX shell")
    marker = tmp_path / "pwned"
    fake = make_cifar("cifar10", rows=1)
    blob = pickle.dumps({b"data": _payloads(marker)[payload], b"labels": [0]}, protocol=2)
    # The payload is live: an ordinary unpickle creates the marker...
    pickle.loads(blob)
    assert marker.exists()
    marker.unlink()
    # ...augkit's does not, whether it meets the file by opening the folder or directly.
    (fake.root / target).write_bytes(blob)
    with pytest.raises(DatasetError) as info:
        open_dataset(fake.root)
    assert "refused to unpickle" in str(info.value) and "this file is not a CIFAR batch" in str(info.value)
    with pytest.raises(DatasetError, match="refused to unpickle"):
        cifar.load_pickle(fake.root / target)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4])  # 5 pickles arrays through another helper
def test_restricted_unpickler_loads_numpy_arrays_and_bytes(tmp_path, protocol):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": array, b"names": [b"x"]}, protocol=protocol))
    loaded = cifar.load_pickle(path)
    np.testing.assert_array_equal(loaded[b"data"], array)
    assert loaded[b"names"] == [b"x"]


# ----------------------------------------------------------------------------- augkit preprocess output


def write_manifest(root, manifest):
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_packed_output_is_found_first_and_reads_every_pixel_back_exactly(make_packed, write_png):
    fake = make_packed({"train": 5})
    write_png(fake.root / "train" / "x" / "1.png", color(1))  # an ImageFolder too, if looked at first
    ds = open_dataset(fake.root)
    assert (ds.kind, ds.root, ds.split, len(ds)) == ("packed", fake.root, "train", 5)
    for i, expected in enumerate(fake.images["train"]):
        image = ds.read(i)
        np.testing.assert_array_equal(image, expected)
        assert type(image) is np.ndarray and image.dtype == np.uint8 and image.flags.c_contiguous
    assert ds.sources[3] == f"{fake.root / 'train_images.npy'}[3]"
    assert list(ds.sources) == [f"{fake.root / 'train_images.npy'}[{i}]" for i in range(5)]


def test_packed_read_is_a_copy_the_caller_may_change(make_packed):
    fake = make_packed()
    ds = open_dataset(fake.root)
    image = ds.read(0)
    image[:] = 0  # a view of the read-only memory map would refuse this
    np.testing.assert_array_equal(ds.read(0), fake.images["train"][0])


def test_packed_labels_and_classes_come_from_the_output(make_packed):
    fake = make_packed()
    ds = open_dataset(fake.root)
    assert ds.classes == ("cat", "dog", "owl") and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, fake.labels["train"])
    image, label = ds[2]
    np.testing.assert_array_equal(image, fake.images["train"][2])
    assert label == fake.labels["train"][2]


def test_packed_splits_are_train_then_val_and_all_is_both_in_that_order(make_packed):
    fake = make_packed({"val": 3, "train": 4})  # the manifest lists val first
    assert list_splits(fake.root) == ("train", "val")
    val, both = open_dataset(fake.root, "val"), open_dataset(fake.root, "all")
    np.testing.assert_array_equal(val.labels, fake.labels["val"])
    np.testing.assert_array_equal(val.read(2), fake.images["val"][2])
    assert both.split == "all" and len(both) == 7
    np.testing.assert_array_equal(both.labels, np.concatenate([fake.labels["train"], fake.labels["val"]]))
    np.testing.assert_array_equal(both.read(3), fake.images["train"][3])
    np.testing.assert_array_equal(both.read(4), fake.images["val"][0])
    assert both.sources[4] == f"{fake.root / 'val_images.npy'}[0]"


def test_packed_output_without_val_has_only_a_train_split(make_packed):
    fake = make_packed({"train": 2})
    assert list_splits(fake.root) == ("train",)
    with pytest.raises(DatasetError, match="no split 'val'; choose one of: train, all"):
        open_dataset(fake.root, "val")


def test_unlabelled_packed_output_has_no_classes_and_labels_minus_one(make_packed):
    fake = make_packed({"train": 3}, classes=())
    ds = open_dataset(fake.root)
    assert ds.classes == () and ds.labels.tolist() == [-1, -1, -1] and ds[0][1] == -1


def test_packed_reads_as_stored_and_converts_when_asked(make_packed):
    rgb = make_packed(name="rgb")
    expected = cv2.cvtColor(rgb.images["train"][1], cv2.COLOR_RGB2GRAY)[..., None]
    assert open_dataset(rgb.root).channels == 3
    np.testing.assert_array_equal(open_dataset(rgb.root).read(1), rgb.images["train"][1])
    np.testing.assert_array_equal(open_dataset(rgb.root).read(1, gray=True), expected)
    gray = make_packed(shape=(4, 6, 1), name="gray")
    ds, stored = open_dataset(gray.root), gray.images["train"][1]
    assert ds.channels == 1
    np.testing.assert_array_equal(ds.read(1), stored)
    np.testing.assert_array_equal(ds.read(1, gray=True), stored)
    np.testing.assert_array_equal(ds.read(1, gray=False), np.repeat(stored, 3, axis=2))


def test_packed_dataset_pickles_as_file_paths_not_pixels_and_reads_the_same_after(make_packed):
    fake = make_packed({"train": 20000, "val": 10}, shape=(8, 8, 3))
    ds = open_dataset(fake.root, "all")
    ds.read(0)  # maps the images file in this process
    blob = pickle.dumps(ds)
    # What is left is the labels and the (file, row) index: 24 bytes a sample, against 192.
    assert len(blob) < fake.images["train"].nbytes / 5
    clone = pickle.loads(blob)
    for i in (0, 19999, 20009):
        np.testing.assert_array_equal(clone.read(i), ds.read(i))
    np.testing.assert_array_equal(clone.labels, ds.labels)
    assert clone.sources[20009] == f"{fake.root / 'val_images.npy'}[9]"


def test_packed_subset_reads_the_same_rows_after_pickling(make_packed):
    fake = make_packed({"train": 6, "val": 4})
    ds = open_dataset(fake.root, "all")
    part = pickle.loads(pickle.dumps(ds.subset([8, 1, -1])))
    assert list(part.sources) == [ds.sources[8], ds.sources[1], ds.sources[9]]
    for j, i in enumerate([8, 1, 9]):
        np.testing.assert_array_equal(part.read(j), ds.read(i))
        assert part[j][1] == ds.labels[i]


@pytest.mark.parametrize("output_format", ["packed", "folder"])
def test_unfinished_preprocess_run_says_to_run_the_command_again(make_packed, output_format):
    fake = make_packed(complete=False)
    fake.manifest["output"]["format"] = output_format
    write_manifest(fake.root, fake.manifest)
    for call in (open_dataset, list_splits):
        with pytest.raises(DatasetError) as info:
            call(fake.root)
        assert str(info.value) == (
            f"{fake.root}: an unfinished `augkit preprocess` run; run the same command again to finish it"
        )


def test_manifest_that_is_not_json_is_named_in_the_error(make_packed):
    fake = make_packed()
    (fake.root / "manifest.json").write_text('{"format": "augkit.preprocess/1", "compl')
    with pytest.raises(DatasetError, match=re.escape(f"{fake.root / 'manifest.json'}: not valid JSON")):
        open_dataset(fake.root)


def _save(name, array):
    return lambda root: np.save(root / name, array)


# damage -> (how, the file named, what the message says about it)
DAMAGED_OUTPUTS = {
    "images file missing": (lambda root: (root / "val_images.npy").unlink(), "val_images.npy", "missing"),
    "labels file missing": (lambda root: (root / "train_labels.npy").unlink(), "train_labels.npy", "missing"),
    "images not a .npy file": (lambda root: (root / "train_images.npy").write_bytes(b"GIF89a"),
                               "train_images.npy", "not a readable .npy array"),
    "images of objects": (_save("train_images.npy", np.array([None] * 5, dtype=object)),
                          "train_images.npy", "not a readable .npy array"),
    "images not uint8": (_save("train_images.npy", np.zeros((5, 4, 6, 3), np.int16)),
                         "train_images.npy", r"expected uint8 images .* found int16 of shape \(5, 4, 6, 3\)"),
    "images not 4-D": (_save("train_images.npy", np.zeros((5, 4, 6), np.uint8)),
                       "train_images.npy", r"expected uint8 .* found uint8 of shape \(5, 4, 6\)"),
    "images with 4 channels": (_save("val_images.npy", np.zeros((3, 4, 6, 4), np.uint8)),
                               "val_images.npy", r"expected .* C = 1 or 3, found uint8 of shape \(3, 4, 6, 4\)"),
    "fewer images than the manifest says": (_save("train_images.npy", np.zeros((4, 4, 6, 3), np.uint8)),
                                            "train_images.npy", "4 images, but the manifest says 5"),
    "labels 2-D": (_save("train_labels.npy", np.zeros((5, 1), np.int64)),
                   "train_labels.npy", r"expected a 1-D integer array of labels, found int64 of shape \(5, 1\)"),
    "labels not integers": (_save("train_labels.npy", np.zeros(5, np.float32)),
                            "train_labels.npy", "expected a 1-D integer array of labels, found float32"),
    "fewer labels than images": (_save("val_labels.npy", np.zeros(2, np.int64)),
                                 "val_labels.npy", "2 labels for 3 images in val_images.npy"),
    "label past the last class": (_save("train_labels.npy", np.array([0, 1, 2, 3, 0])),
                                  "train_labels.npy", "labels from 0 to 3, expected -1 .* below 3"),
    "label below -1": (_save("val_labels.npy", np.array([0, -2, 1])),
                       "val_labels.npy", "labels from -2 to 1, expected -1"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGED_OUTPUTS)
def test_damaged_packed_output_names_the_file_and_what_is_wrong(make_packed, damage):
    fake = make_packed()
    change, file, message = DAMAGED_OUTPUTS[damage]
    change(fake.root)
    with pytest.raises(DatasetError, match=re.escape(f"{fake.root / file}: ") + message):
        open_dataset(fake.root, "all")


def _splits(manifest):
    return manifest["output"]["splits"]


# fault -> (how, what the message says after "<manifest>: ")
BAD_MANIFESTS = {
    "newer format": (lambda m: m.update(format="augkit.preprocess/2"),
                     "format 'augkit.preprocess/2' was written by another version of augkit"),
    "complete not a boolean": (lambda m: m.update(complete="yes"), "'complete' is 'yes', expected true or false"),
    "no output": (lambda m: m.pop("output"), "'output' is missing, expected an object"),
    "unknown output format": (lambda m: m["output"].update(format="zip"),
                              "'output.format' is 'zip', expected 'packed' or 'folder'"),
    "no train split": (lambda m: _splits(m).pop("train"), r"'output.splits' has no 'train' entry \(found: val\)"),
    "count not an integer": (lambda m: _splits(m)["train"].update(count="5"),
                             "'output.splits.train.count' is '5', expected an integer"),
    "negative count": (lambda m: _splits(m)["val"].update(count=-3),
                       "'output.splits.val.count' is -3, expected a row count"),
    "file outside the folder": (lambda m: _splits(m)["val"].update(labels="../val_labels.npy"),
                                "'output.splits.val' names '../val_labels.npy', which is not a file in"),
    "classes not sorted": (lambda m: m.update(classes=["dog", "cat", "owl"]),
                           "'classes' must be unique class names in sorted order"),
    "classes not strings": (lambda m: m.update(classes=[0, 1, 2]), "'classes' must be unique class names"),
}  # fmt: skip


@pytest.mark.parametrize("fault", BAD_MANIFESTS)
def test_malformed_packed_manifest_says_which_entry_is_wrong(make_packed, fault):
    fake = make_packed()
    change, message = BAD_MANIFESTS[fault]
    change(fake.manifest)
    write_manifest(fake.root, fake.manifest)
    with pytest.raises(DatasetError, match=re.escape(f"{fake.root / 'manifest.json'}: ") + message):
        list_splits(fake.root)


def test_packed_class_name_that_could_escape_an_output_folder_is_refused(make_packed):
    fake = make_packed(classes=("../x", "a", "b"))
    with pytest.raises(DatasetError, match=re.escape("refusing class name '../x'")):
        open_dataset(fake.root)


@pytest.mark.parametrize("manifest", ['{"format": "other-tool/3", "complete": false}', "[1, 2]", '{"name": "x"}'])
def test_manifest_json_of_another_tool_is_ignored(tmp_path, write_png, manifest):
    write_png(tmp_path / "a" / "1.png", color(1))
    (tmp_path / "manifest.json").write_text(manifest)
    ds = open_dataset(tmp_path)
    assert (ds.kind, ds.classes, len(ds)) == ("imagefolder", ("a",), 1)


def test_folder_output_of_preprocess_opens_as_the_imagefolder_beside_its_manifest(tmp_path, write_png):
    root = tmp_path / "out"
    write_png(root / "train" / "cat" / "0.png", color(0))
    write_png(root / "train" / "dog" / "1.png", color(1))
    write_png(root / "val" / "dog" / "2.png", color(2))
    write_manifest(root, {
        "format": packed.FORMAT, "complete": True, "classes": ["cat", "dog"],
        "output": {"format": "folder", "splits": {"train": {"count": 2}, "val": {"count": 1}}},
    })  # fmt: skip
    (root / "stats.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.2] * 3}))
    assert list_splits(root) == ("train", "val")
    train, val = open_dataset(root), open_dataset(root, "val")
    assert (train.kind, train.classes, train.labels.tolist()) == ("imagefolder", ("cat", "dog"), [0, 1])
    assert (val.classes, val.labels.tolist()) == (("cat", "dog"), [1])
    np.testing.assert_array_equal(val.read(0), color(2))


def test_split_folders_holding_images_directly_are_unlabelled_splits(tmp_path, write_png):
    """What `augkit preprocess --format folder` writes for an unlabelled (flat) source."""
    write_png(tmp_path / "train" / "a.png", color(0))
    write_png(tmp_path / "train" / "b.png", color(1))
    write_png(tmp_path / "val" / "c.png", color(2))
    train, val = open_dataset(tmp_path), open_dataset(tmp_path, "val")
    assert (train.kind, train.classes, train.labels.tolist()) == ("folder", (), [-1, -1])
    assert [s.rsplit("/", 1)[-1] for s in val.sources] == ["c.png"]
    np.testing.assert_array_equal(val.read(0), color(2))


# ----------------------------------------------------------------------------- digits


@pytest.fixture
def in_empty_dir(tmp_path, monkeypatch):
    """Run from a folder with no "digits" in it, so the name means scikit-learn's digits."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_digits_by_name_is_sklearn_digits_scaled_to_0_255(in_empty_dir):
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_digits()
    ds = open_dataset("digits")
    assert (ds.kind, ds.root, ds.split, len(ds)) == ("digits", None, "train", 1797)
    assert ds.classes == tuple("0123456789") and list_splits("digits") == ("train",)
    image, label = ds[5]
    assert image.shape == (8, 8, 1) and label == reference.target[5] and ds.sources[5] == "digits[5]"  # gray: 1 channel
    expected = [[round(v * 255 / 16) for v in row] for row in reference.images[5]]
    np.testing.assert_array_equal(image[..., 0], expected)
    assert ds.channels == 1 and ds.read(5, gray=True).shape == (8, 8, 1)
    np.testing.assert_array_equal(ds.read(5, gray=False), np.repeat(image, 3, axis=2))  # RGB when asked


def test_digits_without_scikit_learn_says_how_to_install_it(in_empty_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(DatasetError, match=r"pip install 'augkit\[digits\]'"):
        open_dataset("digits")


def test_a_folder_named_digits_wins_over_the_builtin(in_empty_dir, write_png):
    write_png(in_empty_dir / "digits" / "seven" / "1.png", color(7))
    assert open_dataset("digits").kind == "imagefolder"


def test_no_path_opens_the_sample_digits_or_the_builtin_when_absent(tmp_path, write_png, monkeypatch):
    monkeypatch.setattr(augkit.io.datasets, "sample_data_dir", lambda: tmp_path)
    pytest.importorskip("sklearn")
    assert open_dataset().kind == "digits"
    write_png(tmp_path / "digits" / "train" / "3" / "1.png", color(3))
    ds = open_dataset()
    assert (ds.kind, ds.root, ds.classes) == ("imagefolder", tmp_path / "digits", ("3",))


def test_sample_data_dir_is_the_shipped_folder():
    assert sample_data_dir().name == "sample_data" and sample_data_dir().is_dir()


# ----------------------------------------------------------------------------- the Dataset object


def test_iteration_indexing_and_subset(imagefolder):
    ds = open_dataset(imagefolder)
    assert len(list(ds)) == len(ds)  # __getitem__ raises IndexError at the end
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError, match="use subset"):
        ds[0:2]
    part = ds.subset([4, 0, -1])
    assert isinstance(part, Dataset) and (part.kind, part.classes, part.split) == (ds.kind, ds.classes, ds.split)
    assert part.sources == [ds.sources[4], ds.sources[0], ds.sources[-1]]
    assert part.labels.tolist() == [ds.labels[4], ds.labels[0], ds.labels[-1]]
    np.testing.assert_array_equal(part.read(0), ds.read(4))
    assert len(ds.subset([])) == 0
    with pytest.raises(IndexError):
        ds.subset([len(ds)])


def test_cifar_subset_reads_the_same_rows(make_cifar):
    fake = make_cifar("cifar10", rows=2)
    ds = open_dataset(fake.root, "all")
    part = pickle.loads(pickle.dumps(ds.subset(range(9, 12))))
    for j, i in enumerate(range(9, 12)):
        np.testing.assert_array_equal(part.read(j), ds.read(i))
        assert part[j][1] == ds.labels[i]


def test_file_dataset_pickles_as_its_index(imagefolder):
    ds = open_dataset(imagefolder)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.sources == ds.sources and clone.classes == ds.classes
    np.testing.assert_array_equal(clone.read(2), ds.read(2))


# ----------------------------------------------------------------------------- errors


def test_unknown_split_lists_the_valid_ones(make_cifar):
    fake = make_cifar("cifar10", rows=1)
    with pytest.raises(DatasetError, match="no split 'dev'; choose one of: train, val, all"):
        open_dataset(fake.root, "dev")


def test_missing_path_is_reported_as_such(tmp_path):
    with pytest.raises(DatasetError, match="nope: no such file or directory"):
        open_dataset(tmp_path / "nope")


def test_single_image_path_suggests_its_folder(tmp_path, write_png):
    image = write_png(tmp_path / "one.png", color(1))
    with pytest.raises(DatasetError, match=f"pass its folder \\({tmp_path}\\)"):
        open_dataset(image)


def test_non_image_file_path_is_not_a_dataset_folder(tmp_path):
    (tmp_path / "labels.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="is a file, not a dataset folder"):
        open_dataset(tmp_path / "labels.csv")


@pytest.mark.parametrize("contents", ["nothing", "only other files", "only empty class folders"])
def test_folder_with_nothing_usable_says_what_was_looked_for(tmp_path, contents):
    if contents == "only other files":
        (tmp_path / "notes.txt").write_text("hi")
    elif contents == "only empty class folders":
        (tmp_path / "cat").mkdir()
    with pytest.raises(DatasetError, match="no dataset found|no images found"):
        open_dataset(tmp_path)


def test_split_layout_without_a_val_folder_says_where_val_goes(tmp_path, write_png):
    write_png(tmp_path / "train" / "a" / "1.png", color(1))
    assert list_splits(tmp_path) == ("train",)
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path, "val")
    assert f"put held-out images in {tmp_path}/val/<class>/" in str(info.value)
    assert "move the class folders" not in str(info.value)


# ----------------------------------------------------------------------------- links and special files


def _odd_entries(folder) -> list[str]:
    """A symlink loop, a dangling symlink and a FIFO, each named like an image, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "l1.png").symlink_to("l2.png")
    (folder / "l2.png").symlink_to("l1.png")
    (folder / "dangling.png").symlink_to("gone.png")
    os.mkfifo(folder / "fifo.png")
    return ["dangling.png", "fifo.png", "l1.png", "l2.png"]


POSIX = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX's")


@POSIX
def test_flat_folder_lists_links_that_loop_or_dangle_and_fifos_and_reading_them_says_why(tmp_path, write_png):
    # A loop made DirEntry.is_file raise and refused the whole folder; the others vanished.
    odd = _odd_entries(tmp_path)
    write_png(tmp_path / "good.png", color(1))
    (tmp_path / "link-to-good.png").symlink_to("good.png")
    ds = open_dataset(tmp_path)
    assert ds.kind == "folder"
    assert [os.path.basename(s) for s in ds.sources] == sorted([*odd, "good.png", "link-to-good.png"])
    reasons = {}
    for i, source in enumerate(ds.sources):
        try:
            ds.read(i)
        except ImageReadError as error:
            reasons[os.path.basename(source)] = error.reason
    assert reasons == {
        "dangling.png": "dangling symbolic link (its target does not exist)",
        "fifo.png": "not a regular file (FIFO)",
        "l1.png": "symbolic link loop (too many levels of symbolic links)",
        "l2.png": "symbolic link loop (too many levels of symbolic links)",
    }


@POSIX
def test_imagefolder_lists_links_that_loop_or_dangle_and_fifos_in_class_folders(tmp_path, write_png):
    odd = _odd_entries(tmp_path / "cat")
    write_png(tmp_path / "dog" / "a.png", color(1))
    (tmp_path / "loop").symlink_to("loop")  # a looping link beside the class folders is no class
    ds = open_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert [os.path.relpath(s, tmp_path) for s in ds.sources] == [*(f"cat/{n}" for n in odd), "dog/a.png"]
    assert ds.labels.tolist() == [0, 0, 0, 0, 1]


@POSIX
def test_stats_on_a_folder_holding_a_fifo_skips_it_with_its_reason_and_does_not_hang(tmp_path, write_png):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", color(i))
    os.mkfifo(tmp_path / "x.png")  # reading it would block until a writer comes: forever
    run = subprocess.run([sys.executable, "-m", "augkit", "stats", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["images"] == 3
    assert report["skipped"] == [{"path": str(tmp_path / "x.png"), "reason": "not a regular file (FIFO)"}]


# ----------------------------------------------------------------------------- reading options


def test_dataset_read_forwards_the_orientation_and_background_to_the_reader(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to show
    rgba = np.zeros((2, 4, 4), np.uint8)  # transparent black, 4 wide x 2 high as stored
    Image.fromarray(rgba, "RGBA").save(tmp_path / "icon.png", exif=exif.tobytes())
    ds = open_dataset(tmp_path)
    assert ds.read(0).shape == (4, 2, 3) and ds.read(0).min() == 255  # shown, on white
    assert ds.read(0, exif_orientation=False).shape == (2, 4, 3)
    assert ds.read(0, background="black").max() == 0
    assert ds.read(0, background=(10, 20, 30))[0, 0].tolist() == [10, 20, 30]


# ----------------------------------------------------------------------------- CIFAR batches that stand for more than they hold


def _write_batch(root, name, data, labels):
    (root / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))


CAPPED = pytest.mark.skipif(sys.platform == "win32", reason="caps a process's memory with resource.setrlimit (POSIX)")


def limited(command: list[str]) -> subprocess.CompletedProcess:
    """``command`` run with its address space capped at 2 GiB (augkit needs under 0.5): were a
    bomb to go off, it would end there in a MemoryError, not take this machine's memory."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=cap)


@CAPPED
def test_cifar_labels_that_stand_for_gigabytes_are_refused_before_numpy_sees_them(make_cifar):
    """A batch of under 100 KB whose labels are 714 references to one list of 714 references to
    one list of 714 zeros: numpy would turn them into 714**3 int64, 2.9 GiB."""
    fake = make_cifar("cifar10", rows=1)
    row = [0] * 714
    _write_batch(fake.root, "data_batch_2", np.zeros((1, 3072), np.uint8), [[row] * 714] * 714)
    assert (fake.root / "data_batch_2").stat().st_size < 100_000
    done = limited([sys.executable, "-m", "augkit", "stats", str(fake.root)])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"Error: {fake.root / 'data_batch_2'}: expected the labels of its 1 images, a list of 1 class indices "
        f"(0 or more), found a list of 714 whose item 0 is a list; not a CIFAR batch"
    )


# fault -> (data, labels, what the one line says after "<file>: ")
CIFAR_FAULTS = {
    "labels of bools": (np.zeros((1, 3072), np.uint8), [True], "found a list of 1 whose item 0 is a bool"),
    "labels of floats": (np.zeros((1, 3072), np.uint8), [1.0], "found a list of 1 whose item 0 is a float"),
    "a negative label": (np.zeros((1, 3072), np.uint8), [-1], "found a list of 1 whose item 0 is -1"),
    "a label of 31 digits": (np.zeros((1, 3072), np.uint8), [10**30], f"whose item 0 is {10**30}"),
    "fewer labels than images": (np.zeros((2, 3072), np.uint8), [0], "labels of its 2 images, a list of 2 class "
                                                                    "indices (0 or more), found a list of 1;"),
    "labels in a dict": (np.zeros((1, 3072), np.uint8), {0: 0}, "found a dict;"),
    "labels in a 2-D array": (np.zeros((1, 3072), np.uint8), np.zeros((1, 1), np.int64),
                              "found a int64 array of shape (1, 1);"),
    "data as nested lists": ([[0] * 3072], [0], "'data' is not an N x 3072 uint8 array"),
    "data as bytes of a part of a row": (bytes(3000), [0], "'data' is not an N x 3072 uint8 array"),
    "data as 16-bit pixels": (np.zeros((1, 3072), np.uint16), [0], "'data' is not an N x 3072 uint8 array"),
}  # fmt: skip


@pytest.mark.parametrize("fault", CIFAR_FAULTS)
def test_a_cifar_batch_holding_the_wrong_types_or_lengths_is_one_line(make_cifar, fault):
    fake = make_cifar("cifar10", rows=1)
    data, labels, message = CIFAR_FAULTS[fault]
    _write_batch(fake.root, "data_batch_3", data, labels)
    with pytest.raises(DatasetError, match=re.escape(f"{fake.root / 'data_batch_3'}: ") + ".*" + re.escape(message)):
        open_dataset(fake.root)


def test_cifar_data_as_raw_bytes_of_whole_rows_reads_like_an_array(make_cifar):
    fake = make_cifar("cifar10", rows=2)
    _write_batch(fake.root, "data_batch_1", fake.train_rows[:2].tobytes(), [int(v) for v in fake.train_labels[:2]])
    ds = open_dataset(fake.root)
    np.testing.assert_array_equal(ds.read(1), cifar_row_as_image(fake.train_rows[1]))


class _Reduced:
    """Pickles as ``function(*arguments)``."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _hex_doubled(times):
    """bytes that ``codecs.encode(..., "hex")`` doubles ``times`` over: 2**times bytes from one."""
    import codecs

    value = b"x"
    for _ in range(times):
        value = _Reduced(codecs.encode, value, "hex")
    return value


@CAPPED
@pytest.mark.parametrize(
    ("payload", "message"),
    [(_hex_doubled(40), "_codecs.encode is allowed only for bytes pickled as latin-1 text"),  # 1 TiB if run
     (_Reduced(cifar._reconstruct, np.ndarray, (100_000, 100_000), b"b"),  # 10 GB if run
      "numpy arrays are pickled as empty (0,) arrays, not (100000, 100000)")],
    ids=["hex-doubled-40-times", "array-of-10-GB"],
)  # fmt: skip
def test_allowed_names_called_in_ways_real_batches_never_do_are_refused(tmp_path, payload, message):
    blob = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    assert len(blob) < 2000
    if "hex" in message:  # the payload is live: a short chain of it grows as promised
        assert len(pickle.loads(pickle.dumps(_hex_doubled(10), protocol=2))) == 1024
    (tmp_path / "data_batch_1").write_bytes(blob)
    code = f"import augkit.io.cifar as c; from pathlib import Path; c.load_pickle(Path({str(tmp_path / 'data_batch_1')!r}))"
    done = limited([sys.executable, "-c", code])
    assert done.returncode == 1 and "DatasetError" in done.stderr, done.stderr
    assert f"not a CIFAR batch (UnpicklingError: {message})" in done.stderr.strip().splitlines()[-1]


def test_cifar_meta_with_200000_class_names_opens_in_linear_time(make_cifar):
    fake = make_cifar("cifar10", rows=1)
    names = [f"c{i:06d}".encode() for i in range(200_000)][::-1]  # not sorted: every name moves
    (fake.root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    code = f"import augkit; print(len(augkit.open_dataset({str(fake.root)!r}).classes))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)  # a hang's limit
    assert done.returncode == 0 and done.stdout.strip() == "200000", done.stderr
