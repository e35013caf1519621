"""Nested plugin specs: reward sources declare their inputs, a recipe wires each by name, and a
plugin that holds others (an ensemble) gets its members parsed, wired and bound centrally."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict

import pytest
from omegaconf import OmegaConf

from framework import plugins
from framework.artifacts import MODEL, PROMPTS, REWARD_MODEL, Artifact, Port
from framework.errors import ConfigError, PluginError
from framework.pipeline.plan import OutputRef, build_plan
from framework.pipeline.schema import RootConfig
from framework.plugin_spec import bind, parse_spec, stage_ports
from framework.reward_source import RewardSource

# Plans with fake hub ids that never load (conftest.hub_cache).
pytestmark = pytest.mark.usefixtures("hub_cache")


class ScoresByLocation(RewardSource):
    """Scores every response with the length of its reward model's location: which artifact
    reached it is then visible in the score."""

    inputs = {"reward_model": Port((REWARD_MODEL,))}

    def setup(self, inputs, device=None, model_cfg=None):
        self.location = inputs["reward_model"].location

    def score(self, prompts, responses):
        return [float(len(self.location))] * len(responses)


class JudgeModel(RewardSource):
    """Reads a causal LM (as an LLM judge would): a port of another kind."""

    inputs = {"judge": Port((MODEL,))}

    def score(self, prompts, responses):
        return [0.0] * len(responses)


class WeightedSum(RewardSource):
    """A plugin holding others: its members are nested specs, parsed with their paths."""

    @dataclass
    class Config:
        members: Dict[str, Any] = field(default_factory=dict)
        weights: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse_config(cls, node, where):
        config = super().parse_config(node, where)
        config.members = {k: parse_spec(plugins.reward_sources, v, f"{where}.members.{k}")
                          for k, v in config.members.items()}
        return config

    def nested(self):
        return self.config.members

    def setup(self, inputs, device=None, model_cfg=None):
        for member in self.config.members.values():
            member.instance.setup(member.artifacts, device, model_cfg)

    def score(self, prompts, responses):
        total = [0.0] * len(responses)
        for name, member in self.config.members.items():
            weight = self.config.weights.get(name, 1.0)
            total = [t + weight * s for t, s in zip(total, member.instance.score(prompts, responses))]
        return total


@pytest.fixture(autouse=True)
def registered():
    names = {"by_location": ScoresByLocation, "judge_model": JudgeModel, "weighted_sum": WeightedSum}
    for name, cls in names.items():
        plugins.reward_sources.register(name, cls)
    yield
    for name in names:
        plugins.reward_sources.unregister(name)


def cfg_with(tmp_path, reward, inputs):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Q{i}"}) + "\n" for i in range(8)))
    node = {
        "model": {"name_or_path": "some/model"},
        "data": {"prompts": {"kind": "prompts", "path": str(prompts), "eval_fraction": 0.25}},
        "stages": {
            "rm_a": {"plugin": "make_rm", "inputs": {"model": "model"}},
            "rm_b": {"plugin": "make_rm", "inputs": {"model": "model"}},
            "rl": {"plugin": "rl", "inputs": {"policy": "model", "prompts": "data.prompts", **inputs},
                   "params": {"reward": reward}}},
    }
    return OmegaConf.merge(OmegaConf.structured(RootConfig), node)


@pytest.fixture(autouse=True)
def fakes():
    from fake_stages import FAKES

    plugins.stages.register("make_rm", FAKES["make_rm"])
    yield
    plugins.stages.unregister("make_rm")


ENSEMBLE = {"name": "weighted_sum", "params": {
    "members": {"a": {"name": "by_location", "inputs": {"reward_model": "rm_first"}},
                "b": {"name": "by_location", "inputs": {"reward_model": "rm_second"}}},
    "weights": {"a": 1.0, "b": 10.0}}}


def test_an_ensemble_of_two_reward_models_is_wired_by_name(tmp_path):
    cfg = cfg_with(tmp_path, ENSEMBLE, {"rm_first": "rm_a.model", "rm_second": "rm_b.model"})
    rl = {p.name: p for p in build_plan(cfg)}["rl"]
    assert rl.inputs["rm_first"] == OutputRef("rm_a", "model", REWARD_MODEL)
    assert rl.inputs["rm_second"] == OutputRef("rm_b", "model", REWARD_MODEL)
    # at run time each member gets the artifact its own port is wired to
    stage = rl.stage
    first, second = Artifact(REWARD_MODEL, "x" * 3), Artifact(REWARD_MODEL, "y" * 5)
    bind(stage.config.reward, {"rm_first": first, "rm_second": second,
                               "prompts": Artifact(PROMPTS, "p")})
    members = stage.config.reward.config.members
    assert members["a"].artifacts == {"reward_model": first}
    assert members["b"].artifacts == {"reward_model": second}
    stage.reward.setup(stage.config.reward.artifacts)
    assert stage.reward.score(["q"], ["r"]) == [3 * 1.0 + 5 * 10.0]


def test_missing_and_unused_wiring_are_named(tmp_path):
    cfg = cfg_with(tmp_path, ENSEMBLE, {"rm_first": "rm_a.model"})
    with pytest.raises(ConfigError, match=r"stages\.rl\.inputs\.rm_second: required input is not wired"):
        build_plan(cfg)
    cfg = cfg_with(tmp_path, ENSEMBLE, {"rm_first": "rm_a.model", "rm_second": "rm_b.model",
                                        "reward_model": "rm_a.model"})
    with pytest.raises(ConfigError, match=r"stages\.rl\.inputs\.reward_model: wired, but unused"):
        build_plan(cfg)


def test_a_source_reads_the_stage_input_of_its_port_name_by_default(tmp_path):
    cfg = cfg_with(tmp_path, {"name": "by_location"}, {"reward_model": "rm_b.model"})
    rl = {p.name: p for p in build_plan(cfg)}["rl"]
    assert rl.inputs["reward_model"] == OutputRef("rm_b", "model", REWARD_MODEL)


def test_a_judge_model_input_is_checked_against_its_kind(tmp_path):
    cfg = cfg_with(tmp_path, {"name": "judge_model"}, {"judge": "rm_a.model"})
    with pytest.raises(ConfigError, match=r"stages\.rl\.inputs\.judge: 'rm_a\.model' is a "
                                          r"'reward_model' artifact, but this input accepts 'model'"):
        build_plan(cfg)
    rl = {p.name: p for p in build_plan(cfg_with(tmp_path, {"name": "judge_model"}, {"judge": "model"}))}["rl"]
    assert rl.inputs["judge"].kind == MODEL


def test_bad_specs_name_their_config_path(tmp_path):
    bad_port = {"name": "weighted_sum", "params": {"members": {
        "a": {"name": "by_location", "inputs": {"reward_modle": "rm_first"}}}}}
    with pytest.raises(ConfigError, match=r"stages\.rl\.params\.reward\.params\.members\.a\.inputs\."
                                          r"reward_modle: the reward source 'by_location' has no input"):
        build_plan(cfg_with(tmp_path, bad_port, {}))
    bad_name = {"name": "weighted_sum", "params": {"members": {"a": {"name": "by_locaton"}}}}
    with pytest.raises(ConfigError, match=r"members\.a\.name: Unknown reward source plugin "
                                          r"'by_locaton'\. Did you mean 'by_location'\?"):
        build_plan(cfg_with(tmp_path, bad_name, {}))
    with pytest.raises(ConfigError, match=r"params\.reward\.wieght: .*Valid keys: name, params, inputs"):
        build_plan(cfg_with(tmp_path, {"name": "by_location", "wieght": 2}, {}))


def test_one_stage_input_feeding_ports_of_different_kinds_is_an_error():
    judge = parse_spec(plugins.reward_sources, {"name": "judge_model", "inputs": {"judge": "shared"}}, "r.judge")
    rm = parse_spec(plugins.reward_sources, {"name": "by_location", "inputs": {"reward_model": "shared"}}, "r.rm")
    ports, problems = stage_ports([judge, rm], {})
    assert "shared" not in ports
    assert problems and "stage input 'shared' feeds ports that accept no common artifact kind" in problems[0]


def test_a_plugin_with_an_unknown_artifact_kind_fails_when_it_loads():
    class Typo(RewardSource):
        inputs = {"model": Port(("reward_modle",))}

        def score(self, prompts, responses):
            return []

    with pytest.raises(PluginError, match=r"its input 'model': unknown artifact kind 'reward_modle'\. "
                                          r"Known kinds: .*framework\.artifact_kinds"):
        plugins.reward_sources.register("typo", Typo)
