"""The fast paths of augkit's steps give exactly what the plain numpy formulas give.

``augkit.pipeline.functional`` computes the normalisations on H x (W*C) rows, the uint8 lookups with
StringZilla, the contrast mean from OpenCV's sum, and crops a window it resizes as a view; each
is checked here, bit for bit, against the straightforward formula on real photos, in every
dtype of the pixel contract and every layout (H x W, H x W x 1, RGB, 4 channels), so the speed
changes stay speed changes. The crop's draws are checked against the documented rule.
"""

from __future__ import annotations

import math
import random

import cv2
import numpy as np
import pytest

import augkit
from augkit.errors import AugkitError
from augkit.pipeline import functional as F
from augkit.pipeline import steps as T
from augkit.pixels import PixelError
from augkit.resize import resample

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _photos(height: int = 37, width: int = 53) -> list[np.ndarray]:
    """The sample photos area-resized to an odd, non-square size, uint8 RGB."""
    folder = augkit.sample_data_dir() / "photos"
    return [
        cv2.resize(augkit.read_image(path), (width, height), interpolation=cv2.INTER_AREA)
        for path in sorted(folder.iterdir())
    ]


PHOTOS = _photos()


def _layout(photo: np.ndarray, layout: str) -> np.ndarray:
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    return {
        "gray": gray,
        "gray1": gray[..., None],
        "rgb": photo,
        "rgba": np.ascontiguousarray(np.dstack([photo, gray])),
    }[layout]


def _dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    """The uint8 photo as a uint16 one (with its own low bits) or a float32 one on [0, 1]."""
    if dtype == "uint8":
        return image
    if dtype == "uint16":
        low_bits = np.random.default_rng(0).integers(0, 257, image.shape)
        return (image.astype(np.int64) * 257 + low_bits).clip(0, 65535).astype(np.uint16)
    return (image / 255.0).astype(np.float32)


def _images(dtype: str, layout: str) -> list[np.ndarray]:
    return [_dtype(_layout(photo, layout), dtype) for photo in PHOTOS]


def _channels(image: np.ndarray) -> int:
    return image.shape[2] if image.ndim == 3 else 1


def _max(image: np.ndarray) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}[image.dtype]


def _statistics(image: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """One mean and std for every channel (cycling ImageNet's), or one value for all."""
    count = _channels(image) if per_channel else 1
    return np.resize(MEAN, count), np.resize(STD, count)


# ----------------------------------------------------------------------------- the formulas


def standardize_reference(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean * max) * (1 / (std * max))`` in float32, broadcast by numpy over the channels."""
    shift = (np.asarray(mean, np.float64) * _max(image)).astype(np.float32)
    inv = (1.0 / (np.asarray(std, np.float64) * _max(image))).astype(np.float32)
    return (image.astype(np.float32) - shift) * inv


def subtract_mean_reference(image: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) * np.float32(1.0 / _max(image)) - np.asarray(mean, np.float64).astype(np.float32)


def scale_reference(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) * np.float32(1.0 / _max(image))


def lookup_reference(image: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """A uint8 map given by its 256 float values: clipped, rounded, looked up with numpy."""
    return np.clip(levels, 0, 255).round().astype(np.uint8)[image]


def assert_identical(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected, strict=True)


LAYOUTS = ["gray", "gray1", "rgb", "rgba"]
DTYPES = ["uint8", "uint16", "float32"]


def every_statistics_case(test):
    """Parametrise ``test`` over dtype x layout x (per-channel statistics or one value)."""
    test = pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "one-value"])(test)
    return pytest.mark.parametrize("dtype", DTYPES)(pytest.mark.parametrize("layout", LAYOUTS)(test))


# ----------------------------------------------------------------------------- normalisation


@every_statistics_case
def test_standardize_equals_the_numpy_formula_bit_for_bit_on_photos(dtype, layout, per_channel):
    for image in _images(dtype, layout):
        mean, std = _statistics(image, per_channel)
        assert_identical(F.standardize(image, mean, std), standardize_reference(image, mean, std))
        step = T.Standardize(mean=mean.tolist(), std=std.tolist())
        assert_identical(step(image=image)["image"], standardize_reference(image, mean, std))


@every_statistics_case
def test_subtract_mean_per_channel_equals_the_numpy_formula_bit_for_bit_on_photos(dtype, layout, per_channel):
    for image in _images(dtype, layout):
        mean, _ = _statistics(image, per_channel)
        assert_identical(F.subtract_mean(image, mean), subtract_mean_reference(image, mean))
        step = T.SubtractMean(mean=mean.tolist())
        assert_identical(step(image=image)["image"], subtract_mean_reference(image, mean))


@pytest.mark.parametrize("layout", ["gray1", "rgb", "rgba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_subtract_mean_image_equals_the_numpy_formula_bit_for_bit_on_photos(dtype, layout):
    images = _images(dtype, layout)
    mean_image = np.mean([image / _max(image) for image in images], axis=0)  # float64, H x W x C
    for image in images:
        expected = subtract_mean_reference(image, mean_image)
        assert_identical(F.subtract_mean(image, mean_image), expected)
        assert_identical(F.subtract_mean(image, mean_image.astype(np.float32)), expected)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_equals_the_numpy_formula_bit_for_bit_on_photos(dtype, layout):
    for image in _images(dtype, layout):
        assert_identical(F.scale(image), scale_reference(image))
        assert_identical(T.Scale()(image=image)["image"], scale_reference(image))


@pytest.mark.parametrize("view", ["flipped", "cropped", "transposed", "every other column"])
def test_normalising_a_view_equals_normalising_its_copy(view):
    photo = PHOTOS[0]
    image = {
        "flipped": photo[:, ::-1],
        "cropped": photo[3:30, 5:41],
        "transposed": photo.transpose(1, 0, 2),
        "every other column": photo[:, ::2],
    }[view]
    copy = np.ascontiguousarray(image)
    assert_identical(F.standardize(image, MEAN, STD), standardize_reference(copy, MEAN, STD))
    assert_identical(F.subtract_mean(image, np.array(MEAN)), subtract_mean_reference(copy, MEAN))
    assert_identical(F.scale(image), scale_reference(copy))
    for out in (F.standardize(image, MEAN, STD), F.subtract_mean(image, np.array(MEAN)), F.scale(image)):
        assert out.flags.c_contiguous and out.flags.writeable


def test_writing_into_an_output_never_changes_the_next_one():
    # The per-channel rows are cached between calls; the outputs must never share them.
    image = PHOTOS[1]
    first = F.standardize(image, MEAN, STD)
    first[...] = 7.0
    F.subtract_mean(image, np.array(MEAN))[...] = 7.0
    assert_identical(F.standardize(image, MEAN, STD), standardize_reference(image, MEAN, STD))
    assert_identical(F.subtract_mean(image, np.array(MEAN)), subtract_mean_reference(image, MEAN))


def test_statistics_for_another_channel_count_are_refused_as_before():
    rgb, gray = PHOTOS[0], _layout(PHOTOS[0], "gray1")
    with pytest.raises(AugkitError, match="standardize: mean has 3 channels but the image has 1"):
        F.standardize(gray, MEAN, STD)
    with pytest.raises(AugkitError, match="standardize: std has 2 channels but the image has 3"):
        F.standardize(rgb, MEAN, STD[:2])
    with pytest.raises(AugkitError, match="subtract_mean: mean has 2 channels but the image has 3"):
        F.subtract_mean(rgb, np.array(MEAN[:2]))
    with pytest.raises(AugkitError, match=r"mean image of shape \(8, 8, 3\) but the image has shape \(37, 53, 3\)"):
        F.subtract_mean(rgb, np.zeros((8, 8, 3)))


@pytest.mark.parametrize("function", ["standardize", "subtract_mean", "scale"])
def test_dtypes_outside_the_pixel_contract_are_refused_as_before(function):
    image = PHOTOS[0].astype(np.float64) / 255
    call = {
        "standardize": lambda: F.standardize(image, MEAN, STD),
        "subtract_mean": lambda: F.subtract_mean(image, np.array(MEAN)),
        "scale": lambda: F.scale(image),
    }[function]
    with pytest.raises(PixelError, match="float64"):
        call()


# ----------------------------------------------------------------------------- brightness and contrast


@pytest.fixture(params=[True, False], ids=["translate-into", "copy-then-translate"])
def translation(request, monkeypatch):
    """Both ways augkit applies a uint8 table: StringZilla writing into a new array (recent
    releases), or translating a copy in place (older ones)."""
    monkeypatch.setattr(F, "_TRANSLATE_OUT", request.param and F._TRANSLATE_OUT)
    if request.param and not F._TRANSLATE_OUT:
        pytest.skip("this StringZilla has no translate(out=...)")


@pytest.mark.parametrize("delta", [-1.0, -0.37, -0.2, 0.0, 0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_uint8_brightness_equals_a_numpy_lookup_table_bit_for_bit(layout, delta, translation):
    levels = np.arange(256) + delta * 255.0
    for image in _images("uint8", layout):
        assert_identical(F.adjust_brightness(image, delta), lookup_reference(image, levels))


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.8, 1.0, 1.13, 1.2, 3.0])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_uint8_contrast_equals_a_numpy_lookup_table_bit_for_bit(layout, factor, translation):
    for image in _images("uint8", layout):
        mean = cv2.mean(image.reshape(image.shape[0], -1))[0]
        levels = (np.arange(256) - mean) * factor + mean
        assert_identical(F.adjust_contrast(image, factor), lookup_reference(image, levels))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_contrast_mean_is_opencvs_mean_to_the_last_bit(dtype, layout):
    # Integer images are summed with cv2.sumElems and scaled by 1 / count, which must give
    # the very float cv2.mean gives: a last-bit difference could move a rounding in the table.
    rng = np.random.default_rng(5)
    images = _images(dtype, layout)
    if dtype != "float32":
        top = np.iinfo(np.dtype(dtype)).max + 1
        images += [rng.integers(0, top, (h, w, 3), dtype=np.dtype(dtype)) for h, w in rng.integers(1, 300, (40, 2))]
    for image in images:
        assert F.image_mean(image) == cv2.mean(image.reshape(image.shape[0], -1))[0]


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_wide_brightness_and_contrast_stay_within_rounding_of_the_numpy_formula(dtype):
    for image in _images(dtype, "rgb"):
        top = _max(image)
        mean = float(image.mean(dtype=np.float64))
        for got, expected in (
            (F.adjust_brightness(image, 0.2), np.clip(image + 0.2 * top, 0, top)),
            (F.adjust_contrast(image, 1.3), np.clip((image - mean) * 1.3 + mean, 0, top)),
        ):
            assert got.dtype == image.dtype and got.shape == image.shape
            # OpenCV computes in float32: half a level of rounding, plus float32's step near 65535.
            assert np.abs(got - expected).max() <= (0.5 + 2**-8 if dtype == "uint16" else 1e-6)


def test_lookups_keep_the_layout_and_never_touch_their_input(translation):
    for layout in LAYOUTS:
        image = _layout(PHOTOS[2], layout)
        before = image.copy()
        flipped = image[:, ::-1]
        assert_identical(F.adjust_brightness(flipped, 0.1), F.adjust_brightness(np.ascontiguousarray(flipped), 0.1))
        for out in (F.adjust_brightness(image, 0.3), F.adjust_contrast(image, 1.5), F.adjust_brightness(flipped, 0.1)):
            assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
        assert_identical(image, before)


# ----------------------------------------------------------------------------- crops


def crop_draw_reference(step: T.Crop, height: int, width: int) -> dict:
    """The documented rule: pad by ``padding`` on every side, then centred up to the output
    size; the window's offsets uniform over the padded image ("random") or its middle
    ("center"); random-resized: area fraction in ``scale``, log aspect ratio uniform, ten tries."""
    if isinstance(step.size, float):
        out = (max(1, round(step.size * height)), max(1, round(step.size * width)))
    else:
        out = (step.size, step.size) if isinstance(step.size, int) else tuple(step.size)
    rnd = step.py_random
    if step.mode == "random_resized":
        for _ in range(10):
            target = height * width * rnd.uniform(*step.scale)
            aspect = math.exp(rnd.uniform(math.log(step.ratio[0]), math.log(step.ratio[1])))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                window = (rnd.randint(0, height - h), rnd.randint(0, width - w), h, w)
                return {"pad": (0, 0, 0, 0), "window": window, "out": out}
        raise AssertionError("the photos here never need the fallback")
    grow_h = max(0, out[0] - (height + 2 * step.padding))
    grow_w = max(0, out[1] - (width + 2 * step.padding))
    pad = (
        step.padding + grow_h // 2,
        step.padding + grow_h - grow_h // 2,
        step.padding + grow_w // 2,
        step.padding + grow_w - grow_w // 2,
    )
    room_h, room_w = height + pad[0] + pad[1] - out[0], width + pad[2] + pad[3] - out[1]
    if step.mode == "center":
        y, x = room_h // 2, room_w // 2
    else:
        y, x = rnd.randint(0, room_h), rnd.randint(0, room_w)
    return {"pad": pad, "window": (y, x, *out), "out": out}


def crop_pixels_reference(
    image: np.ndarray, pad: tuple, window: tuple, out: tuple, border: str, fill: float
) -> np.ndarray:
    """numpy pads the whole image, slices the window, and augkit's one resize makes the size."""
    widths = [(pad[0], pad[1]), (pad[2], pad[3])] + [(0, 0)] * (image.ndim - 2)
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[border]
    kwargs = {"constant_values": F.saturate(fill, image.dtype)} if border == "constant" else {}
    y, x, h, w = window
    cut = np.pad(image, widths, mode=mode, **kwargs)[y : y + h, x : x + w].copy()
    return resample(cut, *out)


CROPS = [
    {"size": 30, "padding": 4},
    {"size": 30, "padding": 4, "border": "reflect"},
    {"size": 48, "padding": 2, "border": "replicate"},
    {"size": (40, 60), "fill": 200},
    {"size": 0.875, "mode": "center"},
    {"size": 64, "mode": "center", "border": "reflect"},
    {"size": 32, "mode": "random_resized"},
    {"size": (24, 80), "mode": "random_resized", "scale": (0.3, 1.0)},
]


@pytest.mark.parametrize("layout", ["gray", "rgb", "rgba"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", CROPS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_crop_draws_by_the_documented_rule_and_cuts_numpys_pixels(params, dtype, layout):
    step = T.Crop(**params)
    for seed, image in enumerate(_images(dtype, layout)):
        step.py_random = random.Random(seed)
        drawn = step.get_params_dependent_on_data({"shape": image.shape}, {"image": image})
        step.py_random = random.Random(seed)
        assert drawn == crop_draw_reference(step, *image.shape[:2])
        got = step.apply(image, **drawn)
        expected = crop_pixels_reference(image, **drawn, border=step.border, fill=step.fill)
        assert_identical(got, expected)


@pytest.mark.parametrize("window", [(0, 0, 37, 53), (5, 7, 20, 30), (-3, -4, 20, 30), (30, 40, 20, 30)])
@pytest.mark.parametrize("size", [(20, 30), (37, 53), (64, 64), (11, 90)])
def test_crop_resized_equals_cropping_then_resizing_and_is_never_a_view(window, size):
    image = PHOTOS[3]
    before = image.copy()
    got = F.crop_resized(image, *window, *size, border="reflect")
    assert_identical(got, resample(F.crop(image, *window, border="reflect"), *size))
    got[...] = 0
    assert_identical(image, before)


@pytest.mark.parametrize("border", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_three_channel_warp_through_four_channels_is_the_three_channel_warp_bit_for_bit(dtype, border):
    # warp_affine adds a fourth channel from _WARP_AS_FOUR_CHANNELS pixels on (OpenCV 5 warps
    # 4 channels about twice as fast): every channel must come out as OpenCV's own 3-channel warp.
    for photo in PHOTOS:
        image = _dtype(cv2.resize(photo, (67, 59), interpolation=cv2.INTER_AREA), dtype)
        assert image.shape[0] * image.shape[1] >= F._WARP_AS_FOUR_CHANNELS
        for angle in (-13.7, 4.2, 90.0):
            matrix = cv2.getRotationMatrix2D((33.0, 29.0), angle, 1.1)
            fill = 0.3 if dtype == "float32" else 40
            expected = cv2.warpAffine(image, matrix, (67, 59), flags=cv2.INTER_LINEAR, borderMode=F.BORDERS[border],
                                      borderValue=(F.saturate(fill, image.dtype),) * 4)
            assert_identical(F.warp_affine(image, matrix, 59, 67, border, fill), expected)
