"""augkit.datasets / augkit.cifar: each layout is found, indexed in a fixed order, and read exactly."""

from __future__ import annotations

import os
import pickle
import shlex
import sys

import numpy as np
import pytest

import augkit.datasets
from augkit import cifar
from augkit.datasets import Dataset, list_splits, open_dataset, sample_data_dir
from augkit.errors import DatasetError, ImageReadError


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
    assert image.shape == (8, 8, 3) and label == reference.target[5] and ds.sources[5] == "digits[5]"
    expected = [[round(v * 255 / 16) for v in row] for row in reference.images[5]]
    np.testing.assert_array_equal(image[..., 0], expected)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    assert ds.read(5, gray=True).shape == (8, 8, 1)


def test_digits_without_scikit_learn_says_how_to_install_it(in_empty_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(DatasetError, match=r"pip install 'augkit\[digits\]'"):
        open_dataset("digits")


def test_a_folder_named_digits_wins_over_the_builtin(in_empty_dir, write_png):
    write_png(in_empty_dir / "digits" / "seven" / "1.png", color(7))
    assert open_dataset("digits").kind == "imagefolder"


def test_no_path_opens_the_sample_digits_or_the_builtin_when_absent(tmp_path, write_png, monkeypatch):
    monkeypatch.setattr(augkit.datasets, "sample_data_dir", lambda: tmp_path)
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
