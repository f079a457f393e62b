"""Per-pixel standardisation, the lecture's ``X -= X.mean(axis=0); X /= X.std(axis=0)``, on the sample
digits: the statistics against numpy, the step and the training normaliser against the formula, the
floor for constant pixels, the CLI (real processes for the README's commands), and configs and runs
from before the modes (``standardize: true``) still loading and resuming.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import augkit
from augkit.cli.main import cli
from augkit.errors import AugkitError
from augkit.io.datasets import open_dataset
from augkit.stats import MIN_STD, PIXEL_STD_FLOOR, ChannelStats, compute_stats, floored_std
from augkit.train import data
from augkit.train.config import TrainConfig
from augkit.train.grid import parse_grid
from augkit.train.plots import describe_tricks

DIGITS = augkit.sample_data_dir() / "digits"
QUICK = ["--model", "mlp", "--hidden", "64", "--train-subset", "300", "--schedule", "constant", "-q"]


@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    """The sample digits' training split as augkit reads it: uint8 N x 8 x 8 x 1."""
    dataset = open_dataset(DIGITS, split="train")
    return np.stack([dataset.read(i) for i in range(len(dataset))])


@pytest.fixture(scope="module")
def pixel_stats(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ChannelStats]:
    path = tmp_path_factory.mktemp("stats") / "digits.json"
    stats = compute_stats(open_dataset(DIGITS, split="train"), std_image=True).stats
    return stats.save(path), stats


def lecture(x: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """The lecture's formula in float64 with augkit's documented floor, N x H x W x C."""
    return (x / 255 - stats.mean_image) / floored_std(stats.std_image)


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augkit", *map(str, args)], capture_output=True, text=True, timeout=300)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ----------------------------------------------------------------------------- the statistics


def test_mean_and_std_images_equal_numpy_over_the_training_digits(train_x, pixel_stats):
    _, stats = pixel_stats
    x = train_x.astype(np.float64) / 255
    assert stats.mean_image.shape == stats.std_image.shape == (8, 8, 1) and stats.images == len(train_x) == 1437
    np.testing.assert_allclose(stats.mean_image, x.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.std_image, x.std(axis=0), rtol=0, atol=1e-12)
    # The mean image is the one --mean-image computes, bit for bit.
    mean_only = compute_stats(open_dataset(DIGITS, split="train"), mean_image=True).stats
    np.testing.assert_array_equal(stats.mean_image, mean_only.mean_image)


def test_shards_merge_into_the_statistics_of_one_pass_in_any_layout(train_x):
    x = train_x.astype(np.float64) / 255
    whole = ChannelStats(std_image=True).update(train_x)
    merged = ChannelStats(std_image=True)
    for start, stop in ((0, 1), (1, 700), (700, 701), (701, 1437)):  # as compute_stats' chunks or other machines
        merged.merge(ChannelStats(std_image=True).update(train_x[start:stop]))
    one_by_one = ChannelStats(std_image=True).update_many(list(train_x[::-1]))
    as_16_bits = ChannelStats(std_image=True).update(train_x.astype(np.uint16) * 257)
    for stats in (merged, one_by_one, as_16_bits):
        assert stats.images == 1437
        np.testing.assert_allclose(stats.std_image, whole.std_image, rtol=0, atol=1e-14)
        np.testing.assert_allclose(stats.std_image, x.std(axis=0), rtol=0, atol=1e-12)
    # float32 on [0, 1]: its own pixels' statistics (x / 255 rounded to float32)
    floats = (train_x / 255).astype(np.float32)
    np.testing.assert_allclose(
        ChannelStats(std_image=True).update(floats).std_image, floats.astype(np.float64).std(axis=0), rtol=0, atol=1e-12
    )
    with pytest.raises(AugkitError, match=r"std image and statistics without one; .*--per-pixel"):
        ChannelStats(std_image=True).update(train_x[:3]).merge(ChannelStats(mean_image=True).update(train_x[3:6]))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))),
    st.lists(st.integers(0, 12), max_size=3),
)
def test_any_split_into_shards_merges_to_numpy_s_std_over_the_images(x, cuts):
    bounds = [0, *sorted(min(c, len(x)) for c in cuts), len(x)]
    merged = ChannelStats(std_image=True)
    for a, b in zip(bounds, bounds[1:]):  # some shards empty, some of one image
        merged.merge(ChannelStats(std_image=True).update(x[a:b]))
    np.testing.assert_allclose(merged.mean_image, (x / 255).mean(axis=0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(merged.std_image, (x / 255).std(axis=0), rtol=0, atol=1e-12)


def test_the_std_image_is_saved_beside_the_mean_image_and_reads_back_bit_for_bit(train_x, tmp_path):
    stats = ChannelStats(std_image=True).update(train_x[:1000])
    path = stats.save(tmp_path / "stats.json")
    written = json.loads(path.read_text())
    assert (written["mean_image"], written["std_image"]) == ("stats.mean_image.npy", "stats.std_image.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "stats.std_image.npy"), stats.std_image)
    loaded = ChannelStats.load(path)
    np.testing.assert_array_equal(loaded.std_image, stats.std_image)  # a resumed run normalises as the first
    np.testing.assert_array_equal(loaded.mean_image, stats.mean_image)
    # Loaded statistics go on merging (the std image's M2 is recovered from it).
    loaded.update(train_x[1000:])
    np.testing.assert_allclose(loaded.std_image, (train_x / 255).std(axis=0), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d, folder: np.save(folder / "stats.std_image.npy", np.full((8, 8, 1), -0.1)), r"values from -0\.1.*\[0, 0\.5\]"),
        (lambda d, folder: np.save(folder / "stats.std_image.npy", np.full((8, 8, 1), 40.0)), r"\[0, 0\.5\]"),
        (lambda d, folder: np.save(folder / "stats.std_image.npy", np.zeros((4, 16, 1))), "mean image's shape 8 x 8 x 1"),
        (lambda d, folder: (folder / "stats.std_image.npy").unlink(), "its std image stats.std_image.npy is missing"),
        (lambda d, folder: d.pop("mean_image"), "a std image needs the mean image"),
    ],
)
def test_a_bad_std_image_is_refused_naming_the_file(train_x, tmp_path, edit, message):
    path = ChannelStats(std_image=True).update(train_x[:50]).save(tmp_path / "stats.json")
    written = json.loads(path.read_text())
    edit(written, tmp_path)
    path.write_text(json.dumps(written))
    with pytest.raises(AugkitError, match=str(path).replace(".", r"\.") + ".*" + message):
        ChannelStats.load(path)


# ----------------------------------------------------------------------------- constant pixels


def test_constant_pixels_are_only_centred_and_the_others_std_floored_at_one_gray_level():
    std = np.array([0.0, MIN_STD / 2, MIN_STD, 0.001, PIXEL_STD_FLOOR, 0.2])
    np.testing.assert_array_equal(floored_std(std), [1.0, 1.0, PIXEL_STD_FLOOR, PIXEL_STD_FLOOR, PIXEL_STD_FLOOR, 0.2])


def test_the_digits_border_pixels_give_no_nan_and_a_val_border_pixel_stays_bounded(pixel_stats):
    path, stats = pixel_stats
    constant = stats.std_image < MIN_STD
    assert constant.sum() == 4  # the always-0 border pixels of the training digits
    step = augkit.load_pipeline(f"standardize(stats={path}, mode=pixel)")
    val = open_dataset(DIGITS, split="val")
    val_x = np.stack([val.read(i) for i in range(len(val))])
    out = np.stack([step(image) for image in val_x])
    assert np.isfinite(out).all()
    # A val digit holds ink where every training digit was blank: centred only, not blown up (an
    # epsilon of 1e-8 would make 0.1 into 1e7); and no pixel anywhere past the floor's bound.
    ink = (val_x > 0) & constant
    assert ink.any()
    np.testing.assert_allclose(out[ink], val_x[ink] / 255 - stats.mean_image[constant][0], atol=1e-6)
    assert np.abs(out).max() <= 1 / PIXEL_STD_FLOOR
    np.testing.assert_allclose(out, lecture(val_x, stats), rtol=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------- the step and the plan


def test_the_step_computes_the_lecture_formula_and_the_plan_runs_it_as_is_bit_for_bit(train_x, pixel_stats):
    path, stats = pixel_stats
    step = augkit.load_pipeline(f"standardize(stats={path}, mode=pixel)")
    out = np.stack([step(image) for image in train_x])
    assert out.dtype == np.float32 and out.shape == train_x.shape
    np.testing.assert_allclose(out, lecture(train_x, stats), rtol=1e-6, atol=1e-5)
    # Over the training digits, every pixel that varies comes out with mean 0 and std 1.
    varies = (stats.std_image >= PIXEL_STD_FLOOR)[..., 0]
    np.testing.assert_allclose(out.mean(axis=0, dtype=np.float64)[..., 0][varies], 0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=0, dtype=np.float64)[..., 0][varies], 1, atol=1e-6)

    spec = {"seed": 4, "steps": [{"brightness": {"limit": 0.3, "p": 0.8}}, {"standardize": {"stats": str(path), "mode": "pixel"}}]}
    compiled, steps = augkit.load_pipeline(spec), augkit.load_pipeline({**spec, "compile": False})
    assert compiled.plan.describe() == [("table", ["brightness"]), ("as is", ["standardize"])]
    for i, image in enumerate(train_x[:64]):
        np.testing.assert_array_equal(compiled(image, index=i), steps(image, index=i))
    assert augkit.load_pipeline(f"standardize(stats={path}, mode=pixel)").to_spec()["steps"] == [
        {"standardize": {"stats": str(path), "mode": "pixel"}}
    ]


def test_the_step_refuses_what_it_cannot_standardise_in_one_line(train_x, pixel_stats, tmp_path):
    path, _ = pixel_stats
    step = augkit.load_pipeline(f"standardize(stats={path}, mode=pixel)")
    with pytest.raises(AugkitError) as error:
        step(np.zeros((9, 8, 1), np.uint8))
    assert "\n" not in str(error.value) and "9 x 8 x 1" in str(error.value) and "8 x 8 x 1 images" in str(error.value)
    channel_only = ChannelStats().update(train_x).save(tmp_path / "channel.json")
    with pytest.raises(AugkitError, match="has no std image, which mode pixel needs; .*--per-pixel"):
        augkit.load_pipeline(f"standardize(stats={channel_only}, mode=pixel)")
    with pytest.raises(AugkitError, match="mode 'pixel' needs a stats file"):
        augkit.load_pipeline("standardize(mean=0.5, std=0.2, mode=pixel)")


# ----------------------------------------------------------------------------- training


def test_the_training_normaliser_on_the_device_equals_the_step(train_x, pixel_stats, tmp_path):
    path, stats = pixel_stats
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits = data.open_splits(TrainConfig())
    normalizer = data.fit_normalizer(TrainConfig(standardize="pixel"), splits, tmp_path).to(device)
    assert normalizer.mean.shape == normalizer.std.shape == (1, 8, 8)
    cached = ChannelStats.load(tmp_path / "stats.json")  # computed on train, cached with both images
    np.testing.assert_allclose(cached.std_image, stats.std_image, rtol=0, atol=1e-14)
    out = normalizer(torch.from_numpy(train_x).to(device)).cpu().numpy().transpose(0, 2, 3, 1)
    step = augkit.load_pipeline(f"standardize(stats={path}, mode=pixel)")
    np.testing.assert_allclose(out, np.stack([step(image) for image in train_x]), rtol=1e-6, atol=1e-5)
    # The same from --stats FILE, and from the step ending --augment.
    given = data.fit_normalizer(TrainConfig(standardize="pixel", stats=str(path)), splits, tmp_path / "given")
    from_step = data.fit_normalizer(TrainConfig(augment=f"standardize(stats={path}, mode=pixel)"), splits, tmp_path / "step")
    torch.testing.assert_close(given.scale, from_step.scale, rtol=0, atol=0)
    torch.testing.assert_close(given.shift, from_step.shift, rtol=0, atol=0)
    torch.testing.assert_close(given.shift, normalizer.shift.cpu(), rtol=1e-6, atol=1e-6)


def test_train_standardize_pixel_runs_and_records_it(tmp_path):
    result = run("train", "--standardize", "pixel", "--model", "mlp", "--epochs", "1", "--train-subset", "300",
                 "-o", tmp_path / "run", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["final_val_acc"] > 0.3  # 10 classes: chance is 0.1
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["standardize"] == "pixel"
    assert {"stats.json", "stats.mean_image.npy", "stats.std_image.npy"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert "per-pixel standardized" in describe_tricks(TrainConfig(standardize="pixel", model="mlp"))


def test_stats_per_pixel_writes_the_mean_and_std_images(tmp_path, train_x):
    result = run("stats", "--per-pixel", "-o", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr
    assert "4 constant (only centred), 3 below one gray level" in result.stdout
    x = train_x / 255
    np.testing.assert_allclose(np.load(tmp_path / "out.mean_image.npy"), x.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "out.std_image.npy"), x.std(axis=0), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- the config, old and new


def test_standardize_true_or_false_from_before_the_modes_loads_as_channel_or_none(tmp_path):
    for old, new in ((True, "channel"), (False, "none")):
        path = tmp_path / f"{old}.yaml"
        path.write_text(f"model: mlp\nstandardize: {str(old).lower()}\n")
        assert TrainConfig.load(path).standardize == new
        assert TrainConfig(standardize=old).standardize == new
        assert TrainConfig().replace({"standardize": old}).standardize == new  # --set standardize=true
    assert parse_grid(["standardize=channel,pixel,none"], TrainConfig()) == {"standardize": ("channel", "pixel", "none")}
    with pytest.raises(AugkitError, match="standardize must be channel, pixel, none, got 'pixels'"):
        TrainConfig(standardize="pixels")
    with pytest.raises(AugkitError, match="already subtracts the mean image"):
        TrainConfig(standardize="pixel", mean_image=True)


def test_no_standardize_still_means_none(tmp_path):
    result = invoke("train", *QUICK, "--epochs", "1", "--no-standardize", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["standardize"] == "none"
    assert not (tmp_path / "run" / "stats.json").exists()  # scaled to [0, 1]: no statistics needed


def test_a_run_saved_with_standardize_true_resumes_to_the_weights_of_a_straight_run(tmp_path):
    old, straight = tmp_path / "old", tmp_path / "straight"
    assert invoke("train", *QUICK, "--epochs", "1", "-o", old).exit_code == 0
    # As a run from before the modes wrote it, stopped after epoch 1 of 2.
    config = yaml.safe_load((old / "config.yaml").read_text())
    (old / "config.yaml").write_text(yaml.safe_dump({**config, "standardize": True, "epochs": 2}, sort_keys=False))
    state = torch.load(old / "last.pt", weights_only=True)
    state["config"] = {**state["config"], "standardize": True, "epochs": 2}
    torch.save(state, old / "last.pt")

    resumed = invoke("train", "--resume", old, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert invoke("train", *QUICK, "--epochs", "2", "-o", straight).exit_code == 0
    a, b = (torch.load(run_dir / "last.pt", weights_only=True) for run_dir in (straight, old))
    assert a["epoch"] == b["epoch"] == 2 and b["config"]["standardize"] == "channel"
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=0)


def test_pixel_statistics_of_another_size_are_one_line_exit_2(tmp_path, assert_fails):
    small = ChannelStats(std_image=True).update(np.zeros((2, 4, 4, 1), np.uint8)).save(tmp_path / "small.json")
    trained = invoke("train", *QUICK, "--standardize", "pixel", "--stats", small, "-o", tmp_path / "run")
    assert_fails(trained, 2, "has per-pixel statistics of 4x4 images but DATA's images are 8x8", "--per-pixel")
    channel_only = ChannelStats().update(np.zeros((2, 8, 8, 1), np.uint8)).save(tmp_path / "channel.json")
    trained = invoke("train", *QUICK, "--standardize", "pixel", "--stats", channel_only, "-o", tmp_path / "run2")
    assert_fails(trained, 2, "has no std image, which --standardize pixel needs")
    photo = augkit.sample_data_dir() / "photos" / "camera.png"
    previewed = invoke("preview", "-p", f"standardize(stats={small}, mode=pixel)", photo, "-o", tmp_path / "p.png")
    assert_fails(previewed, 2, "standardize(mode=pixel)", "holds per-pixel statistics of 4 x 4 x 1 images")


@pytest.mark.parametrize("value, mode", [("true", "channel"), ("yes", "channel"), (1, "channel"), ("0", "none"),
                                         (False, "none"), ("pixel", "pixel")])  # fmt: skip
def test_standardize_as_older_files_wrote_it_still_reads(value, mode):
    from augkit.train.config import TrainConfig

    assert TrainConfig().replace({"standardize": value}, source="c.yaml").standardize == mode


def test_stats_never_writes_its_json_over_an_image_array(tmp_path, assert_fails):
    from click.testing import CliRunner

    from augkit.cli.main import cli

    sidecar = tmp_path / "d.std_image.npy"
    sidecar.write_bytes(b"\x93NUMPY")
    assert_fails(CliRunner().invoke(cli, ["stats", "--per-pixel", "-o", str(sidecar)]), 2, "name it .json")
    assert sidecar.read_bytes() == b"\x93NUMPY"
