"""The `adapter` config group at planning time: one setting for every stage that trains weights,
per-stage overrides, errors with their config paths, re-runs when it changes, and the memory
planner reading it. No weights load here."""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from framework import plugins
from framework.artifacts import MODEL, Artifact, Port
from framework.config_sources import register_configs
from framework.errors import ConfigError
from framework.models.adapters import ADAPTER_KINDS, AdapterConfig, AdapterOverride
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.stage import Stage, StageResult

# Plans with fake hub ids that never load (conftest.hub_cache).
pytestmark = pytest.mark.usefixtures("hub_cache")

register_configs()


def compose_with(*overrides):
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def problems(cfg):
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    return err.value.problems


def test_one_override_turns_lora_on_for_every_stage_that_trains():
    plan = {p.name: p for p in build_plan(compose_with(
        "+recipe=instructgpt", "adapter=lora", "adapter.rank=8", "stages.rl.adapter.kind=none"))}
    assert plan["sft"].adapter == AdapterConfig(kind="lora", rank=8)
    assert plan["reward_model"].adapter == plan["sft"].adapter
    assert plan["rl"].adapter.kind == "none"
    # the effective adapter is hashed with the stage: changing it re-runs the stage
    assert plan["sft"].node["adapter"]["rank"] == 8
    assert "adapter" not in plan["rl"].node  # full fine-tuning hashes as before adapters existed


def test_a_stage_override_changes_only_that_stage():
    plan = {p.name: p for p in build_plan(compose_with(
        "+recipe=instructgpt", "stages.reward_model.adapter.kind=lora",
        "stages.reward_model.adapter.target_modules=[q_proj,v_proj]"))}
    assert plan["sft"].adapter.kind == "none" and "adapter" not in plan["sft"].node
    assert plan["reward_model"].adapter == AdapterConfig(kind="lora",
                                                         target_modules=["q_proj", "v_proj"])


def test_ppo_with_adapters_needs_its_critic_on_the_shared_base():
    ppo = "stages.rl.params.optimizer.params"
    assert problems(compose_with("+recipe=instructgpt", "adapter=lora")) == [
        f"{ppo}.value_init=reward_model: with adapter kind 'lora' the value model is an adapter "
        f"on the policy's base, so it cannot start from the reward model; set "
        f"{ppo}.value_init=policy, or stages.rl.adapter.kind=none to train the RL stage's full "
        f"weights."]
    plan = build_plan(compose_with("+recipe=instructgpt", "adapter=lora", f"{ppo}.value_init=policy"))
    assert {p.name: p.adapter.kind if p.adapter else None for p in plan} == {
        "sft": "lora", "reward_model": "lora", "rl": "lora", "evaluate": None}  # trains nothing


def test_bad_values_name_the_node_that_set_them():
    assert problems(compose_with("+recipe=instructgpt", "adapter=lora", "adapter.rank=0",
                                 "stages.rl.adapter.kind=none")) == [
        "adapter.rank: must be >= 1, got 0."]  # reported once, not once per stage
    (problem,) = problems(compose_with("+recipe=instructgpt", "stages.sft.adapter.kind=lora",
                                       "stages.sft.adapter.dropout=1.5"))
    assert problem == "stages.sft.adapter.dropout: must be in [0, 1), got 1.5."
    (problem,) = problems(compose_with("+recipe=instructgpt", "stages.sft.adapter.kind=dora"))
    assert problem == "stages.sft.adapter.kind: 'dora' is not one of none, lora, qlora."
    (problem,) = problems(compose_with("+recipe=instructgpt", "adapter=lora",
                                       "adapter.target_modules=7", "stages.rl.adapter.kind=none"))
    assert problem.startswith("adapter.target_modules: 7 is neither 'all-linear' nor a list")


@pytest.mark.parametrize("overrides,where", [
    (["adapter=qlora", "stages.rl.adapter.kind=none"], "adapter"),
    (["stages.sft.adapter.kind=qlora"], "stages.sft.adapter"),
])
def test_qlora_without_bitsandbytes_fails_at_planning_with_the_install_command(
        monkeypatch, overrides, where):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    assert problems(compose_with("+recipe=instructgpt", *overrides)) == [
        f"{where}: kind=qlora loads the base in 4 bits with bitsandbytes, which is not installed. "
        f"Install it with `pip install rlhf-framework[qlora]`, or use adapter=lora."]
    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert any(dep.startswith("bitsandbytes") for dep in extras["qlora"])


class RecordsContext(Stage):
    inputs = {"model": Port((MODEL,))}
    outputs = {"model": MODEL}
    adapter_kinds = ADAPTER_KINDS
    seen: dict = {}

    def run(self, inputs, ctx):
        RecordsContext.seen[ctx.name] = ctx.adapter
        path = ctx.output_dir / "out.json"
        path.write_text("{}")
        return StageResult({}, {"model": Artifact(MODEL, str(path))})


class TrainsNothing(RecordsContext):
    adapter_kinds = ()


@pytest.fixture
def recording_stages():
    plugins.stages.register("records", RecordsContext)
    plugins.stages.register("trains_nothing", TrainsNothing)
    RecordsContext.seen = {}
    yield
    plugins.stages.unregister("records")
    plugins.stages.unregister("trains_nothing")


def run_config(adapter, stages):
    from framework.pipeline.schema import RootConfig

    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": "some/hub-model"}, "adapter": adapter, "stages": stages})


def test_the_runner_hands_each_stage_its_adapter_and_reruns_when_it_changes(
        recording_stages, tmp_path):
    stages = {"a": {"plugin": "records", "inputs": {"model": "model"},
                    "adapter": {"rank": 4}},
              "b": {"plugin": "trains_nothing", "inputs": {"model": "a.model"}}}
    summary = run_pipeline(run_config({"kind": "lora"}, stages), tmp_path, "test")
    assert RecordsContext.seen == {"a": AdapterConfig(kind="lora", rank=4), "b": None}
    assert [s["status"] for s in summary["stages"].values()] == ["done", "done"]
    again = run_pipeline(run_config({"kind": "lora"}, stages), tmp_path, "test")
    assert [s["status"] for s in again["stages"].values()] == ["skipped", "skipped"]
    changed = run_pipeline(run_config({"kind": "lora", "alpha": 64}, stages), tmp_path, "test")
    assert [s["status"] for s in changed["stages"].values()] == ["done", "done"]


def test_an_adapter_override_on_a_stage_that_trains_nothing_is_an_error(recording_stages):
    stages = {"b": {"plugin": "trains_nothing", "inputs": {"model": "model"},
                    "adapter": {"kind": "lora"}}}
    assert problems(run_config({}, stages)) == [
        "stages.b.adapter: stage plugin 'trains_nothing' trains no model weights, so adapters do "
        "not apply to it; remove stages.b.adapter."]


def test_override_schema_mirrors_the_adapter_schema():
    assert ([f.name for f in dataclasses.fields(AdapterOverride)]
            == [f.name for f in dataclasses.fields(AdapterConfig)])


def test_compute_dtype_follows_adapter_then_hardware_then_model():
    from framework.models import ModelConfig
    from framework.models.adapters import compute_dtype

    qlora = AdapterConfig(kind="qlora")
    assert compute_dtype(qlora, ModelConfig(dtype="float16")) == "float16"
    assert compute_dtype(qlora, ModelConfig(dtype="auto")) == "float32"
    from framework.hardware.config import HardwareConfig

    gpu_bf16 = HardwareConfig(use_cpu=False, mixed_precision="bf16")
    assert compute_dtype(qlora, ModelConfig(), gpu_bf16) == "bfloat16"
    assert compute_dtype(qlora, ModelConfig(), HardwareConfig(mixed_precision="no")) == "float32"
    assert compute_dtype(AdapterConfig(kind="qlora", compute_dtype="fp16"), ModelConfig(),
                         gpu_bf16) == "float16"


def test_memory_planner_reads_the_adapter_group(capsys):
    from framework.memory.command import main as memory_main

    assert memory_main(["+recipe=instructgpt", "adapter=qlora", "adapter.rank=8",
                        "stages.rl.adapter.kind=none", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["adapter"]["kind"], report["adapter"]["rank"]) == ("qlora", 8)
    sft, rm, rl, evaluate = report["stages"]
    assert "frozen base weights (NF4 + double quant)" in " ".join(c["name"] for c in sft["components"])
    assert rl["workload"]["adapter"] == "none (full fine-tuning)"
    assert any(c["name"] == "reference weights (frozen)" for c in rl["components"])
    assert evaluate["components"][1]["note"].endswith("adapters merged")  # full weights anyway
    # a flag overrides the config for every stage
    assert memory_main(["+recipe=instructgpt", "adapter=qlora", "--adapter", "lora", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["adapter"]["kind"] == "lora"
    assert all("adapter" not in s["workload"] for s in report["stages"])
