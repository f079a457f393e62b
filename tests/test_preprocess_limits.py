"""`augkit preprocess` within bounds: settings that no image can meet are refused before any
work, shards hold a bounded number of bytes, a split with no image is never a complete OUT,
and file names as long as the filesystem allows are written.

What OUT holds and how it is read back and repaired: test_preprocess_out.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from augkit import open_dataset
from augkit.cli.main import cli
from augkit.errors import AugkitError, DatasetError
from augkit.files import TEMPORARY_NAME
from augkit.preprocess import PreprocessConfig
from augkit.preprocess.plan import MAX_COPIES, MAX_SHARD_BYTES, make_shards, open_splits


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture
def src(make_image_folder) -> Path:
    return make_image_folder({"cat": 3, "dog": 3})


# ----------------------------------------------------------------------------- sizes no image can have

# example -> (flags, what the one line says)
IMPOSSIBLE_SIZES = {
    "99999": (["--size", "99999"], "--size 99999x99999: each side must be a whole number of pixels from 1 to 32767"),
    "32767x2731": (["--size", "32767x2731"],
                   "makes images of 89,486,677 pixels, more than the pixel limit of 89,478,485"),
    "a side past 32767": (["--size", "2x40000", "--resize-mode", "exact"], "from 1 to 32767"),
    "shorter side 9460": (["--size", "9460", "--resize-mode", "shorter", "--format", "folder"],
                          "makes images of 89,491,600 pixels or more"),
    "5000 digits": (["--size", "9" * 5000], "positive integers of at most 9 digits"),
}  # fmt: skip


@pytest.mark.parametrize("example", IMPOSSIBLE_SIZES)
def test_a_size_no_image_can_have_is_one_line_before_any_work(src, preprocess_cli, assert_fails, tmp_path, example):
    flags, message = IMPOSSIBLE_SIZES[example]
    assert_fails(preprocess_cli(src, tmp_path / "out", *flags), 2, message)
    assert not (tmp_path / "out").exists()


def test_the_largest_possible_size_is_accepted_and_one_pixel_more_is_not():
    assert PreprocessConfig(size=(9459, 9459), resize_mode="exact").size == (9459, 9459)  # 89,473,681 pixels
    with pytest.raises(AugkitError, match="more than the pixel limit"):
        PreprocessConfig(size=(32767, 2731))  # 89,486,677 pixels
    with pytest.raises(AugkitError, match="from 1 to 32767"):
        PreprocessConfig(size=(32768, 1), resize_mode="exact")


# ----------------------------------------------------------------------------- a split with no image


def break_images(folder: Path) -> dict[Path, bytes]:
    """Replace every image in ``folder`` with bytes that are no image; returns what they held."""
    kept = {path: path.read_bytes() for path in sorted(folder.rglob("*.png"))}
    for path in kept:
        path.write_bytes(b"not an image")
    return kept


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("out_format", ["packed", "folder"])
def test_a_split_whose_every_image_is_skipped_is_one_line_and_never_a_complete_out(
    make_image_folder, preprocess_cli, assert_fails, tmp_path, split, out_format
):
    src = make_image_folder({"train/cat": 2, "train/dog": 2, "val/cat": 2})
    kept = break_images(src / split)
    out, flags = tmp_path / "out", ["--size", "16", "--shard-size", "1", "--format", out_format]
    count = len(kept)
    assert_fails(preprocess_cli(src, out, *flags), 2,
                 f"every one of the {count} images of the {split} split was skipped (the first: ",
                 f"{split}/cat/0000.png: not an image", "is left unfinished")  # fmt: skip
    assert manifest(out)["complete"] is False
    with pytest.raises(DatasetError, match="an unfinished `augkit preprocess` run"):
        open_dataset(out)
    for path, data in kept.items():  # the files fixed: the same command reads them again
        path.write_bytes(data)
    result = preprocess_cli(src, out, *flags)
    assert result.exit_code == 0, result.output
    assert manifest(out)["counts"][split]["images"] == count
    assert len(open_dataset(out, split)) == count


def test_a_split_whose_every_image_is_too_elongated_for_shorter_is_one_line(
    write_png, preprocess_cli, assert_fails, tmp_path
):
    for name in ("a", "b"):
        write_png(tmp_path / "src" / "cat" / f"{name}.png", np.zeros((1, 2000, 3), np.uint8))
    flags = ["--size", "9000", "--resize-mode", "shorter", "--format", "folder"]  # 9000 x 18,000,000 each
    assert_fails(preprocess_cli(tmp_path / "src", tmp_path / "out", *flags), 2,
                 "every one of the 2 images of the train split was skipped", "more than the limit")  # fmt: skip
    assert manifest(tmp_path / "out")["complete"] is False


@pytest.mark.parametrize(("fraction", "empty"), [("0.01", "val"), ("0.99", "train")])
def test_split_val_that_leaves_a_split_without_images_is_one_line(
    src, preprocess_cli, assert_fails, tmp_path, fraction, empty
):
    assert_fails(preprocess_cli(src, tmp_path / "out", "--split-val", fraction), 2,
                 f"--split-val {fraction} of 6 images leaves no image in {empty}")  # fmt: skip
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- --copies


def test_copies_past_the_maximum_are_one_line_before_any_work(src, tmp_path):
    command = [sys.executable, "-m", "augkit", "preprocess", str(src), str(tmp_path / "out"),
               "--copies", "100000000", "-p", "hflip"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)  # planning 1e8 copies would not end
    assert run.returncode == 2
    expected = f"--copies must be 0 to {MAX_COPIES} (augmented copies per training image), got 100000000"
    assert run.stderr == f"Error: {expected}\n"
    assert not (tmp_path / "out").exists()


def test_the_maximum_of_copies_is_accepted_and_one_more_is_not():
    spec = {"steps": [{"hflip": {}}]}
    assert PreprocessConfig(copies=MAX_COPIES, pipeline=spec).copies == MAX_COPIES
    with pytest.raises(AugkitError, match=f"--copies must be 0 to {MAX_COPIES}"):
        PreprocessConfig(copies=MAX_COPIES + 1, pipeline=spec)


def test_the_help_states_the_limits_the_code_applies():
    shown = " ".join(CliRunner().invoke(cli, ["preprocess", "--help"]).output.split())
    assert f"at most {MAX_COPIES}." in shown
    assert f"larger than {MAX_SHARD_BYTES >> 20} MiB" in shown


# ----------------------------------------------------------------------------- shards of bounded bytes

# settings -> samples per shard, (train, val)
SHARD_SAMPLES = {
    "no --size: as given": (dict(), (256, 256)),
    "224: as given": (dict(size=(224, 224)), (256, 256)),
    "9459 exact: one image of 268 MB": (dict(size=(9459, 9459), resize_mode="exact"), (1, 1)),
    "2048 exact: 12.6 MB each": (dict(size=(2048, 2048), resize_mode="exact"), (5, 5)),
    "2048 gray: 4.2 MB each": (dict(size=(2048, 2048), resize_mode="exact", gray=True), (16, 16)),
    "2048 shorter: at least 2048 x 2048": (dict(size=(2048, 2048), resize_mode="shorter", format="folder"), (5, 5)),
    "224 with 4 copies of each training image": (dict(size=(224, 224), copies=4, pipeline={"steps": []}), (89, 256)),
    "2048 with --shard-size 3": (dict(size=(2048, 2048), shard_size=3), (3, 3)),
}  # fmt: skip


@pytest.mark.parametrize("settings", SHARD_SAMPLES)
def test_a_shard_holds_at_most_max_shard_bytes_of_images_or_one_sample(settings):
    options, expected = SHARD_SAMPLES[settings]
    config = PreprocessConfig(**options)
    assert (config.samples_per_shard("train"), config.samples_per_shard("val")) == expected


def test_the_plan_for_the_largest_size_cuts_one_image_per_shard(make_image_folder):
    src = make_image_folder({"train/cat": 5, "val/cat": 2})
    config = PreprocessConfig(size=(9459, 9459), resize_mode="exact")
    shards = make_shards(open_splits(src, config), config)
    assert [(s.id, s.stop - s.start) for s in shards] == [
        *((f"train-{i:05d}", 1) for i in range(5)), ("val-00000", 1), ("val-00001", 1)
    ]


# The command line in a process whose data (heap and anonymous maps) may grow by BUDGET_MIB
# past what it holds once everything is imported.
UNDER_A_MEMORY_LIMIT = """
import resource, sys
import augkit.preprocess, augkit.cli.main

def data_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))

limit = data_bytes() + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
augkit.cli.main.cli(sys.argv[2:], prog_name="augkit")
"""
BUDGET_MIB = 512


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA bounds every allocation on Linux (4.7 and later)")
def test_a_run_of_large_images_stays_within_a_memory_limit(make_image_folder, tmp_path):
    # 30 images of 2048 x 2048 x 3 (12.6 MB each) are 377 MB: one shard of 256 would hold them
    # all, two or three times over while written, past the limit; shards of 5 hold 63 MB.
    src = make_image_folder({"cat": 15, "dog": 15}, sizes=((16, 16),))
    out = tmp_path / "out"
    args = ["preprocess", str(src), str(out), "--size", "2048", "--resize-mode", "exact", "--workers", "1", "-q"]
    command = [sys.executable, "-c", UNDER_A_MEMORY_LIMIT, str(BUDGET_MIB), *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    data = manifest(out)
    assert data["config"]["shard_size"] == 256  # the setting as given: the plan follows from it
    assert [s["stop"] - s["start"] for s in data["shards"]] == [5] * 6
    images = np.load(out / "train_images.npy", mmap_mode="r")
    assert images.shape == (30, 2048, 2048, 3)
    source = np.ascontiguousarray(cv2.imread(str(src / "dog" / "0014.png"))[..., ::-1])
    np.testing.assert_array_equal(images[29, ::128, ::128], cv2.resize(source, (2048, 2048))[::128, ::128])
    # Without the limit: reading a manifest back allocates its 1 GiB cap up front (augkit.documents).
    again = subprocess.run([sys.executable, "-m", "augkit", *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr[-2000:]


# ----------------------------------------------------------------------------- long file names


def long_names_src(write_png, root: Path) -> dict[str, int]:
    """Images whose names are as long as the filesystem allows (and two that share their first
    250 bytes); returns name -> the gray value of its image."""
    names = {"a" * 240 + ".png": 10, "b" * 246 + ".png": 20, "c" * 251 + ".png": 30, "c" * 250 + "d.png": 40,
             "\u00e9" * 125 + ".png": 50}  # fmt: skip
    for name, value in names.items():
        write_png(root / "cat" / name, np.full((8, 8, 3), value, np.uint8))
    write_png(root / "dog" / "short.png", np.full((8, 8, 3), 60, np.uint8))
    return names


def test_long_source_names_are_written_in_folder_format_with_their_copies(write_png, preprocess_cli, tmp_path):
    names = long_names_src(write_png, tmp_path / "src")
    out = tmp_path / "out"
    flags = ["--format", "folder", "--copies", "2", "-p", "hflip"]
    result = preprocess_cli(tmp_path / "src", out, *flags)
    assert result.exit_code == 0, result.output
    written = sorted(p for p in (out / "train" / "cat").iterdir())
    assert len(written) == 3 * len(names) and all(len(os.fsencode(p.name)) <= 255 for p in written)
    assert (out / "train" / "cat" / ("a" * 240 + "_aug2.png")).is_file()  # a name that fits is kept whole
    assert (out / "train" / "cat" / ("c" * 246 + "_aug2.png")).is_file()  # one that does not is cut
    assert (out / "train" / "cat" / ("c" * 244 + "_1_aug2.png")).is_file()  # and a second one numbered
    dataset = open_dataset(out)
    assert len(dataset) == 3 * (len(names) + 1)
    assert sorted({int(dataset.read(i)[0, 0, 0]) for i in range(len(dataset))}) == [10, 20, 30, 40, 50, 60]
    assert "already complete" in preprocess_cli(tmp_path / "src", out, *flags).output


# The command line, killed (as by SIGKILL) at the rename of the first long-named image it writes:
# that image's temporary file is left as atomic_write made it.
KILLED_AT_A_LONG_NAME = """
import os, sys
from augkit.cli.main import cli

real_replace = os.replace

def replace(source, target, *args, **options):
    if len(os.path.basename(os.fspath(target))) > 200:
        os._exit(9)
    return real_replace(source, target, *args, **options)

os.replace = replace
cli(sys.argv[1:], prog_name="augkit")
"""


def test_the_temporary_file_of_a_killed_long_named_write_is_augkits_own(
    write_png, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    long_names_src(write_png, tmp_path / "src")
    flags = ["--format", "folder", "--workers", "1"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(tmp_path / "src", clean, *flags[:2]).exit_code == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_A_LONG_NAME, "preprocess", str(tmp_path / "src"),
                             str(out), *flags], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == 9, killed.stderr
    [left] = [p.name for p in (out / "train" / "cat").iterdir()]
    assert TEMPORARY_NAME.fullmatch(left) and left.startswith("." + "a" * 40 + ".")
    # --overwrite (other settings) deletes it as augkit's; a file named like it but for a name
    # part longer than atomic_write's is the user's, and is kept.
    users = out / "train" / "cat" / ("." + "a" * 41 + ".k2x9a0qz.tmp")
    users.write_bytes(b"a user's file")
    assert_fails(preprocess_cli(tmp_path / "src", out, "--format", "folder", "--size", "4", "--overwrite"), 2,
                 "nothing was deleted", users.name)  # fmt: skip
    users.unlink()
    assert preprocess_cli(tmp_path / "src", out, *flags[:2]).exit_code == 0  # the same command: resumed
    assert tree_digest(out) == tree_digest(clean)
