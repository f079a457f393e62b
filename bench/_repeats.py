"""The repeat schedule every benchmark here shares: interleaved, rotating, first repeat dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
