"""Options by name, timm-style: one ``Registry`` per kind (activations, inits, models, ...).

``register`` is a decorator, ``get(name)`` looks up (a non-string passes through, as in timm),
``names()`` lists in registration order (what the CLI's choices show). An unknown name raises
``AugkitError`` listing the choices and the closest match, never a bare ``KeyError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from augkit.errors import AugkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; ``kind`` names them in errors ("unknown activation ...")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return decorator

    def get(self, name: str | T) -> T:
        if not isinstance(name, str):
            return name
        try:
            return self._entries[name]
        except KeyError:
            raise AugkitError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The message for an unknown ``name``: the choices, and the closest ones if any."""
        same = [e for e in self._entries if e.lower() == name.lower()]  # "Relu": relu, not elu
        close = same or difflib.get_close_matches(name, self._entries, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self._entries)}"

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
