"""The augmentation policies (``augkit.pipeline.policies``): torchvision's tables, PIL's pixels, the
pixel contract, per-sample draws, captions, timm's strings, and where they run.

The reference numbers below are copied from torchvision's source (torchvision is not a
dependency): ``torchvision/transforms/v2/_auto_augment.py`` of pytorch/vision at commit
0152ce41c5aa5927e6c25cfbddc658da73498d84 (``_AUGMENTATION_SPACE`` of RandAugment,
TrivialAugmentWide, AugMix and AutoAugment, ``AutoAugment._get_policies``), written with numpy
where torchvision writes torch. The pixels are compared with PIL's ImageOps/ImageEnhance, which
torchvision's uint8 operations follow, on a real photo.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance, ImageOps

import augkit
from augkit.cli.main import cli
from augkit.errors import AugkitError, SpecError
from augkit.pipeline import functional as F
from augkit.pipeline import policies as P
from augkit.pipeline.registry import create_step
from augkit.pipeline.spec import from_timm

PHOTO = augkit.read_image(augkit.sample_data_dir() / "photos" / "china.jpg")  # 342 x 512 RGB uint8
SMALL = np.ascontiguousarray(PHOTO[100:164, 200:264])  # 64 x 64, for the pipelines

# ----------------------------------------------------------------------------- torchvision's tables


def _linspace(start, end):
    return lambda n, h, w: np.linspace(start, end, n)


def _posterize(start, spread):  # (start - (arange(n) / ((n - 1) / spread))).round().int()
    return lambda n, h, w: np.round(start - np.arange(n) / ((n - 1) / spread))


_SOLARIZE = lambda n, h, w: np.linspace(1.0, 0.0, n) * 255.0  # noqa: E731 (threshold = bound * magnitude)
_NONE = (None, False)
TORCHVISION_RANDAUGMENT = {
    "Identity": _NONE,
    "ShearX": (_linspace(0.0, 0.3), True),
    "ShearY": (_linspace(0.0, 0.3), True),
    "TranslateX": (lambda n, h, w: np.linspace(0.0, 150.0 / 331.0 * w, n), True),
    "TranslateY": (lambda n, h, w: np.linspace(0.0, 150.0 / 331.0 * h, n), True),
    "Rotate": (_linspace(0.0, 30.0), True),
    "Brightness": (_linspace(0.0, 0.9), True),
    "Color": (_linspace(0.0, 0.9), True),
    "Contrast": (_linspace(0.0, 0.9), True),
    "Sharpness": (_linspace(0.0, 0.9), True),
    "Posterize": (_posterize(8, 4), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
}
TORCHVISION_TRIVIALAUGMENT_WIDE = {
    "Identity": _NONE,
    "ShearX": (_linspace(0.0, 0.99), True),
    "ShearY": (_linspace(0.0, 0.99), True),
    "TranslateX": (_linspace(0.0, 32.0), True),
    "TranslateY": (_linspace(0.0, 32.0), True),
    "Rotate": (_linspace(0.0, 135.0), True),
    "Brightness": (_linspace(0.0, 0.99), True),
    "Color": (_linspace(0.0, 0.99), True),
    "Contrast": (_linspace(0.0, 0.99), True),
    "Sharpness": (_linspace(0.0, 0.99), True),
    "Posterize": (_posterize(8, 6), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
}
TORCHVISION_AUTOAUGMENT = {
    **{k: v for k, v in TORCHVISION_RANDAUGMENT.items() if k != "Identity"},
    "Invert": _NONE,
}
TORCHVISION_AUGMIX = {  # _AUGMENTATION_SPACE (all_ops=True); the partial space is the first nine
    "ShearX": (_linspace(0.0, 0.3), True),
    "ShearY": (_linspace(0.0, 0.3), True),
    "TranslateX": (lambda n, h, w: np.linspace(0.0, w / 3.0, n), True),
    "TranslateY": (lambda n, h, w: np.linspace(0.0, h / 3.0, n), True),
    "Rotate": (_linspace(0.0, 30.0), True),
    "Posterize": (_posterize(4, 4), False),
    "Solarize": (_SOLARIZE, False),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
    "Brightness": (_linspace(0.0, 0.9), True),
    "Color": (_linspace(0.0, 0.9), True),
    "Contrast": (_linspace(0.0, 0.9), True),
    "Sharpness": (_linspace(0.0, 0.9), True),
}
TORCHVISION_POLICIES = {
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}


@pytest.mark.parametrize(
    ("ours", "reference", "bins"),
    [
        (P.RANDAUGMENT_SPACE, TORCHVISION_RANDAUGMENT, [2, 10, 11, 31]),
        (P.TRIVIALAUGMENT_SPACE, TORCHVISION_TRIVIALAUGMENT_WIDE, [2, 31, 100]),
        (P.AUTOAUGMENT_SPACE, TORCHVISION_AUTOAUGMENT, [P.AUTOAUGMENT_BINS]),
        (P.AUGMIX_SPACE, TORCHVISION_AUGMIX, [P.AUGMIX_BINS]),
    ],
    ids=["randaugment", "trivialaugment_wide", "autoaugment", "augmix"],
)
def test_each_operation_has_torchvisions_magnitude_at_every_bin(ours, reference, bins):
    assert list(ours) == list(reference)  # the same operations, in the order the draws index them
    for name, (magnitudes, signed) in reference.items():
        assert ours[name][1] == signed, name
        assert (ours[name][0] is None) == (magnitudes is None), name
        for n in bins if magnitudes is not None else []:
            for height, width in [(224, 224), (32, 48)]:
                ours_values = [ours[name][0](k, n, height, width) for k in range(n)]
                # torch computes in float32: its values are these to float32's precision.
                np.testing.assert_allclose(ours_values, magnitudes(n, height, width), rtol=1e-6, atol=1e-9, err_msg=name)


def test_augmix_without_all_ops_leaves_out_the_four_enhancements():
    assert list(P._AUGMIX_PARTIAL) == list(TORCHVISION_AUGMIX)[:9]


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_holds_torchvisions_published_sub_policies(policy):
    assert P.AUTOAUGMENT_POLICIES[policy] == TORCHVISION_POLICIES[policy]
    assert all(name in P.AUTOAUGMENT_SPACE for sub in TORCHVISION_POLICIES[policy] for name, _, _ in sub)


# ----------------------------------------------------------------------------- pixels against PIL

PIL_PHOTO = Image.fromarray(PHOTO)


def _exact(ours: np.ndarray, reference: Image.Image) -> None:
    np.testing.assert_array_equal(ours, np.asarray(reference))


@pytest.mark.parametrize("threshold", [0, 25.5, 128, 178.5, 255, 256])
def test_solarize_is_pils_on_a_photo(threshold):
    _exact(F.solarize(PHOTO, threshold), ImageOps.solarize(PIL_PHOTO, threshold))


@pytest.mark.parametrize("bits", range(1, 9))
def test_posterize_is_pils_on_a_photo(bits):
    _exact(F.posterize(PHOTO, bits), ImageOps.posterize(PIL_PHOTO, bits))


def test_posterize_to_no_bits_is_black():
    assert not F.posterize(PHOTO, 0).any()


@pytest.mark.parametrize(
    ("ours", "pil"),
    [(F.autocontrast, ImageOps.autocontrast), (F.equalize, ImageOps.equalize), (F.invert, ImageOps.invert)],
    ids=["autocontrast", "equalize", "invert"],
)
def test_autocontrast_equalize_and_invert_are_pils_on_a_photo(ours, pil):
    _exact(ours(PHOTO), pil(PIL_PHOTO))
    low_contrast = (PHOTO // 3 + 60).astype(np.uint8)  # where autocontrast and equalize change most
    _exact(ours(low_contrast), pil(Image.fromarray(low_contrast)))


FACTORS = [0.0, 0.1, 0.55, 1.0, 1.45, 1.99]


@pytest.mark.parametrize("factor", FACTORS)
def test_brightness_and_sharpness_are_pils_on_a_photo(factor):
    _exact(F.enhance_brightness(PHOTO, factor), ImageEnhance.Brightness(PIL_PHOTO).enhance(factor))
    _exact(F.enhance_sharpness(PHOTO, factor), ImageEnhance.Sharpness(PIL_PHOTO).enhance(factor))


@pytest.mark.parametrize("factor", FACTORS)
def test_color_and_contrast_are_within_one_level_of_pils(factor):
    # Color: OpenCV's and PIL's fixed-point luma round differently in a few pixels. Contrast:
    # torchvision blends with the mean luma, PIL with that mean rounded to an integer.
    color = F.enhance_color(PHOTO, factor).astype(int) - np.asarray(ImageEnhance.Color(PIL_PHOTO).enhance(factor))
    assert np.abs(color).max() <= 1 and (color != 0).mean() < 0.001
    contrast = F.enhance_contrast(PHOTO, factor).astype(int) - np.asarray(ImageEnhance.Contrast(PIL_PHOTO).enhance(factor))
    assert np.abs(contrast).max() <= 1
    pil_mean = int(np.asarray(PIL_PHOTO.convert("L")).mean() + 0.5)  # ImageEnhance.Contrast's degenerate
    _exact(F.blend(PHOTO, pil_mean, factor), ImageEnhance.Contrast(PIL_PHOTO).enhance(factor))


@pytest.mark.parametrize("factor", [0.3, -0.27, 0.99])
def test_shears_and_translations_are_pils_affine_transforms(factor):
    # AutoAugment's definition: PIL's img.transform(size, AFFINE, (1, level, 0, 0, 1, 0)).
    for axis, data in (("x", (1, factor, 0, 0, 1, 0)), ("y", (1, 0, 0, factor, 1, 0))):
        _exact(F.shear(PHOTO, factor, axis), PIL_PHOTO.transform(PIL_PHOTO.size, Image.AFFINE, data, Image.NEAREST))
    shift = int(factor * 100)
    _exact(F.translate(PHOTO, 0, shift), PIL_PHOTO.transform(PIL_PHOTO.size, Image.AFFINE, (1, 0, -shift, 0, 1, 0)))
    _exact(F.translate(PHOTO, shift, 0), PIL_PHOTO.transform(PIL_PHOTO.size, Image.AFFINE, (1, 0, 0, 0, 1, -shift)))


@pytest.mark.parametrize("angle", [12.0, -27.0, 135.0])
def test_rotations_are_pils_but_for_rounding_at_pixel_boundaries(angle):
    ours = P.apply_op(PHOTO, ("Rotate", angle))
    same = (ours == np.asarray(PIL_PHOTO.rotate(angle, Image.NEAREST))).all(axis=2).mean()
    assert same > 0.995  # measured 0.997-0.999: nearest neighbours of points that fall half-way


# ----------------------------------------------------------------------------- the pixel contract

OPS = [("ShearX", 0.27), ("TranslateY", -9.6), ("Rotate", 21.0), ("Brightness", 0.6), ("Color", -0.7),
       ("Contrast", 0.81), ("Sharpness", 0.9), ("Posterize", 3), ("Solarize", 178.5), ("AutoContrast", 0.0),
       ("Equalize", 0.0), ("Invert", 0.0)]  # fmt: skip


@pytest.mark.parametrize("op", OPS, ids=[name for name, _ in OPS])
def test_every_operation_gives_the_same_picture_in_uint16_and_float32_within_an_8_bit_level(op):
    low = (PHOTO[::3, ::3] // 2 + 40).astype(np.uint8)  # a dull photo: autocontrast and equalize act
    reference = P.apply_op(low, op) / 255.0
    for image in (low.astype(np.uint16) * 257, low.astype(np.float32) / 255):
        out = P.apply_op(image, op)
        assert out.dtype == image.dtype and out.shape == image.shape
        scaled = out / (65535.0 if out.dtype == np.uint16 else 1.0)
        assert 0 <= scaled.min() and scaled.max() <= 1
        # One level: integers are truncated, floats are not; posterize's top level is 192/255 in
        # 8 bits and 49152/65535 in 16. Color and sharpness blend with an image (the luma, the
        # smoothed image) that 8 bits round first: up to half a level more.
        levels = 1.5 if op[0] in ("Color", "Sharpness") else 1.0
        assert np.abs(scaled - reference).max() <= levels / 255 + 1e-6, (image.dtype, op)


ALL_OPS = sorted({*P.RANDAUGMENT_SPACE, *P.AUTOAUGMENT_SPACE})


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(ALL_OPS),
    k=st.floats(0, 30),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([0, 1, 2, 3, 4, 6])),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_any_operation_at_any_magnitude_keeps_shape_dtype_and_range(name, k, shape, dtype, seed):
    magnitude, signed = P.TRIVIALAUGMENT_SPACE.get(name, (None, False))  # the widest ranges
    value = magnitude(k, 31, shape[0], shape[1]) if magnitude is not None else 0.0
    image = np.random.default_rng(seed).random(shape[:2] if shape[2] == 0 else shape)
    top = {"uint8": 255, "uint16": 65535, "float32": 1}[dtype]
    image = (image * top).astype(dtype)
    for sign in (1, -1) if signed else (1,):
        out = P.apply_op(image, (name, sign * value), nearest=bool(seed % 2), fill=top)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert 0 <= out.min() and out.max() <= top


def test_solarize_and_posterize_scale_their_8_bit_levels_to_the_dtype():
    wide = np.array([[0, 32895, 32896, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(F.solarize(wide, 128), [[0, 32895, 65535 - 32896, 0]])  # 128 / 255 of 65535
    unit = wide / np.float32(65535)
    np.testing.assert_array_equal(F.solarize(unit, 128), np.where(unit >= 128 / 255, 1 - unit, unit))
    steps = np.array([[0, 8191, 8192, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(F.posterize(steps, 3), [[0, 0, 8192, 57344]])  # the top 3 bits of 16
    unit = np.array([[0.0, 0.124, 0.125, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(F.posterize(unit, 3), np.array([[0, 0, 0.125, 0.875]], dtype=np.float32))


# ----------------------------------------------------------------------------- steps in pipelines

SPECS = ["randaugment(magnitude_std=0.5)", "trivialaugment", "autoaugment(policy=svhn)", "augmix"]


@pytest.mark.parametrize("spec", SPECS)
def test_draw_replay_and_the_call_agree_per_sample(spec):
    pipeline = augkit.load_pipeline(spec, seed=5)
    other = augkit.load_pipeline(spec, seed=5)
    outputs = []
    for index in range(6):
        out, applied = pipeline.replay(SMALL, index=index, epoch=2)
        np.testing.assert_array_equal(out, other(SMALL, index=index, epoch=2))  # another object, same sample
        ((name, drawn),) = pipeline.draw(SMALL.shape, index=index, epoch=2)
        assert drawn == applied[0].params and name == applied[0].name
        assert applied[0].caption == applied[0].transform.describe(drawn)
        outputs.append(out)
    assert len({o.tobytes() for o in outputs}) > 1  # samples differ
    np.testing.assert_array_equal(pipeline(SMALL, index=3, epoch=2), outputs[3])  # in any order


def test_randaugment_draws_every_operation_and_magnitude_noise_around_m():
    pipeline = augkit.load_pipeline("randaugment(num_ops=3, magnitude=9, num_magnitude_bins=11, magnitude_std=2)")
    counts: collections.Counter = collections.Counter()
    rotations = []
    for index in range(700):
        ((_, params),) = pipeline.draw((32, 32, 3), index=index)
        assert len(params["ops"]) == 3
        counts.update(name for name, _ in params["ops"])
        rotations += [abs(m) for name, m in params["ops"] if name == "Rotate"]
    assert set(counts) == set(P.RANDAUGMENT_SPACE)
    assert max(counts.values()) < 2 * min(counts.values())  # 150 expected each
    levels = np.array(rotations) / 3.0  # 30 degrees over 10 bins
    assert levels.max() <= 10 and 8.0 < levels.mean() < 9.0  # N(9, 2) clipped at 10
    assert 1.0 < levels.std() < 2.0


def test_autoaugment_applies_each_operation_with_its_published_probability():
    pipeline = augkit.load_pipeline("autoaugment(policy=cifar10)")
    seen, applied = collections.Counter(), collections.Counter()
    for index in range(2000):
        ((_, params),) = pipeline.draw((32, 32, 3), index=index)
        sub = TORCHVISION_POLICIES["cifar10"][params["sub_policy"]]
        seen[params["sub_policy"]] += 1
        names = [name for name, _ in params["ops"]]
        for position, (name, _, _) in enumerate(sub):
            if sub[0][0] != sub[1][0]:
                applied[(params["sub_policy"], position)] += name in names
    assert len(seen) == 25
    for (sub, position), count in applied.items():
        probability = TORCHVISION_POLICIES["cifar10"][sub][position][1]
        assert abs(count / seen[sub] - probability) < 0.3, (sub, position)  # about 80 samples each


def test_augmix_is_the_weighted_mixture_of_its_chains():
    transform = create_step("augmix", mixture_width=4, chain_depth=2, alpha=0.5)
    transform.set_random_seed(3)
    out = transform(image=SMALL)["image"]
    params = transform.params
    assert len(params["chains"]) == 4 and all(len(chain) == 2 for chain in params["chains"])
    assert abs(sum(params["weights"]) - 1) < 1e-12 and min(params["weights"]) >= 0
    chains = [P.run_ops(SMALL, chain, nearest=False) for chain in params["chains"]]
    expected = np.rint(sum(w * img.astype(np.float64) for w, img in zip(params["weights"], [SMALL, *chains])))
    assert np.abs(out.astype(np.float64) - expected).max() <= 1  # float32 sums


def test_masks_follow_the_geometric_operations_and_augmix_refuses_them():
    mask = np.zeros(SMALL.shape[:2], dtype=np.uint8)
    mask[20:40, 10:30] = 1
    transform = create_step("randaugment", num_ops=3, magnitude=20)
    for seed in range(5):
        transform.set_random_seed(seed)
        out = transform(image=SMALL, mask=mask)
        moves = [op for op in transform.params["ops"] if op[0] in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")]
        np.testing.assert_array_equal(out["mask"], P.run_ops(mask, moves, nearest=True))
        if not moves:
            np.testing.assert_array_equal(out["mask"], mask)
    with pytest.raises(AugkitError, match="augmix"):
        augkit.load_pipeline("augmix").compose(image=SMALL, mask=mask)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(1, 1), (2, 7, 1), (5, 3, 2), (9, 9, 4), (6, 8, 8)])
def test_odd_images_in_every_dtype_keep_their_shape_dtype_and_range(spec, shape):
    pipeline = augkit.load_pipeline(spec)
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535), (np.float32, 1)):
        image = (rng.random(shape) * top).astype(dtype)
        for index in range(8):
            out = pipeline(image, index=index)
            assert out.shape == image.shape and out.dtype == image.dtype
            assert 0 <= out.min() and out.max() <= top


def test_captions_name_the_operations_and_magnitudes():
    transform = create_step("randaugment")
    assert transform.describe({"ops": [("Rotate", 12.0), ("Solarize", 160.0)]}) == "rand: rotate +12.0°, solarize 160"
    assert transform.describe({"ops": [("TranslateX", -14.9), ("Color", -0.27), ("Posterize", 6)]}) == (
        "rand: translate_x -14px, color ×0.73, posterize 6 bits"
    )
    assert create_step("autoaugment").describe({"sub_policy": 3, "ops": []}) == "auto #3: no op"
    caption = create_step("augmix").describe({"weights": [0.25, 0.75], "chains": [[("Equalize", 0.0), ("ShearX", 0.1)]]})
    assert caption == "augmix: equalize, shear_x +0.10 (image 25%)"


# ----------------------------------------------------------------------------- timm's strings


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("rand-m9-n2-mstd0.5", {"randaugment": {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 11, "magnitude_std": 0.5}}),
        ("rand-m7-inc1", {"randaugment": {"magnitude": 7, "num_magnitude_bins": 11}}),
        ("rand", {"randaugment": {"magnitude": 10, "num_magnitude_bins": 11}}),
        ("augmix-m5-w3-d2", {"augmix": {"severity": 5, "mixture_width": 3, "chain_depth": 2}}),
        ("augmix-a0.5-b0", {"augmix": {"alpha": 0.5}}),
        ("original", {"autoaugment": {"policy": "imagenet"}}),
    ],
)
def test_timm_strings_become_the_canonical_step(text, step):
    assert augkit.load_pipeline(text).to_spec()["steps"] == [step]
    assert augkit.load_pipeline([step]).to_spec()["steps"] == [step]  # the canonical form reads back as itself


def test_timm_strings_take_parameters_and_work_inside_files_and_compositions(tmp_path):
    spec = augkit.load_pipeline("rand-m9-n2(p=0.5); hflip").to_spec()
    assert spec["steps"][0] == {"randaugment": {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 11, "p": 0.5}}
    path = tmp_path / "aug.yaml"
    path.write_text("steps:\n  - rand-m9-mstd0.5\n  - OneOf: {transforms: [augmix-m2, original]}\n")
    steps = augkit.load_pipeline(path).to_spec()["steps"]
    assert steps[0] == {"randaugment": {"magnitude": 9, "num_magnitude_bins": 11, "magnitude_std": 0.5}}
    assert steps[1]["OneOf"]["transforms"] == [{"augmix": {"severity": 2}}, {"autoaugment": {"policy": "imagenet"}}]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rand-m9-w0", "weighted choice"),
        ("rand-m9-mmax12", "past timm's 10"),
        ("rand-m9-mstd101", "uniform magnitudes"),
        ("rand-m9-x3", "not one timm reads"),
        ("augmix-b1", "blended"),
        ("v0", "not one torchvision publishes"),
        ("original-mstd0.5", "magnitude noise"),
        ("rand-m9(magnitude=3)", "sets magnitude already"),
        ("rand-m31", "magnitude must be"),
    ],
)
def test_timm_sections_without_an_equivalent_are_refused_in_one_line(text, says):
    with pytest.raises(SpecError, match=says) as error:
        augkit.load_pipeline(text)
    assert "\n" not in str(error.value)


def test_from_timm_maps_the_string_alone():
    assert from_timm("augmix-m5-w4-d2") == ("augmix", {"severity": 5, "mixture_width": 4, "chain_depth": 2})


# ----------------------------------------------------------------------------- where they run


def test_policies_run_as_is_in_the_plan_and_have_no_batched_form():
    pipeline = augkit.load_pipeline("crop(size=48); randaugment; hflip")
    assert [label for label, _ in pipeline.plan.describe()] == ["warp", "as is", "warp"]
    with pytest.raises(AugkitError, match="'randaugment' has no batched draws"):
        pipeline.draw_batch((64, 64, 3), [0, 1])
    from augkit.train.config import TrainConfig
    from augkit.train.device import augments_on_device

    on_device, reason = augments_on_device(TrainConfig(augment_on="auto"), augkit.load_pipeline("trivialaugment; hflip"))
    assert not on_device and "trivialaugment has no batched form" in reason


def test_augkit_steps_lists_them_with_their_parameters():
    runner = CliRunner()
    listing = json.loads(runner.invoke(cli, ["steps", "--json"]).output)
    assert {"randaugment", "trivialaugment", "autoaugment", "augmix"} <= set(listing["augkit"])
    shown = runner.invoke(cli, ["steps", "randaugment"])
    assert shown.exit_code == 0
    for parameter in ("num_ops", "magnitude", "num_magnitude_bins", "magnitude_std", "interpolation", "fill"):
        assert f"  {parameter} " in shown.output
    plan = runner.invoke(cli, ["steps", "--plan", "rand-m9-n2-mstd0.5; hflip"])
    assert plan.exit_code == 0 and "as is" in plan.output and "randaugment" in plan.output
