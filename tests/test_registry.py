"""Registry behaviour: lookup, lazy entry points, and every error by its message."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest

import framework.registry as registry_module
from framework.errors import PluginError
from framework.plugin import check_plugin_class
from framework.registry import Registry
from framework.stage import Stage, StageResult


class GoodStage(Stage):
    @dataclass
    class Config:
        rate: float = 1.0

    def run(self, inputs, ctx):
        return StageResult({}, {})


class NoRunStage(Stage):
    pass


class FakeDist:
    def __init__(self, name):
        self.name = name


def fake_entry_points(points):
    """Replace importlib.metadata.entry_points in the registry with (name, value, dist) rows."""

    def entry_points(group):
        out = []
        for name, value, dist in points:
            ep = EntryPoint(name, value, group)
            ep = ep._for(FakeDist(dist)) if hasattr(ep, "_for") else ep
            out.append(ep)
        return out

    return entry_points


@pytest.fixture
def make_registry(monkeypatch):
    def make(points):
        monkeypatch.setattr(registry_module, "entry_points", fake_entry_points(points))
        return Registry("stage", "framework.stages", Stage, check_plugin_class("stage", Stage))

    return make


def test_entry_points_load_lazily_with_their_distribution(make_registry):
    reg = make_registry([("good", f"{__name__}:GoodStage", "acme-plugins")])
    entry = reg.entries()[0]
    assert (entry.name, entry.source, entry.loaded) == ("good", "acme-plugins", None)
    assert reg.get("good") is GoodStage
    assert reg.entries()[0].loaded is GoodStage


def test_unknown_name_gives_closest_match_available_names_and_group(make_registry):
    reg = make_registry([("sft", f"{__name__}:GoodStage", "a"), ("reward_model", f"{__name__}:GoodStage", "a")])
    with pytest.raises(PluginError) as err:
        reg.get("sfft")
    message = str(err.value)
    assert "Unknown stage plugin 'sfft'" in message
    assert "Did you mean 'sft'?" in message
    assert "Available: reward_model, sft" in message
    assert "'framework.stages'" in message


def test_duplicate_names_across_distributions_fail(make_registry):
    reg = make_registry([("sft", "a.mod:A", "dist-one"), ("sft", "b.mod:B", "dist-two")])
    with pytest.raises(PluginError, match=r"Duplicate stage plugin name 'sft'.*dist-one.*dist-two"):
        reg.names()


def test_registering_a_taken_name_fails(make_registry):
    reg = make_registry([("sft", f"{__name__}:GoodStage", "rlhf-framework")])
    with pytest.raises(PluginError, match="Duplicate stage plugin name 'sft'.*rlhf-framework"):
        reg.register("sft", GoodStage)


def test_broken_plugin_names_its_distribution_and_the_import_error(make_registry):
    reg = make_registry([("broken", "no_such_module_xyz.stages:Thing", "acme-broken")])
    with pytest.raises(PluginError) as err:
        reg.get("broken")
    message = str(err.value)
    assert "distribution 'acme-broken'" in message
    assert "ModuleNotFoundError" in message and "no_such_module_xyz" in message


def test_plugin_not_implementing_the_interface_is_rejected(make_registry):
    reg = make_registry([("norun", f"{__name__}:NoRunStage", "acme")])
    with pytest.raises(PluginError, match=r"'norun' from acme does not implement run of Stage"):
        reg.get("norun")
    reg2 = make_registry([("notastage", f"{__name__}:FakeDist", "acme")])
    with pytest.raises(PluginError, match="not a subclass of framework.stage.Stage"):
        reg2.get("notastage")


def test_plugin_named_explicitly_by_module_path(make_registry):
    reg = make_registry([])
    assert reg.get(f"{__name__}:GoodStage") is GoodStage
    with pytest.raises(PluginError, match="failed to import"):
        reg.get("tests_nowhere.mod:Missing")


def test_first_party_plugins_are_registered_through_entry_points():
    from framework import plugins

    sources = {e.name: e.source for e in plugins.stages.entries()}
    assert sources["sft"] == sources["reward_model"] == "rlhf-framework"
    assert plugins.reward_sources.entries()[0].source == "rlhf-framework"


def test_malformed_entries_of_the_open_registries_are_named():
    """A plugin package's artifact kind, data format or reward function that is not the right
    object (or is registered under another name) fails when it registers, naming it."""
    from framework.artifacts import ArtifactKind, kinds
    from framework.data.formats import DataFormat, formats
    from framework.errors import PluginError
    from framework.plugins import reward_functions

    with pytest.raises(PluginError, match=r"The artifact kind 'snippets' from registered is "
                                          r"'snippets', not a framework\.artifacts\.ArtifactKind"):
        kinds.register("snippets", "snippets")
    with pytest.raises(PluginError, match=r"registered as 'labels' .* is named 'label'; the "
                                          r"entry-point name and ArtifactKind\.name must agree"):
        kinds.register("labels", ArtifactKind("label"))
    with pytest.raises(PluginError, match=r"is demonstrations\.qa; name its entry point KIND\.FORMAT"):
        formats.register("qa", DataFormat("demonstrations", "qa", ("q", "a"), "m:f"))
    with pytest.raises(PluginError, match=r"The reward function 'n' from registered is 3, not a "
                                          r"function f\(prompt, response\) -> float"):
        reward_functions.register("n", 3)
    assert "snippets" not in kinds and "labels" not in kinds and "n" not in reward_functions
