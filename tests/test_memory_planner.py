"""The memory planner: formulas against hand-computed numbers (the arithmetic is in the
comments), 7B-class and SmolLM2 plans on one 24 GiB card, and the `memory` command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from framework.errors import ConfigError
from framework.memory import (
    AdapterSpec,
    HardwareSpec,
    ModelShape,
    PPOWorkload,
    TrainWorkload,
    activation_bytes,
    estimate_ppo,
    estimate_training,
    kv_cache_bytes,
    logits_bytes,
    model_shape_from_config,
)
from framework.memory.command import main as memory_main
from framework.memory.estimate import (
    NF4_BYTES,
    base_weight_bytes,
    layer_activation_bytes_per_token,
)
from framework.memory.estimate import estimate_evaluate
from framework.memory.specs import GIB, EvaluateWorkload, UnplannedStage
from framework.memory.command import stage_workloads

# A made-up shape: h=8, i=16, H=2 heads of d=4, 1 kv head (kv=4), V=32, untied, gated MLP.
TINY = ModelShape(layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, vocab=32)
# Llama-2-7B: MHA; a GQA variant with 8 kv heads.
LLAMA_7B = ModelShape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32,
                      vocab=32000, name="llama-2-7b")
LLAMA_7B_GQA = dataclasses.replace(LLAMA_7B, kv_heads=8, name="llama-7b-gqa")
# The single_gpu profile being designed: bf16, gradient checkpointing, paged 8-bit AdamW.
SINGLE_GPU = HardwareSpec(device_gb=24, dtype="bf16", gradient_checkpointing=True,
                          optimizer="paged_adamw_8bit")
QLORA = AdapterSpec(kind="qlora", rank=16, target_modules="all-linear", bits=4)


# ------------------------------------------------------------------------ parameter counts
def test_tiny_parameter_counts():
    # per layer: q 8*8=64, k 8*4=32, v 8*4=32, o 8*8=64, gate 8*16=128, up 128, down 16*8=128
    assert TINY.linear_params_per_layer == 576
    # norms 2*8 per layer * 2 layers + final 8 = 40; embeddings 32*8 = 256
    assert TINY.norm_params == 40 and TINY.embedding_params == 256
    assert TINY.backbone_params == 256 + 2 * 576 + 40 == 1448
    assert TINY.causal_lm_params == 1448 + 256 == 1704  # + untied LM head 32*8
    assert dataclasses.replace(TINY, tied_embeddings=True).causal_lm_params == 1448


def test_lora_parameter_counts():
    # r=2, r*(in+out): q 2*16=32, k 2*12=24, v 24, o 32, gate 2*24=48, up 48, down 48 -> 256/layer
    assert AdapterSpec("lora", rank=2).lora_params(TINY) == 2 * 256
    assert AdapterSpec("lora", rank=2, target_modules=("q_proj", "v_proj")).lora_params(TINY) == 2 * (32 + 24)
    # Llama-2-7B, r=16 all-linear: 4 * 16*(4096+4096) + 2 * 16*(4096+11008) + 16*(11008+4096)
    # = 524,288 + 483,328 + 241,664 = 1,249,280 per layer, * 32 = 39,976,960 (about 40M)
    assert QLORA.lora_params(LLAMA_7B) == 39_976_960
    assert LLAMA_7B.causal_lm_params == 6_738_415_616  # Llama-2-7B's published 6.74B


def test_unknown_target_module_is_an_error_naming_the_choices():
    with pytest.raises(ConfigError, match="qkv_proj.*q_proj"):
        AdapterSpec("lora", target_modules=("qkv_proj",)).lora_params(TINY)


# ------------------------------------------------------------------------------- formulas
def test_nf4_double_quant_bytes_per_param():
    # 4 bits + an 8-bit absmax per 64 + an fp32 constant per 64*256: 0.5 + 0.015625 + 0.000244...
    assert NF4_BYTES == pytest.approx(0.515869140625)
    # qlora tiny: 2 layers * 576 linear params * 0.515869... = 594.28125; the other
    # 1704 - 1152 = 552 params (embeddings, LM head, norms) at 2 bytes = 1104
    hw = HardwareSpec(dtype="bf16")
    assert base_weight_bytes(TINY, QLORA, hw, lm_head=True) == pytest.approx(594.28125 + 1104)


def test_activation_formula_by_hand():
    # a=2, sdpa: attention 2*(8 + 2*8 + 2*4) = 64; log-sum-exp 4*2 = 8; norms 2*2*8 = 32;
    # gated MLP 2*(8 + 4*16) = 144 -> 248 bytes per token per layer
    assert layer_activation_bytes_per_token(TINY, 2, seq=4, attention="sdpa") == 248
    # eager, s=4: the softmax 2*2*4 = 16 instead of 8 -> 256
    assert layer_activation_bytes_per_token(TINY, 2, seq=4, attention="eager") == 256
    # LoRA on all 7 linears, r=2: + 2*2*7 = 28
    assert layer_activation_bytes_per_token(TINY, 2, 4, "sdpa", lora_targets=7, lora_rank=2) == 276
    # 3 sequences x 4 tokens = 12 tokens; no checkpointing: 2 layers * 248 * 12 = 5952, + final
    # norm input 2*8*12 = 192 -> 6144
    assert activation_bytes(TINY, 3, 4, 2, "sdpa", checkpointing=False) == 6144
    # checkpointing: stored layer inputs 2 * 2*8*12 = 384, + one layer 248*12 = 2976, + 192
    assert activation_bytes(TINY, 3, 4, 2, "sdpa", checkpointing=True) == 384 + 2976 + 192


def test_activation_formula_reduces_to_korthikanti():
    # MHA, plain MLP with i = 4h, eager attention, dropout, 16-bit: 34*h + 5*H*s per token
    # (Korthikanti et al. 2022, eq. 1): h=64, H=4, s=16 -> 34*64 + 5*4*16 = 2176 + 320 = 2496
    gpt = ModelShape(layers=1, hidden=64, intermediate=256, heads=4, kv_heads=4, vocab=10,
                     gated_mlp=False, dropout=True)
    assert layer_activation_bytes_per_token(gpt, 2, seq=16, attention="eager") == 2496


def test_logits_and_kv_cache_by_hand():
    # 12 tokens x 32 vocab x (2 bf16 logits + 4 fp32 copy + 4 log-softmax) = 3840
    assert logits_bytes(12, 32, act=2) == 3840
    # fp32: no upcast copy -> 12*32*(4 + 4) = 3072
    assert logits_bytes(12, 32, act=4) == 3072
    # 2 (K and V) * 2 layers * 4 (1 kv head * d 4) * 10 tokens * 3 sequences * 2 bytes = 960
    assert kv_cache_bytes(TINY, sequences=3, seq=10, act=2) == 960


# ---------------------------------------------------------------------------------- stages
def bytes_of(est):
    return {c.name: c.bytes for c in est.components}


def test_full_fine_tuning_bf16_by_hand():
    hw = HardwareSpec(device_gb=1, dtype="bf16", overhead_gb=0)
    wl = TrainWorkload("sft", "sft", batch_size=3, max_length=4, gradient_checkpointing=False)
    est = estimate_training(TINY, AdapterSpec(), hw, wl)
    assert bytes_of(est) == {
        "weights": 1704 * 2,  # 3408
        "gradients": 1704 * 2,  # 3408, in the weights' dtype
        "fp32 master weights": 1704 * 4,  # 6816
        "optimizer states (adamw)": 1704 * 8,  # 13632
        "activations": 6144,  # test_activation_formula_by_hand
        "logits": 3840,  # test_logits_and_kv_cache_by_hand
    }
    assert est.peak_bytes == 37248  # 3408 + 3408 + 6816 + 13632 + 6144 + 3840
    assert est.fits


def test_sharding_divisors_by_hand():
    wl = TrainWorkload("sft", "sft", batch_size=3, max_length=4, gradient_checkpointing=False)

    def peak(sharding):
        hw = HardwareSpec(dtype="bf16", overhead_gb=0, num_devices=2, sharding=sharding)
        return estimate_training(TINY, AdapterSpec(), hw, wl).peak_bytes

    # ddp: everything replicated, + gradient buckets 3408 -> 37248 + 3408
    assert peak("ddp") == 40656
    # zero2: grads 1704, master 3408, optimizer 6816 halved; 3408 + 1704 + 3408 + 6816 + 6144 + 3840
    assert peak("zero2") == 25320
    # zero3/fsdp: weights halved too (1704), + 2 gathered layers 2 * 576 * 2 B = 2304
    assert peak("zero3") == peak("fsdp") == 1704 + 1704 + 3408 + 6816 + 6144 + 3840 + 2304 == 25920


def test_reward_model_stacks_chosen_and_rejected_and_has_no_vocab_logits():
    hw = HardwareSpec(dtype="fp32", overhead_gb=0)
    wl = TrainWorkload("rm", "reward_model", batch_size=3, max_length=4, gradient_checkpointing=False,
                       sequences_per_row=2, causal_lm=False)
    est = estimate_training(TINY, AdapterSpec(), hw, wl)
    parts = bytes_of(est)
    assert "logits" not in parts
    assert parts["weights"] == (1448 + 8) * 4  # backbone + score head Linear(8, 1)
    assert parts["activations"] == activation_bytes(TINY, 6, 4, 4, "sdpa", False)  # 2 x 3 sequences


def test_dpo_holds_a_frozen_reference_only_without_an_adapter():
    hw = HardwareSpec(device_gb=1, dtype="bf16", overhead_gb=0)
    wl = TrainWorkload("dpo", "dpo", batch_size=3, max_length=4, gradient_checkpointing=False,
                       sequences_per_row=2, frozen_reference=True)
    full = estimate_training(TINY, AdapterSpec(), hw, wl)
    parts = bytes_of(full)
    assert parts["reference weights (frozen)"] == parts["weights"] == 1704 * 2
    plain = estimate_training(TINY, AdapterSpec(), hw, dataclasses.replace(wl, frozen_reference=False))
    assert full.peak_bytes - plain.peak_bytes == 1704 * 2
    # with LoRA the reference is the base with the adapter disabled: nothing more is held
    lora = estimate_training(TINY, AdapterSpec("lora"), hw, wl)
    assert not any("reference" in name for name in bytes_of(lora))


def test_the_dpo_and_kto_stages_declare_their_reference():
    from framework_plugins.stages.dpo import DPOStage
    from framework_plugins.stages.kto import KTOStage

    for cls in (DPOStage, KTOStage):
        stage = cls(cls.parse_config({"args": {"max_length": 64}}, "params"))
        workload = stage.memory_workload("s")
        assert workload.frozen_reference and workload.sequences_per_row == 2


def test_ppo_full_fine_tuning_by_hand():
    hw = HardwareSpec(dtype="fp32", overhead_gb=0)
    wl = PPOWorkload("rl", batch_size=4, num_minibatches=2, gradient_accumulation_steps=1,
                     max_prompt_length=6, max_new_tokens=4)
    est = estimate_ppo(TINY, AdapterSpec(), hw, wl)
    parts = bytes_of(est)
    assert parts["policy weights"] == parts["reference weights (frozen)"] == 1704 * 4  # 6816
    assert parts["value model weights"] == parts["reward model weights (frozen)"] == (1448 + 9) * 4
    # trainable: policy 1704 + value backbone 1448 + head 8+1 = 3161
    assert parts["gradients"] == 3161 * 4 and parts["optimizer states (adamw)"] == 3161 * 8
    # micro-batch 4/2 = 2 sequences of 6+4 = 10 tokens, fp32, sdpa: per token per layer
    # 4*(8+16+8) + 8 + 4*2*8 + 4*(8+64) = 128 + 8 + 64 + 288 = 488; 2 layers * 488 * 20 = 19520
    # + final norm 4*8*20 = 640 -> 20160 per model; policy and value -> 40320
    assert parts["activations (policy + value)"] == 40320
    # 2 sequences x (4+1) response positions x 32 x (4 + 2*4) = 3840
    assert parts["logits (response tokens)"] == 3840
    # 2 * 2 layers * 4 * 10 tokens * 4 sequences * 4 B = 2560
    assert parts["KV cache"] == 2560
    # resident 6816*2 + 5828*2 + 25288 = 50576; train 12644 + 40320 + 3840 = 56804 (the largest
    # phase: rollout 2560 + 4*(16 + 48)*24 = 8704; scoring 4*5*32*12 + 256*40 = 17920)
    assert est.peak_phase == "train"
    assert est.peak_bytes == 50576 + 56804


def test_ppo_with_adapters_shares_one_frozen_base():
    hw = HardwareSpec(dtype="bf16", overhead_gb=0)
    wl = PPOWorkload("rl", 4, 2, 1, 6, 4)
    parts = bytes_of(estimate_ppo(TINY, AdapterSpec("lora", rank=2), hw, wl))
    assert parts["shared frozen base (bfloat16)"] == 1704 * 2
    # policy and value adapters 2 * 512 + value head 9, in fp32
    assert parts["adapters: policy, value (+ head)"] == (2 * 512 + 9) * 4
    # the reward model is loaded on its own, as the reward source loads it: a lora one merged
    # (backbone 1448 + head 9, bf16); a qlora one on its 4-bit base, unmerged
    assert parts["reward model weights (frozen)"] == (1448 + 9) * 2
    assert not any("reference" in name for name in parts)
    qlora = bytes_of(estimate_ppo(TINY, AdapterSpec("qlora", rank=2), hw, wl))
    assert "reward model: 4-bit base + adapter (frozen)" in qlora
    assert "reward model weights (frozen)" not in qlora


# ------------------------------------------------------------------- what fits on 24 GiB
@pytest.mark.parametrize("shape", [LLAMA_7B, LLAMA_7B_GQA], ids=lambda s: s.name)
@pytest.mark.parametrize("batch", [1, 2, 4])
def test_7b_qlora_sft_fits_on_24_gb(shape, batch):
    est = estimate_training(shape, QLORA, SINGLE_GPU, TrainWorkload("sft", "sft", batch, 512))
    parts = bytes_of(est)
    # Llama-2-7B: 6,476M linear params * 0.5159 B = 3.11 GiB + 262M embedding/head params * 2 B
    # = 0.49 GiB -> 3.60 GiB of frozen base; LoRA 40.0M * 4 B = 0.15 GiB, gradients 0.15 GiB,
    # 8-bit states 40.0M * 2.004 B = 0.07 GiB; at batch 4 x 512 activations 0.81 and logits
    # 2048 * 32000 * 10 B = 0.61 GiB: about 6.5 GiB with the 1 GiB overhead.
    if shape is LLAMA_7B:
        assert parts["frozen base weights (NF4 + double quant)"] / GIB == pytest.approx(3.60, abs=0.01)
        assert est.peak_bytes / GIB == pytest.approx({1: 5.41, 2: 5.77, 4: 6.48}[batch], abs=0.02)
    assert est.fits and est.peak_bytes < 8 * GIB


def test_7b_full_fine_tuning_in_fp32_does_not_fit_on_24_gb():
    hw = HardwareSpec(device_gb=24, dtype="fp32", gradient_checkpointing=True)
    est = estimate_training(LLAMA_7B, AdapterSpec(), hw, TrainWorkload("sft", "sft", 1, 512))
    parts = bytes_of(est)
    # 6,738.4M params * 4 B = 25.10 GiB of weights alone; + gradients 25.10 + AdamW 50.21
    assert parts["weights"] / GIB == pytest.approx(25.10, abs=0.01)
    assert parts["optimizer states (adamw)"] / GIB == pytest.approx(50.21, abs=0.01)
    assert est.peak_bytes / GIB == pytest.approx(101.94, abs=0.02)
    assert not est.fits
    assert est.largest.name == "optimizer states (adamw)"
    assert "adapter=lora or qlora" in est.suggestion(hw, AdapterSpec())


def test_suggestions_name_the_knob():
    wl = TrainWorkload("sft", "sft", 64, 2048, gradient_checkpointing=False)
    est = estimate_training(LLAMA_7B, QLORA, HardwareSpec(device_gb=24, dtype="bf16"), wl)
    assert not est.fits and est.largest.kind == "activations"
    assert "--gradient-checkpointing" in est.suggestion(SINGLE_GPU, QLORA)
    est = estimate_training(LLAMA_7B, QLORA, SINGLE_GPU, wl)
    assert "per_device_train_batch_size" in est.suggestion(SINGLE_GPU, QLORA)
    lora = AdapterSpec("lora")  # a 7B base in fp32: 25.1 GiB of frozen weights
    est = estimate_training(LLAMA_7B, lora, HardwareSpec(device_gb=24, dtype="fp32"),
                            TrainWorkload("sft", "sft", 1, 512))
    assert est.largest.kind == "weights" and "adapter=qlora" in est.suggestion(SINGLE_GPU, lora)
    # PPO on a 7B MHA model at 64 x 768 tokens, micro-batch 1: the KV cache (24 GiB) is the problem
    est = estimate_ppo(LLAMA_7B, QLORA, SINGLE_GPU, PPOWorkload("rl", 64, 8, 8, 512, 256))
    assert not est.fits and est.largest.kind == "kv_cache"
    assert "params.batch_size" in est.suggestion(SINGLE_GPU, QLORA)
    # at micro-batch 8 its activations; PPO does not checkpoint them, so that is not suggested
    est = estimate_ppo(LLAMA_7B, QLORA, SINGLE_GPU, PPOWorkload("rl", 64, 8, 1, 512, 256))
    assert not est.fits and est.largest.kind == "activations"
    assert "gradient_accumulation_steps" in est.suggestion(SINGLE_GPU, QLORA)
    assert "checkpointing" not in est.suggestion(SINGLE_GPU, QLORA)


def test_hardware_settings_are_checked():
    with pytest.raises(ConfigError, match="sharding=none"):
        HardwareSpec(num_devices=2)
    with pytest.raises(ConfigError, match="bfloat16"):
        HardwareSpec(dtype="float8")
    with pytest.raises(ConfigError, match="optimizer"):
        HardwareSpec(optimizer="sgd")


# ------------------------------------------------------------------- configs and recipes
def test_model_shape_from_transformers_configs():
    from transformers import GPT2Config, LlamaConfig

    llama = model_shape_from_config(LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False))
    assert llama == dataclasses.replace(LLAMA_7B_GQA, name="", head_dim=128, dtype=llama.dtype)
    gpt2 = model_shape_from_config(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100))
    assert (gpt2.hidden, gpt2.layers, gpt2.intermediate, gpt2.gated_mlp, gpt2.tied_embeddings,
            gpt2.dropout) == (64, 2, 256, False, True, True)


def test_trl_defaults_match_the_installed_trl():
    import trl

    from framework_plugins.stages.reward_model import RewardModelStage
    from framework_plugins.stages.sft import SFTStage

    for stage in (SFTStage, RewardModelStage):
        defaults = {f.name: f.default for f in dataclasses.fields(getattr(trl, stage.trl_config))}
        assert {k: defaults[k] for k in stage.planner_defaults} == stage.planner_defaults


def compose(*overrides):
    from framework.memory.command import compose as compose_config

    return compose_config(overrides)


def test_workloads_read_from_instructgpt():
    sft, rm, rl, ev = stage_workloads(compose("+recipe=instructgpt"))
    assert (sft.stage, sft.batch_size, sft.max_length, sft.sequences) == ("sft", 8, 256, 8)
    assert sft.gradient_checkpointing is True  # TRL's default; the hardware profile decides
    assert (rm.kind, rm.batch_size, rm.sequences, rm.max_length) == ("reward_model", 12, 24, 256)
    # batch 8 over 2 minibatches -> micro-batch 4; 256 prompt + 48 new tokens; ptx 1 x 96
    assert (rl.micro_batch, rl.sequence_length, rl.ptx_batch_size, rl.ptx_max_length) == (4, 304, 1, 96)
    assert rl.reward_model
    # evaluate: 24 sequences of up to 1024 prompt + 48 new tokens; the reward model scores too
    assert ev == EvaluateWorkload("evaluate", batch_size=24, max_prompt_length=1024,
                                  max_new_tokens=48, reward_models=1)


def test_evaluate_by_hand():
    hw = HardwareSpec(dtype="fp32", overhead_gb=0)
    wl = EvaluateWorkload("evaluate", batch_size=3, max_prompt_length=6, max_new_tokens=4,
                          reward_models=1)
    parts = bytes_of(estimate_evaluate(TINY, AdapterSpec(), hw, wl))
    assert parts["baseline policy weights (the KL reference)"] == 1704 * 4  # 6816
    assert parts["evaluated policy weights"] == 1704 * 4
    assert parts["reward model weights (scorer 1)"] == (1448 + 9) * 4  # 5828
    # 2 (K, V) * 2 layers * 4 (kv dim) * 10 tokens * 3 sequences * 4 B = 1920
    assert parts["KV cache"] == 1920
    # one layer's prefill: 4 B * (2*8 + 3*16) = 256 per token, x 3 x 6 prompt tokens = 4608
    assert parts["prefill workspace (1 layer)"] == 4608
    # 3 x (4+1) positions x 32 vocab x (4 logits + 3 fp32 copies * 4) = 7680
    assert parts["scoring logits (vocabulary)"] == 7680
    assert parts["scoring workspace (1 layer)"] == 256 * 3 * 10
    est = estimate_evaluate(TINY, AdapterSpec(), hw, wl)
    # resident 6816*2 + 5828 = 19460; scoring 7680 + 7680 = 15360 > sampling 1920 + 4608
    assert est.peak_phase == "scoring" and est.peak_bytes == 19460 + 15360
    # every process loads whole models: zero3 over 2 devices divides no weights here, and an
    # adapter saves nothing (the policy is merged when it loads)
    zero3 = HardwareSpec(dtype="fp32", overhead_gb=0, sharding="zero3", num_devices=2)
    lora = AdapterSpec(kind="lora", rank=2, target_modules="all-linear")
    assert estimate_evaluate(TINY, lora, zero3, wl).peak_bytes == est.peak_bytes
    assert "the stage loads full weights" in estimate_evaluate(TINY, QLORA, hw, wl).suggestion(
        hw, QLORA)
    # a local LLM judge among the scorers: one more causal LM held
    judged = estimate_evaluate(TINY, AdapterSpec(), hw, dataclasses.replace(wl, judge_models=1))
    assert bytes_of(judged)["judge model weights (scorer 1)"] == 1704 * 4
    assert judged.peak_bytes == est.peak_bytes + 1704 * 4


def test_overrides_reach_the_workloads():
    cfg = compose("+recipe=instructgpt", "stages.sft.params.args.max_length=512",
                  "stages.rl.params.optimizer.params.ptx_coef=0",
                  "stages.rl.params.reward.name=function", "~stages.rl.params.reward.params",
                  "+stages.rl.params.reward.params.function=framework.data.builtin.labeler:score")
    sft, _, rl, ev = stage_workloads(cfg)
    assert sft.max_length == 512 and rl.ptx_batch_size == 0 and not rl.reward_model


def test_stage_without_a_memory_model_is_reported():
    from framework import plugins
    from fake_stages import UsePrompts

    plugins.stages.register("no_memory_model", UsePrompts)
    try:
        cfg = OmegaConf.create({"stages": {"f": {"plugin": "no_memory_model", "params": {}}}})
        assert stage_workloads(cfg) == [UnplannedStage("f", "no_memory_model",
                                                       stage_workloads(cfg)[0].reason)]
    finally:
        plugins.stages.unregister("no_memory_model")


def test_a_plugin_stage_describes_its_own_workload():
    """The planner knows no plugin by name: a stage it has never seen is planned through the
    Stage.memory_workload hook."""
    from framework import plugins
    from fake_stages import UsePrompts

    class Trains(UsePrompts):
        def memory_workload(self, name, hardware=None):
            return TrainWorkload(name, "", batch_size=3, max_length=40)

    plugins.stages.register("trains", Trains)
    try:
        cfg = OmegaConf.create({"stages": {"t": {"plugin": "trains", "params": {}}}})
        assert stage_workloads(cfg) == [TrainWorkload("t", "trains", 3, 40)]
    finally:
        plugins.stages.unregister("trains")


def test_smollm2_full_fine_tuning_plan_fits_on_24_gb(capsys):
    assert memory_main(["+recipe=instructgpt", "--device-gb", "24", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["parameters"] == pytest.approx(134.5e6, rel=0.01)
    assert [s["stage"] for s in report["stages"]] == ["sft", "reward_model", "rl", "evaluate"]
    assert report.get("unplanned", []) == []  # every stage of the recipe has a memory model
    assert all(s["fits"] for s in report["stages"])
    sft = report["stages"][0]
    parts = {c["name"]: c["bytes"] for c in sft["components"]}
    assert parts["weights"] == report["model"]["parameters"] * 4  # model.dtype float32


def test_does_not_fit_names_the_largest_part_and_a_fix(capsys):
    assert memory_main(["+recipe=instructgpt", "--device-gb", "2", "--overhead-gb", "0"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "the largest part is" in out and "try:" in out


def test_bad_flags_and_overrides_exit_2(capsys):
    assert memory_main(["+recipe=instructgpx"]) == 2
    assert memory_main(["+recipe=instructgpt", "--num-devices", "2", "--sharding", "none"]) == 2
    assert "sharding=none" in capsys.readouterr().err


def test_memory_command_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "memory", "+recipe=instructgpt", "--device-gb", "24",
         "--dtype", "bf16", "--adapter", "lora"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("FITS") == 4 and "DOES NOT FIT" not in proc.stdout
    assert "lora rank 16 on all-linear" in proc.stdout
