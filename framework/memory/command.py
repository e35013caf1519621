"""`python -m framework memory +recipe=NAME [overrides] [flags]`: each stage's estimated peak
device memory, and whether it fits.

Each stage's adapter comes from the composed config (the `adapter` group and any
`stages.NAME.adapter` override); the --adapter, --lora-rank, --target-modules and --quant-bits
flags override it for every stage. The hardware settings come from the `hardware` profile
(hardware=single_gpu, ...: device memory, devices, sharding, precision, optimizer, gradient
checkpointing); the hardware flags override it. Exit status: 0 when every planned stage fits,
1 when one does not, 2 for a bad config or flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import asdict
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from framework.errors import FrameworkError
from framework.hardware.config import as_hardware
from framework.memory.estimate import (
    StageEstimate, estimate_evaluate, estimate_ppo, estimate_training)
from framework.memory.specs import (
    ADAPTERS,
    ATTENTIONS,
    GIB,
    OPTIMIZERS,
    SHARDINGS,
    AdapterSpec,
    HardwareSpec,
    ModelShape,
    EvaluateWorkload,
    PPOWorkload,
    TrainWorkload,
    UnplannedStage,
    Workload,
)
from framework.memory.hardware import hardware_spec, ppo_hardware
from framework.pipeline.large_models import apply_large_model_adapter
from framework.pipeline.rounds import expand_rounds
from framework.models.dtypes import dtype_name
from framework.models.shape import read_model_shape


def stage_workloads(cfg: Any) -> list[Workload]:
    """One workload per stage of the composed config, in the recipe's order."""
    from framework import plugins

    hardware = as_hardware(cfg.get("hardware"))
    out: list[Workload] = []
    stages = cfg.get("stages") or {}
    for name, node in stages.items():
        plugin = node.get("plugin", "")
        params = node.get("params") or {}
        params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else params
        cls = plugins.stages.get(plugin)  # an unknown name: PluginError, with the closest match
        stage = cls(cls.parse_config(params, f"stages.{name}.params"))
        workload = stage.memory_workload(name, hardware)
        if workload is None:
            out.append(UnplannedStage(name, plugin, "the planner has no memory model for this "
                                                    "plugin with these params"))
            continue
        if getattr(workload, "kind", None) == "":  # named after the stage's plugin
            workload = dataclasses.replace(workload, kind=plugin)
        out.append(workload)
    return out


def model_dtype(cfg: Any, checkpoint_dtype: str | None) -> str:
    """model.dtype, with "auto" meaning the checkpoint's own dtype (float32 if it names none)."""
    value = cfg.model.dtype
    if value == "auto":
        value = checkpoint_dtype or "float32"
    return dtype_name(value, "model.dtype")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m framework memory",
        description="Estimate each stage's peak device memory without loading weights.",
        epilog="Example: python -m framework memory +recipe=instructgpt "
               "model.name_or_path=meta-llama/Llama-2-7b-hf adapter=qlora --dtype bf16 "
               "--optimizer paged_adamw_8bit --gradient-checkpointing",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. +recipe=instructgpt")
    p.add_argument("--device-gb", type=float, default=None,
                   help="memory per device, GiB (default: hardware.device_memory_gb, else 24)")
    p.add_argument("--num-devices", type=int, default=None,
                   help="default: the hardware profile's processes")
    p.add_argument("--sharding", choices=SHARDINGS, default=None,
                   help="default: the hardware profile's (multi_gpu: ddp, deepspeed_zero3: "
                        "zero3, ...)")
    p.add_argument("--adapter", choices=ADAPTERS, default=None,
                   help="default: the config's adapter (adapter=lora|qlora), per stage")
    p.add_argument("--lora-rank", type=int, default=None, help="default: adapter.rank")
    p.add_argument("--target-modules", default=None,
                   help="all-linear, or comma-separated names such as q_proj,v_proj "
                        "(default: adapter.target_modules)")
    p.add_argument("--quant-bits", type=int, choices=(4, 8), default=4,
                   help="qlora only (the framework's qlora is 4-bit NF4)")
    p.add_argument("--dtype", default=None,
                   help="weights: fp32 | bf16 | fp16 (default: model.dtype)")
    p.add_argument("--compute-dtype", default=None,
                   help="activations and KV cache (default: bf16/fp16 if a stage's args ask "
                        "for it, else --dtype)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                   default=None, help="default: each stage's own setting (TRL's: on; PPO: off)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="default: hardware.optim (paged_adamw_8bit on single_gpu), else adamw")
    p.add_argument("--attention", choices=ATTENTIONS, default="sdpa")
    p.add_argument("--overhead-gb", type=float, default=1.0,
                   help="CUDA context and fragmentation, GiB (1.0; 0 on a CPU)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def compose(overrides: Sequence[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from framework.config_sources import register_configs

    register_configs()
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def plan(cfg, adapter: AdapterSpec, hw: HardwareSpec, shape: ModelShape, per_stage=None,
         ppo_hw: Optional[HardwareSpec] = None):
    """(estimates, unplanned stages) for a composed config. `per_stage`: stage name -> the
    AdapterSpec of a stage whose adapter differs from `adapter`. `ppo_hw`: the RL stage's hardware
    (default: `hw` as PPO runs it, see framework.memory.hardware.ppo_hardware)."""
    estimates, unplanned = [], []
    per_stage = per_stage or {}
    ppo_hw = ppo_hw or ppo_hardware(hw)
    for wl in stage_workloads(cfg):
        spec = per_stage.get(wl.stage, adapter)
        if isinstance(wl, TrainWorkload):
            estimates.append(estimate_training(shape, spec, hw, wl))
        elif isinstance(wl, PPOWorkload):
            estimates.append(estimate_ppo(shape, spec, ppo_hw, wl))
        elif isinstance(wl, EvaluateWorkload):
            estimates.append(estimate_evaluate(shape, spec, hw, wl))
        else:
            unplanned.append(wl)
            continue
        if spec != adapter:
            estimates[-1].workload["adapter"] = _adapter_text(spec, shape)
    return estimates, unplanned


def adapter_specs(cfg, args) -> tuple[AdapterSpec, dict[str, AdapterSpec]]:
    """The root adapter and the stages' own ones from the composed config, with the flags on top
    (for every stage). bitsandbytes need not be installed to plan for qlora."""
    from framework.models.adapters import parse_adapter, stage_adapter

    def spec(config) -> AdapterSpec:
        targets = config.target_modules
        if args.target_modules is not None:
            targets = args.target_modules
            if targets != "all-linear":
                targets = tuple(t.strip() for t in targets.split(",") if t.strip())
        return AdapterSpec(kind=args.adapter or config.kind, rank=args.lora_rank or config.rank,
                           target_modules=targets, bits=args.quant_bits)

    root = parse_adapter(cfg.get("adapter") or {}, "adapter", installed=False)
    per_stage = {}
    for name, node in (cfg.get("stages") or {}).items():
        own = stage_adapter(root, node.get("adapter"), f"stages.{name}.adapter", installed=False)
        if own != root:
            per_stage[name] = spec(own)
    return spec(root), per_stage


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from hydra.errors import HydraException

        try:
            cfg = compose(args.overrides)
        except HydraException as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        shape = read_model_shape(cfg.model.name_or_path, revision=cfg.model.revision,
                                 trust_remote_code=bool(cfg.model.trust_remote_code))
        apply_large_model_adapter(cfg)  # the profile's adapter for a model this large
        cfg = expand_rounds(cfg)  # rounds.stages -> the stages NAME_1, NAME_2, ...
        adapter, per_stage = adapter_specs(cfg, args)
        hw = hardware_spec(cfg, args, args.dtype or model_dtype(cfg, shape.dtype))
        estimates, unplanned = plan(cfg, adapter, hw, shape, per_stage,
                                    ppo_hardware(hw, args.gradient_checkpointing))
    except FrameworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(shape, adapter, hw, estimates, unplanned), indent=2))
    else:
        print(render(shape, adapter, hw, estimates, unplanned))
    return 0 if all(e.fits for e in estimates) else 1


# ----------------------------------------------------------------------------- output
def verdict(est: StageEstimate, hw: HardwareSpec, adapter: AdapterSpec) -> str:
    peak, budget = est.peak_bytes / GIB, est.budget_bytes / GIB
    if est.fits:
        return f"FITS: {peak:.2f} of {budget:.2f} GiB ({100 * peak / budget:.0f}%)"
    big = est.largest
    return (f"DOES NOT FIT: {peak:.2f} GiB > {budget:.2f} GiB; the largest part is {big.name} "
            f"({big.gib:.2f} GiB); try: {est.suggestion(hw, adapter)}")


def render(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
           estimates: list[StageEstimate], unplanned: list[UnplannedStage]) -> str:
    lines = [
        f"model    {shape.name}: {shape.causal_lm_params / 1e6:,.1f}M parameters ({shape.layers} "
        f"layers, hidden {shape.hidden}, intermediate {shape.intermediate}, heads {shape.heads}/"
        f"{shape.kv_heads} kv, vocab {shape.vocab}{', tied' if shape.tied_embeddings else ''})",
        f"adapter  {_adapter_text(adapter, shape)}",
        f"hardware {hw.num_devices} x {hw.device_gb:g} GiB, sharding {hw.sharding}, weights "
        f"{hw.dtype}, compute {hw.compute_dtype or 'per stage'}, {hw.optimizer}, attention "
        f"{hw.attention}, gradient checkpointing "
        f"{_onoff(hw.gradient_checkpointing) if hw.gradient_checkpointing is not None else 'per stage'}",
    ]
    for est in estimates:
        work = ", ".join(f"{k} {_onoff(v) if isinstance(v, bool) else v}"
                         for k, v in est.workload.items())
        width = max(len(c.name) for c in est.components)
        lines += ["", f"stage {est.stage} ({est.kind}): {work}",
                  f"  {'component':<{width}} {'phase':<9} {'GiB':>8}  note"]
        for c in est.components:
            lines.append(f"  {c.name:<{width}} {c.phase:<9} {c.gib:>8.2f}  {c.note}")
        phase = est.peak_phase
        lines.append(f"  {'peak (resident' + (' + ' + phase if phase else '') + ')':<{width + 10}} "
                     f"{est.peak_bytes / GIB:>8.2f}")
        lines.append(f"  {'device budget':<{width + 10}} {est.budget_bytes / GIB:>8.2f}")
        lines.append(f"  {verdict(est, hw, adapter)}")
    for u in unplanned:
        lines += ["", f"stage {u.stage} (plugin {u.plugin}): NOT ESTIMATED, {u.reason}"]
    return "\n".join(lines)


def _adapter_text(adapter: AdapterSpec, shape: ModelShape) -> str:
    if adapter.kind == "none":
        return "none (full fine-tuning)"
    targets = adapter.target_modules if isinstance(adapter.target_modules, str) else ",".join(
        adapter.target_modules)
    quant = f", base at {adapter.bits} bits" if adapter.kind == "qlora" else ""
    return (f"{adapter.kind} rank {adapter.rank} on {targets}{quant}: "
            f"{adapter.lora_params(shape) / 1e6:,.2f}M trainable parameters")


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def to_json(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
            estimates: list[StageEstimate], unplanned: list[UnplannedStage]) -> dict:
    return {
        "model": {**asdict(shape), "parameters": shape.causal_lm_params},
        "adapter": {**asdict(adapter), "trainable_lora_parameters": adapter.lora_params(shape)},
        "hardware": asdict(hw),
        "stages": [{
            "stage": e.stage, "kind": e.kind, "workload": e.workload,
            "components": [{"name": c.name, "kind": c.kind, "phase": c.phase,
                            "bytes": int(c.bytes), "gib": round(c.gib, 4), "note": c.note}
                           for c in e.components],
            "peak_phase": e.peak_phase, "peak_bytes": int(e.peak_bytes),
            "peak_gib": round(e.peak_bytes / GIB, 4), "budget_bytes": int(e.budget_bytes),
            "fits": e.fits, "largest": e.largest.name,
            "suggestion": None if e.fits else e.suggestion(hw, adapter),
        } for e in estimates],
        "not_estimated": [asdict(u) for u in unplanned],
    }
