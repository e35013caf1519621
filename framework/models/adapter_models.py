"""Models with LoRA adapters (peft): load a base to train adapters on, describe the saved adapter
as an artifact, and turn an adapter artifact back into full weights.

An adapter artifact is a `model` or `reward_model` artifact whose folder holds peft's
adapter_config.json and adapter_model.safetensors (plus the tokenizer), with meta
{"adapter": "lora" | "qlora", "base": LOCATION}; the base is always a full checkpoint. A stage
that starts from an adapter first merges it into its base (`full_weights_dir`), so adapters
never stack and every artifact loads with one base and at most one adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from framework.artifacts import Artifact
from framework.errors import ConfigError
from framework.models.adapters import (
    AdapterConfig,
    compute_dtype,
    keep_one_4bit_kernel,
    lora_config,
    quantization_config,
)
from framework.models.embedded import resolve_model_path
from framework.models.loading import load_pretrained, load_tokenizer

CAUSAL_LM = "CAUSAL_LM"
SEQ_CLS = "SEQ_CLS"  # a reward model: one score from the last token
ADAPTER_CONFIG = "adapter_config.json"
SOURCE_FILE = "merged_from.json"  # in a merged folder: the adapter artifact it was made from


def auto_class(task_type: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return {CAUSAL_LM: AutoModelForCausalLM, SEQ_CLS: AutoModelForSequenceClassification}[task_type]


def task_kwargs(task_type: str) -> dict:
    return {"num_labels": 1} if task_type == SEQ_CLS else {}


# ----------------------------------------------------------------------------- training
def load_trainable(location: str, task_type: str, model_cfg: Any, adapter: Optional[AdapterConfig],
                   hardware: Any = None, *, gradient_checkpointing: bool = False,
                   freeze_layers: int = 0, where: str = "stage", input_where: str = "",
                   freeze_where: str = ""):
    """(model, peft config or None) for a TRL trainer: with an enabled adapter, load_for_training;
    else the full weights, their lowest `freeze_layers` layers frozen. `where`: the stage node;
    `input_where`, `freeze_where`: the config paths of the weights' input and of freeze_layers
    (default: WHERE.inputs.model and WHERE.params.freeze_layers)."""
    from framework.models.freezing import freeze_lower_layers

    if adapter is not None and adapter.enabled:
        return load_for_training(location, task_type, model_cfg, adapter, hardware,
                                 gradient_checkpointing=gradient_checkpointing,
                                 freeze_layers=freeze_layers, where=where)
    model = load_pretrained(auto_class(task_type), str(location), model_cfg,
                            input_where or f"{where}.inputs.model", **task_kwargs(task_type))
    if freeze_layers:
        freeze_lower_layers(model, freeze_layers, freeze_where or f"{where}.params.freeze_layers")
    return model, None


def load_for_training(location: str, task_type: str, model_cfg: Any, adapter: AdapterConfig,
                      hardware: Any = None, *, gradient_checkpointing: bool = False,
                      freeze_layers: int = 0, where: str = "stage", init_kwargs=None):
    """(model, peft.LoraConfig) to hand to a TRL trainer (`peft_config=`), which wraps the model.

    qlora: the base loads in 4-bit NF4 with double quantization, its other weights in the
    compute dtype, and goes through peft's prepare_model_for_kbit_training. A reward model
    (SEQ_CLS) trains its score head in full next to the adapter. `freeze_layers` > 0 puts the
    adapters on the layers above the lowest `freeze_layers` only. `where`: the stage node;
    `init_kwargs`: further `from_pretrained` options (a trainer's model_init_kwargs)."""
    import torch

    kwargs = {**(init_kwargs or {}), **task_kwargs(task_type)}
    if adapter.kind == "qlora":
        dtype = compute_dtype(adapter, model_cfg, hardware)
        kwargs.update(dtype=getattr(torch, dtype), quantization_config=quantization_config(dtype))
    model = load_pretrained(auto_class(task_type), location, model_cfg, f"{where}.inputs.model",
                            **kwargs)
    if adapter.kind == "qlora":
        from peft import prepare_model_for_kbit_training

        keep_one_4bit_kernel(model)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing)
    targets = adapter.target_modules
    _check_targets(model, targets, "adapter.target_modules")
    if freeze_layers > 0:
        from framework.models.freezing import top_layer_linears

        targets = top_layer_linears(model, freeze_layers, targets, f"{where}.params.freeze_layers")
    heads = _score_heads(model, location) if task_type == SEQ_CLS else None
    config = lora_config(AdapterConfig(**{**adapter.to_json(), "target_modules": targets}),
                         task_type, modules_to_save=heads)
    return model, config


def _check_targets(model, targets, where: str) -> None:
    import torch

    if targets == "all-linear":
        return
    linears = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)}
    missing = [t for t in targets if t not in linears]
    if missing:
        raise ConfigError(f"{where}: {missing} name no linear layer of {type(model).__name__}; "
                          f"its linear layers are: {', '.join(sorted(linears))}.")


def _score_heads(model, location: str) -> list[str]:
    heads = [name for name in ("score", "classifier") if hasattr(model, name)]
    if not heads:
        raise ConfigError(f"the sequence-classification model built from {location!r} "
                          f"({type(model).__name__}) has no `score` or `classifier` head to train "
                          f"next to the adapter; use adapter kind none for this stage.")
    return heads[:1]


def match_trainable_dtype(model, adapter: AdapterConfig, model_cfg: Any, hardware: Any = None) -> None:
    """For qlora, TRL casts the trainable weights to bfloat16 whatever the compute dtype; keep
    them in the compute dtype instead (float32 on a CPU, where bfloat16 matmuls are slow and the
    updates of small weights vanish)."""
    import torch

    if adapter.kind != "qlora":
        return
    dtype = getattr(torch, compute_dtype(adapter, model_cfg, hardware))
    for param in model.parameters():
        if param.requires_grad and param.dtype != dtype:
            param.data = param.data.to(dtype)


def adapter_artifact(kind: str, location: str, adapter: AdapterConfig, base: str,
                     merged: Optional[str] = None) -> Artifact:
    meta = {"adapter": adapter.kind, "base": base}
    if merged:
        meta["merged"] = merged
    return Artifact(kind, location, meta)


# ----------------------------------------------------------------------------- consuming
def is_adapter(artifact: Artifact) -> bool:
    """An artifact made by an adapter stage, or any local folder holding a peft adapter."""
    return bool(artifact.meta.get("adapter")) or (
        Path(artifact.location) / ADAPTER_CONFIG).is_file()


def _adapter_info(artifact: Artifact) -> tuple[str, str]:
    """(base location, task type) of an adapter artifact."""
    path = Path(artifact.location) / ADAPTER_CONFIG
    if not path.is_file():
        raise ConfigError(f"{artifact.location!r} is an adapter artifact but has no {ADAPTER_CONFIG}.")
    config = json.loads(path.read_text())
    base = artifact.meta.get("base") or config.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{path}: names no base model (base_model_name_or_path).")
    return base, config.get("task_type") or CAUSAL_LM


def load_merged(artifact: Artifact, model_cfg: Any, task_type: Optional[str] = None,
                where: str = "model"):
    """The full model of a model artifact: its own weights, or its base with the adapter merged
    in (in model.dtype; a qlora adapter merges into the unquantized base). `task_type` checks
    the kind of model: CAUSAL_LM or SEQ_CLS. `where` names the input in errors."""
    if not is_adapter(artifact):
        task_type = task_type or CAUSAL_LM
        # as saved: a checkpoint that is not a reward model keeps its num_labels, for the caller to see
        return load_pretrained(auto_class(task_type), artifact.location, model_cfg, where)
    from peft import PeftModel

    base, own_task = _checked_adapter_info(artifact, task_type, where)
    model = load_pretrained(auto_class(own_task), base, model_cfg, f"{where} (base)",
                            **task_kwargs(own_task))
    model = PeftModel.from_pretrained(model, artifact.location).merge_and_unload()
    return _with_pad_id(model, own_task, artifact, model_cfg)


def _checked_adapter_info(artifact: Artifact, task_type: Optional[str], where: str):
    """(base location, task type) of an adapter artifact that must be a `task_type` model."""
    base, own_task = _adapter_info(artifact)
    if task_type and task_type != own_task:
        raise ConfigError(f"{where}: {artifact.location!r} is a {own_task} adapter, but a "
                          f"{task_type} model is needed here; wire a matching stage output.")
    return base, own_task


def _with_pad_id(model, task_type: str, artifact: Artifact, model_cfg: Any):
    """A reward model reads its score at the last non-pad token: set the pad id as
    RewardTrainer did in training, when the checkpoint has none."""
    if task_type == SEQ_CLS and model.config.get_text_config().pad_token_id is None:
        tokenizer = load_tokenizer(artifact.location, model_cfg)
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return model


def load_for_scoring(artifact: Artifact, model_cfg: Any, task_type: str, where: str,
                     device: Any = None):
    """A frozen model to score with. A qlora adapter runs as it was trained, unmerged on its base
    loaded in 4 bits (a quarter of the memory of merged weights, and no rounding gap between
    training and scoring); anything else is load_merged. Placed on `device`, in eval mode."""
    if not (is_adapter(artifact) and artifact.meta.get("adapter") == "qlora"):
        model = load_merged(artifact, model_cfg, task_type, where)
        return model.to(device) if device is not None else model
    import torch
    from peft import PeftModel

    base, _ = _checked_adapter_info(artifact, task_type, where)
    dtype = compute_dtype(AdapterConfig(kind="qlora"), model_cfg)
    model = load_pretrained(auto_class(task_type), base, model_cfg, f"{where} (base)",
                            dtype=getattr(torch, dtype), quantization_config=quantization_config(dtype),
                            device_map={"": str(device or "cpu")}, **task_kwargs(task_type))
    keep_one_4bit_kernel(model)
    model = PeftModel.from_pretrained(model, artifact.location, is_trainable=False)
    return _with_pad_id(model, task_type, artifact, model_cfg)


def full_weights_dir(artifact: Artifact, target: Path, model_cfg: Any) -> str:
    """A folder of full weights for `artifact`: its own location (resolved), or for an adapter
    its base with the adapter merged, written once to `target` with the adapter's tokenizer."""
    if not is_adapter(artifact):
        return resolve_model_path(artifact.location)
    from framework.common.distributed import barrier, is_main_process

    target = Path(target)
    source = json.dumps(artifact.to_json(), sort_keys=True)
    fresh = (target / SOURCE_FILE).is_file() and (target / SOURCE_FILE).read_text() == source
    if not fresh and is_main_process():  # one process writes; every process then reads it
        _write_merged(artifact, target, model_cfg, source)
    barrier()
    return str(target)


def _write_merged(artifact: Artifact, target: Path, model_cfg: Any, source: str) -> None:
    model = load_merged(artifact, model_cfg)
    tokenizer = load_tokenizer(artifact.location, model_cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(source)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # a half-written merge is never picked up
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def finish_adapter(kind: str, model_dir: Path, adapter: AdapterConfig, start: Artifact,
                   start_location: str, stage_dir: Path, model_cfg: Any) -> Artifact:
    """The artifact of an adapter a stage saved to `model_dir`; its base is the stage's input (or,
    when that was an adapter, the merged `start_location`). With adapter.export_merged the base
    with this adapter merged in is also written to STAGE/merged."""
    base = start_location if is_adapter(start) else start.location
    artifact = adapter_artifact(kind, str(model_dir), adapter, base)
    if adapter.export_merged:
        merged = full_weights_dir(artifact, Path(stage_dir) / "merged", model_cfg)
        artifact = adapter_artifact(kind, str(model_dir), adapter, base, merged=merged)
    return artifact
