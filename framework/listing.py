"""The `list` command: installed plugins, recipes and config options, with their origin."""

from __future__ import annotations

from framework import plugins
from framework.config_sources import first_party_options, register_configs


def print_listing() -> int:
    from framework.artifacts import kinds
    from framework.data.formats import formats

    for kind, registry in {**plugins.ALL, "artifact_kinds": kinds, "data_formats": formats}.items():
        print(f"{kind} (entry-point group {registry.group}):")
        for entry in registry.entries():
            print(f"  {entry.name:<20} {_describe(entry):<55} from {entry.source}")
    options = first_party_options() + register_configs()
    recipes = [o for o in options if o.group == "recipe"]
    print("recipes (+recipe=NAME):")
    for o in recipes:
        print(f"  {o.name:<20} {o.origin:<55} from {o.provider}")
    print("config groups (GROUP=OPTION):")
    for o in sorted((o for o in options if o.group != "recipe"), key=lambda o: (o.group, o.name)):
        print(f"  {o.group + '=' + o.name:<20} {o.origin:<55} from {o.provider}")
    return 0


def _describe(entry) -> str:
    """A kind's meaning and a format's columns; otherwise where the plugin is defined."""
    loaded = entry.loaded
    if getattr(loaded, "doc", None):
        return loaded.doc
    if getattr(loaded, "columns", None):
        return "columns: " + ", ".join(loaded.columns)
    return entry.target
