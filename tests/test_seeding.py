"""Per-sample seeding: worker processes never repeat each other, and the streams behave."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

import augkit
from augkit.pipeline._albumentations import A
from augkit.pipeline.core import _draws_from_numpy
from augkit.pipeline.registry import create_step, list_steps
from augkit.pipeline.seeding import SampleRandom, SplitMixRandom, sample_key

IMAGE = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
SPEC = "crop(size=24, padding=4); rotate(limit=30, p=1); brightness(p=1); hflip"

# Forked workers inherit these module globals, as DataLoader workers inherit the dataset.
_AUGKIT = augkit.load_pipeline(SPEC)
_ALBUMENTATIONS = A.Compose(
    [A.PadIfNeeded(40, 40), A.RandomCrop(24, 24), A.Rotate(limit=30, p=1), A.RandomBrightnessContrast(p=1), A.HorizontalFlip()],
    seed=0,
)


def _worker(job):
    """What a DataLoader worker does: load its share of the indices, augment each."""
    which, indices = job
    if which == "augkit":
        return [(i, _AUGKIT(IMAGE, index=i, epoch=0)) for i in indices]
    return [(i, _ALBUMENTATIONS(image=IMAGE)["image"]) for i in indices]


def _run_two_workers(which):
    # Two workers, each taking every other index, as a DataLoader with num_workers=2 does.
    jobs = [(which, list(range(0, 8, 2))), (which, list(range(1, 8, 2)))]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_worker, jobs)
    return results


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork, as DataLoader on Linux")
def test_forked_workers_give_each_sample_its_own_augmentation_and_match_one_process():
    first, second = _run_two_workers("augkit")
    by_index = dict(first + second)
    single = augkit.load_pipeline(SPEC)
    for i in range(8):
        np.testing.assert_array_equal(by_index[i], single(IMAGE, index=i, epoch=0))
    assert len({image.tobytes() for image in by_index.values()}) == 8
    # The first sample of each worker differs: nothing is replayed across workers.
    assert not np.array_equal(first[0][1], second[0][1])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork, as DataLoader on Linux")
def test_plain_albumentations_compose_repeats_itself_across_forked_workers():
    """The flaw augkit's scheme avoids, shown on the same pipeline built with albumentations:
    every worker starts from a copy of one generator, so worker 2 replays worker 1."""
    first, second = _run_two_workers("albumentations")
    for (_, a), (_, b) in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_sample_keys_differ_for_permuted_and_neighbouring_triples():
    keys = {sample_key(s, e, i) for s in range(4) for e in range(4) for i in range(64)}
    assert len(keys) == 4 * 4 * 64
    assert sample_key(1, 2, 3) != sample_key(2, 1, 3) != sample_key(3, 2, 1)


def test_splitmix_random_is_uniform_enough_for_augmentation():
    rng = SplitMixRandom(12345)
    draws = np.array([rng.random() for _ in range(20000)])
    assert 0 <= draws.min() and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.01 and abs(draws.std() - (1 / 12) ** 0.5) < 0.01
    counts = np.bincount([rng.randint(0, 9) for _ in range(20000)], minlength=10)
    assert counts.min() > 1700  # each of 10 values near 2000
    assert {rng.getrandbits(3) for _ in range(500)} == set(range(8))
    assert 2**129 <= max(rng.getrandbits(130) for _ in range(50)) < 2**130


def test_splitmix_random_state_round_trips_and_reseeding_restarts_the_stream():
    rng = SplitMixRandom(1)
    state = rng.getstate()
    first = [rng.uniform(-1, 1) for _ in range(5)]
    rng.setstate(state)
    assert [rng.uniform(-1, 1) for _ in range(5)] == first
    rng.seed(1)
    assert [rng.uniform(-1, 1) for _ in range(5)] == first
    with pytest.raises(TypeError, match="seeded with an int"):
        rng.seed("one")


class _NoNumpy:
    """Stands in for a numpy Generator and fails the test on any use."""

    def __getattr__(self, name):
        raise AssertionError(f"drew from numpy ({name}) though the step claims not to")


@pytest.mark.parametrize("name", list_steps("augkit"))
def test_steps_that_skip_numpy_reseeding_never_draw_from_numpy(name):
    """A pipeline of such steps does not re-seed numpy per sample; a numpy draw would then
    depend on which samples a process saw before, and workers would disagree."""
    params = {"p": 1.0, "size": 24} if name == "crop" else {"p": 1.0}
    if name == "standardize":
        params.update(mean=0.5, std=0.25)
    if name == "subtract_mean":
        params["mean"] = 0.5
    for mode in (["random", "center", "random_resized"] if name == "crop" else [None]):
        transform = create_step(name, **(params | ({"mode": mode} if mode else {})))
        if _draws_from_numpy(transform):
            pytest.skip(f"{name} draws from numpy, and its pipelines re-seed numpy")
        transform.set_random_state(_NoNumpy(), SplitMixRandom(0))
        for _ in range(20):
            transform(image=IMAGE)


def test_pipelines_reseed_numpy_only_when_a_step_may_draw_from_it():
    assert not augkit.load_pipeline(SPEC)._random.reseeds_numpy
    assert augkit.load_pipeline(SPEC + "; GaussNoise")._random.reseeds_numpy
    assert augkit.load_pipeline("OneOf(transforms=[hflip, vflip])")._random.reseeds_numpy


def test_numpy_drawing_steps_are_reproducible_per_sample_too():
    pipeline = augkit.load_pipeline("GaussNoise(p=1); CoarseDropout(p=1)")
    a = [pipeline(IMAGE, index=i) for i in (3, 1, 3)]
    np.testing.assert_array_equal(a[0], a[2])
    assert not np.array_equal(a[0], a[1])


def test_sample_random_reseeds_both_generators_in_place():
    streams = SampleRandom(numpy=True)
    numpy_generator, python_generator = streams.numpy, streams.python
    streams.reseed(sample_key(0, 0, 1))
    a = (streams.numpy.random(3).tolist(), streams.python.random())
    streams.reseed(sample_key(0, 0, 2))
    b = (streams.numpy.random(3).tolist(), streams.python.random())
    streams.reseed(sample_key(0, 0, 1))
    assert (streams.numpy.random(3).tolist(), streams.python.random()) == a != b
    assert streams.numpy is numpy_generator and streams.python is python_generator
