"""augkit's steps: the arithmetic of each pure function, and the transform contract for all."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augkit.pipeline import functional as F
from augkit.pipeline._albumentations import A
from augkit.pipeline.core import UINT16_ALBUMENTATIONS
from augkit.pipeline.registry import COMPOSITIONS, create_step, get_step, list_steps, step_parameters

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


# ----------------------------------------------------------------------------- the pixel contract

U8 = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_scale_of_uint16_divides_by_65535_not_255():
    # The issue: scale gave 63993 (the uint16 value itself) for a uint16 image.
    image = np.full((4, 4, 3), 63993, np.uint16)
    assert F.scale(image).max() == np.float32(63993 / 65535)


def test_standardize_of_the_same_image_in_16_bits_equals_the_8_bit_one():
    # The issue: a uint16 image through standardize(mean=0.5, std=0.25) reached 255970.
    mean, std = [0.5] * 3, [0.25] * 3
    np.testing.assert_allclose(F.standardize(U8.astype(np.uint16) * 257, mean, std), F.standardize(U8, mean, std), atol=1e-6)
    np.testing.assert_allclose(
        F.subtract_mean(U8.astype(np.uint16) * 257, np.array(mean)), F.subtract_mean(U8, np.array(mean)), atol=1e-6
    )


@pytest.mark.parametrize("delta", [-0.3, 0.1, 0.7])
def test_brightness_and_contrast_keep_uint16_and_agree_with_the_8_bit_image(delta):
    wide = U8.astype(np.uint16) * 257
    for adjust, value in ((F.adjust_brightness, delta), (F.adjust_contrast, 1 + delta)):
        out = adjust(wide, value)
        assert out.dtype == np.uint16
        # The same arithmetic on the [0, 1] scale: within one 8-bit step of the uint8 result.
        assert np.abs(out / 65535 - adjust(U8, value) / 255).max() <= 1 / 255 + 1e-9


def test_brightness_on_float_images_stays_on_the_unit_scale():
    image = U8.astype(np.float32) / 255
    out = F.adjust_brightness(image, 0.1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.clip(image + 0.1, 0, 1), atol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        # The issue: a float image holding 0..255 had 99% of its pixels turned to exactly 1.0.
        (U8.astype(np.float32), r"float32 values must lie in \[0, 1\], got values from 0 to 255; .*divide by 255"),
        (U8.astype(np.float64) / 255, r"float64 pixels are not supported"),
        (U8.astype(np.int32), r"int32 pixels .*image.astype\(np.uint8\)"),
        (U8 > 128, r"bool pixels"),
        (np.full((4, 4), np.nan, np.float32), r"NaN in 16 value"),
        (np.full((4, 4), -np.inf, np.float32), r"replace NaN/Inf first"),
    ],
)
def test_pipelines_refuse_pixels_outside_the_contract_with_the_fix(image, message):
    from augkit import AugkitError, load_pipeline

    with pytest.raises(AugkitError, match=message):
        load_pipeline("brightness(limit=[0.1, 0.1], p=1)")(image, index=0)



_ONE = np.float32(1.0)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (0.0, True),
        (-0.0, True),  # equal to 0, though its bit pattern is the sign bit alone
        (np.nextafter(np.float32(0), _ONE), True),  # the smallest subnormal
        (1.0, True),
        (np.nextafter(_ONE, np.float32(2)), False),  # 1.0000001
        (-np.nextafter(np.float32(0), _ONE), False),
        (np.inf, False),
        (-np.inf, False),
        (np.nan, False),
        (-np.nan, False),
        (np.float32(np.finfo(np.float32).max), False),
    ],
)
def test_the_float_range_check_is_exact_at_every_edge(value, accepted):
    # check_image decides in one pass over the bit patterns read as uint32; each edge of
    # [0, 1] (and each kind of value outside it) must land on the right side, wherever the
    # value sits in an image that is otherwise in range.
    from augkit.pixels import PixelError, check_image

    for where in [(0, 0, 0), (7, 3, 2), (-1, -1, -1)]:
        image = np.random.default_rng(0).random((8, 5, 3), dtype=np.float32)
        image[where] = value
        marked = np.zeros(image.shape, bool)
        marked[where] = True
        for cut in (np.s_[...], np.s_[:, ::2], np.s_[..., 1]):  # strided views too
            view = image[cut]
            if accepted or not marked[cut].any():
                assert check_image(view) == 1.0
            else:
                with pytest.raises(PixelError, match="float32 values must lie in"):
                    check_image(view)

# ----------------------------------------------------------------------------- masks

GEOMETRIC = [
    "crop(size=20)",
    "crop(size=0.7, mode=center)",
    "crop(size=[18, 26], mode=random_resized, scale=[0.2, 1.0])",
    "crop(size=48, padding=6, border=reflect)",
    "crop(size=48, padding=6, border=replicate)",
    "crop(size=40, padding=9, border=constant, fill_mask=7)",
    "rotate(limit=180, p=1)",
    "rotate(limit=180, p=1, border=constant, fill_mask=3)",
    "rotate(limit=180, p=1, border=replicate)",
    "hflip(p=1)",
    "vflip(p=1)",
]


@settings(max_examples=60, deadline=None)
@given(
    spec=st.sampled_from(GEOMETRIC),
    labels=st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_geometric_steps_move_masks_as_labels_never_blending_them(spec, labels, seed):
    # The issue: labels {0, 3, 7} through rotate or a random-resized crop came out as {0..7}.
    from augkit import load_pipeline

    rng = np.random.default_rng(seed)
    mask = rng.choice(np.array(labels, np.uint8), (33, 41))
    image = rng.integers(0, 256, (33, 41, 3), dtype=np.uint8)
    step = load_pipeline(spec).transforms[0]
    out = step(image=image, mask=mask)
    allowed = set(labels) | {getattr(step, "fill_mask", 0)} if getattr(step, "border", "") == "constant" else set(labels)
    assert set(np.unique(out["mask"]).tolist()) <= allowed
    assert out["mask"].shape == out["image"].shape[:2]


@pytest.mark.parametrize("spec", ["rotate(limit=180, p=1)", "crop(size=20, mode=random_resized)", "crop(size=48, padding=6)"])
def test_bool_masks_come_back_as_bool_masks(spec):
    from augkit import load_pipeline

    rng = np.random.default_rng(1)
    mask = rng.random((33, 41)) > 0.5
    out = load_pipeline(spec).compose(image=rng.integers(0, 256, (33, 41, 3), dtype=np.uint8), mask=mask)["mask"]
    assert out.dtype == np.bool_ and out.any() and not out.all()


def test_the_issues_mask_example_keeps_exactly_its_labels():
    from augkit import load_pipeline

    rng = np.random.default_rng(0)
    mask = rng.choice(np.array([0, 3, 7], np.uint8), (64, 64))
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for spec in ("rotate(limit=45, p=1)", "crop(size=48, mode=random_resized)"):
        out = load_pipeline(spec).compose(image=image, mask=mask)
        assert set(np.unique(out["mask"]).tolist()) == {0, 3, 7}


# ----------------------------------------------------------------------------- windows past the edge


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("window", [(-3, -5, 10, 12), (20, 28, 9, 9), (-40, -50, 7, 6), (-2, 30, 30, 8), (0, 0, 24, 32)])
def test_a_window_past_the_edge_equals_padding_first_then_cropping(border, window):
    y, x, h, w = window
    margin = 60
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[border]
    padded = np.pad(U8, [(margin, margin), (margin, margin), (0, 0)], mode=mode, **({"constant_values": 9} if border == "constant" else {}))
    expected = padded[y + margin : y + margin + h, x + margin : x + margin + w]
    np.testing.assert_array_equal(F.crop(U8, y, x, h, w, border=border, fill=9), expected)


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((24, 32, 3), np.uint8), ((7, 5), np.uint8), ((9, 6, 1), np.uint16), ((8, 8, 5), np.uint8), ((1, 6, 4), np.float32)],
)
def test_every_window_equals_numpys_padding_then_cropping(border, shape, dtype):
    # crop pads with OpenCV where that gives the same pixels (the part of the image inside the
    # window, narrow enough borders, at most 4 channels for a constant) and by index elsewhere:
    # random windows over both paths, every channel count and dtype, against np.pad.
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    image = (rng.random(shape) * (1 if dtype == np.float32 else 200)).astype(dtype)
    fill = 0.5 if dtype == np.float32 else 9
    margin = 50
    widths = [(margin, margin)] * 2 + [(0, 0)] * (len(shape) - 2)
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[border]
    extra = {"constant_values": fill} if border == "constant" else {}
    padded = np.pad(image, widths, mode=mode, **extra)
    for _ in range(60):
        h, w = rng.integers(1, 30, size=2)
        y, x = rng.integers(-margin, shape[0] + margin - h + 1), rng.integers(-margin, shape[1] + margin - w + 1)
        out = F.crop(image, int(y), int(x), int(h), int(w), border=border, fill=fill)
        np.testing.assert_array_equal(out, padded[y + margin : y + margin + h, x + margin : x + margin + w])
        assert out.dtype == image.dtype and out.ndim == image.ndim


def test_huge_padding_costs_the_window_not_the_padded_image():
    # padding 30000 around a 24 x 32 image would be a 60024 x 60032 array (10 GB as uint8 RGB).
    from augkit import load_pipeline

    out = load_pipeline("crop(size=16, padding=30000, border=reflect, mode=center)")(U8, index=0)
    assert out.shape == (16, 16, 3)


# ----------------------------------------------------------------------------- bounded parameters


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rotate(limit=1e308)", r"'rotate': parameter 'limit' got '1e308'; its numbers must be finite and within \+-65535"),
        ("rotate(limit=400)", r"'rotate': limit must be degrees within \[-360, 360\]"),
        ("rotate(limit=.inf)", r"'rotate': parameter 'limit' got inf; its numbers must be finite"),
        ("rotate(limit=.nan)", r"'rotate': parameter 'limit' got nan"),
        ("rotate(limit=[20, 10])", r"low <= high"),
        ("crop(size=.nan)", r"'crop': parameter 'size' got nan"),
        ("crop(size=100000000)", r"'crop': parameter 'size' got 100000000"),
        ("crop(size=40000)", r"'crop': parameter 'size' got 40000; sizes are at most 32767 pixels"),
        ("crop(size=0)", r"'crop': size must be pixels from 1 to 32767"),
        ("crop(size=[30000, 30000])", r"30000 x 30000 = 900,000,000 pixels is more than the pixel limit"),
        ("crop(size=1.5)", r"or a fraction of the input's sides in \(0, 1\]"),
        ("crop(size=8, padding=40000)", r"padding must be a finite number in \[0, 32767\]"),
        ("crop(size=8, mode=random_resized, ratio=[0.001, 1])", r"ratio must be a finite number in \[0.01, 100\]"),
        ("crop(size=8, fill=70000)", r"parameter 'fill' got 70000; its numbers must be finite and within \+-65535"),
        ("crop(size=8, fill=-1)", r"fill must be a finite number in \[0, 65535\]"),
        ("brightness(limit=[-2, 0.5])", r"limit must lie within \[-1, 1\]"),
        ("standardize(mean=[123.7, 116.3, 103.5], std=[58.4, 57.1, 57.4])", r"mean values must lie in \[0, 1\].*divide 0..255 values by 255"),
        ("standardize(mean=0.5, std=0)", r"std values must lie in \[1e-06, 1\]"),
        ("subtract_mean(mean=[.nan])", r"parameter 'mean' got \[nan\]; its numbers must be finite"),
        ("Resize(height=30000, width=30000)", r"'Resize': height 30000 x 30000 = 900,000,000 pixels"),
        ("GaussianBlur(blur_limit=[3, 1.0e+300])", r"'GaussianBlur': parameter 'blur_limit' got"),
    ],
)
def test_every_number_is_finite_and_bounded_with_the_bound_in_the_error(spec, message):
    from augkit import SpecError, load_pipeline

    with pytest.raises(SpecError, match=message) as info:
        load_pipeline(spec)
    assert "\n" not in str(info.value)


def test_an_albumentations_step_failing_on_an_image_is_one_line_naming_step_and_shape():
    # The issue: a 1 x 1 image through GridDistortion printed a ZeroDivisionError traceback.
    from augkit import AugkitError, load_pipeline

    with pytest.raises(AugkitError, match=r"step 'GridDistortion' \(steps\[0\]\) failed on a 1 x 1 x 3 uint8 image: ZeroDivisionError"):
        load_pipeline("GridDistortion(p=1)")(np.zeros((1, 1, 3), np.uint8), index=0)


# ----------------------------------------------------------------------------- more of each kind (a QA round)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # YAML 1.1 reads a bare 1e308 as a string, which pydantic turns into a float.
        ("Rotate(limit=1e308, p=1)", r"'Rotate': parameter 'limit' got '1e308'; its numbers must be finite"),
        ("Affine(rotate=nan)", r"'Affine': parameter 'rotate' got 'nan'"),
        ("ElasticTransform(alpha='1e308')", r"'ElasticTransform': parameter 'alpha' got '1e308'"),
        ("Resize(height='32767', width='32767')", r"'Resize': height 32767 x 32767 = 1,073,676,289 pixels"),
        ("PadIfNeeded(min_height='40000')", r"'PadIfNeeded': parameter 'min_height' got '40000'; sizes are at most 32767"),
        # Parameters whose cost grows without bound: kernels, counts, zoom factors.
        ("MedianBlur(blur_limit=999999)", r"'MedianBlur': parameter 'blur_limit' got 999999; .*within \+-255"),
        ("RandomShadow(num_shadows_limit=[999999, 999999])", r"within \+-1024"),
        ("ZoomBlur(max_factor=99999.0)", r"'ZoomBlur': parameter 'max_factor' got 99999.0; .*within \+-16"),
        # Booleans where numbers go (pydantic would read True as 1).
        ("crop(size=true)", r"'crop': parameter 'size' got True, expected int \| tuple\[int, int\] \| float"),
        ("brightness(limit=true)", r"'brightness': parameter 'limit' got True"),
        ("Resize(height=true, width=true)", r"'Resize': parameter 'height' got True, expected int"),
        # A required parameter is named.
        ("CenterCrop(p=1)", r"'CenterCrop': parameter 'height' is required \(int\)"),
        # Normalisation always applies: with p < 1 the output's dtype would depend on the draw.
        ("standardize(mean=0.5, std=0.2, p=0.5)", r"a normalisation step always applies: p must be 1, got 0.5"),
        ("scale(p=0.5)", r"p must be 1"),
        ("crop(size=24, size=25)", r"size is given twice"),
    ],
)
def test_more_numbers_that_are_not_sane_are_refused_when_the_spec_is_read(spec, message):
    from augkit import SpecError, load_pipeline

    with pytest.raises(SpecError, match=message):
        load_pipeline(spec)


UINT16_CASES = {  # albumentations steps that need parameters to be built
    "CenterCrop": {"height": 20, "width": 30}, "Crop": {"x_max": 30, "y_max": 20}, "CropAndPad": {"px": 4},
    "GridElasticDeform": {"num_grid_xy": [4, 4], "magnitude": 5}, "LongestMaxSize": {"max_size": 30},
    "RandomCrop": {"height": 20, "width": 30}, "RandomResizedCrop": {"size": [20, 30]},
    "RandomSizedCrop": {"min_max_height": [10, 30], "size": [20, 30]}, "Resize": {"height": 20, "width": 30},
    "SmallestMaxSize": {"max_size": 30},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UINT16_ALBUMENTATIONS))
def test_albumentations_steps_let_through_with_uint16_treat_it_as_the_8_bit_image(name):
    from augkit import load_pipeline

    pipeline = load_pipeline({"steps": [{name: {"p": 1, **UINT16_CASES.get(name, {})}}]})
    image = np.tile(U8, (2, 2, 1))  # 48 x 64: larger than every crop above
    eight = pipeline(image, index=3)
    sixteen = pipeline(image.astype(np.uint16) * 257, index=3)
    if eight.dtype == np.uint8:
        assert sixteen.dtype == np.uint16 and sixteen.shape == eight.shape
        assert np.abs(sixteen / 257 - eight).mean() < 1.0
    else:  # ToFloat: both on [0, 1]
        np.testing.assert_allclose(sixteen, eight, atol=1e-2)


@pytest.mark.parametrize("spec", ["Normalize", "RandomGamma(p=1)", "Solarize(p=1)", "rotate; OneOf(transforms=[Solarize, Blur])"])
def test_albumentations_steps_that_read_uint16_wrongly_refuse_it_with_the_fix(spec):
    # Normalize on u8 * 257 reached 1145 where the 8-bit image gives 2.64, without an error.
    from augkit import load_pipeline
    from augkit.pixels import PixelError

    pipeline = load_pipeline(spec)
    with pytest.raises(PixelError, match=r"image: uint16, but step '\w+' \(albumentations'\).*image.astype\(np.float32\) / 65535"):
        pipeline(U8.astype(np.uint16) * 257, index=0)
    with pytest.raises(PixelError, match="uint16"):
        pipeline.compose(image=U8.astype(np.uint16) * 257)
    assert pipeline(U8, index=0).shape[:2] == U8.shape[:2]  # 8 bits are fine


def test_compose_checks_the_image_and_masks_as_the_pipeline_does():
    # pipeline.compose, the way in for masks, let a float image of 0..255 through brightness
    # (every pixel came out 1.0) and turned int64 label 5e9 into 705032704.
    from augkit import AugkitError, load_pipeline

    with pytest.raises(AugkitError, match=r"float32 values must lie in \[0, 1\], got values from 0 to 255"):
        load_pipeline("brightness(limit=[0.1, 0.1], p=1)").compose(image=U8.astype(np.float32))
    rotate = load_pipeline("rotate(limit=30, p=1)")
    with pytest.raises(AugkitError, match=r"mask: int64 labels from 0 to 5000000000 do not fit int32"):
        rotate.compose(image=U8, mask=np.where(U8[..., 0] > 128, 5_000_000_000, 0))
    out = rotate.compose(image=U8, mask=np.where(U8[..., 0] > 128, 70_000, 3).astype(np.uint32))["mask"]
    assert out.dtype == np.int32 and set(np.unique(out).tolist()) <= {3, 70_000}


def test_fill_is_saturated_to_the_images_range():
    # fill=255 on a float image gave 255.0 pixels: on [0, 1] its white is 1.0.
    from augkit import load_pipeline

    image = np.full((16, 16, 3), 0.5, np.float32)
    assert load_pipeline("crop(size=24, fill=255)")(image, index=0).max() == 1.0
    assert load_pipeline("rotate(limit=[40, 40], border=constant, fill=255, p=1)")(image, index=0).max() == 1.0


@pytest.mark.parametrize(("index", "epoch"), [(np.int64(5), 1), (5, np.int64(1)), (np.uint64(5), np.int32(1))])
def test_numpy_integers_are_indices_and_epochs_like_python_ones(index, epoch):
    from augkit import load_pipeline

    pipeline = load_pipeline("rotate(limit=180, p=1)")
    np.testing.assert_array_equal(pipeline(U8, index=index, epoch=epoch), pipeline(U8, index=5, epoch=1))


@pytest.mark.parametrize(("index", "epoch"), [(-1, 0), (2**64, 0), (0, 2**64), (0, -3), (1.0, 0)])
def test_indices_and_epochs_outside_64_bits_are_refused_not_wrapped(index, epoch):
    # index -1 drew what 2**64 - 1 draws, and epoch 2**64 what epoch 0 draws.
    from augkit import AugkitError, load_pipeline

    with pytest.raises(AugkitError, match=r"must be an integer in \[0, 2\*\*64\)"):
        load_pipeline("hflip")(U8, index=index, epoch=epoch)
