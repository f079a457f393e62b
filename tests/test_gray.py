"""The gray rule (augkit.io.datasets): one channel count per dataset, the same in every command and
the Python API, so that `augkit stats -o FILE` on a dataset always feeds `augkit train --stats FILE`."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import augkit
from augkit.cli.main import cli
from augkit.io.datasets import files_channels, open_dataset, stored_channels
from augkit.preview import collect_sources
from augkit.stats import ChannelStats, compute_stats
from augkit.train import data
from augkit.train.config import TrainConfig

DIGITS = augkit.sample_data_dir() / "digits"
QUICK = ["--model", "mlp", "--hidden", "16", "--epochs", "1", "-q", "--workers", "0"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def crops():
    """Real RGB pixels: 12 x 12 crops of the sample photos (area-resized), 20 of them."""
    photos = [cv2.imread(str(p))[..., ::-1] for p in sorted((augkit.sample_data_dir() / "photos").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    out = []
    for i in range(20):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - 36), rng.integers(0, photo.shape[1] - 36)
        out.append(cv2.resize(np.ascontiguousarray(photo[y : y + 36, x : x + 36]), (12, 12), interpolation=cv2.INTER_AREA))
    return out


def write(path: Path, pixels: np.ndarray) -> Path:
    """An RGB (H x W x 3) or gray (H x W) array as an image file, its format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels[..., ::-1] if pixels.ndim == 3 else pixels)
    return path


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, crops) -> dict[str, tuple[Path, int]]:
    """The five kinds of data the rule must hold for, and the channels each must have."""
    root = tmp_path_factory.mktemp("gray")
    gray, rgb, mixed = root / "gray", root / "rgb", root / "mixed"
    for i, crop in enumerate(crops):
        label = "ab"[i % 2]
        write(gray / label / f"{i:02d}.png", gray_of(crop))  # stored gray: PNG colour type 0
        write(rgb / label / f"{i:02d}.png", crop)
        write(mixed / label / f"{i:02d}.png", crop if i == 7 else gray_of(crop))  # one colour image
    packed = root / "digits-16"  # the README's `augkit preprocess sample_data/digits digits-16 --size 16`
    succeeded(invoke("preprocess", DIGITS, packed, "--size", "16", "--workers", "1", "-q"))
    return {"digits": (DIGITS, 1), "gray": (gray, 1), "rgb": (rgb, 3), "packed": (packed, 1), "mixed": (mixed, 3)}


KINDS = ["digits", "gray", "rgb", "packed", "mixed"]


# ----------------------------------------------------------------------------- every consumer agrees


@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_gives_a_dataset_the_same_channels(datasets, kind):
    path, channels = datasets[kind]
    dataset = open_dataset(path)
    assert dataset.channels == channels
    assert dataset[0][0].shape[2] == dataset.read(len(dataset) - 1).shape[2] == channels  # the Python API
    assert open_dataset(path, "all").channels == channels
    assert compute_stats(dataset).stats.channels == channels  # augkit stats
    assert data.open_splits(TrainConfig(data=str(path))).shape[2] == channels  # augkit train, augkit evaluate
    assert all(s.image.shape[2] == channels for s in collect_sources([path], rows=2, seed=0))  # augkit preview


@pytest.mark.parametrize("kind", KINDS)
def test_stats_from_augkit_stats_always_feed_augkit_train_on_the_same_data(datasets, kind, tmp_path):
    path, channels = datasets[kind]
    stats = tmp_path / "stats.json"
    succeeded(invoke("stats", path, "-o", stats, "--workers", "1", "-q"))
    assert ChannelStats.load(stats).channels == channels
    succeeded(invoke("train", path, "--stats", stats, *QUICK, "-o", tmp_path / "run"))
    assert (tmp_path / "run" / "last.pt").is_file()


def test_the_issue_commands_work_as_typed(tmp_path):
    """`augkit stats -o stats.json && augkit train --stats stats.json`, in real processes, on the sample digits."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in (["stats", "-o", "stats.json", "-q"], ["train", "--stats", "stats.json", *QUICK, "-o", "run"]):
        done = subprocess.run([sys.executable, "-m", "augkit", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert ChannelStats.load(tmp_path / "stats.json").channels == 1


def test_preprocess_writes_a_gray_source_gray_and_a_colour_one_in_colour(datasets, tmp_path):
    assert np.load(datasets["packed"][0] / "train_images.npy", mmap_mode="r").shape[1:] == (16, 16, 1)
    for kind, channels in (("rgb", 3), ("mixed", 3), ("gray", 1)):
        out = tmp_path / kind
        succeeded(invoke("preprocess", datasets[kind][0], out, "--workers", "1", "-q"))
        assert np.load(out / "train_images.npy", mmap_mode="r").shape[3] == channels
    succeeded(invoke("preprocess", datasets["rgb"][0], tmp_path / "forced", "--gray", "--workers", "1", "-q"))
    assert open_dataset(tmp_path / "forced").channels == 1


def test_a_folder_preprocess_output_keeps_the_gray_rule(datasets, tmp_path):
    out = tmp_path / "folder"
    succeeded(invoke("preprocess", datasets["gray"][0], out, "--format", "folder", "--workers", "1", "-q"))
    assert open_dataset(out).channels == 1 and stored_channels(open_dataset(out).sources[0]) == 1


# ----------------------------------------------------------------------------- the wrong statistics


def test_a_stats_file_of_the_wrong_channels_is_one_line_with_both_counts_and_the_fix(datasets, tmp_path, assert_fails):
    rgb_stats, gray_stats = tmp_path / "rgb.json", tmp_path / "gray.json"
    succeeded(invoke("stats", datasets["rgb"][0], "-o", rgb_stats, "--workers", "1", "-q"))
    succeeded(invoke("stats", datasets["rgb"][0], "--gray", "-o", gray_stats, "--workers", "1", "-q"))
    result = CliRunner().invoke(cli, ["train", "--stats", str(rgb_stats), *QUICK, "-o", str(tmp_path / "run")])
    assert_fails(result, 2, f"stats file {rgb_stats} has 3 channels but {DIGITS} has 1 (gray",
                 f"compute DATA's own with `augkit stats {DIGITS} -o {tmp_path / 'digits-stats.json'}` and pass")  # fmt: skip
    rgb = datasets["rgb"][0]
    result = CliRunner().invoke(cli, ["train", str(rgb), "--stats", str(gray_stats), *QUICK, "-o", str(tmp_path / "run")])
    assert_fails(result, 2, f"has 1 channel but {rgb} has 3 (RGB)", f"`augkit stats {rgb} -o {tmp_path / (Path(rgb).name + '-stats.json')}` (without --gray)")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- what decides


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("gray.png", lambda p, g, c: write(p, g), 1),
        ("gray16.png", lambda p, g, c: write(p, g.astype(np.uint16) * 257), 1),
        ("gray-alpha.png", lambda p, g, c: Image.fromarray(g).convert("LA").save(p), 1),
        ("gray.jpg", lambda p, g, c: write(p, g), 1),
        ("gray.tif", lambda p, g, c: write(p, g), 1),
        ("gray.pgm", lambda p, g, c: write(p, g), 1),
        ("gray.bmp", lambda p, g, c: write(p, g), 1),
        ("rgb.png", lambda p, g, c: write(p, c), 3),
        ("rgba.png", lambda p, g, c: Image.fromarray(c).convert("RGBA").save(p), 3),
        ("rgb.jpg", lambda p, g, c: write(p, c), 3),
        ("rgb-of-gray.png", lambda p, g, c: write(p, np.dstack([g, g, g])), 3),  # what it stores decides
        ("palette-of-gray.png", lambda p, g, c: Image.fromarray(g).convert("P").save(p), 3),
        ("gray.gif", lambda p, g, c: Image.fromarray(g).save(p), 3),  # GIF is a palette format
        ("gray.webp", lambda p, g, c: write(p, g), 3),  # WebP stores no gray
        ("text.png", lambda p, g, c: p.write_text("not an image"), None),
        ("empty.jpg", lambda p, g, c: p.write_bytes(b""), None),
        ("truncated.png", lambda p, g, c: p.write_bytes(cv2.imencode(".png", g)[1].tobytes()[:20]), None),
    ],
)
def test_a_file_is_gray_when_its_header_stores_one_gray_channel(tmp_path, crops, name, make, expected):
    path = tmp_path / name
    make(path, gray_of(crops[0]), crops[0])
    assert stored_channels(path) == expected


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_an_image_is_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    assert stored_channels(tmp_path / "pipe.png") is None  # returns at once: nothing writes to the FIFO


def test_unreadable_files_do_not_decide_and_one_colour_file_makes_the_dataset_rgb(tmp_path, crops):
    gray = [write(tmp_path / f"{i}.png", gray_of(c)) for i, c in enumerate(crops[:3])]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    assert files_channels([*gray, broken]) == 1
    assert files_channels([broken]) == 3  # nothing readable: RGB, read_image's default
    assert files_channels([*gray, write(tmp_path / "c.jpg", crops[3])]) == 3


def test_all_splits_decide_together(tmp_path, crops):
    for i, crop in enumerate(crops[:8]):
        write(tmp_path / "train" / "ab"[i % 2] / f"{i}.png", gray_of(crop))
    write(tmp_path / "val" / "a" / "0.png", crops[8])  # the only colour image, in val
    write(tmp_path / "val" / "b" / "1.png", gray_of(crops[9]))
    train = open_dataset(tmp_path, "train")
    assert train.channels == 3 and train[0][0].shape == (12, 12, 3)
    np.testing.assert_array_equal(train[0][0], np.dstack([gray_of(crops[0])] * 3))  # gray read as R = G = B
    splits = data.open_splits(TrainConfig(data=str(tmp_path)))
    assert splits.train_images.shape[3] == splits.val_images.shape[3] == 3


def test_the_scan_is_done_once_for_a_dataset_its_subsets_and_its_pickled_copies(datasets, monkeypatch):
    dataset = open_dataset(datasets["gray"][0])
    subset = dataset.subset([3, 1])
    assert subset.channels == 1
    calls = []
    monkeypatch.setattr(augkit.io.datasets, "files_channels", lambda files: calls.append(files) or 3)
    copy = pickle.loads(pickle.dumps(dataset))
    assert (dataset.channels, dataset.subset([0]).channels, copy.channels) == (1, 1, 1) and calls == []
    assert open_dataset(datasets["gray"][0]).channels == 3 and len(calls) == 1  # a fresh open scans again


def test_read_can_still_convert_either_way(datasets, crops):
    dataset = open_dataset(datasets["gray"][0])
    image = dataset.read(0, gray=False)
    assert image.shape == (12, 12, 3) and (image == image[..., :1]).all()
    colour = open_dataset(datasets["rgb"][0])
    np.testing.assert_array_equal(colour.read(0, gray=True)[..., 0], gray_of(crops[0]))


def test_a_gray_image_named_on_its_own_previews_as_one_channel(datasets, crops):
    path = open_dataset(datasets["gray"][0]).sources[0]
    [source] = collect_sources([path], rows=1, seed=0)
    np.testing.assert_array_equal(source.image[..., 0], gray_of(crops[0]))
    assert source.image.shape == (12, 12, 1)


def test_augmented_dataset_takes_gray_pil_images_as_one_channel(crops):
    from torch.utils.data import Dataset

    from augkit.train.augmented import AugmentedDataset

    gray = gray_of(crops[0])

    class Pil(Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            return [Image.fromarray(gray), Image.fromarray(gray).convert("1"), Image.fromarray(gray).convert("LA")][i], 0

    pipeline = augkit.load_pipeline("hflip(p=1)")
    dataset = AugmentedDataset(Pil(), pipeline)
    np.testing.assert_array_equal(dataset[0][0], gray[:, ::-1, None])
    assert dataset[1][0].shape == dataset[2][0].shape == (12, 12, 1)
    np.testing.assert_array_equal(dataset[2][0], gray[:, ::-1, None])  # opaque alpha: the pixels themselves


def test_evaluating_a_gray_run_on_colour_data_is_one_line_with_the_fix(tmp_path, assert_fails):
    run, colour = tmp_path / "run", tmp_path / "colour"
    succeeded(invoke("train", *QUICK, "-o", run))  # the sample digits: gray, 8x8x1
    for label in range(10):
        for path in sorted((DIGITS / "val" / str(label)).glob("*.png"))[:3]:
            write(colour / str(label) / path.name, np.dstack([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)] * 3))
    result = CliRunner().invoke(cli, ["evaluate", str(run), str(colour)])
    assert_fails(result, 2, "has 8x8x3 images, the run was trained on 8x8x1", f"augkit preprocess {colour} OUT --gray")
    succeeded(invoke("preprocess", colour, tmp_path / "gray", "--gray", "--workers", "1", "-q"))
    succeeded(invoke("evaluate", run, tmp_path / "gray"))


def test_cifar_is_rgb_and_a_flat_folder_follows_its_files(make_cifar, tmp_path, crops):
    cifar = open_dataset(make_cifar().root)
    assert cifar.channels == 3 and cifar[0][0].shape == (32, 32, 3)
    for i, crop in enumerate(crops[:3]):
        write(tmp_path / "flat" / f"{i}.jpg", gray_of(crop))  # one-component JPEGs
    flat = open_dataset(tmp_path / "flat")
    assert (flat.kind, flat.channels, flat[2][0].shape) == ("folder", 1, (12, 12, 1))
