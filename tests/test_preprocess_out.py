"""What `augkit preprocess` reads back from OUT and what it may delete there: a damaged manifest is
one line and OUT is kept; a complete manifest untrue to its files is never "already complete"
and `--overwrite` rebuilds it; a damaged shard record is done again; a damaged packed array is
one line from `open_dataset`; `--overwrite` deletes only what augkit wrote, as it wrote it (a
user's file named like one a copied manifest lists is kept); a full disk at the
first manifest (a real tmpfs) is one line; names that are not UTF-8 are processed or skipped,
and the manifest keeps them exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from augkit import open_dataset
from augkit.errors import DatasetError
from augkit.stats import ChannelStats
from test_preprocess_faults import fill_the_disk_at

FLAGS = ["--size", "16", "--shard-size", "2"]  # 7 images: 4 shards
OTHER = ["--size", "8", "--shard-size", "2"]  # a run with other settings


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def src(make_image_folder) -> Path:
    return make_image_folder({"cat": 4, "dog": 3})


@pytest.fixture
def clean(src, preprocess_cli, tmp_path) -> Path:
    """A complete run of FLAGS: what every repaired or resumed run must end as."""
    out = tmp_path / "clean"
    assert preprocess_cli(src, out, *FLAGS).exit_code == 0
    return out


# ----------------------------------------------------------------------------- a damaged manifest

# damage -> (what it does to a complete manifest, what the one line says after "manifest.json: ")
DAMAGED_MANIFESTS = {
    "files is 5": (lambda m: m.update(files=5), "'files' is 5, expected a list of objects"),
    "a file entry is []": (lambda m: m["files"].insert(0, []), "'files[0]' is [], expected an object"),
    "a file outside OUT": (lambda m: m["files"][0].update(path="/etc/hostname"),
                           "'files[0].path' is '/etc/hostname', which is not a file in"),
    "shards is an object": (lambda m: m.update(shards={}), "'shards' is {}, expected a list of objects"),
    "a count is text": (lambda m: m["counts"]["train"].update(images="4"),
                        "'counts.train.images' is '4', expected an integer"),
    "a skipped file without its reason": (lambda m: m.update(skipped=[{"path": "x.png", "split": "train"}]),
                                          "'skipped[0].reason' is missing, expected a string"),
    "config is a list": (lambda m: m.update(config=[]), "'config' is [], expected an object"),
    "a class is a number": (lambda m: m.update(classes=[1, "dog"]), "'classes[0]' is 1, expected a string"),
    "stats elsewhere": (lambda m: m.update(stats="../stats.json"), "'stats' is '../stats.json', expected 'stats.json'"),
    "no output": (lambda m: m.pop("output"), "'output' is missing, expected an object"),
    "complete is text": (lambda m: m.update(complete="yes"), "'complete' is 'yes', expected true or false"),
    "an unfinished run's config is a list": (lambda m: m.update(complete=False, config=[]),
                                             "'config' is [], expected an object"),
}  # fmt: skip


@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun", "overwrite"])
@pytest.mark.parametrize("damage", DAMAGED_MANIFESTS)
def test_a_damaged_manifest_is_one_line_and_out_is_kept(
    src, clean, preprocess_cli, assert_fails, tree_digest, damage, overwrite
):
    change, message = DAMAGED_MANIFESTS[damage]
    data = manifest(clean)
    change(data)
    write_json(clean / "manifest.json", data)
    before = tree_digest(clean)
    line = assert_fails(preprocess_cli(src, clean, *FLAGS, *(["--overwrite"] if overwrite else [])), 2, message)
    assert line.startswith(f"Error: {clean / 'manifest.json'}: ") and "the output is damaged" in line
    assert tree_digest(clean) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"format": "augkit.preprocess/1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested more than"),
     ('{"format": "augkit.preprocess/1", "complete": tru', "not valid JSON"),
     (b'{"format": "augkit.preprocess/1", "source": "caf\xe9"}', "is not UTF-8")],
    ids=["nested-1e5-deep", "cut-short", "not-utf-8"],
)  # fmt: skip
def test_a_manifest_that_is_not_readable_json_is_one_line_and_out_is_kept(
    src, clean, preprocess_cli, assert_fails, tree_digest, text, message
):
    (clean / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    before = tree_digest(clean)
    assert_fails(preprocess_cli(src, clean, *FLAGS, "--overwrite"), 2, "manifest.json", message)
    assert tree_digest(clean) == before


# ----------------------------------------------------------------------------- a manifest untrue to its files


def as_an_earlier_version_wrote_an_empty_split(out: Path, data: dict) -> None:
    """Make OUT what augkit wrote, before it refused them, for a split whose every image was
    skipped: arrays of no image, listed with their checksums, and shape [0, 0, 3]."""
    for what, array in (("images", np.zeros((0, 0, 0, 3), np.uint8)), ("labels", np.zeros(0, np.int64))):
        np.save(out / f"train_{what}.npy", array)
        [entry] = [f for f in data["files"] if f["path"] == f"train_{what}.npy"]
        entry["sha256"] = hashlib.sha256((out / f"train_{what}.npy").read_bytes()).hexdigest()
    data["output"]["splits"]["train"].update(count=0, shape=[0, 0, 3])
    data["counts"]["train"]["images"] = 0


def splits(data: dict) -> dict:
    return data["output"]["splits"]


# damage -> (what it does to a clean complete OUT and its manifest, what the one line says,
#            whether open_dataset refuses the result too)
UNTRUE_MANIFESTS = {
    "train count": (lambda out, m: splits(m)["train"].update(count=5),
                    "its manifest's 'output.splits.train.count' is 5 where its files say 7", True),
    "train shape": (lambda out, m: splits(m)["train"].update(shape=[8, 8, 3]),
                    "its manifest's 'output.splits.train.shape' is [8, 8, 3] where its files say [16, 16, 3]", True),
    "train images": (lambda out, m: splits(m)["train"].update(images="x.npy"),
                     "its manifest's 'output.splits.train.images' is 'x.npy' where its files say 'train_images.npy'",
                     True),
    "a split that is not there": (lambda out, m: splits(m).update(val=dict(splits(m)["train"])),
                                  "its manifest's 'output.splits.val' is {", False),
    "a count that is a float": (lambda out, m: splits(m)["train"].update(count=7.0),
                                "'output.splits.train.count' is 7.0 where its files say 7", False),
    "counts of another number of images": (lambda out, m: m["counts"]["train"].update(images=9),
                                           "its manifest's 'counts.train.images' is 9 where its files say 7", False),
    "an empty split, as an earlier version wrote it": (as_an_earlier_version_wrote_an_empty_split,
                                                       "its train split holds no image", True),
}  # fmt: skip


@pytest.mark.parametrize("damage", UNTRUE_MANIFESTS)
def test_a_complete_out_whose_manifest_is_untrue_to_its_files_is_one_line_and_overwrite_rebuilds_it(
    src, clean, preprocess_cli, assert_fails, tree_digest, damage
):
    change, message, unreadable = UNTRUE_MANIFESTS[damage]
    expected = tree_digest(clean)
    data = manifest(clean)
    change(clean, data)
    write_json(clean / "manifest.json", data)
    before = tree_digest(clean)
    line = assert_fails(preprocess_cli(src, clean, *FLAGS), 2, message)  # not "already complete"
    assert line.startswith(f"Error: OUT ({clean}) is complete but ")
    assert line.endswith("; rerun with --overwrite to rebuild it")
    assert tree_digest(clean) == before
    if unreadable:  # what open_dataset and `augkit train` say of it: the two agree
        with pytest.raises(DatasetError, match="the output is damaged: write it again with `augkit preprocess`"):
            open_dataset(clean)
    assert preprocess_cli(src, clean, *FLAGS, "--overwrite").exit_code == 0
    assert tree_digest(clean) == expected
    assert len(open_dataset(clean)) == 7


def test_a_complete_folder_out_whose_manifest_miscounts_its_files_is_rebuilt_with_overwrite(
    src, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    out, flags = tmp_path / "out", [*FLAGS, "--format", "folder"]
    assert preprocess_cli(src, out, *flags).exit_code == 0
    expected = tree_digest(out)
    data = manifest(out)
    splits(data)["train"]["count"] = 6
    write_json(out / "manifest.json", data)
    assert_fails(preprocess_cli(src, out, *flags), 2, "'output.splits.train.count' is 6 where its files say 7")
    assert preprocess_cli(src, out, *flags, "--overwrite").exit_code == 0
    assert tree_digest(out) == expected


# ----------------------------------------------------------------------------- a damaged shard record


def forge(out: Path, shard: str, images: np.ndarray, **record: object) -> None:
    """Replace a done shard's images with ``images``, its record made to match them, checksums
    included, and then changed by ``record``: a record no checksum can tell from a real one."""
    path = out / ".shards" / f"{shard}.images.npy"
    np.save(path, images)
    data = json.loads((out / ".shards" / f"{shard}.json").read_text())
    data["files"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    data.update(record)
    write_json(out / ".shards" / f"{shard}.json", data)


# damage -> what it does to train-00000's record (a done shard of two 16 x 16 RGB images)
DAMAGED_RECORDS = {
    "[]": lambda out, record: write_json(record, []),
    "not JSON": lambda out, record: record.write_text("{\"id\": "),
    "no files": lambda out, record: write_json(record, {**json.loads(record.read_text()), "files": 5}),
    "a label past the last class": lambda out, record: write_json(record, {**json.loads(record.read_text()),
                                                                           "labels": {"7": 2}}),
    "a label that is not a number": lambda out, record: write_json(record, {**json.loads(record.read_text()),
                                                                            "labels": {"--1": 2}}),
    "statistics that are not": lambda out, record: write_json(record, {**json.loads(record.read_text()),
                                                                       "stats": {"format": "nope"}}),
    "a file outside OUT": lambda out, record: write_json(record, {**json.loads(record.read_text()), "files": [
        {"path": "/etc/hostname", "sha256": "0" * 64}, json.loads(record.read_text())["files"][1]]}),
    "images of another size": lambda out, record: forge(out, "train-00000", np.zeros((2, 8, 8, 3), np.uint8),
                                                        shape=[8, 8, 3]),
    "more images than its count": lambda out, record: forge(out, "train-00000", np.zeros((3, 16, 16, 3), np.uint8)),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGED_RECORDS)
def test_a_damaged_shard_record_is_done_again_and_the_run_ends_as_a_clean_one(
    src, clean, preprocess_cli, tree_digest, tmp_path, monkeypatch, damage
):
    out = tmp_path / "out"
    fill_the_disk_at(monkeypatch, "augkit.preprocess.shard", 7)  # images, labels, record: 2 shards done
    assert preprocess_cli(src, out, *FLAGS).exit_code == 1
    monkeypatch.undo()
    DAMAGED_RECORDS[damage](out, out / ".shards" / "train-00000.json")
    result = preprocess_cli(src, out, *FLAGS)
    assert result.exit_code == 0 and "resumed: 1 of 4 shards" in result.output, result.output
    assert tree_digest(out) == tree_digest(clean)


# ----------------------------------------------------------------------------- a damaged packed array


def npy_claiming(shape: tuple[int, ...], dtype: str) -> bytes:
    """A .npy file whose header says ``shape`` and which holds 8 bytes of data."""
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(8)


# damage -> (what it does to a clean packed output, the file named, what the one line says)
DAMAGED_ARRAYS = {
    "labels claiming 10**11 rows": (lambda out: (out / "train_labels.npy").write_bytes(npy_claiming((10**11,), "<i8")),
                                    "train_labels.npy",
                                    r"its header says int64 of shape \(100000000000,\), 800,000,000,000 bytes, but 8"),
    "images claiming 7 x 100000 x 100000": (
        lambda out: (out / "train_images.npy").write_bytes(npy_claiming((7, 100_000, 100_000, 3), "|u1")),
        "train_images.npy", "its header says uint8 of shape \\(7, 100000, 100000, 3\\), 210,000,000,000 bytes"),
    "images of another size than the manifest says": (
        lambda out: np.save(out / "train_images.npy", np.zeros((7, 8, 8, 3), np.uint8)),
        "train_images.npy", r"images of shape \(8, 8, 3\), but the manifest says \(16, 16, 3\)"),
    "a FIFO for the images": (lambda out: ((out / "train_images.npy").unlink(), os.mkfifo(out / "train_images.npy")),
                              "train_images.npy", "the .npy array is a FIFO, not a regular file"),
}  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGED_ARRAYS)
def test_open_dataset_of_a_damaged_packed_output_is_one_line(clean, damage):
    change, file, message = DAMAGED_ARRAYS[damage]
    change(clean)
    with pytest.raises(DatasetError, match=f"^{re.escape(str(clean / file))}: {message}"):
        open_dataset(clean)


def test_a_packed_output_reads_back_exactly_after_its_arrays_are_checked(src, clean):
    dataset = open_dataset(clean)
    assert len(dataset) == 7 and dataset.read(6).shape == (16, 16, 3)
    np.testing.assert_array_equal(np.stack([dataset.read(i) for i in range(7)]), np.load(clean / "train_images.npy"))


# ----------------------------------------------------------------------------- --overwrite


def test_overwrite_keeps_a_users_file_and_deletes_nothing(src, clean, preprocess_cli, assert_fails, tree_digest):
    (clean / "notes.txt").write_text("my notes about this dataset\n")
    (clean / "train").mkdir()  # a user's folder, named like a split of the folder format
    (clean / "train" / "keep.png").write_bytes(b"a user's image")
    before = tree_digest(clean)
    line = assert_fails(preprocess_cli(src, clean, *OTHER, "--overwrite"), 2, "nothing was deleted")
    assert "(notes.txt, train/keep.png)" in line
    assert tree_digest(clean) == before


@pytest.mark.parametrize("claims", ["one line", "a whole header"])
def test_overwrite_of_a_folder_with_a_manifest_that_claims_to_be_augkits_deletes_nothing(
    src, preprocess_cli, assert_fails, tree_digest, tmp_path, claims
):
    folder = tmp_path / "photos"
    (folder / "2024").mkdir(parents=True)
    (folder / "2024" / "beach.jpg").write_bytes(b"a user's photo")
    (folder / "todo.txt").write_text("sort the photos\n")
    if claims == "one line":
        (folder / "manifest.json").write_text('{"format": "augkit.preprocess/1"}\n')
        expected = "'augkit_version' is missing"
    else:
        write_json(folder / "manifest.json", {
            "format": "augkit.preprocess/1", "augkit_version": "0.0.1", "source": {"path": "/x", "kind": "folder"},
            "config": {}, "classes": [], "complete": False})  # fmt: skip
        expected = "nothing was deleted"
    before = tree_digest(folder)
    assert_fails(preprocess_cli(src, folder, *FLAGS, "--overwrite"), 2, expected)
    assert tree_digest(folder) == before


@pytest.mark.parametrize(
    ("out_format", "state"),
    [("packed", "complete"), ("folder", "complete"), ("packed", "stopped part-way"), ("folder", "stopped part-way"),
     ("folder", "stopped mid-shard"), ("packed", "stopped while assembling"), ("packed", "stopped at its manifest"),
     ("packed", "complete, as an older augkit wrote it")],
)  # fmt: skip
def test_overwrite_deletes_every_file_augkit_wrote_and_ends_as_a_clean_run(
    src, preprocess_cli, tree_digest, tmp_path, monkeypatch, out_format, state
):
    flags = [*FLAGS, "--format", out_format]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(src, clean, *flags).exit_code == 0
    if state == "stopped mid-shard":  # an image written, its shard's record not: no record names it
        fill_the_disk_at(monkeypatch, "augkit.preprocess.shard", 3)  # the shard's start list, then 1 image
        assert preprocess_cli(src, out, *OTHER, "--format", out_format).exit_code == 1
        monkeypatch.undo()
        assert not [p for p in (out / ".shards").glob("*.json") if not p.name.endswith(".started.json")]
        assert any(p.is_file() for p in (out / "train").rglob("*"))
    elif state == "stopped part-way":  # shard records and files, no complete manifest
        fill_the_disk_at(monkeypatch, "augkit.preprocess.shard", 4)  # the first shard's 3 writes done
        assert preprocess_cli(src, out, *OTHER, "--format", out_format).exit_code == 1
        monkeypatch.undo()
        assert manifest(out)["complete"] is False and any((out / ".shards").glob("*.json"))
    elif state.startswith("stopped"):  # final files that no manifest lists yet: what the shards make
        fill_the_disk_at(monkeypatch, STOPPED_WHILE_FINISHING[state], 1)
        assert preprocess_cli(src, out, *OTHER).exit_code == 1
        monkeypatch.undo()
        assert manifest(out)["complete"] is False and (out / "train_images.npy").is_file()
        assert (out / "stats.json").is_file() is (state == "stopped at its manifest")
    else:
        assert preprocess_cli(src, out, *OTHER, "--format", out_format).exit_code == 0
        if state == "complete, as an older augkit wrote it":  # no checksum of its statistics
            data = manifest(out)
            del data["stats_sha256"]
            write_json(out / "manifest.json", data)
    result = preprocess_cli(src, out, *flags, "--overwrite")
    assert result.exit_code == 0, result.output
    assert tree_digest(out) == tree_digest(clean)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()) == sorted(
        p.relative_to(clean).as_posix() for p in clean.rglob("*") if p.is_dir()
    )


# where the disk fills -> what a run stopped while finishing leaves
STOPPED_WHILE_FINISHING = {
    "stopped while assembling": "augkit.stats.channel_stats",  # the final arrays; not stats.json
    "stopped at its manifest": "augkit.preprocess.assembly",  # the final arrays and stats.json
}


def users_stats(path: Path) -> None:
    """A user's own statistics file, as `augkit stats` writes one, of 5 images of their own."""
    images = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    ChannelStats().update_many(list(images)).save(path)


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory) -> Path:
    """`augkit preprocess sample_data/digits OUT`, a real, complete output."""
    out = tmp_path_factory.mktemp("digits") / "OUT"
    done = subprocess.run(augkit_preprocess(DIGITS, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


DIGITS = Path(__file__).resolve().parents[1] / "sample_data" / "digits"


def augkit_preprocess(*args: object) -> list[str]:
    return [sys.executable, "-m", "augkit", "preprocess", *map(str, args)]


def as_an_older_augkit_wrote_it(data: dict) -> None:
    del data["stats_sha256"]  # manifests before stats.json had a checksum: checked by what it holds


def unfinished_with_other_settings(data: dict) -> None:
    data.update(complete=False, config={**data["config"], "size": [4, 4]})


# the user's file -> (its content, what becomes of the copied manifest)
USERS_FILES = {
    "train_images.npy, as QA found": ("train_images.npy", lambda path: path.write_text("MY OWN DATA\n"), None),
    "train_images.npy beside an unfinished run's manifest": (
        "train_images.npy", lambda path: path.write_text("MY OWN DATA\n"), unfinished_with_other_settings),
    "stats.json": ("stats.json", users_stats, None),
    "stats.json beside an older augkit's manifest": ("stats.json", users_stats, as_an_older_augkit_wrote_it),
}  # fmt: skip


@pytest.mark.parametrize("users_file", USERS_FILES)
def test_overwrite_keeps_a_users_file_named_like_one_a_copied_manifest_lists(
    digits_out, tree_digest, tmp_path, users_file
):
    # `augkit preprocess sample_data/digits OUT; mkdir f; cp OUT/manifest.json f/;
    #  echo 'MY OWN DATA' > f/train_images.npy; augkit preprocess sample_data/digits f --overwrite`
    # exited 0 and replaced the user's file: it was augkit's by its name alone.
    name, write, change = USERS_FILES[users_file]
    folder = tmp_path / "f"
    folder.mkdir()
    data = manifest(digits_out)
    if change is not None:
        change(data)
    write_json(folder / "manifest.json", data)
    write(folder / name)
    before = tree_digest(folder)
    done = subprocess.run(augkit_preprocess(DIGITS, folder, "--overwrite"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: OUT ({folder}) holds what augkit did not write") and f"({name})" in line, line
    assert "nothing was deleted" in line
    assert tree_digest(folder) == before  # the user's file byte for byte, and nothing written


@pytest.mark.parametrize("manifest_kind", ["recorded", "as an older augkit wrote it"])
def test_a_changed_stats_json_is_named_and_kept_until_moved_then_overwrite_rebuilds(
    src, clean, preprocess_cli, assert_fails, tree_digest, manifest_kind
):
    expected = tree_digest(clean)
    if manifest_kind != "recorded":
        data = manifest(clean)
        as_an_older_augkit_wrote_it(data)
        write_json(clean / "manifest.json", data)
    (clean / "stats.json").write_text("{")
    before = tree_digest(clean)
    says = "stats.json changed since" if manifest_kind == "recorded" else "its statistics do not load"
    assert_fails(preprocess_cli(src, clean, *FLAGS), 2, says, "move it elsewhere first", "--overwrite")
    assert_fails(preprocess_cli(src, clean, *FLAGS, "--overwrite"), 2, "(stats.json)", "nothing was deleted")
    assert tree_digest(clean) == before
    (clean / "stats.json").unlink()  # moved away, as the line says: the rest is augkit's
    assert preprocess_cli(src, clean, *FLAGS, "--overwrite").exit_code == 0
    assert tree_digest(clean) == expected


@pytest.mark.parametrize(
    ("state", "name"),
    [("stopped part-way", "train_images.npy"), ("stopped while assembling", "train_images.npy"),
     ("stopped at its manifest", "train_images.npy"), ("stopped at its manifest", "stats.json")],
)  # fmt: skip
def test_overwrite_keeps_a_users_file_where_a_stopped_run_would_write_its_own(
    src, preprocess_cli, assert_fails, tree_digest, tmp_path, monkeypatch, state, name
):
    out = tmp_path / "out"
    if state == "stopped part-way":
        fill_the_disk_at(monkeypatch, "augkit.preprocess.shard", 4)  # the first shard's 3 writes done
    else:
        fill_the_disk_at(monkeypatch, STOPPED_WHILE_FINISHING[state], 1)
    assert preprocess_cli(src, out, *OTHER).exit_code == 1
    monkeypatch.undo()
    # Valid files of the kind augkit's would be (an array of their shape and type, statistics):
    # only their content is the user's.
    if name == "stats.json":
        users_stats(out / name)
    else:
        np.save(out / name, np.full((7, 8, 8, 3), 7, np.uint8))
    before = tree_digest(out)
    assert_fails(preprocess_cli(src, out, *FLAGS, "--overwrite"), 2, f"({name})", "nothing was deleted")
    assert tree_digest(out) == before


@pytest.mark.skipif(sys.platform != "linux", reason="kills a process group")
def test_overwrite_clears_what_a_run_killed_with_kill_9_left(make_image_folder, preprocess_cli, tree_digest, tmp_path):
    src = make_image_folder({f"class{c}": 100 for c in range(4)}, sizes=((48, 48),))
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(src, clean, *FLAGS).exit_code == 0
    process = subprocess.Popen(augkit_preprocess(src, out, "--workers", "2", "--shard-size", "10", "-q"),
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any((out / ".shards").glob("*.json")):  # a shard's record, or its start: then kill
        assert process.poll() is None, "the run ended before a shard was written"
        assert time.monotonic() < deadline, "no shard was written"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL and manifest(out)["complete"] is False
    result = preprocess_cli(src, out, *FLAGS, "--overwrite")
    assert result.exit_code == 0, result.output
    assert tree_digest(out) == tree_digest(clean)


# ----------------------------------------------------------------------------- a full disk (real)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``folder``; skips the test where mounting is not allowed."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): needs root on Linux")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte; returns the file that does."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(4096))
    return filler


@pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs")
def test_a_full_disk_at_the_first_manifest_is_one_line_and_a_rerun_completes(
    src, clean, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        filler = fill(disk)
        out = disk / "out"
        result = preprocess_cli(src, out, *FLAGS)
        line = assert_fails(result, 1, f"no space left writing {out / 'manifest.json'} (0 of 4 shards done)")
        assert line.endswith("free some space and run the same command again to resume")
        assert not (out / "manifest.json").exists() and not list(out.iterdir())  # nothing half-written
        filler.unlink()
        assert preprocess_cli(src, out, *FLAGS).exit_code == 0
        assert tree_digest(out) == tree_digest(clean)


@pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs")
def test_a_full_disk_while_assembling_leaves_no_temporary_array_and_a_rerun_completes(
    make_image_folder, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    src = make_image_folder({"cat": 40, "dog": 40})
    flags = ["--size", "32", "--shard-size", "20"]
    clean = tmp_path / "clean"
    assert preprocess_cli(src, clean, *flags).exit_code == 0
    # Room for the shards (the same bytes as the final arrays, in 4 shards of 3 files each),
    # the small files, and half of the assembled images: the disk fills while the final
    # array is being written.
    pages = sum(-(-p.stat().st_size // 4096) for p in clean.iterdir() if p.is_file())
    final = (clean / "train_images.npy").stat().st_size
    size = (pages + 4 * 3 + 8) * 4096 + final // 2
    with tmpfs(tmp_path / "disk", str(size)) as disk:
        out = disk / "out"
        assert_fails(preprocess_cli(src, out, *flags), 1, "no space left writing", "(4 of 4 shards done)")
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # was .train_images.npy.assemble.tmp
        subprocess.run(["mount", "-o", f"remount,size={4 * size}", str(disk)], check=True)
        assert preprocess_cli(src, out, *flags).exit_code == 0
        assert tree_digest(out) == tree_digest(clean)


# ----------------------------------------------------------------------------- names that are not UTF-8


def write_png(path: bytes, value: int) -> None:
    ok, buf = cv2.imencode(".png", np.full((20, 20, 3), value, np.uint8))
    assert ok
    with open(path, "wb") as f:
        f.write(buf.tobytes())


@pytest.fixture
def latin1_src(tmp_path) -> Path:
    """A dataset whose names are Latin-1 bytes, not UTF-8: a class "été", "café.png", and a
    broken "bad\\xff.png"; as os.fsencode spells them."""
    root = tmp_path / "src"
    for folder in (b"cat", b"\xe9t\xe9"):
        os.makedirs(os.path.join(os.fsencode(root), folder))
    write_png(os.path.join(os.fsencode(root), b"cat", b"caf\xe9.png"), 50)
    write_png(os.path.join(os.fsencode(root), b"cat", b"plain.png"), 100)
    write_png(os.path.join(os.fsencode(root), b"\xe9t\xe9", b"x.png"), 150)
    with open(os.path.join(os.fsencode(root), b"cat", b"bad\xff.png"), "wb") as f:
        f.write(b"not an image")
    return root


@pytest.mark.skipif(sys.platform == "win32", reason="Windows names are UTF-16, never undecodable bytes")
@pytest.mark.parametrize("out_format", ["packed", "folder"])
def test_names_that_are_not_utf8_are_processed_or_skipped_and_kept_exactly(latin1_src, tmp_path, out_format):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "augkit", "preprocess", str(latin1_src), str(out), "--format", out_format]
    done = subprocess.run(command, capture_output=True, timeout=300)  # bytes: a real terminal's pipe
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    data = json.loads((out / "manifest.json").read_bytes().decode("utf-8"))  # valid UTF-8, whatever the names
    assert [os.fsencode(name) for name in data["classes"]] == [b"cat", b"\xe9t\xe9"]
    [skipped] = data["skipped"]
    assert os.fsencode(skipped["path"]) == os.path.join(os.fsencode(latin1_src), b"cat", b"bad\xff.png")
    assert data["counts"]["train"]["images"] == 3
    if out_format == "folder":
        written = sorted(os.fsencode(entry["path"]) for entry in data["files"])
        assert written == [b"train/cat/caf\xe9.png", b"train/cat/plain.png", b"train/\xe9t\xe9/x.png"]
        assert all(os.path.isfile(os.path.join(os.fsencode(out), name)) for name in written)
    else:
        np.testing.assert_array_equal(np.load(out / "train_images.npy")[:, 0, 0, 0], [50, 100, 150])
    again = subprocess.run(command, capture_output=True, timeout=300)  # the manifest reads back as written
    assert again.returncode == 0 and b"already complete" in again.stdout, again.stderr


# ----------------------------------------------------------------------------- a source that changed


@pytest.mark.parametrize("output", ["packed", "folder"])
def test_a_source_that_changed_since_a_complete_run_is_redone_not_called_complete(src, preprocess_cli, tmp_path, write_png, output):
    # A complete OUT was reported "already complete: nothing to do" after images were added to
    # the source: the settings matched and the shards' inputs were not compared.
    out = tmp_path / "out"
    extra = ["--format", "folder"] if output == "folder" else []
    assert preprocess_cli(src, out, *FLAGS, *extra).exit_code == 0
    rng = np.random.default_rng(5)
    for i in range(3):  # 3 more cats: 10 images
        write_png(src / "cat" / f"new{i}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    result = preprocess_cli(src, out, *FLAGS, *extra)
    assert result.exit_code == 0, result.output
    assert "nothing to do" not in result.output
    assert manifest(out)["counts"]["train"]["images"] == 10
    assert len(open_dataset(out, split="train")) == 10
    for path in sorted((src / "dog").iterdir())[:2]:  # and 2 dogs fewer: 8 images
        path.unlink()
    assert preprocess_cli(src, out, *FLAGS, *extra).exit_code == 0
    assert manifest(out)["counts"]["train"]["images"] == 8
    assert len(open_dataset(out, split="train")) == 8
    if output == "folder":  # no image of the earlier runs left behind beside the 8
        assert sum(1 for p in (out / "train").rglob("*") if p.is_file()) == 8
    assert "nothing to do" in preprocess_cli(src, out, *FLAGS, *extra).output  # now it is complete
