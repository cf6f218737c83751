"""One small generic registry: a name maps to exactly one object; duplicates are errors."""
from __future__ import annotations

import fnmatch
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


def name_matches(name: str, include: list[str] | None = None, exclude: list[str] | None = None) -> bool:
    """True if name matches any include wildcard (or there are none) and no exclude wildcard."""
    if include and not any(fnmatch.fnmatch(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatch(name, p) for p in exclude))


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def select(self, include: list[str] | None = None, exclude: list[str] | None = None) -> list[T]:
        """Items whose names match any include wildcard and no exclude wildcard."""
        return [item for name, item in self._items.items() if name_matches(name, include, exclude)]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)
