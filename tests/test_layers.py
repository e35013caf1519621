"""The core's import layers: a module imports only from its own layer or the ones below, and no
core module imports a plugin (plugins describe themselves through hooks instead)."""

from __future__ import annotations

import ast
from pathlib import Path

FRAMEWORK = Path(__file__).resolve().parents[1] / "framework"

# Lowest first. A unit is a top-level module or package of `framework`, or a named submodule.
LAYERS = [
    {"errors", "common"},  # cross-cutting helpers every layer may use
    {"registry", "artifacts", "plugin", "plugin_spec"},  # the plugin machinery
    {"hardware"},
    {"models"},
    {"data"},
    {"packing", "rollout", "memory", "stage", "reward_source", "optimizer", "trl", "labeling"},
    {"evaluation"},  # uses rollout
    {"plugins"},  # the registries of the three interfaces
    {"pipeline", "config_sources"},
    {"report", "serving"},  # read run directories; serve a reward source
    {"memory.command", "listing", "cli", "__main__", "__init__"},  # commands
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    parts = module.split(".")[1:]  # drop "framework"
    if not parts:
        return "__init__"
    dotted = ".".join(parts[:2])
    return dotted if dotted in LAYER else parts[0]


def imports(path: Path) -> list[str]:
    """Modules imported at run time (annotations-only imports under TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "framework":
                found += [f"framework.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_every_unit_has_a_layer():
    units = {unit_of(".".join(("framework", *p.relative_to(FRAMEWORK).with_suffix("").parts)))
             for p in FRAMEWORK.rglob("*.py")}
    assert units - set(LAYER) == set(), "give each new module a layer in LAYERS"


def test_no_import_runs_up_the_layers():
    upward = []
    for path in sorted(FRAMEWORK.rglob("*.py")):
        module = ".".join(("framework", *path.relative_to(FRAMEWORK).with_suffix("").parts))
        source = unit_of(module.removesuffix(".__init__"))
        for target in imports(path):
            if target.startswith("framework_plugins"):
                upward.append(f"{module} imports the plugin {target}")
            elif target.startswith("framework.") and target != "framework":
                if LAYER[unit_of(target)] > LAYER[source]:
                    upward.append(f"{module} ({source}) imports {target} ({unit_of(target)})")
    assert upward == []
