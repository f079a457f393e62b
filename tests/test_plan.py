"""The compiled plan against the step-by-step run of the same pipeline (``augkit.pipeline.plan``).

The plan must draw exactly what the steps draw (same generators, same order, so replay and
previews describe what ran), give the same pixels bit for bit where it only moves whole pixels
or composes lookup tables, and differ by interpolation only where it merges warps: a mean
absolute difference under one gray level on photos.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

import augkit
from augkit import load_pipeline
from augkit.pipeline.plan import Plan

STATS = {"mean": [0.5, 0.45, 0.4], "std": [0.25, 0.24, 0.26]}


def _photos(side: int, count: int = 4) -> list[np.ndarray]:
    """Real photos (the sample photos, cropped and area-resized to ``side`` x ``side``), uint8 RGB."""
    folder = augkit.sample_data_dir() / "photos"
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in sorted(folder.glob("*.[jp][pn]g"))]
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        y, x = (37 * i) % (photo.shape[0] // 4), (53 * i) % (photo.shape[1] // 4)
        window = np.ascontiguousarray(photo[y : y + photo.shape[0] // 2, x : x + photo.shape[1] // 2])
        out.append(cv2.resize(window, (side, side), interpolation=cv2.INTER_AREA))
    return out


def _pair(steps: list[Any], seed: int = 3) -> tuple[Any, Any]:
    compiled = load_pipeline({"seed": seed, "steps": steps})
    plain = load_pipeline({"seed": seed, "steps": steps, "compile": False})
    assert compiled.plan is not None and plain.plan is None
    return compiled, plain


def _next_draw(pipeline: Any) -> float:
    """The generator's next number after a call: equal only if both runs drew the same count."""
    return pipeline.transforms[0].py_random.random()


def _run_both(steps: list[Any], images: list[np.ndarray], samples: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    compiled, plain = _pair(steps)
    pairs = []
    for index in range(samples):
        image = images[index % len(images)]
        got = compiled(image, index=index, epoch=1)
        after_compiled = _next_draw(compiled)
        expected = plain(image, index=index, epoch=1)
        assert _next_draw(plain) == after_compiled, f"sample {index}: the plan drew a different number of values"
        assert got.dtype == expected.dtype and got.shape == expected.shape
        pairs.append((got, expected))
    return pairs


# Pipelines whose plan moves whole pixels and composes tables only: bit for bit.
EXACT = {
    "padded crop, flips": ["crop(size=32, padding=4)", "hflip(p=0.5)", "vflip(p=0.5)"],
    "reflect padding": ["crop(size=32, padding=6, border=reflect)", "hflip"],
    "centre crop then random crop": ["crop(size=28, mode=center)", "crop(size=24)", "hflip(p=0.5)"],
    "intensity": ["brightness(limit=0.3, p=1)", "contrast(limit=0.4, p=1)", "brightness(limit=0.1, p=0.5)"],
    "albumentations tables": ["InvertImg(p=0.5)", "Solarize(p=0.7)", "Posterize(p=1)", "RandomGamma(p=1)"],
    "crop, tables, flip, standardize": [
        "crop(size=32, padding=4)", "brightness(limit=0.2, p=1)", "contrast(limit=0.2, p=1)", "hflip(p=0.5)",
        {"standardize": STATS},
    ],
    "scale": ["contrast(limit=0.3, p=1)", "scale"],
    "subtract_mean": ["hflip", {"subtract_mean": {"mean": [0.5, 0.4, 0.3]}}],
    "a step that runs as it is": ["crop(size=30)", "GaussianBlur(p=1)", "hflip", "brightness(p=1)"],
    "OneOf in the middle": [
        "crop(size=30, padding=2)", {"OneOf": {"transforms": ["hflip", "vflip", "brightness(p=1)"]}}, "contrast(p=1)",
    ],
}


@pytest.mark.parametrize("name", EXACT)
def test_plans_that_move_whole_pixels_or_compose_tables_are_bit_for_bit(name):
    steps = [load_pipeline(s).to_spec()["steps"][0] if isinstance(s, str) else s for s in EXACT[name]]
    for got, expected in _run_both(steps, _photos(32)):
        np.testing.assert_array_equal(got, expected)


# Pipelines with warps: interpolation differs (one bilinear resampling instead of several).
WARPED = {
    "the benchmark chain, padded crop": [
        "crop(size=S, padding=P)", "rotate(limit=15, p=1)", "brightness(p=1)", "contrast(p=1)", "hflip", "standardize",
    ],
    "the benchmark chain, random-resized crop": [
        "crop(size=S, mode=random_resized, scale=[0.3, 1])", "rotate(limit=15, p=1)", "brightness(p=1)",
        "contrast(p=1)", "hflip", "standardize",
    ],
    "rotate twice, constant border": ["rotate(limit=30, border=constant, fill=128, p=1)", "rotate(limit=30, p=1)"],
    "rotate then centre crop then flip": ["rotate(limit=20, p=1)", "crop(size=0.75, mode=center)", "vflip"],
    "flip, random-resized crop that may shrink": ["hflip", "crop(size=S, mode=random_resized, scale=[0.05, 1])"],
    # A crop enlarged after a rotation: two resamplings, never merged (up to 2 gray levels apart if they were).
    "rotate then an enlarging crop": ["rotate(limit=30, p=1)", "crop(size=S, mode=random_resized, scale=[0.3, 0.4])"],
}


@pytest.mark.parametrize("side", [32, 96])
@pytest.mark.parametrize("name", WARPED)
def test_plans_with_warps_differ_by_interpolation_only(name, side):
    steps = []
    for text in WARPED[name]:
        text = text.replace("S,", f"{side},").replace("P)", f"{side // 8})")
        if text == "standardize":
            steps.append({"standardize": STATS})
        else:
            steps.append(load_pipeline(text).to_spec()["steps"][0])
    for got, expected in _run_both(steps, _photos(side), samples=16):
        if got.dtype == np.float32:  # standardised: back to gray levels
            std = np.array(STATS["std"], np.float32) * 255
            got, expected = got * std, expected * std
        difference = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        assert difference.mean() < 0.5, f"mean absolute difference {difference.mean():.3f} gray levels"


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("layout", ["gray", "gray1", "rgba"])
def test_other_dtypes_and_layouts_warp_fused_and_run_tables_as_steps(dtype, layout):
    photos = _photos(40)
    images = []
    for photo in photos:
        gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
        image = {"gray": gray, "gray1": gray[..., None], "rgba": np.dstack([photo, gray])}[layout]
        image = image.astype(np.uint16) * 257 if dtype == "uint16" else (image / np.float32(255)).astype(np.float32)
        images.append(np.ascontiguousarray(image))
    steps = [load_pipeline(s).to_spec()["steps"][0] for s in
             ["crop(size=36, padding=3)", "hflip(p=0.5)", "brightness(p=1)", "contrast(p=1)", "vflip(p=0.5)"]]
    for got, expected in _run_both(steps, images):
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_more_than_four_channels_run_step_by_step():
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 6), dtype=np.uint8)
    compiled, plain = _pair([{"rotate": {"limit": 20, "p": 1}}, {"hflip": {}}])
    assert not compiled.plan.accepts(image)
    np.testing.assert_array_equal(compiled(image, index=4), plain(image, index=4))


def test_the_draws_replayed_are_those_the_plan_used():
    steps = [load_pipeline(s).to_spec()["steps"][0] for s in
             ["crop(size=32, padding=4)", "rotate(limit=15, p=0.5)", "brightness(p=0.5)", "hflip(p=0.5)"]]
    compiled, plain = _pair(steps)
    photo = _photos(32)[0]
    for index in range(8):
        out, applied = compiled.replay(photo, index=index)
        _, expected = plain.replay(photo, index=index)
        assert [(a.name, a.params) for a in applied] == [(a.name, a.params) for a in expected]
        stages = compiled.stages(photo, index=index)
        assert len(stages) == len(applied)


def test_compile_false_round_trips_and_is_the_default_otherwise(tmp_path):
    plain = load_pipeline({"steps": [{"hflip": {}}], "compile": False})
    assert plain.to_spec()["compile"] is False
    path = plain.save(tmp_path / "p.yaml")
    assert load_pipeline(path).plan is None
    assert "compile" not in load_pipeline("hflip").to_spec()
    with pytest.raises(augkit.SpecError, match="compile"):
        load_pipeline({"steps": [{"hflip": {}}], "compile": "no"})


def test_describe_groups_what_merges():
    pipeline = load_pipeline("crop(size=24, padding=2); rotate; brightness; contrast; hflip; GaussianBlur; standardize(mean=0.5, std=0.25)")
    assert isinstance(pipeline.plan, Plan)
    assert pipeline.plan.describe() == [
        ("warp", ["crop", "rotate"]),
        ("table", ["brightness"]),
        ("flip", ["hflip"]),  # before the contrast's table, which reads the brightened image's mean
        ("table", ["contrast"]),
        ("as is", ["GaussianBlur"]),
        ("normalise", ["standardize"]),
    ]
    describe = lambda spec: load_pipeline(spec).plan.describe()  # noqa: E731
    assert describe("brightness; hflip; brightness") == [("flip", ["hflip"]), ("table", ["brightness", "brightness"])]
    assert describe("crop(size=24); rotate; brightness; hflip") == [("warp", ["crop", "rotate", "hflip"]),
                                                                     ("table", ["brightness"])]
    assert describe("rotate; contrast; hflip") == [("warp", ["rotate"]), ("flip", ["hflip"]), ("table", ["contrast"])]
    assert describe("contrast; brightness; scale") == [("normalise", ["contrast", "brightness", "scale"])]
