"""Random specs through ``load_pipeline`` and random odd images through the pipelines built.

Whatever a user types (any registered step, any parameter, finite or not, nested anyhow) and
whatever image they pass (1 x 1, 1 x N, 1 to 8 channels, uint8/uint16/float32, and some that
break the pixel contract), building and running either succeeds with a valid image or raises
augkit's error type, one line; never another exception and never a hang. A hang is caught by
faulthandler's watchdog thread, which also fires while OpenCV spins in C code (where a Python
signal handler would never run): it prints the stack and ends the process, failing the run.
"""

from __future__ import annotations

import faulthandler
import math
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import augkit
from augkit.pipeline.registry import COMPOSITIONS, get_step, list_steps, step_parameters

# Seconds one build or call may take before the watchdog ends the run; only a hang gets there
# (the slowest legitimate call here takes milliseconds).
HANG_SECONDS = 60

STEPS = list_steps()
LEAVES = [name for name in STEPS if name not in COMPOSITIONS]
WORDS = ["constant", "reflect", "replicate", "random", "center", "random_resized", "image", "channel", "", "x"]

numbers = st.one_of(
    st.integers(-3, 40),
    st.integers(-(10**12), 10**12),
    st.floats(-2.0, 2.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0, 1, 0.5, 1e6, 32767, 100_000_000]),
)
scalars = st.one_of(numbers, st.booleans(), st.none(), st.sampled_from(WORDS))
# Values a step accepts more often than not (so that many pipelines build and run), and
# anything at all (so that validation meets every kind of mistake).
plausible = st.one_of(
    st.integers(0, 40),
    st.floats(0.0, 1.0),
    st.tuples(st.integers(0, 20), st.integers(20, 40)),
    st.tuples(st.floats(0.0, 0.5), st.floats(0.5, 1.0)),
    st.sampled_from(WORDS[:-2]),
)
values = st.one_of(plausible, st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6))


@st.composite
def step_specs(draw: st.DrawFn, depth: int = 0) -> dict:
    name = draw(st.sampled_from(STEPS if depth < 2 else LEAVES))
    accepted = [key for key in step_parameters(get_step(name)) if key != "transforms"]
    keys = draw(st.lists(st.sampled_from(accepted), max_size=2, unique=True)) if accepted else []
    params = {key: draw(values) for key in keys}
    if draw(st.integers(0, 9)) == 0:  # now and then a parameter the step does not have
        params["bogus"] = draw(values)
    if name in COMPOSITIONS:
        params["transforms"] = draw(st.lists(step_specs(depth + 1), min_size=1, max_size=2))
    return {name: params}


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    height = draw(st.sampled_from([1, 2, 3, 7, 16]))
    width = draw(st.sampled_from([1, 2, 5, 16, 33]))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5, 8]))
    shape = (height, width) if channels is None else (height, width, channels)
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32", "float32", "float32 out of range", "float64", "int32"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == "uint16":
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    if dtype == "float32 out of range":
        return (rng.random(shape) * 255).astype(np.float32)
    if dtype == "int32":
        return rng.integers(0, 256, shape).astype(np.int32)
    return rng.random(shape).astype(np.float32 if dtype == "float32" else np.float64)


def _is_valid_image(out: object) -> bool:
    return isinstance(out, np.ndarray) and out.ndim in (2, 3) and out.size > 0 and out.dtype.kind in "uif"


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_specs(), min_size=1, max_size=3), image=images(), seed=st.integers(0, 2**32 - 1))
def test_any_spec_and_any_image_give_an_image_or_one_augkit_error(steps, image, seed):
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # albumentations' deprecation notes are not failures
            try:
                pipeline = augkit.load_pipeline({"seed": seed % 1000, "steps": steps})
            except augkit.AugkitError as error:
                assert "\n" not in str(error)
                return
            try:
                out = pipeline(image, index=seed, epoch=1)
            except augkit.AugkitError as error:
                assert "\n" not in str(error)
                return
        assert _is_valid_image(out), f"{pipeline} returned {type(out).__name__} {getattr(out, 'shape', '')}"
    finally:
        faulthandler.cancel_dump_traceback_later()
