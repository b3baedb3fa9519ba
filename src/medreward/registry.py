"""One pattern for the name registries: reward component kinds, tasks and baseline policies.

Entries register themselves with a decorator when their module is imported. A registry
imports its package's built-in modules on the first lookup (so ``import medreward`` stays
fast: some of them load sizeable data), and an unknown name is a user error whose message
lists the known names.

This module is on the ground floor: it imports nothing of medreward's, so any stage can
hold a registry. The error class is passed in (a :class:`~medreward.errors.MedrewardError`
subclass, so the CLI prints its message instead of a traceback).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

__all__ = ["Registry"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Registry(Generic[K, V]):
    """Entries of one sort by key.

    >>> colours = Registry[str, int]("colour", "colours", package="", builtins=(), error=LookupError)
    >>> colours.add("red", 1)
    >>> colours.get("red")
    1
    >>> colours.get("blue")
    Traceback (most recent call last):
    ...
    LookupError: unknown colour 'blue'; known colours: red

    ``noun``/``plural`` name the entries in messages; ``builtins`` are the modules of
    ``package`` whose import registers the built-in entries; ``error`` is the exception
    class raised for an unknown key; ``hint`` is appended to that message.
    """

    def __init__(
        self,
        noun: str,
        plural: str,
        *,
        package: str,
        builtins: Sequence[str],
        error: Callable[[str], Exception],
        hint: str = "",
    ) -> None:
        self.noun = noun
        self.plural = plural
        self._package = package
        self._builtins = tuple(builtins)
        self._error = error
        self._hint = hint
        self._entries: dict[K, V] = {}
        self._loaded = not self._builtins

    def add(self, key: K, entry: V) -> None:
        """Register ``entry`` under ``key``. The same entry again is a no-op (a re-imported
        module); a different one under a taken key is a ``TypeError``, since it would
        silently shadow the first."""
        current = self._entries.get(key)
        if current is not None and current != entry:
            raise TypeError(f"{self.noun} {key!r} is registered twice")
        self._entries[key] = entry

    def load_builtins(self) -> None:
        """Import the built-in modules once (their decorators register the entries). A module
        that fails to import raises here and is tried again on the next lookup."""
        if self._loaded:
            return
        for module in self._builtins:
            importlib.import_module(f"{self._package}.{module}")
        self._loaded = True

    def entries(self) -> dict[K, V]:
        """All entries, built-ins included, sorted by key."""
        self.load_builtins()
        return dict(sorted(self._entries.items()))

    def find(self, key: K) -> V | None:
        """The entry under ``key``, or ``None``."""
        self.load_builtins()
        return self._entries.get(key)

    def get(self, key: K) -> V:
        """The entry under ``key``; an unknown key raises ``error`` listing the known keys."""
        entry = self.find(key)
        if entry is None:
            raise self.unknown(key, self.entries())
        return entry

    def unknown(self, name: object, known: Iterable[object], *, context: str = "") -> Exception:
        """The error for an unknown ``name`` (``context`` follows the name, e.g. ``" for task 'x'"``)."""
        names = ", ".join(str(k) for k in known) or "none"
        return self._error(f"unknown {self.noun} {name!r}{context}; known {self.plural}: {names}{self._hint}")
