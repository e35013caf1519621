"""The wheel holds every package: plugins/, conf/ and recipes/ install under their own names,
so each Python package folder must be listed in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"framework": "framework", "plugins": "framework_plugins", "conf": "framework_conf",
                "recipes": "framework_recipes"}


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in INSTALLED_AS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder"


def test_configs_and_recipes_are_package_data():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert data["framework_conf"] == ["**/*.yaml"] and data["framework_recipes"] == ["*.yaml"]
    assert "*.jsonl" in data["framework.data.builtin"]
