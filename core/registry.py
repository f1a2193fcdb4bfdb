"""Name -> factory registries shared by models, datasets and pruners.

Configs, command lines and run records refer to models, datasets and pruners by name; a
registry is the one place that maps such a name to the code that builds it, together with the
dataclass that types its options (so a typo'd option fails when the config is validated,
not after a day in a queue).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, is_dataclass
from typing import Any, Callable, Generic, TypeVar

from core import catalog
from core.errors import ConfigError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: its factory and the dataclass of its options (or None)."""

    name: str
    factory: T
    options: type | None
    summary: str


class Registry(Generic[T]):
    """A named collection of factories.

    `plugins` are modules imported (once, lazily) before a name is looked up, so that
    packages which build on `core` (the method, the baselines) can add their entries without
    `core` importing them: dependencies keep pointing one way.
    """

    def __init__(self, kind: str, plugins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._plugins = plugins
        self._plugins_loaded = False

    def register(
        self, name: str, *, options: type | None = None, summary: str = ""
    ) -> Callable[[T], T]:
        if options is not None and not is_dataclass(options):
            raise TypeError(f"options of {self.kind} {name!r} must be a dataclass")

        def decorator(factory: T) -> T:
            if name in self._entries and self._entries[name].factory is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc_lines = (factory.__doc__ or "").strip().splitlines()
            text = summary or (doc_lines[0].rstrip(".") if doc_lines else "")
            self._entries[name] = Entry(name, factory, options, text)
            return factory

        return decorator

    def _load_plugins(self) -> None:
        catalog.load_plugins()  # the user's modules named in $S2H_PLUGINS (each imported once)
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in self._plugins:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                # Only the plugin package itself may be absent; a broken import inside it
                # must surface.
                if exc.name != module:
                    raise

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def get(self, name: str) -> Entry[T]:
        self._load_plugins()
        if name not in self._entries:
            raise ConfigError(unknown_name_message(self.kind, name, self.names()))
        return self._entries[name]


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """'unknown model 'resnet5' (did you mean 'resnet50'?); known: ...' as one line."""
    return f"unknown {kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"
