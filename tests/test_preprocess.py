"""`augkit preprocess` on datasets built at test time: what it writes, that its bytes are
reproducible, the rules for OUT, and the command line's details.

Broken files, crashes, a full disk, hostile class names and memory: test_preprocess_faults.py.
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

import augkit
from augkit.cli.main import cli
from augkit.stats import ChannelStats

CLASSES = {"cat": 3, "dog": 2, "owl": 4}
MIXED = ((30, 40), (44, 30))  # (height, width): one wide image, one tall, cycled
PIPELINE = "rotate(limit=30); hflip; brightness(limit=0.2)"


def read_rgb(path: Path) -> np.ndarray:
    """A source image as RGB, read with OpenCV alone (not through augkit)."""
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]


def sources(root: Path) -> list[Path]:
    """The image files below ``root`` in augkit's order: class folders sorted, then files."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to cover height x width keeping the aspect ratio, then cut the centre: OpenCV only."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    sh, sw = round(h * scale), round(w * scale)
    filter_ = cv2.INTER_AREA if sh * sw < h * w else cv2.INTER_LINEAR
    scaled = cv2.resize(np.ascontiguousarray(image), (sw, sh), interpolation=filter_)
    top, left = (sh - height) // 2, (sw - width) // 2
    return scaled[top : top + height, left : left + width]


def packed(out: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The images and labels arrays of a packed output, read with numpy alone."""
    return np.load(out / f"{split}_images.npy"), np.load(out / f"{split}_labels.npy")


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


# ----------------------------------------------------------------------------- outputs


@pytest.fixture
def packed_run(make_image_folder, preprocess_cli, tmp_path):
    """A packed run at --size 24x20 over photo crops of two shapes; (OUT, expected images)."""
    src = make_image_folder(CLASSES, sizes=MIXED)
    out = tmp_path / "out"
    succeeded(preprocess_cli(src, out, "--size", "24x20", "--shard-size", "4"))
    return out, np.stack([center_crop(read_rgb(p), 24, 20) for p in sources(src)])


def test_packed_output_holds_the_resized_images_their_labels_and_the_training_stats(packed_run):
    out, expected = packed_run
    images, labels = packed(out)
    assert images.dtype == np.uint8 and images.shape == (9, 24, 20, 3)
    np.testing.assert_array_equal(images, expected)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    written = manifest(out)
    assert written["complete"] is True and written["classes"] == ["cat", "dog", "owl"]
    assert written["counts"]["train"]["per_class"] == CLASSES
    assert sorted(os.listdir(out)) == ["manifest.json", "stats.json", "train_images.npy", "train_labels.npy"]

    reference = ChannelStats()
    for image in expected:
        reference.update(image)
    stats = ChannelStats.load(out / "stats.json")
    assert (stats.count, stats.images) == (reference.count, reference.images)
    np.testing.assert_allclose(stats.mean, reference.mean, rtol=1e-12)
    np.testing.assert_allclose(stats.std, reference.std, rtol=1e-12)


def test_open_dataset_reads_the_packed_output_back(packed_run):
    out, expected = packed_run
    dataset = augkit.open_dataset(out)
    assert dataset.kind == "packed" and dataset.classes == ("cat", "dog", "owl") and len(dataset) == 9
    for i, image in enumerate(expected):
        np.testing.assert_array_equal(dataset.read(i), image)
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("mode", "out_format"),
    [("center-crop", "packed"), ("exact", "packed"), ("pad", "packed"), ("shorter", "folder")],
)
def test_every_resize_mode_gives_the_size_asked(make_image_folder, preprocess_cli, tmp_path, mode, out_format):
    src = make_image_folder({"cat": 2}, sizes=MIXED)
    out = tmp_path / "out"
    succeeded(preprocess_cli(src, out, "--size", "24x20", "--resize-mode", mode, "--format", out_format))
    if mode == "shorter":  # the shorter side becomes H, the aspect ratio is kept
        shapes = [cv2.imread(str(p)).shape[:2] for p in sorted((out / "train" / "cat").iterdir())]
        assert shapes == [(24, 32), (35, 24)]
        return
    images, _ = packed(out)
    assert images.shape == (2, 24, 20, 3)
    if mode == "pad":  # letterboxed: one image is padded above, the other on the left
        assert not images[:, 0, 0].any()


def test_packed_output_with_resize_mode_shorter_is_a_usage_error(
    make_image_folder, preprocess_cli, assert_fails, tmp_path
):
    src = make_image_folder({"cat": 1})
    result = preprocess_cli(src, tmp_path / "out", "--size", "24", "--resize-mode", "shorter")
    assert_fails(result, 2, "shorter", "--format folder")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shard_size", [1, 100], ids=["sizes-differ-between-shards", "within-a-shard"])
def test_mixed_sizes_without_size_cannot_be_packed(
    make_image_folder, preprocess_cli, assert_fails, tmp_path, shard_size
):
    src = make_image_folder({"cat": 2}, sizes=MIXED)
    assert_fails(preprocess_cli(src, tmp_path / "out", "--shard-size", shard_size), 2, "--size")


def test_gray_writes_one_channel_of_luma(make_image_folder, preprocess_cli, tmp_path):
    src = make_image_folder({"cat": 2, "dog": 1})
    out = tmp_path / "out"
    succeeded(preprocess_cli(src, out, "--gray"))
    images, _ = packed(out)
    luma = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in sources(src)]
    np.testing.assert_array_equal(images, np.stack(luma)[..., None])
    assert ChannelStats.load(out / "stats.json").channels == 1


@pytest.mark.parametrize("image_format", ["png", "jpg"])
def test_folder_format_mirrors_the_class_tree(make_image_folder, preprocess_cli, tmp_path, image_format):
    src = make_image_folder({"train/cat": 2, "train/dog": 1, "val/cat": 1, "val/dog": 1}, ext="jpg")
    out = tmp_path / "out"
    succeeded(preprocess_cli(src, out, "--format", "folder", "--image-format", image_format))
    mirrored = {p.relative_to(src).with_suffix(f".{image_format}").as_posix(): p for p in sources(src)}
    assert set(os.listdir(out)) == {"manifest.json", "stats.json", "train", "val"}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.*") if p.parent != out} == set(mirrored)
    for name, source in mirrored.items():
        data = (out / name).read_bytes()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        original = cv2.imread(str(source))  # what augkit decoded too: the same libjpeg
        if image_format == "png":  # lossless: exactly the pixels read
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
            np.testing.assert_array_equal(decoded, original)
        else:
            assert data.startswith(b"\xff\xd8")
            assert np.abs(decoded.astype(int) - original).mean() < 4
    assert manifest(out)["output"]["format"] == "folder"


def test_split_val_is_stratified_and_the_same_every_time(make_image_folder, preprocess_cli, tree_digest, tmp_path):
    src = make_image_folder({"a": 10, "b": 20, "c": 5}, sizes=((16, 16),))
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        succeeded(preprocess_cli(src, out, "--split-val", "0.2", "--shard-size", "7"))
    counts = manifest(first)["counts"]
    assert counts["val"]["per_class"] == {"a": 2, "b": 4, "c": 1}
    assert counts["train"]["per_class"] == {"a": 8, "b": 16, "c": 4}
    assert tree_digest(first) == tree_digest(second)

    train, val = packed(first, "train")[0], packed(first, "val")[0]
    originals = {read_rgb(p).tobytes() for p in sources(src)}
    train_set, val_set = {x.tobytes() for x in train}, {x.tobytes() for x in val}
    assert train_set | val_set == originals and not train_set & val_set
    assert ChannelStats.load(first / "stats.json").images == len(train)  # statistics of train only


def test_split_val_is_refused_when_the_source_has_a_val_split(
    make_image_folder, preprocess_cli, assert_fails, tmp_path
):
    src = make_image_folder({"train/cat": 1, "val/cat": 1})
    assert_fails(preprocess_cli(src, tmp_path / "out", "--split-val", "0.5"), 2, "already has a val split")


def test_cifar_batches_are_packed_row_for_row(make_cifar, preprocess_cli, tmp_path):
    fake = make_cifar("cifar10", rows=4)
    out = tmp_path / "out"
    succeeded(preprocess_cli(fake.root, out, "--shard-size", "6"))
    for split, rows, labels in (("train", fake.train_rows, fake.train_labels), ("val", fake.val_rows, fake.val_labels)):
        images, written = packed(out, split)
        np.testing.assert_array_equal(images, rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert written.tolist() == labels.tolist()
    assert manifest(out)["classes"] == fake.names


def test_digits_are_packed_by_name(preprocess_cli, tmp_path, monkeypatch):
    datasets = pytest.importorskip("sklearn.datasets")
    monkeypatch.chdir(tmp_path)  # "digits" names the dataset only where no such folder exists
    succeeded(preprocess_cli("digits", "out", "--gray"))
    digits = datasets.load_digits()
    images, labels = packed(tmp_path / "out")
    assert images.shape == (1797, 8, 8, 1)
    np.testing.assert_array_equal(images[..., 0], (digits.images.astype(int) * 255 + 8) // 16)  # 0..16 -> 0..255
    assert labels.tolist() == digits.target.tolist()


@pytest.mark.parametrize("mode", ["center-crop", "pad", "exact"])
def test_jpegs_much_larger_than_the_output_are_draft_decoded_close_to_a_full_decode(
    make_image_folder, preprocess_cli, tmp_path, mode
):
    src = make_image_folder({"cat": 3, "dog": 3}, sizes=((64, 80), (80, 64)), ext="jpg")
    fast, full = tmp_path / "fast", tmp_path / "full"
    succeeded(preprocess_cli(src, fast, "--size", "16", "--resize-mode", mode))
    succeeded(preprocess_cli(src, full, "--size", "16", "--resize-mode", mode, "--no-jpeg-draft"))
    assert manifest(fast)["config"]["jpeg_draft"] and not manifest(full)["config"]["jpeg_draft"]
    a, b = packed(fast)[0].astype(int), packed(full)[0].astype(int)
    assert a.shape == b.shape == (6, 16, 16, 3)
    assert not np.array_equal(a, b)  # decoded at 1/2 scale: 4x shrink, 2x kept for the area filter
    assert np.abs(a - b).mean() < 1.5


def test_jpegs_shrunk_less_than_four_times_are_decoded_in_full(make_image_folder, preprocess_cli, tmp_path):
    src = make_image_folder({"cat": 2, "dog": 2}, sizes=((64, 80),), ext="jpg")
    fast, full = tmp_path / "fast", tmp_path / "full"
    succeeded(preprocess_cli(src, fast, "--size", "24"))  # 2.7x: a 1/2-scale decode would leave 1.3x
    succeeded(preprocess_cli(src, full, "--size", "24", "--no-jpeg-draft"))
    assert np.array_equal(packed(fast)[0], packed(full)[0])


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "flags",
    [
        ["--copies", "2", "-p", PIPELINE],
        ["--format", "folder", "--image-format", "jpg", "--copies", "1", "-p", PIPELINE],
    ],
    ids=["packed", "folder"],
)
def test_output_bytes_are_the_same_every_time_whatever_the_workers(
    make_image_folder, preprocess_cli, tree_digest, tmp_path, flags
):
    src = make_image_folder({"cat": 5, "dog": 4}, sizes=MIXED)
    digests = []
    for name, workers in (("one", 1), ("again", 1), ("two", 2)):
        succeeded(preprocess_cli(src, tmp_path / name, "--size", "24", "--shard-size", "2", *flags, workers=workers))
        digests.append(tree_digest(tmp_path / name))
    assert "manifest.json" in digests[0] and "stats.json" in digests[0]
    assert digests[0] == digests[1] == digests[2]


def test_copy_k_is_what_the_pipeline_draws_at_epoch_k_minus_1(make_image_folder, preprocess_cli, tmp_path):
    src = make_image_folder({"cat": 3, "dog": 2})
    out = tmp_path / "out"
    succeeded(preprocess_cli(src, out, "--copies", "2", "-p", PIPELINE, "--shard-size", "2"))
    images, labels = packed(out)
    assert images.shape == (15, 32, 32, 3) and labels.tolist() == [0] * 9 + [1] * 6  # each image, then its copies
    pipeline = augkit.load_pipeline(PIPELINE)
    for i, source in enumerate(sources(src)):
        original = images[3 * i]
        np.testing.assert_array_equal(original, read_rgb(source))
        for k in (1, 2):
            np.testing.assert_array_equal(images[3 * i + k], pipeline(original, index=i, epoch=k - 1))
    assert ChannelStats.load(out / "stats.json").images == 5  # statistics of the originals only


def test_folder_copies_never_overwrite_a_source_named_like_a_copy(photo_crops, preprocess_cli, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "cat").mkdir(parents=True)
    for name, image in zip(("x.png", "x_aug1.png"), photo_crops(2)):
        cv2.imwrite(str(src / "cat" / name), np.ascontiguousarray(image[..., ::-1]))
    flags = ["--format", "folder", "--copies", "1", "-p", PIPELINE]
    succeeded(preprocess_cli(src, out, *flags))
    written = sorted(p.name for p in (out / "train" / "cat").iterdir())
    assert written == ["x.png", "x_aug1.png", "x_aug1_1.png", "x_aug1_1_aug1.png"]
    renamed = read_rgb(out / "train" / "cat" / "x_aug1_1.png")
    np.testing.assert_array_equal(renamed, read_rgb(src / "cat" / "x_aug1.png"))
    assert "already complete" in succeeded(preprocess_cli(src, out, *flags))


# ----------------------------------------------------------------------------- OUT


@pytest.fixture
def small_src(make_image_folder):
    return make_image_folder({"cat": 3, "dog": 2})


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        (["--size", "24"], "--size"),
        (["--size", "16", "--gray"], "--gray"),
        (["--size", "16", "--format", "folder"], "--format"),
    ],
)
def test_out_written_with_other_settings_is_refused_naming_them(
    small_src, preprocess_cli, assert_fails, tree_digest, tmp_path, changed, named
):
    out = tmp_path / "out"
    succeeded(preprocess_cli(small_src, out, "--size", "16"))
    before = tree_digest(out)
    assert_fails(preprocess_cli(small_src, out, *changed), 2, named, "--overwrite")
    assert tree_digest(out) == before


def test_overwrite_replaces_an_out_written_with_other_settings(small_src, preprocess_cli, tree_digest, tmp_path):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    succeeded(preprocess_cli(small_src, out, "--size", "16", "--format", "folder"))
    succeeded(preprocess_cli(small_src, out, "--size", "24", "--overwrite"))
    succeeded(preprocess_cli(small_src, fresh, "--size", "24"))
    assert tree_digest(out) == tree_digest(fresh)


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_non_empty_out_without_a_manifest_is_refused_and_kept(small_src, preprocess_cli, assert_fails, tmp_path, flags):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert_fails(preprocess_cli(small_src, out, *flags), 2, "no augkit manifest")
    assert os.listdir(out) == ["thesis.tex"] and (out / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("where", ["out-inside-src", "src-inside-out", "same"])
def test_out_and_src_must_not_contain_each_other(
    make_image_folder, preprocess_cli, assert_fails, tree_digest, tmp_path, where
):
    src = make_image_folder({"cat": 2}, name="outer/src" if where == "src-inside-out" else "src")
    out = {"out-inside-src": src / "out", "src-inside-out": src.parent, "same": src}[where]
    before = tree_digest(tmp_path)
    assert_fails(preprocess_cli(src, out), 2, "inside")
    assert tree_digest(tmp_path) == before and not (src / "out").exists()


def test_rerun_of_a_complete_run_says_so_and_changes_nothing(small_src, preprocess_cli, tmp_path):
    out = tmp_path / "out"
    succeeded(preprocess_cli(small_src, out, "--size", "16"))
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*")}
    assert "already complete" in succeeded(preprocess_cli(small_src, out, "--size", "16"))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*")} == stamps


def test_complete_out_with_a_changed_file_is_refused_and_rebuilt_once_the_file_is_moved(
    small_src, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    out = tmp_path / "out"
    succeeded(preprocess_cli(small_src, out, "--size", "16"))
    original = tree_digest(out)
    images = out / "train_images.npy"
    changed = images.read_bytes()[:-1] + b"\x00"
    images.write_bytes(changed)
    assert_fails(preprocess_cli(small_src, out, "--size", "16"), 2, "train_images.npy")
    # A changed file is no longer known as augkit's (a user's file of that name looks the same):
    # --overwrite keeps it and says so; moved away, the rebuild gives the original bytes.
    assert_fails(preprocess_cli(small_src, out, "--size", "16", "--overwrite"), 2, "train_images.npy")
    assert images.read_bytes() == changed
    images.rename(tmp_path / "moved.npy")
    succeeded(preprocess_cli(small_src, out, "--size", "16", "--overwrite"))
    assert tree_digest(out) == original


# ----------------------------------------------------------------------------- command line


def test_json_output_reports_counts_skips_shards_and_stats(small_src, preprocess_cli, tmp_path):
    (small_src / "cat" / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    report = json.loads(succeeded(preprocess_cli(small_src, out, "--json", "--shard-size", "2")))
    assert set(report) == {"out", "counts", "skipped", "shards", "shards_resumed", "mean", "std"}
    assert report["counts"]["train"]["images"] == 5 and report["shards"] == 3 and report["shards_resumed"] == 0
    assert [s["path"] for s in report["skipped"]] == [str(small_src / "cat" / "empty.png")]
    assert report["mean"] == ChannelStats.load(out / "stats.json").mean.tolist()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--copies", "2"], "-p"),
        (["-p", "hflip"], "--copies"),
        (["--size", "0x5"], "0x5"),
        (["--size", "abc"], "abc"),
        (["--shard-size", "0"], "--shard-size"),
        (["--split-val", "1.5"], "--split-val"),
        (["--resize-mode", "stretch"], "--resize-mode"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(small_src, preprocess_cli, assert_fails, tmp_path, args, named):
    assert_fails(preprocess_cli(small_src, tmp_path / "out", *args), 2, named)
    assert not (tmp_path / "out").exists()


def test_missing_src_is_one_line_exit_2(preprocess_cli, assert_fails, tmp_path):
    assert_fails(preprocess_cli(tmp_path / "nowhere", tmp_path / "out"), 2, "nowhere")


def test_help_shows_an_example():
    result = CliRunner().invoke(cli, ["preprocess", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output
    assert "augkit preprocess ~/data/flowers flowers-64 --size 64" in result.output


# The bar waits a second before it shows: each shard is slowed so that the run takes longer.
SLOW_SHARDS = """
import sys, time
import augkit.preprocess.engine as engine
from augkit.cli.main import cli
real = engine.run_shard
def slow(task):
    time.sleep(0.5)
    return real(task)
engine.run_shard = slow
cli(sys.argv[1:], prog_name="augkit")
"""


def on_a_terminal(args: list[str]) -> str:
    """Run the CLI (shards slowed) with stdout and stderr on a pseudo-terminal; what it showed."""
    import fcntl
    import pty
    import struct
    import termios  # Unix only, like pseudo-terminals

    leader, follower = pty.openpty()
    # A new terminal is 0 columns wide, and a bar fitted to 0 columns is empty: give it a size.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    command = [sys.executable, "-c", SLOW_SHARDS, *args]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    shown = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        shown.append(chunk)
    os.close(leader)
    assert process.wait() == 0, b"".join(shown)
    return b"".join(shown).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_shows_on_a_terminal_and_quiet_silences_it(make_image_folder, tmp_path):
    src = make_image_folder({"cat": 3, "dog": 3})
    args = ["preprocess", str(src), "--workers", "1", "--shard-size", "2"]
    shown = on_a_terminal([*args[:2], str(tmp_path / "loud"), *args[2:]])
    assert "img/s" in shown and "skipped=0" in shown
    quiet = on_a_terminal([*args[:2], str(tmp_path / "quiet"), *args[2:], "-q"])
    assert "img/s" not in quiet and "wrote" in quiet
