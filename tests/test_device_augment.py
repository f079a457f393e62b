"""augkit.train.device_augment: batched augmentation with the CPU path's draws (``--augment-on device``).

The parameters it applies are the ones the CPU pipeline draws for every (epoch, index); crops and
flips give the CPU path's pixels exactly, the resampling and intensity steps within the bounds
the module's docstring states, on real photos (CPU tensors: how CI runs the device path).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import augkit
from augkit.cli.main import cli
from augkit.errors import AugkitError
from augkit.train import data
from augkit.train.config import TrainConfig
from augkit.train.device_augment import DeviceAugment

EPOCH = 3
INDICES = np.arange(40) * 13 + 5  # sample indices as a shuffled epoch has them: any, not 0..N-1


@pytest.fixture(scope="module")
def photos(photo_crops: Callable[..., list[np.ndarray]]) -> np.ndarray:
    """40 real RGB photo crops, uint8 40 x 32 x 32 x 3."""
    return np.stack(photo_crops(len(INDICES), ((32, 32),), seed=11))


def on_device(augment: DeviceAugment, images: np.ndarray, indices: np.ndarray = INDICES, epoch: int = EPOCH) -> np.ndarray:
    """The device path on CPU tensors, back as N x H x W x C uint8."""
    out = augment(torch.from_numpy(images).permute(0, 3, 1, 2), indices, epoch)
    assert out.dtype == torch.uint8
    return out.permute(0, 2, 3, 1).numpy()


def on_cpu(pipeline: augkit.Pipeline, images: np.ndarray, indices: np.ndarray = INDICES, epoch: int = EPOCH) -> np.ndarray:
    return np.stack([pipeline(image, index=int(i), epoch=epoch) for image, i in zip(images, indices)])


def replayed(pipeline: augkit.Pipeline, image: np.ndarray, index: int, epoch: int) -> list[dict | None]:
    """What each top-level step drew on the CPU path (None: skipped), read back by replay."""
    _, applied = pipeline.replay(image, index=index, epoch=epoch)
    drawn = {id(step.transform): step.params for step in applied}
    return [drawn.get(id(transform)) for transform in pipeline.transforms]


# ----------------------------------------------------------------------------- the draws


@pytest.mark.parametrize("spec", [
    "crop(size=32, padding=4); hflip; vflip(p=0.3); rotate(limit=20, p=0.5); brightness(p=0.5); contrast(p=0.5)",
    "crop(size=24, mode=random_resized, p=1); rotate(limit=[-5, 40], p=1)",
    "crop(size=0.75, mode=center); hflip(p=0.9)",
])  # fmt: skip
def test_the_parameters_applied_are_the_ones_the_cpu_path_draws_for_each_sample(photos, spec):
    pipeline = augkit.load_pipeline(spec, seed=7)
    draws = DeviceAugment(pipeline).draws(photos.shape[1:], INDICES, EPOCH)
    assert [step.name for step in draws] == pipeline.steps
    for k, (image, index) in enumerate(zip(photos, INDICES)):
        for step, drawn in zip(draws, replayed(pipeline, image, int(index), EPOCH)):
            assert step.applied[k] == (drawn is not None), (step.name, index)
            if drawn is None:
                continue
            params = {key: value[k] if isinstance(value, np.ndarray) else value for key, value in step.params.items()}
            if step.name == "crop":
                y, x, h, w = drawn["window"]
                assert (params["y"], params["x"]) == (y - drawn["pad"][0], x - drawn["pad"][2])
                assert (params["height"], params["width"], tuple(params["out"])) == (h, w, tuple(drawn["out"]))
            elif step.name == "rotate":
                assert params["angle"] == drawn["angle"]
            elif step.name in ("brightness", "contrast"):
                assert params["delta"] == drawn["delta"]


def test_the_draws_follow_the_epoch(photos):
    augment = DeviceAugment(augkit.load_pipeline("crop(size=32, padding=4); rotate(p=1)", seed=0))
    first, second = (augment.draws(photos.shape[1:], INDICES, epoch) for epoch in (0, 1))
    assert not np.array_equal(first[1].params["angle"], second[1].params["angle"])


# ----------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("spec", [
    "crop(size=32, padding=4); hflip",
    "crop(size=32, padding=4, border=reflect); hflip; vflip",
    "crop(size=32, padding=6, border=replicate, p=0.5); vflip(p=0.5)",
    "hflip; crop(size=20, mode=center)",
    "crop(size=28, padding=2, fill=100); hflip; crop(size=32, padding=3, fill=200)",  # two fills, the later on top
    "crop(size=28, padding=5, fill=100); crop(size=32, padding=40, border=reflect)",  # mirrored past the whole image
    "brightness(limit=0.5, p=0.5)",
])  # fmt: skip
def test_crops_flips_and_brightness_give_the_cpu_paths_pixels_exactly(photos, spec):
    pipeline = augkit.load_pipeline(spec, seed=5)
    expected = on_cpu(pipeline, photos)
    assert not np.array_equal(expected, photos[:, : expected.shape[1], : expected.shape[2]])  # it did something
    np.testing.assert_array_equal(on_device(DeviceAugment(pipeline), photos), expected)


# (spec, largest mean absolute difference from the CPU path, in gray levels): the bounds the
# module docstring states, with a margin over what the sample photos give (in brackets).
RESAMPLED = [
    ("rotate(limit=45, p=1)", 0.01),  # [0.0000]: reflect as BORDER_REFLECT_101
    ("rotate(limit=45, border=constant, fill=128, p=0.5)", 0.01),  # [0.0000]
    ("rotate(limit=180, border=replicate, p=1)", 0.01),  # [0.0000]
    ("contrast(limit=0.5, p=1)", 0.01),  # [0.0000]: float32 arithmetic
    ("brightness(limit=0.5, p=1); contrast(limit=0.5, p=1)", 0.01),
    ("crop(size=32, mode=random_resized, scale=[0.3, 1])", 0.2),  # [0.10]: OpenCV's fixed-point weights
    ("crop(size=16, mode=random_resized)", 2.5),  # [0.9-1.2]: no antialiasing when shrinking
    ("crop(size=32, padding=4); hflip; rotate(limit=15, p=1); brightness(p=1); contrast(p=1)", 0.01),
]


@pytest.mark.parametrize(("spec", "bound"), RESAMPLED)
def test_resampling_and_intensity_steps_stay_within_the_stated_bounds_of_the_cpu_path(photos, spec, bound):
    pipeline = augkit.load_pipeline(spec, seed=9)
    expected = on_cpu(pipeline, photos)
    got = on_device(DeviceAugment(pipeline), photos)
    difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert difference.mean() <= bound, spec
    if bound < 1:  # where the method is the same, no pixel is more than one level off
        assert difference.max() <= 1, spec
    if got.shape == photos.shape:  # not the input back
        assert np.abs(got.astype(np.int16) - photos.astype(np.int16)).mean() > 10 * bound


def test_samples_a_step_skipped_keep_their_pixels(photos):
    pipeline = augkit.load_pipeline("rotate(limit=90, p=0.5, border=constant); contrast(limit=0.9, p=0.5)", seed=1)
    augment = DeviceAugment(pipeline)
    skipped = [~step.applied for step in augment.draws(photos.shape[1:], INDICES, EPOCH)]
    untouched = skipped[0] & skipped[1]
    assert untouched.any() and not untouched.all()
    np.testing.assert_array_equal(on_device(augment, photos)[untouched], photos[untouched])


def test_a_batch_on_any_memory_layout_gives_the_same_pixels(photos):
    augment = DeviceAugment(augkit.load_pipeline("crop(size=32, padding=4); hflip; rotate(p=1)", seed=2))
    nchw = torch.from_numpy(photos).permute(0, 3, 1, 2)
    channels_last, contiguous = augment(nchw, INDICES, EPOCH), augment(nchw.contiguous(), INDICES, EPOCH)
    torch.testing.assert_close(channels_last, contiguous, rtol=0, atol=0)


def test_gray_images_augment_alike(photos):
    gray = photos[..., :1].copy()
    pipeline = augkit.load_pipeline("crop(size=32, padding=4, fill=90); hflip; vflip", seed=3)
    np.testing.assert_array_equal(on_device(DeviceAugment(pipeline), gray), on_cpu(pipeline, gray))


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("spec", ["GaussianBlur", "crop(size=32, padding=4); OneOf(transforms=[hflip, vflip])"])
def test_a_step_without_a_batched_form_is_refused_by_name(spec):
    name = "GaussianBlur" if spec == "GaussianBlur" else "OneOf"
    with pytest.raises(AugkitError, match=f"--augment-on device: step '{name}' has no batched form"):
        DeviceAugment(augkit.load_pipeline(spec))


def test_a_crop_that_resizes_some_samples_only_is_refused(photos):
    augment = DeviceAugment(augkit.load_pipeline("crop(size=24, p=0.5)", seed=0))
    with pytest.raises(AugkitError, match=r"a crop that changes the size must apply to every sample \(p=1\)"):
        on_device(augment, photos)


def test_a_batch_that_is_not_uint8_nchw_or_indices_of_another_length_are_refused(photos):
    augment = DeviceAugment(augkit.load_pipeline("hflip"))
    batch = torch.from_numpy(photos).permute(0, 3, 1, 2)
    with pytest.raises(ValueError, match="uint8 N x C x H x W"):
        augment(batch.float(), INDICES, 0)
    with pytest.raises(ValueError, match="39 indices for a batch of 40"):
        augment(batch, INDICES[:-1], 0)


# ----------------------------------------------------------------------------- in the harness


def test_training_batches_on_the_device_are_the_cpu_paths_batches():
    """The same normalised batches, epoch after epoch, whichever path augments: a run can switch."""
    spec = "crop(size=8, padding=1); hflip"
    splits = data.open_splits(TrainConfig())
    normalizer = data.Normalizer.from_stats(None, standardize="none", mean_image=False, channels=1)

    def batches(augment_on: str, epoch: int) -> list[torch.Tensor]:
        pipeline = data.load_augment(spec, 4)
        loader = data.Loader(splits.train_images, splits.train_labels, batch_size=64, train=True, seed=4,
                             augment=pipeline if augment_on == "cpu" else None)  # fmt: skip
        device_augment = DeviceAugment(pipeline) if augment_on == "device" else None
        device_batches = data.DeviceBatches(loader, normalizer, torch.device("cpu"), channels_last=True, augment=device_augment)
        return [x for x, _ in device_batches.batches(epoch)]

    for epoch in (0, 1):
        cpu, device = batches("cpu", epoch), batches("device", epoch)
        assert len(cpu) == len(device) > 1
        for a, b in zip(cpu, device):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_refuses_a_step_without_a_batched_form_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "augkit", "train", "--augment-on", "device", "--augment", "GaussianBlur",
         "-o", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "step 'GaussianBlur' has no batched form" in lines[0], result.stderr
    assert "--augment-on cpu" in lines[0]
    assert not (tmp_path / "run").exists()


def test_augment_on_device_needs_an_augmentation():
    result = CliRunner().invoke(cli, ["train", "--augment-on", "device", "-q"])
    assert result.exit_code == 2
    assert "--augment-on device needs --augment" in result.output


def test_train_with_augment_on_device_finishes_and_records_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--augment-on", "device", "--augment", "crop(size=8, padding=1); hflip",
                                      "--epochs", "1", "--model", "mlp", "--hidden", "32", "-q", "-o", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["augment_on"] == "device" and saved["augment"] == "crop(size=8, padding=1); hflip"
    assert (run_dir / "last.pt").exists()


def test_workers_beside_augment_on_device_are_named_as_unused(tmp_path: Path):
    result = CliRunner().invoke(cli, ["train", "--augment-on", "device", "--augment", "hflip", "--workers", "2",
                                      "--epochs", "1", "--model", "mlp", "--hidden", "16", "-o", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: --workers 2 is not used with --augment-on device" in result.output


@pytest.mark.parametrize("spec, extra, where", [
    ("crop(size=8, padding=1); hflip", [],
     "augment: whole batches on the training device (cpu; --augment-on auto: every step has a batched form): crop, hflip"),
    ("crop(size=8, padding=1); rotate(limit=10); brightness; contrast; vflip", [], "augment: whole batches on the training device"),
    ("crop(size=8, mode=random_resized); hflip", [],
     "augment: per image in this process (--augment-on auto: crop(mode=random_resized) is antialiased per image only)"),
    ("crop(size=8, padding=1); GaussianBlur", [], "augment: per image in this process (--augment-on auto: GaussianBlur has no batched form)"),
    ("crop(size=8, padding=1); hflip", ["--workers", "1"],
     "augment: per image in 1 worker process(es) (--augment-on auto: --workers 1 asked for worker processes)"),
])
def test_auto_augments_on_the_device_when_every_step_can_and_none_is_a_random_resized_crop(tmp_path: Path, spec, extra,
                                                                                          where):
    result = CliRunner().invoke(cli, ["train", "--augment", spec, "--epochs", "1", "--model", "mlp", "--hidden", "16",
                                      *extra, "-o", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert where in result.output
