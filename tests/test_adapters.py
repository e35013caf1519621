"""LoRA and QLoRA in the SFT and reward-model stages: only the adapter trains, the artifact is an
adapter on a base, and the next stage (and the reward source) consume it."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from framework.artifacts import COMPARISONS, MODEL, REWARD_MODEL, Artifact
from framework.data import DataSourceConfig
from framework.data.config import data_artifact
from framework.models import ModelConfig
from framework.models.adapter_models import CAUSAL_LM, SEQ_CLS, load_merged
from framework.models.adapters import AdapterConfig
from framework.stage import StageContext
from framework_plugins.stages.reward_model import RewardModelStage
from framework_plugins.reward_sources.reward_model import RewardModelReward
from framework_plugins.stages.sft import SFTStage, SFTStageConfig

pytest.importorskip("peft")
SFT_ARGS = {"gradient_checkpointing": False, "per_device_train_batch_size": 4, "max_steps": 4,
            "learning_rate": 5e-2, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "warmup_steps": 0}
RM_ARGS = {"gradient_checkpointing": False, "per_device_train_batch_size": 6,
           "per_device_eval_batch_size": 6, "max_steps": 4, "learning_rate": 5e-2,
           "max_length": 96, "save_strategy": "no", "report_to": "none",
           "dataloader_pin_memory": False}


@pytest.fixture
def trained(monkeypatch):
    """Each Trainer.train() call: (model, its parameters before training)."""
    from transformers import Trainer

    runs, original = [], Trainer.train

    def train(self, *args, **kwargs):
        before = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        runs.append((self.model, before))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", train)
    return runs


def assert_only_adapter_trained(model, before, heads=()):
    """Base weights (4-bit ones included) bit-identical and frozen; every LoRA B (zero at
    initialization) and every trained head moved."""
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapter = {n for n in before if "lora_" in n or any(f"{h}.modules_to_save" in n for h in heads)}
    assert trainable == adapter and moved <= adapter, sorted(moved - adapter)[:5]
    lora_b = {n for n in adapter if "lora_B" in n}
    assert lora_b and lora_b <= moved
    for head in heads:
        assert any(f"{head}.modules_to_save" in n for n in moved), f"{head} did not train"


def assert_adapter_folder(location, heads=()):
    files = {p.name for p in __import__("pathlib").Path(location).iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    assert not any(f.startswith("model") and f.endswith(".safetensors") for f in files)
    keys = load_file(f"{location}/adapter_model.safetensors")
    assert all("lora_" in k or any(h in k for h in heads) for k in keys), sorted(keys)[:5]


def demonstrations(tmp_path):
    pairs = [("Capital of France?", "Paris."), ("Two plus two?", "Four."),
             ("Color of the sky?", "Blue."), ("Opposite of hot?", "Cold.")]
    path = tmp_path / "demos.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs * 2))
    return data_artifact(DataSourceConfig(path=str(path)))


def rankings(tmp_path):
    rng, words = random.Random(0), "apple river stone cloud maple tiger lemon piano".split()
    rows = [{"prompt": f"Name things ({i}).",
             "responses": [f"purple {' '.join(rng.sample(words, 2))}", " ".join(rng.sample(words, 2)),
                           f"{' '.join(rng.sample(words, 2))} rotten"]} for i in range(12)]
    path = tmp_path / "rankings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = DataSourceConfig(kind=COMPARISONS, path=str(path), eval_fraction=0.25, seed=0)
    return data_artifact(source)


def context(tmp_path, name, kind, **adapter):
    return StageContext(name=name, output_dir=tmp_path / name, run_dir=tmp_path, seed=0,
                        model=ModelConfig(), adapter=AdapterConfig(kind=kind, rank=4, alpha=8,
                                                                   dropout=0.0, **adapter))


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_sft_then_reward_model_train_adapters_that_the_next_stage_consumes(
        kind, tiny_model_dir, tmp_path, trained):
    if kind == "qlora":
        pytest.importorskip("bitsandbytes")
    base = Artifact(MODEL, str(tiny_model_dir))

    sft = SFTStage(SFTStageConfig(args=SFT_ARGS)).run(
        {"model": base, "data": demonstrations(tmp_path)},
        context(tmp_path, "sft", kind, export_merged=kind == "lora"))
    model, before = trained[0]
    if kind == "qlora":  # the base really is 4-bit NF4 with double quantization
        q_proj = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer
        assert type(q_proj).__name__ == "Linear4bit"
        assert q_proj.weight.quant_state.quant_type == "nf4" and q_proj.weight.quant_state.nested
        # adapters in the compute dtype (model.dtype here), not TRL's bfloat16
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert_only_adapter_trained(model, before)
    artifact = sft.artifacts["model"]
    assert artifact.kind == MODEL and artifact.meta["adapter"] == kind
    assert artifact.meta["base"] == str(tiny_model_dir)
    assert_adapter_folder(artifact.location)

    # The RM starts from the SFT adapter merged into its base ...
    rm = RewardModelStage(RewardModelStage.parse_config({"args": RM_ARGS}, "stages.rm.params"))
    result = rm.run({"model": artifact, "data": rankings(tmp_path)}, context(tmp_path, "rm", kind))
    start = tmp_path / "rm" / "start_model"
    merged_sft = load_merged(artifact, ModelConfig(), CAUSAL_LM)
    from transformers import AutoModelForCausalLM

    started = AutoModelForCausalLM.from_pretrained(start)
    for (name, p), q in zip(merged_sft.state_dict().items(), started.state_dict().values()):
        assert torch.equal(p, q), name
    untouched = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(started.state_dict()[q_proj], untouched.state_dict()[q_proj])

    # ... and trains an adapter and its score head only.
    rm_model, rm_before = trained[1]
    assert_only_adapter_trained(rm_model, rm_before, heads=("score",))
    rm_artifact = result.artifacts["model"]
    assert rm_artifact.kind == REWARD_MODEL and rm_artifact.meta == {"adapter": kind,
                                                                    "base": str(start)}
    assert_adapter_folder(rm_artifact.location, heads=("score",))
    assert 0 <= result.metrics["eval_accuracy"] <= 1 and result.metrics["eval_pairs"] == 9

    # The reward source scores with base + adapter: the same scores as the trained model
    # (lora: merged into the base; qlora: unmerged on the same 4-bit base it trained on).
    reward = RewardModelReward(RewardModelReward.parse_config({"max_length": 96}, "reward"))
    reward.setup({"reward_model": rm_artifact}, device="cpu", model_cfg=ModelConfig())
    prompts, responses = ["Name things (0)."] * 2, ["purple apple river", "stone cloud rotten"]
    scores = reward.raw_scores(prompts, responses)
    rm_model.eval()
    with torch.no_grad():
        trained_scores = [rm_model(input_ids=torch.tensor([reward.encode(p, r)])).logits.item()
                          for p, r in zip(prompts, responses)]
    assert scores == pytest.approx(trained_scores, abs=1e-4)
    if kind == "qlora":  # scored on a 4-bit base, as trained, not merged into full weights
        assert any(type(m).__name__ == "Linear4bit" for m in reward.model.modules())

    if kind == "lora":  # export_merged: a normal full checkpoint, equal to base + adapter
        merged_dir = tmp_path / "sft" / "merged"
        assert artifact.meta["merged"] == str(merged_dir)
        assert (merged_dir / "model.safetensors").exists()
        assert not (merged_dir / "adapter_config.json").exists()
        exported = AutoModelForCausalLM.from_pretrained(merged_dir)
        for (name, p), q in zip(merged_sft.state_dict().items(), exported.state_dict().values()):
            assert torch.equal(p, q), name


def test_merged_weights_are_base_plus_scaled_lora_product(tiny_model_dir, tmp_path, trained):
    """W' = W + (alpha / r) B A on every targeted linear; embeddings and norms stay the base's."""
    sft = SFTStage(SFTStageConfig(args=SFT_ARGS, freeze_layers=1)).run(
        {"model": Artifact(MODEL, str(tiny_model_dir)), "data": demonstrations(tmp_path)},
        context(tmp_path, "sft", "lora", target_modules=["q_proj", "down_proj"]))
    artifact = sft.artifacts["model"]
    adapter = load_file(f"{artifact.location}/adapter_model.safetensors")
    # freeze_layers=1: the adapters sit on the top layer (of 2) only
    assert {k.split(".layers.")[1].split(".")[0] for k in adapter} == {"1"}
    assert len(adapter) == 2 * 2  # A and B of q_proj and down_proj

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    merged = load_merged(artifact, ModelConfig(), CAUSAL_LM).state_dict()
    changed = set()
    for name, weight in merged.items():
        stem = name.removesuffix(".weight")
        a = adapter.get(f"base_model.model.{stem}.lora_A.weight")
        if a is None:
            assert torch.equal(weight, base[name]), name
            continue
        b = adapter[f"base_model.model.{stem}.lora_B.weight"]
        torch.testing.assert_close(weight, base[name] + (8 / 4) * b @ a)
        changed.add(stem)
    assert changed == {"model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"}


def test_unknown_target_module_names_the_choices(tiny_model_dir, tmp_path):
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^adapter\.target_modules: \['qproj'\] name no linear "
                                          r"layer of LlamaForCausalLM; .*q_proj"):
        SFTStage(SFTStageConfig(args=SFT_ARGS)).run(
            {"model": Artifact(MODEL, str(tiny_model_dir)), "data": demonstrations(tmp_path)},
            context(tmp_path, "sft", "lora", target_modules=["qproj"]))


def test_reward_source_refuses_a_causal_lm_adapter(tiny_model_dir, tmp_path):
    from framework.errors import ConfigError

    sft = SFTStage(SFTStageConfig(args=dict(SFT_ARGS, max_steps=1))).run(
        {"model": Artifact(MODEL, str(tiny_model_dir)), "data": demonstrations(tmp_path)},
        context(tmp_path, "sft", "lora"))
    with pytest.raises(ConfigError, match=r"is a CAUSAL_LM adapter, but a SEQ_CLS model is needed"):
        load_merged(sft.artifacts["model"], ModelConfig(), SEQ_CLS, "stages.rl.inputs.reward_model")


def test_a_4bit_base_computes_the_same_in_every_mode_and_order(tiny_model_dir):
    """bitsandbytes repacks a 4-bit weight in place on its first eval-mode no-grad forward on
    CPUs with AVX512-BF16, and then computes every forward with another kernel. The framework
    turns that off (keep_one_4bit_kernel): a rollout (eval, no grad) must not change what the
    training forward computes, on any CPU."""
    pytest.importorskip("bitsandbytes")
    from framework.models.adapter_models import load_for_training

    model, _ = load_for_training(str(tiny_model_dir), CAUSAL_LM, ModelConfig(),
                                 AdapterConfig(kind="qlora"))
    x = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        first_train = model.train()(x).logits
        evaluated = model.eval()(x).logits
        train_after_eval = model.train()(x).logits
    assert torch.equal(first_train, evaluated) and torch.equal(first_train, train_after_eval)
    assert not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in model.modules())
