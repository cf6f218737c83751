"""One small generic registry (a name maps to exactly one object; duplicates are errors), and the one way
plug-ins are found: Python entry points.

Every plug-in kind registers the same way: a decorator or call puts it into its registry (task kinds in
tasks.base.TASKS, module classes in modules.base.MODULES, processors in processors.base.PROCESSORS,
perturbations in perturbations.base.PERTURBATIONS), when the module defining it is imported. Which modules to
import is said by entry points in the groups of ``ENTRY_POINT_GROUPS``, so a package installed beside
zooeval extends it with no edit to zooeval: its ``pyproject.toml`` names, e.g.,
``[project.entry-points."zooeval.tasks"] mytask = "mypackage.mytask"``. zooeval's own plug-ins are found the
same way (its packages are its entry points, and each imports all of its modules).
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
import logging
import pkgutil
import threading
from importlib.metadata import entry_points
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("zooeval")

#: The entry point groups plug-ins are found in, in loading order (a module may need its task kind).
ENTRY_POINT_GROUPS = ("zooeval.tasks", "zooeval.perturbations", "zooeval.modules", "zooeval.processors")


def name_matches(name: str, include: list[str] | None = None, exclude: list[str] | None = None) -> bool:
    """True if name matches any include wildcard (or there are none) and no exclude wildcard."""
    if include and not any(fnmatch.fnmatch(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatch(name, p) for p in exclude))


class Registry(Generic[T]):
    """Named plug-ins of one kind. Reading a registry first loads the plug-ins of every entry point
    (``load_plugins``, once per process), so what is installed is what is seen."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind, self.group = kind, group
        self._items: dict[str, T] = {}

    def _discover(self) -> None:
        if self.group:
            load_plugins(self.group)

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self._discover()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        self._discover()
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        self._discover()
        return len(self._items)


class PluginError(RuntimeError):
    """An entry point that cannot be loaded (its package is broken or registers a name twice)."""


_loaded: set[str] = set()


def load_plugins(*groups: str) -> list[str]:
    """Import every module the entry points of ``groups`` (default: every ``zooeval.*`` group) name, once per
    process, so their plug-ins are registered; an entry point naming a function (``package:function``) has it
    called. Returns the entry points loaded now; raises PluginError naming the one that fails."""
    done: list[str] = []
    with _lock:
        for group in groups or ENTRY_POINT_GROUPS:
            _load_group(group, done)
    return done


def _load_group(group: str, done: list[str]) -> None:
    if group in _failed:  # a broken plug-in stays an error: never silently run without it
        raise PluginError(_failed[group])
    if group in _loading or group in _loaded_groups:  # a plug-in being imported reads its own registry:
        return                                         # it sees what is registered so far
    _loading.add(group)
    try:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            key = f"{group}:{ep.name}={ep.value}"
            if key in _loaded:
                continue
            _loaded.add(key)  # never retried: a half-registered plug-in would register its names twice
            try:
                obj = ep.load()
                if inspect.isfunction(obj):
                    obj()
            except Exception as exc:
                _failed[group] = (f"the {group} plug-in {ep.name!r} ({ep.value}) cannot be loaded: "
                                  f"{type(exc).__name__}: {exc}; fix or uninstall its package")
                raise PluginError(_failed[group]) from exc
            done.append(key)
        _loaded_groups.add(group)
    finally:
        _loading.discard(group)


_lock = threading.RLock()
_loading: set[str] = set()
_loaded_groups: set[str] = set()
_failed: dict[str, str] = {}


def import_submodules(package: str) -> None:
    """Import every module of a package (what a package's ``__init__`` calls so that a new file in it is
    registered without an edit anywhere else)."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
