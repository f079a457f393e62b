"""What a pipeline's steps draw for a whole batch of samples, as arrays, without Python per sample.

``Pipeline.draw`` reads one sample's draws by running each step's own drawing code: about 14 us a
sample, more than an 8 x 8 image takes to augment. ``draw_batch`` gives the same numbers for N
samples at once. It can because every sample's stream is SplitMix64 (``augkit.pipeline.seeding``):
draw n of the stream seeded with key k is ``mix(k + (n + 1) * GAMMA)``, readable at any position,
so each sample keeps its own position in an array and the steps' drawing code is replayed with
numpy over all samples together: ``random()`` is the top 53 bits over 2**53, ``uniform(a, b)``
is ``a + (b - a) * random()``, ``randint(a, b)`` one multiply-shift draw of ``b - a + 1`` (what
``SplitMixRandom`` and Python's ``Random`` compute). ``tests/test_batch.py`` holds every value
to ``Pipeline.draw`` for the same samples.

Batched draws exist for the steps the compiled plan merges: ``crop`` (every mode), ``rotate``,
``hflip``, ``vflip``, ``brightness``, ``contrast``, and the normalisation steps (which draw
nothing). Any other step, or a crop that some samples skip (their sizes would differ), raises
``AugkitError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from augkit.errors import AugkitError
from augkit.pipeline import plan as P
from augkit.pipeline.seeding import epoch_key

if TYPE_CHECKING:
    from augkit.pipeline.core import Pipeline

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S32 = (np.uint64(s) for s in (30, 27, 31, 11, 32))
_LOW32 = np.uint64(0xFFFFFFFF)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic, as the scalar code masks)."""
    z = (z ^ (z >> _S30)) * _C1
    z = (z ^ (z >> _S27)) * _C2
    return z ^ (z >> _S31)


class Streams:
    """One SplitMix64 stream per sample, each at its own position.

    Args:
        keys: uint64 N: each sample's key (``seeding.sample_key``), what ``SplitMixRandom.seed`` takes.
    """

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = keys.astype(np.uint64)
        self.drawn = np.zeros(len(keys), dtype=np.uint64)  # draws taken so far, per sample

    def next(self, where: np.ndarray) -> np.ndarray:
        """The next raw 64-bit draw of the samples in ``where`` (bool N); only they advance."""
        self.drawn[where] += np.uint64(1)
        with np.errstate(over="ignore"):
            return _mix(self.keys[where] + self.drawn[where] * _GAMMA)

    def random(self, where: np.ndarray) -> np.ndarray:
        """``random()`` for the samples in ``where``: float64 on [0, 1)."""
        return (self.next(where) >> _S11).astype(np.float64) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float, where: np.ndarray) -> np.ndarray:
        """``uniform(low, high)``: ``low + (high - low) * random()``, as Python computes it."""
        return low + (high - low) * self.random(where)

    def randint(self, low: int, high: np.ndarray | int, where: np.ndarray) -> np.ndarray:
        """``randint(low, high)`` (both ends included; ``high`` per sample or one value): one draw,
        ``(z * n) >> 64`` with n = high - low + 1, computed in 32-bit halves (n < 2**32)."""
        n = (np.broadcast_to(np.asarray(high, dtype=np.int64), where.shape)[where] - low + 1).astype(np.uint64)
        z = self.next(where)
        with np.errstate(over="ignore"):
            high_part = (z >> _S32) * n + (((z & _LOW32) * n) >> _S32)
        return low + (high_part >> _S32).astype(np.int64)


@dataclass(frozen=True)
class StepDraws:
    """One top-level step's draws for N samples.

    Attributes:
        name: the step's name in the spec.
        applied: bool N, whether the step applies to each sample (its probability).
        params: arrays of N values (meaningful where ``applied``), by name: crop: ``y``, ``x``
            (the window's top-left in the unpadded input, pixels; negative or past the edge where
            it reaches into padding), ``height``, ``width`` (the window, pixels), plus scalars
            ``out`` (output height, width) and ``border``/``fill``; rotate: ``angle`` (degrees,
            counter-clockwise); brightness, contrast: ``delta``; flips and normalisations: none.
    """

    name: str
    applied: np.ndarray
    params: dict[str, Any]


def draw_batch(pipeline: Pipeline, shape: tuple[int, ...], indices: Sequence[int] | np.ndarray, epoch: int = 0) -> list[StepDraws]:
    """Every top-level step's draws for samples ``indices`` of an epoch, inputs of ``shape`` (H, W[, C]).

    The same values ``pipeline.draw(shape, index=i, epoch=epoch)`` gives for each ``i``.

    Raises:
        AugkitError: a step without batched draws (named), or a size-changing crop with p < 1.
    """
    kinds = (pipeline.plan or P.Plan(pipeline.steps, pipeline.compose.transforms)).kinds
    indices = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        keys = _mix((np.uint64(epoch_key(pipeline.seed, epoch)) ^ indices) + _GAMMA)
    streams = Streams(keys)
    every = np.ones(len(indices), dtype=bool)
    height, width = shape[:2]
    out = []
    for kind in kinds:
        applied = _applies(kind, streams, every)
        if isinstance(kind, P._Crop):
            params = _crop(kind.transform, streams, applied, height, width)
            if params["out"] != (height, width) and not applied.all():
                raise AugkitError(f"step {kind.name!r}: a crop that changes the size must apply to every sample (p=1) "
                                  f"to be drawn for a batch")
            height, width = params["out"]
        elif isinstance(kind, P._Rotate):
            params = {"angle": _filled(streams.uniform(*kind.limits, applied), applied)}
        elif isinstance(kind, P._Brightness):  # brightness and contrast
            params = {"delta": _filled(streams.uniform(*kind.limits, applied), applied)}
        elif isinstance(kind, (P._Flip, P._Normalisation)):
            params = {}
        else:
            raise AugkitError(f"step {kind.name!r} has no batched draws; the steps that have: crop, rotate, hflip, "
                              f"vflip, brightness, contrast, standardize, subtract_mean, scale")
        out.append(StepDraws(kind.name, applied, params))
    return out


def _applies(kind: P._Kind, streams: Streams, every: np.ndarray) -> np.ndarray:
    """``should_apply`` per sample: one draw each only when 0 < p < 1."""
    p = kind.p
    if p >= 1.0:
        return every.copy()
    if p <= 0.0:
        return np.zeros_like(every)
    return streams.random(every) < p


def _filled(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``values`` (one per True of ``where``) spread to all N samples, 0 elsewhere."""
    out = np.zeros(len(where), dtype=values.dtype)
    out[where] = values
    return out


def _crop(crop: Any, streams: Streams, applied: np.ndarray, height: int, width: int) -> dict[str, Any]:
    """``Crop.get_params_dependent_on_data`` for every sample (see steps.Crop)."""
    out_h, out_w = crop._output_size(height, width)
    n = len(applied)
    result: dict[str, Any] = {"out": (out_h, out_w), "border": crop.border, "fill": crop.fill}
    if crop.mode == "random_resized":
        y, x, h, w = _resized_windows(crop, streams, applied, height, width)
        return {**result, "y": y, "x": x, "height": h, "width": w}
    padding = crop.padding
    room_h, room_w = height + 2 * padding - out_h, width + 2 * padding - out_w
    if room_h >= 0 and room_w >= 0:
        top, left = padding, padding
    else:
        grow_h, grow_w = max(0, -room_h), max(0, -room_w)
        top, left = padding + grow_h // 2, padding + grow_w // 2
        room_h, room_w = max(0, room_h), max(0, room_w)
    if crop.mode == "center":
        y, x = np.full(n, room_h // 2), np.full(n, room_w // 2)
    else:
        y = _filled(streams.randint(0, room_h, applied), applied)
        x = _filled(streams.randint(0, room_w, applied), applied)
    return {**result, "y": y - top, "x": x - left, "height": np.full(n, out_h), "width": np.full(n, out_w)}


def _resized_windows(crop: Any, streams: Streams, applied: np.ndarray, height: int, width: int) -> tuple[np.ndarray, ...]:
    """``Crop._resized_window`` for every sample: up to 10 tries each, then the centred fallback."""
    n = len(applied)
    y, x, h, w = (np.zeros(n, dtype=np.int64) for _ in range(4))
    area = height * width
    log_ratio = (math.log(crop.ratio[0]), math.log(crop.ratio[1]))
    trying = applied.copy()
    for _ in range(10):
        if not trying.any():
            break
        target = area * streams.uniform(*crop.scale, trying)
        # math.exp, element by element: numpy's exp may differ from the C library's in the last bit.
        aspect = np.array([math.exp(v) for v in streams.uniform(*log_ratio, trying)])
        tw = np.rint(np.sqrt(target * aspect)).astype(np.int64)  # round(): half to even, as np.rint
        th = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        fits = (tw > 0) & (tw <= width) & (th > 0) & (th <= height)
        found = np.zeros(n, dtype=bool)
        found[np.flatnonzero(trying)[fits]] = True
        h[found], w[found] = th[fits], tw[fits]
        y[found] = streams.randint(0, height - h, found)
        x[found] = streams.randint(0, width - w, found)
        trying &= ~found
    if trying.any():  # as torchvision: the whole image trimmed to the nearest allowed ratio
        aspect = min(max(width / height, crop.ratio[0]), crop.ratio[1])
        fw, fh = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
        fw, fh = min(fw, width), min(fh, height)
        y[trying], x[trying], h[trying], w[trying] = (height - fh) // 2, (width - fw) // 2, fh, fw
    return y, x, h, w
