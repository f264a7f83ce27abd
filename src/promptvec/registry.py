"""One registry type for every named family of components: methods, prompt modules, backbones,
analyses, merges, similarities, groupings, metrics and figures.

Why one type: each family used to be a bare dict, with its own lookup and its own message for an
unknown name (or a ``KeyError`` from deep inside). A :class:`Registry` is a read-only mapping from
name to component with three guarantees:

* a name is registered once — a second registration under the same name is a programming error
  and raises at import time, instead of silently replacing the first;
* an unknown name raises the family's error (a :class:`~promptvec.errors.PromptvecError`) that
  lists the close matches, or every known name — the message a CLI user sees;
* the entries can be listed (sorted) for help texts, so the CLI's lists come from the registry.

A family whose members live in modules that the registry's home cannot import without a cycle
(methods register themselves from ``promptvec.methods``, which imports the code that needs the
registry) names that module as ``populate``: it is imported on the first lookup. ``populate`` may
also be a function that fills the registry (the built-in tasks are read from YAML on first use).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from promptvec.errors import ConfigError, PromptvecError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named components of one kind (``kind`` is how messages call them, e.g. "method")."""

    def __init__(self, kind: str, error: type[PromptvecError] = ConfigError,
                 populate: str | Callable[[Registry[T]], None] | None = None) -> None:
        self.kind = kind
        self.error = error
        self._populate = populate
        self._entries: dict[str, T] = {}

    def add(self, name: str, component: T) -> T:
        """Register ``component`` under ``name``; a name already taken raises."""
        if name in self._entries and self._entries[name] is not component:
            raise ValueError(f"{self.kind} '{name}' is registered twice ({self._entries[name]!r} and {component!r})")
        self._entries[name] = component
        return component

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register under ``name``, or the component's own ``name`` attribute."""

        def decorate(component: T) -> T:
            key = name if name is not None else getattr(component, "name", None)
            if not isinstance(key, str) or not key:
                raise ValueError(f"a {self.kind} needs a name to be registered ({component!r})")
            return self.add(key, component)

        return decorate

    @contextlib.contextmanager
    def scope(self) -> Iterator[Registry[T]]:
        """Registrations made inside are dropped on exit — for tests and documentation examples that
        define a throwaway component without leaving it in the package's registry."""
        before = dict(self._loaded())
        try:
            yield self
        finally:
            self._entries = before

    def _loaded(self) -> dict[str, T]:
        if self._populate is not None:
            populate, self._populate = self._populate, None
            if isinstance(populate, str):
                importlib.import_module(populate)
            else:
                populate(self)
        return self._entries

    def unknown_message(self, name: object) -> tuple[str, str]:
        """The message and fix for an unknown ``name``."""
        known = sorted(self._loaded())
        close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        return f"unknown {self.kind} '{name}'", hint

    def __getitem__(self, name: str) -> T:
        entries = self._loaded()
        if name not in entries:
            raise self.error(*self.unknown_message(name))
        return entries[name]

    def check(self, name: str) -> str:
        """``name`` if registered, else a ValueError with the same message (for pydantic validators,
        which turn it into the usual one-line field error)."""
        if name not in self._loaded():
            message, hint = self.unknown_message(name)
            raise ValueError(f"{message} ({hint})")
        return name

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def names(self) -> list[str]:
        """Every registered name, sorted (for help texts and listings)."""
        return sorted(self._loaded())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
