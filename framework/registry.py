"""A generic registry per plugin kind, filled from entry points of installed distributions.

First-party and third-party plugins register the same way: an entry point in the group
`framework.<kind>` of some installed distribution, e.g. in pyproject.toml::

    [project.entry-points."framework.stages"]
    sft = "framework_plugins.stages.sft:SFTStage"

Entry points are only imported on first `get()`, so listing plugins imports no heavy backend.
Plugins may also be registered directly (`registry.register(name, cls)`), e.g. in tests.
"""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Generic, Optional, TypeVar

from framework.errors import PluginError

T = TypeVar("T")
# "package.module:Class" (dotted identifiers on both sides): what a config may name explicitly.
MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass
class Entry:
    name: str
    target: str  # "module:attr" for lazy entries, or repr of a registered object
    source: str  # distribution name, "module" for config-named plugins, or "registered"
    loaded: object = None


class Registry(Generic[T]):
    """Plugins of one kind: name -> class, with lazy loading and helpful errors."""

    def __init__(self, kind: str, group: str, base: Optional[type] = None,
                 check: Optional[Callable] = None):
        self.kind = kind  # singular, for messages: "stage"
        self.base = base
        self.group = group  # entry-point group, e.g. "framework.stages"
        self._check = check
        self._entries: dict[str, Entry] = {}
        self._scanned = False

    # -- filling ---------------------------------------------------------------------------

    def register(self, name: str, obj: T = None, *, source: str = "registered"):
        """Register `obj` under `name`; usable as a decorator when `obj` is omitted."""

        def add(target):
            label = getattr(target, "__qualname__", None) or type(target).__qualname__
            validated = self._validated(name, target, source)  # a rejected object is not kept
            self._add(Entry(name, f"{getattr(target, '__module__', '?')}:{label}", source,
                            validated))
            return target

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def _add(self, entry: Entry) -> None:
        self._scan()
        if entry.name in self._entries:
            old = self._entries[entry.name]
            raise PluginError(
                f"Duplicate {self.kind} plugin name {entry.name!r}: registered by {old.source} "
                f"({old.target}) and by {entry.source} ({entry.target}). Rename one of them in "
                f"its entry-point group {self.group!r}."
            )
        self._entries[entry.name] = entry

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        seen: dict[str, Entry] = {}
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            entry = Entry(ep.name, ep.value, dist)
            if ep.name in seen and seen[ep.name].target != ep.value:
                raise PluginError(
                    f"Duplicate {self.kind} plugin name {ep.name!r} in entry-point group "
                    f"{self.group!r}: from {seen[ep.name].source} ({seen[ep.name].target}) and "
                    f"from {dist} ({ep.value}). Uninstall or rename one of them."
                )
            seen[ep.name] = entry
        self._entries.update(seen)

    # -- lookup ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._scan()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._scan()
        return name in self._entries

    def get(self, name: str) -> T:
        """The plugin class named `name`; a module path "pkg.mod:Class" also works."""
        self._scan()
        if name not in self._entries and ":" in name:
            return self._load_explicit(name)
        if name not in self._entries:
            raise PluginError(self.unknown_message(name))
        entry = self._entries[name]
        if entry.loaded is None:
            entry.loaded = self._validated(name, self._import(entry.target, entry.source), entry.source)
        return entry.loaded

    def unknown_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"Unknown {self.kind} plugin {name!r}.{hint} Available: {', '.join(names) or 'none'}. "
            f"Plugins are found in the entry-point group {self.group!r} of installed "
            f"distributions, or named explicitly as 'package.module:Class'."
        )

    def _load_explicit(self, target: str) -> T:
        """A plugin the user names explicitly in config as 'module:Class'."""
        if not MODULE_PATH.match(target):
            raise PluginError(
                f"{target!r} is not a 'package.module:Class' name. A {self.kind} plugin comes "
                f"from an installed distribution's entry point (group {self.group!r}) or from an "
                f"importable module named that way; never from a file path."
            )
        obj = self._validated(target, self._import(target, "module"), "module")
        self._entries[target] = Entry(target, target, "module", obj)
        return obj

    def _import(self, target: str, source: str):
        module_name, _, attr = target.partition(":")
        where = f"distribution {source!r}" if source not in ("module", "registered") else "config"
        try:
            obj = importlib.import_module(module_name)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        except Exception as exc:  # any import failure is reported, never skipped
            raise PluginError(
                f"The {self.kind} plugin {target!r} from {where} failed to import: "
                f"{type(exc).__name__}: {exc}. Fix or reinstall that distribution."
            ) from exc
        return obj

    def _validated(self, name: str, obj, source: str):
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise PluginError(
                f"The {self.kind} plugin {name!r} from {source} is {obj!r}, which is not a "
                f"subclass of {self.base.__module__}.{self.base.__qualname__}."
            )
        if self._check is not None:
            self._check(name, obj, source)
        return obj
