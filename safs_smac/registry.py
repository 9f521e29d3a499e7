"""One registry mechanism for everything that is looked up by name.

Operators, models, data sets and the ask/tell optimizers are each a :class:`Registry`: names are
normalised the same way for registration and lookup (case, surrounding spaces, and one chosen
separator for ``-``/``_``), a name is registered once, aliases resolve to their canonical name,
and an unknown name raises one error text everywhere: what is unknown, the valid names, and the
closest matches when there are any. Imports only the standard library.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by canonical name, with aliases.

    Parameters
    ----------
    kind
        What an entry is, for messages: ``"operator"``, ``"model"``, ...
    separator
        ``"_"`` or ``"-"``: the other one is read as this one, so ``efficientnet-b0`` and
        ``efficientnet_b0`` name the same entry.
    """

    def __init__(self, kind: str, *, separator: str = "_") -> None:
        if separator not in ("_", "-"):
            raise ValueError(f"separator must be '_' or '-', got {separator!r}")
        self.kind = kind
        self._separator = separator
        self._entries: dict[str, T] = {}
        self._lookup: dict[str, str] = {}  # canonical name or alias -> canonical name
        self._aliases: dict[str, tuple[str, ...]] = {}

    def normalise(self, name: str) -> str:
        """The key a name is stored and looked up under."""
        other = "-" if self._separator == "_" else "_"
        return str(name).strip().lower().replace(other, self._separator)

    def add(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> str:
        """Register ``entry`` under ``name`` (and ``aliases``); returns the canonical name.

        Raises
        ------
        ValueError
            If the name or an alias is taken.
        """
        canonical = self.normalise(name)
        keys = (canonical, *(self.normalise(a) for a in aliases))
        for key in keys:
            if key in self._lookup:
                raise ValueError(
                    f"{self.kind} name {key!r} is already registered (as "
                    f"{self._lookup[key]!r}); choose a different name or alias"
                )
        self._entries[canonical] = entry
        self._aliases[canonical] = keys[1:]
        for key in keys:
            self._lookup[key] = canonical
        return canonical

    def resolve(self, name: object) -> str:
        """The canonical name of ``name`` (a name or an alias).

        Raises
        ------
        ValueError
            ``unknown <kind> 'x'; valid <kind>s: ...`` plus the aliases and the closest names.
        """
        key = self.normalise(name) if isinstance(name, str) else None
        if key is not None and key in self._lookup:
            return self._lookup[key]
        message = f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}"
        aliases = self.aliases()
        if aliases:
            message += f" (aliases: {', '.join(aliases)})"
        close = difflib.get_close_matches(key or "", list(self._lookup), n=3, cutoff=0.6)
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        raise ValueError(message)

    def get(self, name: object) -> T:
        """The entry of ``name`` (see :meth:`resolve` for the error)."""
        return self._entries[self.resolve(name)]

    def names(self) -> list[str]:
        """Canonical names, sorted."""
        return sorted(self._entries)

    def aliases(self) -> list[str]:
        """Every alias, sorted."""
        return sorted(a for names in self._aliases.values() for a in names)

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (e.g. to register temporarily)."""
        clone: Registry[T] = Registry(self.kind, separator=self._separator)
        clone._entries = dict(self._entries)
        clone._lookup = dict(self._lookup)
        clone._aliases = dict(self._aliases)
        return clone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.normalise(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
