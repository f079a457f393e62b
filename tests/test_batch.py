"""Batched draws (``augkit.pipeline.batch``) against each sample's own draws (``Pipeline.draw``)."""

from __future__ import annotations

import numpy as np
import pytest

from augkit import AugkitError, load_pipeline
from augkit.pipeline.batch import Streams, draw_batch
from augkit.pipeline.seeding import SplitMixRandom, sample_key

SPECS = {
    "cifar": "crop(size=32, padding=4); hflip(p=0.5)",
    "digits": "crop(size=8, padding=1); hflip",
    "every kind": "crop(size=28, padding=3, border=reflect); rotate(limit=[-5, 20], p=0.6); brightness(p=0.5); "
                  "contrast(limit=0.4, p=0.7); vflip(p=0.3); hflip(p=0); standardize(mean=0.5, std=0.25)",
    "centre then random": "crop(size=0.75, mode=center); crop(size=20); hflip(p=0.5)",
    "grow to the size": "crop(size=40, padding=2); brightness(p=1)",
    "random-resized": "crop(size=24, mode=random_resized); hflip(p=0.5); rotate(p=0.5)",
    "random-resized, hard to fit": "crop(size=16, mode=random_resized, scale=[0.9, 1], ratio=[3, 4])",
    "random-resized, easy": "crop(size=[20, 30], mode=random_resized, scale=[0.05, 0.2], ratio=[0.5, 2])",
}


def _expected(pipeline, shape, index, epoch):
    """What Pipeline.draw gives for one sample, in draw_batch's terms."""
    out = []
    height, width = shape[:2]
    for name, params in pipeline.draw(shape, index=index, epoch=epoch):
        if params is None:
            out.append((name, False, {}))
            continue
        if name == "crop":
            y, x, h, w = params["window"]
            top, left = params["pad"][0], params["pad"][2]
            out.append((name, True, {"y": y - top, "x": x - left, "height": h, "width": w}))
            height, width = params["out"]
        elif name in ("rotate",):
            out.append((name, True, {"angle": params["angle"]}))
        elif name in ("brightness", "contrast"):
            out.append((name, True, {"delta": params["delta"]}))
        else:
            out.append((name, True, {}))
    return out


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("shape", [(32, 32, 3), (37, 29, 1), (8, 8)])
def test_batched_draws_are_each_samples_own_draws(name, shape):
    pipeline = load_pipeline(SPECS[name], seed=11)
    indices = np.array([0, 1, 2, 5, 77, 1000, 2**40 + 3, 123456789] + list(range(300, 364)))
    for epoch in (0, 3):
        batch = pipeline.draw_batch(shape, indices, epoch=epoch)
        for row, index in enumerate(indices):
            expected = _expected(pipeline, shape, int(index), epoch)
            got = [(step.name, bool(step.applied[row]),
                    {k: (v[row].item() if isinstance(v, np.ndarray) else v) for k, v in step.params.items()
                     if k in ("y", "x", "height", "width", "angle", "delta")} if step.applied[row] else {})
                   for step in batch]
            assert got == expected, f"sample {index}, epoch {epoch}"


def test_streams_read_at_any_position_are_splitmix_random():
    keys = np.array([sample_key(3, 1, i) for i in range(20)], dtype=np.uint64)
    streams = Streams(keys)
    every = np.ones(20, dtype=bool)
    got = [streams.random(every), streams.uniform(-2.5, 7.0, every), streams.randint(3, 9, every),
           streams.randint(0, np.arange(20) * 1000, every)]
    for i, key in enumerate(keys):
        reference = SplitMixRandom(int(key))
        assert got[0][i] == reference.random()
        assert got[1][i] == reference.uniform(-2.5, 7.0)
        assert got[2][i] == reference.randint(3, 9)
        assert got[3][i] == reference.randint(0, i * 1000)


@pytest.mark.parametrize("spec, fragment", [
    ("crop(size=8, padding=1); GaussianBlur", "step 'GaussianBlur' has no batched draws"),
    ("crop(size=8, p=0.5)", "a crop that changes the size must apply to every sample"),
    ("OneOf(transforms=[hflip, vflip])", "step 'OneOf' has no batched draws"),
])
def test_steps_without_batched_draws_are_named(spec, fragment):
    with pytest.raises(AugkitError, match=fragment.replace("(", r"\(")):
        draw_batch(load_pipeline(spec), (32, 32, 3), np.arange(4))


@pytest.mark.parametrize("indices", [[-1], [0.5], [True], [2**64], np.array([-3, 1]), [[1, 2]]])
def test_batch_indices_are_checked_as_a_calls_index_is(indices):
    with pytest.raises(AugkitError, match=r"index must be an integer in \[0, 2\*\*64\)"):
        load_pipeline("hflip").draw_batch((8, 8, 1), indices)


@pytest.mark.parametrize("shape", [(0, 5), (8,), (8.0, 8), "ab", (8, 8, 0), (40000, 8)])
def test_draw_shapes_are_images_shapes(shape):
    pipeline = load_pipeline("crop(size=4); hflip")
    for draw in (lambda: pipeline.draw(shape, index=0), lambda: pipeline.draw_batch(shape, [0])):
        with pytest.raises(AugkitError, match="shape must be an image's"):
            draw()


def test_the_largest_index_draws_as_a_call_would():
    pipeline = load_pipeline("crop(size=6, padding=1); hflip(p=0.5)")
    batch = pipeline.draw_batch((8, 8, 1), [2**64 - 1, 3])
    single = pipeline.draw((8, 8, 1), index=2**64 - 1)
    assert batch[1].applied[0] == (single[1][1] is not None)
    assert batch[0].params["y"][0] == single[0][1]["window"][0] - single[0][1]["pad"][0]
