"""Per-sample random streams derived from (pipeline seed, epoch, sample index).

albumentations draws from one generator per Compose, seeded once. Every DataLoader worker
forks a copy of that generator, so workers replay each other's augmentations, and the image a
sample gets depends on which worker happened to load it. augkit instead re-seeds the
pipeline's generators before every sample from (seed, epoch, index): the same triple gives the
same image in any process, and different indices give independent streams.

Re-seeding happens on the hot path, once per image, where a whole 32x32 pipeline takes about
85 us; the slow constructors are out of the question there (a fresh
``np.random.default_rng(SeedSequence(...))`` costs about 10 us, ``random.Random.seed`` about
5 us). The triple is hashed with SplitMix64 (about 1 us); the Python generator is a SplitMix64
stream, whose seeding is one assignment; the numpy generator (PCG64) gets its state assigned,
which costs 3 to 9 us inside a pipeline (its code is cold by then), so it is skipped for
pipelines whose steps never draw from it: augkit's own steps draw from the Python one only.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys

import numpy as np

_MASK64 = (1 << 64) - 1
# Offsets that keep the PCG64 state words apart from the SplitMix stream started at the same key.
_PCG_HIGH, _PCG_LOW = 0x6A09E667F3BCC908, 0xBB67AE8584CAA73B


def _mix64(x: int) -> int:
    """The SplitMix64 finaliser: a bijection on 64-bit ints that scatters every input bit."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_key(seed: int, epoch: int, index: int) -> int:
    """A 64-bit key for one sample; chained so that (1, 2, 3) and (2, 1, 3) differ."""
    return index_key(epoch_key(seed, epoch), index)


def epoch_key(seed: int, epoch: int) -> int:
    """The part of ``sample_key`` shared by every sample of an epoch (a caller may keep it)."""
    return _mix64(_mix64(seed & _MASK64) ^ (epoch & _MASK64))


def index_key(epoch_key: int, index: int) -> int:
    """``sample_key(seed, epoch, index)`` from ``epoch_key(seed, epoch)``."""
    return _mix64(epoch_key ^ (index & _MASK64))


def process_salt() -> int:
    """0 in the process a program started in; a value of this process's own in any worker.

    What keeps calls that pass no sample index (``pipeline(image)``) from repeating across
    worker processes, which all start with a copy of the parent's pipeline and its call count:

    - in a PyTorch DataLoader worker, the worker's seed (``get_worker_info().seed``: the
      loader's base seed, drawn anew every epoch from torch's generator, plus the worker id),
      so such calls differ between workers and epochs and still follow ``torch.manual_seed``;
      torch is only looked at when the process has already imported it (augkit never does);
    - in any other child process (multiprocessing, os.fork), 64 random bits from the OS;
    - in the main process, 0: calls are numbered 0, 1, 2, ... by the pipeline, reproducibly.

    Computed once per process (the pid is checked, so a forked child computes its own).
    """
    global _salt_pid, _salt
    if _salt_pid != os.getpid():
        _salt, _salt_pid = _find_salt(), os.getpid()
    return _salt


_salt_pid: int | None = None  # the process _salt was found in
_salt = 0
_MAIN_PID = os.getpid()  # the process augkit was imported in; a fork's copy of it differs


def _find_salt() -> int:
    torch_data = sys.modules.get("torch.utils.data")
    info = torch_data.get_worker_info() if torch_data is not None else None
    if info is not None:
        return _mix64(int(info.seed) ^ _PCG_HIGH)
    if multiprocessing.parent_process() is not None or os.getpid() != _MAIN_PID:
        return int.from_bytes(os.urandom(8), "little") | 1  # never 0
    return 0


class SplitMixRandom(random.Random):
    """A ``random.Random`` drawing from SplitMix64, so that re-seeding costs one assignment.

    ``random.Random.seed`` expands its seed into 624 words of Mersenne Twister state on every
    call; augmentation needs a handful of draws per sample, from a stream that is cheap to
    start. Overriding ``random``, ``getrandbits`` and ``_randbelow`` is enough for every other
    method (uniform, randint, choice, shuffle, gauss, ...), which build on those.
    """

    def __init__(self, seed: int = 0) -> None:
        self._state = 0
        super().__init__(seed)

    def seed(self, a: int | None = None, version: int = 2) -> None:  # noqa: ARG002 (API of Random)
        if a is None:
            a = int.from_bytes(os.urandom(8), "little")
        if not isinstance(a, int):
            raise TypeError(f"SplitMixRandom is seeded with an int, got {type(a).__name__}")
        self._state = a & _MASK64
        self.gauss_next = None  # Random.gauss caches its second draw; a new stream drops it

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def random(self) -> float:
        return (self._next() >> 11) * (1.0 / (1 << 53))

    def _randbelow(self, n: int) -> int:
        """An int in [0, n): the multiply-shift map, one draw (bias below n / 2**64)."""
        if n <= 1 << 64:
            return (self._next() * n) >> 64
        return super()._randbelow(n)

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        bits, have = 0, 0
        while have < k:
            bits |= self._next() << have
            have += 64
        return bits & ((1 << k) - 1)

    def getstate(self) -> tuple[int, float | None]:
        return self._state, self.gauss_next

    def setstate(self, state: tuple[int, float | None]) -> None:  # type: ignore[override]
        self._state, self.gauss_next = state


class SampleRandom:
    """The two generators a pipeline's transforms draw from, re-seeded per sample.

    albumentations transforms draw from ``random_generator`` (numpy) and ``py_random``
    (Python); a pipeline hands both objects to every transform once, then calls ``reseed``
    before each sample, which changes their state in place.
    """

    def __init__(self, *, numpy: bool = True) -> None:
        """Args:
        numpy: whether to re-seed the numpy generator too; a pipeline whose steps never
            draw from it (augkit's own steps only use the Python one) skips that cost.
        """
        self.reseeds_numpy = numpy
        self._bit_generator = np.random.PCG64(0)
        self.numpy = np.random.Generator(self._bit_generator)
        self.python = SplitMixRandom(0)
        self._pcg_state = dict(self._bit_generator.state)  # reused: only the state word changes
        self._pcg_inc = self._pcg_state["state"]["inc"]

    def reseed(self, key: int) -> None:
        """Start the streams from ``key`` (a ``sample_key``)."""
        self.python.seed(key)
        if self.reseeds_numpy:
            # A 128-bit PCG64 state from the key; the increment (which picks the stream) stays
            # as constructed, so samples start at scattered points of one stream 2**128 long.
            self._pcg_state["state"] = {"state": (_mix64(key ^ _PCG_HIGH) << 64) | _mix64(key ^ _PCG_LOW), "inc": self._pcg_inc}
            self._pcg_state["has_uint32"] = 0
            self._bit_generator.state = self._pcg_state
