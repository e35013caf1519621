"""Where config groups and recipes come from.

- `conf/` (installed as `framework_conf`) is Hydra's primary config directory.
- `recipes/` (installed as `framework_recipes`) holds the options of the `recipe` group.
- Third-party distributions add config-group options through the entry-point group
  `framework.config`: the entry point's value names a package whose files `GROUP/NAME.yaml`
  become options of GROUP (e.g. `recipe/my_recipe.yaml`, `model/my_model.yaml`).

Recipes and third-party options are stored in Hydra's ConfigStore with their provider, so
`--info`, `--cfg` and overrides treat them like any other option.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import PurePosixPath

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from framework.errors import PluginError
from framework.pipeline.schema import RootConfig

CONFIG_ENTRY_POINT_GROUP = "framework.config"
FIRST_PARTY = "rlhf-framework"


@dataclass
class ConfigOption:
    group: str
    name: str
    provider: str
    origin: str


_registered: list[ConfigOption] = []


def primary_config_path() -> str:
    return "pkg://framework_conf"


def first_party_options() -> list[ConfigOption]:
    """Options of conf/ (the primary directory) for listing."""
    root = importlib.resources.files("framework_conf")
    return [ConfigOption(str(PurePosixPath(rel).parent), PurePosixPath(rel).stem, FIRST_PARTY,
                         f"conf/{rel}") for rel in _yaml_files(root) if "/" in rel]


def register_configs() -> list[ConfigOption]:
    """Store the schema, the recipes and third-party options in the ConfigStore (once)."""
    if _registered:
        return _registered
    store = ConfigStore.instance()
    store.store(name="schema", node=RootConfig, provider=FIRST_PARTY)
    recipes = importlib.resources.files("framework_recipes")
    for rel in _yaml_files(recipes):
        if "/" not in rel:
            _store(store, "recipe", rel, recipes / rel, FIRST_PARTY, f"recipes/{rel}")
    for ep in entry_points(group=CONFIG_ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        try:
            root = importlib.resources.files(ep.value)
        except Exception as exc:
            raise PluginError(
                f"The config package {ep.value!r} of distribution {dist!r} (entry-point group "
                f"{CONFIG_ENTRY_POINT_GROUP!r}) failed to import: {type(exc).__name__}: {exc}."
            ) from exc
        for rel in _yaml_files(root):
            if "/" in rel:
                group = str(PurePosixPath(rel).parent)
                _store(store, group, PurePosixPath(rel).name, root / rel, dist, f"{ep.value}/{rel}")
    return _registered


def _store(store, group, filename, resource, provider, origin) -> None:
    text = resource.read_text(encoding="utf-8")
    name = PurePosixPath(filename).stem
    package = _package_header(text) or ("_global_" if group == "recipe" else None)
    try:
        node = OmegaConf.create(text) if text.strip() else OmegaConf.create({})
    except yaml.YAMLError as exc:  # name the file, not "<unicode string>"
        if getattr(exc, "problem_mark", None) is not None:
            exc.problem_mark.name = f"{origin} (from {provider})"
        raise
    store.store(group=group, name=name, node=node, package=package, provider=provider)
    _registered.append(ConfigOption(group, name, provider, origin))


def _package_header(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# @package"):
            return line.split(None, 2)[2].strip()
        if line and not line.startswith("#"):
            break
    return None


def _yaml_files(root, prefix: str = "") -> list[str]:
    found = []
    for child in sorted(root.iterdir(), key=lambda c: c.name):
        if child.is_dir() and not child.name.startswith(("_", ".")):
            found += _yaml_files(child, f"{prefix}{child.name}/")
        elif child.name.endswith(".yaml"):
            found.append(prefix + child.name)
    return found
