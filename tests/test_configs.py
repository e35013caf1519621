"""Every recipe and every config-group option composes, validates and plans (no weights load)."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from framework.config_sources import first_party_options, register_configs
from framework.errors import ConfigError
from framework.pipeline.plan import build_plan

# The hh_rlhf recipe and data option read a hub data set: planned as if it were cached.
pytestmark = pytest.mark.usefixtures("hub_cache")

register_configs()
OPTIONS = first_party_options() + [o for o in register_configs() if o.provider == "rlhf-framework"]
RECIPES = sorted(o.name for o in OPTIONS if o.group == "recipe")
GROUP_OPTIONS = sorted((o.group, o.name) for o in OPTIONS if o.group != "recipe")


def compose_with(*overrides):
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_there_is_something_to_check():
    assert "instructgpt" in RECIPES
    assert ("model", "smollm2") in GROUP_OPTIONS and ("data", "builtin") in GROUP_OPTIONS


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_and_plans(recipe):
    cfg = compose_with(f"+recipe={recipe}")
    plan = build_plan(cfg)
    assert plan, f"recipe {recipe} has no stages"


@pytest.mark.parametrize("recipe,group_option", list(itertools.product(RECIPES, GROUP_OPTIONS)))
def test_every_group_option_composes_with_every_recipe(recipe, group_option):
    group, option = group_option
    cfg = compose_with(f"+recipe={recipe}", f"{group}={option}")
    if group == "adapter":  # the rl stage trains full weights until PPO takes adapters
        rl = [f"stages.{n}.adapter.kind=none" for n, s in cfg.stages.items() if s.plugin == "rl"]
        rl += [f"rounds.stages.{n}.adapter.kind=none" for n, s in cfg.rounds.stages.items()
               if s.plugin == "rl"]
        cfg = compose_with(f"+recipe={recipe}", f"{group}={option}", *rl)
    assert cfg[group] is not None
    if not cfg.model.name_or_path.startswith("embedded:") and group == "model":
        return  # a hub model: planning would only add the network check
    if group == "hardware":  # whether this machine has its GPUs and libraries is its own check
        try:
            build_plan(cfg)
        except ConfigError as exc:
            assert all(p.startswith("hardware.") for p in exc.problems), exc.problems
        return
    build_plan(cfg)


def test_instructgpt_wires_reward_model_to_the_sft_output():
    plan = {p.name: p for p in build_plan(compose_with("+recipe=instructgpt"))}
    assert list(plan)[:2] == ["sft", "reward_model"]
    assert (plan["reward_model"].inputs["model"].stage, plan["reward_model"].inputs["model"].output) == ("sft", "model")


def test_unknown_keys_and_wrong_types_fail_at_composition():
    with pytest.raises(ConfigCompositionException, match="model.foo"):
        compose_with("+recipe=instructgpt", "model.foo=1")
    with pytest.raises(ConfigCompositionException, match="seed"):
        compose_with("+recipe=instructgpt", "seed=abc")
    with pytest.raises(ConfigCompositionException, match="eval_fraction"):
        compose_with("+recipe=instructgpt", "data.prompts.eval_fraction=lots")


def test_unknown_recipe_fails_listing_the_options():
    with pytest.raises(ConfigCompositionException, match="recipe/instructgpx"):
        compose_with("+recipe=instructgpx")


def test_bad_trainer_argument_fails_at_planning_with_its_path():
    cfg = compose_with("+recipe=instructgpt", "+stages.sft.params.args.learning_rat=0.1")
    with pytest.raises(ConfigError, match=r"stages\.sft\.params\.args.*learning_rat"):
        build_plan(cfg)
