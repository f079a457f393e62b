"""The repeat schedule every benchmark here shares: interleaved, rotating, first repeat dropped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def interleaved(runs: dict[str, Callable[[], T]], repeats: int) -> dict[str, list[T]]:
    """Each run's results over ``repeats`` repeats, the first dropped (fresh memory, warm-up).

    Within a repeat every run goes once, and the order rotates from repeat to repeat, so no run
    always follows the same one and the machine's changing load falls on all of them alike.
    """
    results: dict[str, list[T]] = {name: [] for name in runs}
    names = list(runs)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(runs[name]())
    return {name: r[1:] for name, r in results.items()}


def per_call_us(run: Callable[[Any, int], object], images: Sequence[Any], calls: int) -> Callable[[], float]:
    """A repeat for ``interleaved``: ``run(image, i)`` for i in 0..calls-1, cycling over ``images``;
    returns microseconds per call."""

    def go() -> float:
        start = time.perf_counter()
        for i in range(calls):
            run(images[i % len(images)], i)
        return (time.perf_counter() - start) / calls * 1e6

    return go


def calls_for_block(runs: Sequence[Callable[[Any, int], object]], images: Sequence[Any], block_s: float) -> int:
    """How many calls make a block of about ``block_s`` seconds for the slowest of ``runs`` (each
    warmed on every image first); at least one call per image."""
    slowest = 0.0
    for run in runs:
        for i, image in enumerate(images):
            run(image, i)  # warm
        start = time.perf_counter()
        for i, image in enumerate(images):
            run(image, i)
        slowest = max(slowest, (time.perf_counter() - start) / len(images))
    return max(len(images), round(block_s / slowest))
