"""The planner's inputs as plain dataclasses: the model's shape, the adapter, the hardware.

The `memory` command builds `AdapterSpec` from the composed `adapter` group (per stage, with
its flags on top) and `HardwareSpec` from its flags. `ModelShape` is read from a transformers
config (`read_model_shape`), never from weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Union

from framework.errors import ConfigError

GIB = 1024**3

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
                 "float": "float32"}
ADAPTERS = ("none", "lora", "qlora")
OPTIMIZERS = ("adamw", "paged_adamw_8bit")
SHARDINGS = ("none", "ddp", "zero2", "zero3", "fsdp")
ATTENTIONS = ("sdpa", "eager")
# Model types whose MLP is up -> activation -> down (no gate). Everything else is taken to be
# gated (SwiGLU/GeGLU: gate, up, down), as in Llama, Mistral, Qwen2, Gemma, SmolLM.
NON_GATED_MODEL_TYPES = {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "gpt_bigcode",
                         "starcoder2", "codegen"}


def dtype_name(value: str, where: str = "dtype") -> str:
    """Canonical torch dtype name for 'bf16', 'bfloat16', 'torch.bfloat16', ..."""
    name = str(value).removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ConfigError(f"{where}: {value!r} is not one of float32 (fp32), bfloat16 (bf16), "
                          f"float16 (fp16).")
    return name


def _one_of(value, choices, where):
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}.")


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer, as far as memory is concerned. Biases are not counted."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    head_dim: Optional[int] = None  # None: hidden // heads
    gated_mlp: bool = True  # gate_proj, up_proj, down_proj (Llama); False: up_proj, down_proj
    dropout: bool = False  # any dropout > 0: its masks are stored for backward
    dtype: Optional[str] = None  # the checkpoint's dtype (config.dtype), used for model.dtype=auto
    name: str = ""

    def __post_init__(self):
        for key in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"ModelShape.{key}={getattr(self, key)!r}: must be > 0.")
        if self.heads % self.kv_heads:
            raise ConfigError(f"ModelShape: heads={self.heads} is not a multiple of "
                              f"kv_heads={self.kv_heads}.")

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def linears(self) -> dict[str, Tuple[int, int]]:
        """The linear layers of one decoder layer: name -> (in_features, out_features)."""
        h, i = self.hidden, self.intermediate
        out = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
               "o_proj": (self.q_dim, h)}
        if self.gated_mlp:
            out["gate_proj"] = (h, i)
        out.update(up_proj=(h, i), down_proj=(i, h))
        return out

    @property
    def linear_params_per_layer(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def norm_params(self) -> int:
        """Two norms per layer and the final one (RMSNorm weights; LayerNorm biases ignored)."""
        return 2 * self.hidden * self.layers + self.hidden

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def backbone_params(self) -> int:
        """Everything but the LM head: embeddings, decoder layers, norms."""
        return self.embedding_params + self.layers * self.linear_params_per_layer + self.norm_params

    @property
    def causal_lm_params(self) -> int:
        return self.backbone_params + self.lm_head_params


@dataclass(frozen=True)
class AdapterSpec:
    """none: full fine-tuning. lora: frozen base in `HardwareSpec.dtype` plus fp32 LoRA
    matrices. qlora: the base's decoder linears quantized to `bits` (4: NF4 with double
    quantization; 8: LLM.int8), embeddings/LM head/norms in the compute dtype, fp32 LoRA."""

    kind: str = "none"
    rank: int = 16
    target_modules: Union[str, Tuple[str, ...]] = "all-linear"
    bits: int = 4

    def __post_init__(self):
        _one_of(self.kind, ADAPTERS, "adapter")
        if self.kind != "none" and self.rank <= 0:
            raise ConfigError(f"adapter rank={self.rank!r}: must be > 0.")
        if self.kind == "qlora":
            _one_of(self.bits, (4, 8), "adapter quantization bits")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def targets(self, shape: ModelShape) -> list[str]:
        """The targeted linear names of one layer ("all-linear": every decoder linear, as PEFT;
        the LM head is never targeted)."""
        names = list(shape.linears())
        if self.target_modules == "all-linear":
            return names
        wanted = ([self.target_modules] if isinstance(self.target_modules, str)
                  else list(self.target_modules))
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(f"adapter target_modules: {', '.join(unknown)} not among this "
                              f"model's linears ({', '.join(names)}) or 'all-linear'.")
        return wanted

    def lora_params_per_layer(self, shape: ModelShape) -> int:
        """r * (in + out) per targeted linear (A: in x r, B: r x out)."""
        if self.kind == "none":
            return 0
        linears = shape.linears()
        return sum(self.rank * sum(linears[n]) for n in self.targets(shape))

    def lora_params(self, shape: ModelShape) -> int:
        return shape.layers * self.lora_params_per_layer(shape)


@dataclass(frozen=True)
class HardwareSpec:
    """One device's memory and how the job uses it. GB means GiB (2**30 bytes), as nvidia-smi
    and torch report; a "24 GB" card has 24 GiB."""

    device_gb: float = 24.0
    num_devices: int = 1
    dtype: str = "bfloat16"  # weights of frozen and fully fine-tuned models
    compute_dtype: Optional[str] = None  # activations and KV cache; None: `dtype`
    gradient_checkpointing: Optional[bool] = None  # None: what each stage's config asks for
    optimizer: str = "adamw"  # adamw: 2 fp32 states; paged_adamw_8bit: 2 blockwise 8-bit states
    sharding: str = "none"  # none | ddp | zero2 | zero3 | fsdp
    attention: str = "sdpa"  # sdpa/flash keep no seq x seq scores; eager stores the softmax
    master_weights: Optional[bool] = None  # fp32 master copy of 16-bit trained weights; None: yes
    overhead_gb: float = 1.0  # CUDA context, kernels, allocator fragmentation (0 on a CPU)
    name: str = "custom"

    def __post_init__(self):
        object.__setattr__(self, "dtype", dtype_name(self.dtype, "hardware dtype"))
        if self.compute_dtype is not None:
            object.__setattr__(self, "compute_dtype",
                               dtype_name(self.compute_dtype, "hardware compute_dtype"))
        _one_of(self.optimizer, OPTIMIZERS, "optimizer")
        _one_of(self.sharding, SHARDINGS, "sharding")
        _one_of(self.attention, ATTENTIONS, "attention")
        if self.device_gb <= 0:
            raise ConfigError(f"device_gb={self.device_gb!r}: must be > 0.")
        if self.num_devices < 1:
            raise ConfigError(f"num_devices={self.num_devices!r}: must be >= 1.")
        if self.num_devices > 1 and self.sharding == "none":
            raise ConfigError(f"num_devices={self.num_devices} with sharding=none: pick how the "
                              f"devices share the work (ddp, zero2, zero3 or fsdp).")

    @property
    def weight_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype or self.dtype]

    @property
    def keeps_master_weights(self) -> bool:
        if self.master_weights is not None:
            return self.master_weights
        return self.weight_bytes < 4

    @property
    def budget_bytes(self) -> float:
        return self.device_gb * GIB


def model_shape_from_config(config: Any, name: str = "") -> ModelShape:
    """A `ModelShape` from a transformers `PretrainedConfig` (or anything with its attributes;
    the `attribute_map` of GPT-2-style configs makes `hidden_size` etc. work there too)."""

    def get(*keys, default=None):
        for key in keys:
            value = getattr(config, key, None)
            if value is not None:
                return value
        return default

    text = get("text_config")  # multimodal configs keep the language model's shape here
    if text is not None and get("num_hidden_layers") is None:
        config = text
    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    heads = get("num_attention_heads", "n_head")
    if None in (hidden, layers, heads):
        raise ConfigError(f"{name or 'model'}: its config has no hidden_size / num_hidden_layers / "
                          f"num_attention_heads; the planner handles decoder-only transformers.")
    model_type = get("model_type", default="")
    dropout = any((get(k) or 0) > 0 for k in ("attention_dropout", "hidden_dropout",
                                                "resid_pdrop", "attn_pdrop", "dropout"))
    dtype = get("dtype")
    return ModelShape(
        layers=int(layers), hidden=int(hidden), heads=int(heads),
        intermediate=int(get("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
        kv_heads=int(get("num_key_value_heads", "num_kv_heads", default=heads)),
        vocab=int(get("vocab_size")),
        tied_embeddings=bool(get("tie_word_embeddings", default=True)),
        head_dim=get("head_dim"),
        gated_mlp=model_type not in NON_GATED_MODEL_TYPES,
        dropout=dropout,
        dtype=None if dtype is None else str(dtype).removeprefix("torch."),
        name=name,
    )


def read_model_shape(name_or_path: str, *, revision: Optional[str] = None,
                     trust_remote_code: bool = False) -> ModelShape:
    """The shape of a hub id, a local checkpoint or an embedded model, from its config only.

    An embedded model already converted into the cache is read from there; otherwise its config
    is read from the GGUF header (no tensors are loaded, nothing is converted)."""
    from transformers import AutoConfig

    from framework.models.embedded import EMBEDDED_PREFIX, cache_root, check_embedded

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    if name_or_path.startswith(EMBEDDED_PREFIX):
        check_embedded(name_or_path, "model.name_or_path")
        embedded = name_or_path[len(EMBEDDED_PREFIX):]
        converted = cache_root() / "models" / embedded
        if (converted / "config.json").exists():
            from framework.models import resolve_model_path

            config = AutoConfig.from_pretrained(resolve_model_path(name_or_path))
        else:
            import importlib.util
            import os

            from framework.models.embedded import EMBEDDED_MODELS

            package, gguf_file, _ = EMBEDDED_MODELS[embedded]
            folder = os.path.dirname(importlib.util.find_spec(package).origin)
            config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    else:
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.name_or_path: cannot read the config of {name_or_path!r} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Give a local "
                              f"checkpoint folder, or a hub id with network or a filled HF "
                              f"cache.") from None
    return model_shape_from_config(config, name=name_or_path)


@dataclass
class TrainWorkload:
    """A supervised stage (sft, reward_model): sequences per device per micro-batch and their
    length. A reward-model batch of B pairs is 2B sequences (chosen and rejected stacked)."""

    stage: str
    kind: str  # sft | reward_model
    batch_size: int  # per_device_train_batch_size (pairs for reward_model)
    max_length: int
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: Optional[bool] = None  # the stage's args; HardwareSpec's wins if set
    compute_dtype: Optional[str] = None  # bf16/fp16 autocast asked for in the stage's args

    @property
    def sequences(self) -> int:
        return 2 * self.batch_size if self.kind == "reward_model" else self.batch_size


@dataclass
class PPOWorkload:
    """The rl stage with the ppo optimizer: models held at once, and the three phases' sizes."""

    stage: str
    batch_size: int  # prompts per rollout per device
    num_minibatches: int
    gradient_accumulation_steps: int
    max_prompt_length: int
    max_new_tokens: int
    ptx_batch_size: int = 0  # 0: no PPO-ptx term
    ptx_max_length: int = 0
    reward_model: bool = True  # a learned reward model is held on the device
    gradient_checkpointing: Optional[bool] = None  # the PPO trainer has no such setting: off

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.num_minibatches // self.gradient_accumulation_steps

    @property
    def sequence_length(self) -> int:
        return self.max_prompt_length + self.max_new_tokens


@dataclass
class UnplannedStage:
    """A stage the planner has no memory model for; reported, never silently skipped."""

    stage: str
    plugin: str
    reason: str = field(default="")
