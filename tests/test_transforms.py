"""augkit's steps: the arithmetic of each pure function, and the transform contract for all."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augkit import functional as F
from augkit._albumentations import A
from augkit.registry import COMPOSITIONS, create_step, get_step, list_steps, step_parameters

RNG = np.random.default_rng(1234)
IMAGE = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def run(transform, image):
    return transform(image=image)["image"]


# ----------------------------------------------------------------------------- pure functions


def test_standardize_equals_albumentations_normalize_within_float32_rounding():
    ours = F.standardize(IMAGE, MEAN, STD)
    theirs = A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0, p=1.0)(image=IMAGE)["image"]
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)


def test_standardize_equals_torchvision_formula_within_float32_rounding():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(IMAGE).permute(2, 0, 1).float() / 255  # what ToTensor() does
    expected = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]  # Normalize()
    ours = torch.from_numpy(F.standardize(IMAGE, MEAN, STD)).permute(2, 0, 1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=2e-6)


def test_standardize_gives_zero_mean_unit_std_with_the_images_own_statistics():
    x = IMAGE.reshape(-1, 3) / 255.0
    out = F.standardize(IMAGE, x.mean(0), x.std(0)).reshape(-1, 3)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1, atol=1e-5)


def test_standardize_refuses_statistics_with_another_channel_count():
    with pytest.raises(Exception, match="3 channels but the image has 1"):
        F.standardize(IMAGE[..., :1], MEAN, STD)


def test_subtract_mean_per_channel_and_mean_image():
    per_channel = F.subtract_mean(IMAGE, np.array([0.5, 0.25, 0.0]))
    np.testing.assert_allclose(per_channel, IMAGE / 255.0 - [0.5, 0.25, 0.0], atol=1e-6)
    mean_image = IMAGE / 255.0
    np.testing.assert_allclose(F.subtract_mean(IMAGE, mean_image), 0, atol=1e-6)


def test_scale_maps_uint8_to_unit_interval():
    out = F.scale(np.array([[[0, 128, 255]]], np.uint8))
    np.testing.assert_allclose(out, [[[0, 128 / 255, 1]]], atol=1e-7)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_rotate_by_90_degrees_is_an_exact_counter_clockwise_quarter_turn(channels):
    square = RNG.integers(0, 256, (17, 17, channels), dtype=np.uint8)
    np.testing.assert_array_equal(F.rotate(square, 90), np.rot90(square, 1))
    np.testing.assert_array_equal(F.rotate(square, 0), square)


def test_brightness_adds_a_fraction_of_the_range_and_clips():
    pixels = np.array([[[0, 100, 250]]], np.uint8)
    np.testing.assert_array_equal(F.adjust_brightness(pixels, 0.1), [[[26, 126, 255]]])
    np.testing.assert_array_equal(F.adjust_brightness(pixels, -0.1), [[[0, 74, 224]]])
    np.testing.assert_allclose(F.adjust_brightness(pixels / np.float32(255), 0.1), np.clip(pixels / 255 + 0.1, 0, 1), atol=1e-6)


def test_contrast_scales_distance_from_the_mean():
    pixels = np.array([[[50, 100, 150]]], np.uint8)  # mean 100
    np.testing.assert_array_equal(F.adjust_contrast(pixels, 2.0), [[[0, 100, 200]]])
    np.testing.assert_array_equal(F.adjust_contrast(pixels, 0.0), [[[100, 100, 100]]])
    np.testing.assert_array_equal(F.adjust_contrast(pixels, 1.0), pixels)


def test_crop_returns_a_copy_so_writing_the_output_never_changes_the_input():
    source = IMAGE.copy()
    out = F.crop(source, 2, 3, 10, 12)
    out[:] = 0
    np.testing.assert_array_equal(source, IMAGE)


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate"])
def test_pad_matches_numpy_pad(border):
    numpy_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[border]
    expected = np.pad(IMAGE, [(1, 2), (3, 4), (0, 0)], mode=numpy_mode)
    np.testing.assert_array_equal(F.pad(IMAGE, 1, 2, 3, 4, border=border), expected)


def test_reflect_padding_wider_than_the_image_still_works():
    tiny = RNG.integers(0, 256, (2, 3, 1), dtype=np.uint8)
    assert F.pad(tiny, 5, 5, 5, 5, border="reflect").shape == (12, 13, 1)


# ----------------------------------------------------------------------------- the crop step


def crop(**params):
    t = create_step("crop", **params)
    t.set_random_seed(0)
    return t


def test_crop_with_padding_picks_windows_inside_the_padded_image_cifar_style():
    image = RNG.integers(1, 256, (32, 32, 3), dtype=np.uint8)  # no zero pixels: padding is visible
    t = crop(size=32, padding=4)
    offsets = set()
    for _ in range(200):
        params = t.get_params_dependent_on_data({"shape": image.shape}, {"image": image})
        y, x, h, w = params["window"]
        offsets.add((y, x))
        out = t.apply(image, **params)
        assert out.shape == (32, 32, 3)
        padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
        np.testing.assert_array_equal(out, padded[y : y + 32, x : x + 32])
    assert {y for y, _ in offsets} == set(range(9)) and {x for _, x in offsets} == set(range(9))


def test_center_crop_takes_the_middle():
    out = run(crop(size=[10, 20], mode="center"), IMAGE)
    np.testing.assert_array_equal(out, IMAGE[15:25, 18:38])


def test_crop_size_as_a_fraction_scales_with_the_image():
    assert run(crop(size=0.5, mode="center"), IMAGE).shape == (20, 28, 3)


def test_crop_larger_than_the_image_pads_up_to_the_size():
    assert run(crop(size=64), IMAGE).shape == (64, 64, 3)


def test_random_resized_crop_always_gives_the_requested_size():
    t = crop(size=[24, 16], mode="random_resized", scale=(0.1, 1.0))
    shapes = {run(t, IMAGE).shape for _ in range(50)}
    assert shapes == {(24, 16, 3)}


# ----------------------------------------------------------------------------- contract, all steps

AUGKIT_STEPS = list_steps("augkit")


def _params_for(name: str, channels: int) -> dict:
    """Parameters that make a step apply always; standardisation gets statistics per channel."""
    params = {"p": 1.0} if "p" in step_parameters(get_step(name)) else {}
    if name == "crop":
        params["size"] = 24
    if name == "standardize":
        params.update(mean=[0.5] * channels, std=[0.25] * channels)
    if name == "subtract_mean":
        params["mean"] = [0.5] * channels
    return params


@pytest.mark.parametrize("name", AUGKIT_STEPS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 512),
    width=st.integers(1, 512),
    channels=st.sampled_from([1, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_augkit_step_gives_a_valid_shape_and_dtype_for_any_uint8_image(name, height, width, channels, seed):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    transform = create_step(name, **_params_for(name, channels))
    transform.set_random_seed(seed)
    out = run(transform, image)
    expected_hw = (24, 24) if name == "crop" else (height, width)
    assert out.shape == (*expected_hw, channels)
    float_steps = {"standardize", "subtract_mean", "scale"}
    assert out.dtype == (np.float32 if name in float_steps else np.uint8)
    assert out.flags.c_contiguous or out.flags.f_contiguous


@pytest.mark.parametrize("name", AUGKIT_STEPS)
def test_every_augkit_step_leaves_its_input_untouched(name):
    image = IMAGE.copy()
    run(create_step(name, **_params_for(name, 3)), image)
    np.testing.assert_array_equal(image, IMAGE)


@pytest.mark.parametrize("name", AUGKIT_STEPS)
def test_every_augkit_step_round_trips_through_albumentations_serialisation(name):
    transform = create_step(name, **_params_for(name, 3))
    restored = A.from_dict(A.to_dict(transform))
    assert type(restored) is type(transform)
    transform.set_random_seed(7)
    restored.set_random_seed(7)
    np.testing.assert_array_equal(run(transform, IMAGE), run(restored, IMAGE))


# Arguments for albumentations transforms that have no defaults for everything.
REQUIRED_ARGS = {
    "CenterCrop": {"height": 32, "width": 32},
    "Crop": {"x_max": 32, "y_max": 32},
    "CropAndPad": {"px": 4},
    "GridElasticDeform": {"num_grid_xy": (4, 4), "magnitude": 5},
    "LongestMaxSize": {"max_size": 48},
    "SmallestMaxSize": {"max_size": 48},
    "RandomCrop": {"height": 32, "width": 32},
    "RandomResizedCrop": {"size": (32, 32)},
    "RandomSizedCrop": {"min_max_height": (32, 48), "size": (32, 32)},
    "Resize": {"height": 32, "width": 32},
}
ALBUMENTATIONS_STEPS = [n for n in list_steps("albumentations") if n not in COMPOSITIONS]


@pytest.mark.parametrize("name", ALBUMENTATIONS_STEPS)
def test_every_albumentations_step_runs_on_an_rgb_image_with_this_opencv(name):
    """Catches OpenCV releases that break albumentations (the pin allows OpenCV to move)."""
    cls = get_step(name)
    params = dict(REQUIRED_ARGS.get(name, {}))
    missing = [k for k, p in step_parameters(cls).items() if p.default is inspect.Parameter.empty and k not in params]
    assert not missing, f"{name} needs {missing}: add it to REQUIRED_ARGS"
    if "p" in step_parameters(cls):
        params["p"] = 1.0
    with warnings.catch_warnings():  # some warn about inputs they would like (masks, gray)
        warnings.simplefilter("ignore")
        transform = create_step(name, **params)
        transform.set_random_seed(0)
        out = run(transform, np.ascontiguousarray(IMAGE[:, :48]))
    assert out.ndim == 3 and out.shape[2] == 3 and out.size > 0
