"""The planner's inputs as plain dataclasses: the model's shape, the adapter, the hardware.

The `memory` command builds `AdapterSpec` from the composed `adapter` group (per stage, with
its flags on top) and `HardwareSpec` from its flags. `ModelShape` is read from a transformers
config (`read_model_shape`), never from weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from framework.errors import ConfigError
from framework.models.dtypes import DTYPE_BYTES, dtype_name
from framework.models.shape import ModelShape

GIB = 1024**3
ADAPTERS = ("none", "lora", "qlora")
OPTIMIZERS = ("adamw", "paged_adamw_8bit")
SHARDINGS = ("none", "ddp", "zero2", "zero3", "fsdp")
ATTENTIONS = ("sdpa", "eager")


def _one_of(value, choices, where):
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}.")


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

@dataclass
class TrainWorkload:
    """A supervised stage (SFT, a reward model, DPO, ...): sequences per device per micro-batch
    and their length. A reward-model batch of B pairs is 2B sequences (chosen and rejected
    stacked): `sequences_per_row=2`."""

    stage: str
    kind: str  # the stage's plugin name, for the report
    batch_size: int  # per_device_train_batch_size (pairs for a reward model)
    max_length: int
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: Optional[bool] = None  # the stage's args; HardwareSpec's wins if set
    compute_dtype: Optional[str] = None  # bf16/fp16 autocast asked for in the stage's args
    sequences_per_row: int = 1
    causal_lm: bool = True  # logits over the vocabulary (a language-model loss); else a score
    # A frozen copy of the starting weights beside the trained ones (DPO's and KTO's reference
    # without an adapter; with one, the reference is the base with the adapter off: no copy).
    frozen_reference: bool = False

    @property
    def sequences(self) -> int:
        return self.sequences_per_row * self.batch_size


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
class EvaluateWorkload:
    """The evaluate stage, inference only: the baseline policy (kept as the KL reference) and
    the policy being sampled, both full weights (an adapter policy is merged), any learned
    reward models among the scorers, then `batch_size` sequences sampled with the KV cache and
    scored over the whole vocabulary (log-probs for the KL, probabilities for the entropy)."""

    stage: str
    batch_size: int
    max_prompt_length: int
    max_new_tokens: int
    reward_models: int = 0
    judge_models: int = 0  # causal LMs among the scorers (a local LLM judge)

    @property
    def sequence_length(self) -> int:
        return self.max_prompt_length + self.max_new_tokens


@dataclass
class UnplannedStage:
    """A stage the planner has no memory model for; reported, never silently skipped."""

    stage: str
    plugin: str
    reason: str = field(default="")


Workload = Union[TrainWorkload, PPOWorkload, EvaluateWorkload, UnplannedStage]
