"""Peak device memory of each stage, from shapes and settings alone (no weights load).

Notation: L layers, h hidden, i intermediate, H heads, d = h/H head dim (or the config's
head_dim), kv = kv_heads*d, V vocab, r LoRA rank, s sequence length, b sequences per device,
a bytes per activation (2 for bf16/fp16, 4 for fp32), w bytes per weight, N devices.

Parameters (decoder-only, biases ignored):
  per layer   q,o: h*H*d each; k,v: h*kv each; MLP 3*h*i (gated: gate, up, down) or 2*h*i
  norms       2*h per layer + h;  embeddings V*h;  LM head V*h unless tied
Weights:      params * w; QLoRA: the decoder linears at 4 bits NF4 with double quantization,
              0.5 + 1/64 + 4/(64*256) bytes/param (a 4-bit code, an 8-bit absmax per block of
              64, an fp32 constant per 256 absmax; Dettmers et al. 2023, "QLoRA", sec. 3), or
              at 8 bits 1 byte/param + an fp32 scale per output row (LLM.int8, Dettmers et al.
              2022); embeddings, LM head and norms stay at w.
LoRA:         r * (in + out) trainable params per targeted linear (Hu et al. 2021), kept in
              fp32 (PEFT's default), so 4 bytes each for weights and gradients.
Full fine-tuning: gradients w bytes/param; an fp32 master copy (4 bytes/param) when w is 16-bit
              (mixed precision; Micikevicius et al. 2018; the ZeRO paper's 2 + 2 + 12 bytes).
Optimizer:    AdamW 2 fp32 states = 8 bytes/trainable param; 8-bit (paged) AdamW 2 one-byte
              states + an fp32 absmax per block of 2048 = 2 + 8/2048 bytes/param (Dettmers et
              al. 2022, "8-bit Optimizers via Block-wise Quantization"); paging lets them spill
              to CPU memory, the estimate counts them on the device.
Activations per layer per token, bytes (Korthikanti et al. 2022, "Reducing Activation
              Recomputation in Large Transformer Models", sec. 4.1, re-derived per tensor for
              GQA, gated MLPs and any i):
                attention  a*(h + 2*H*d + 2*kv)      QKV input; Q, K, V; o_proj input
                scores     eager: a*H*s softmax (+ H*s dropout mask + a*H*s dropout output);
                           sdpa/flash: 4*H (fp32 log-sum-exp), no s x s tensor
                norms      2*a*h
                MLP        gated a*(h + 4*i); plain a*(h + 2*i)
                LoRA       a*r per targeted linear (the A output)
                dropout    2*h mask bytes when the model has dropout
              With MHA, a plain MLP, i = 4h, eager attention and dropout, a = 2 this is exactly
              their 34*h + 5*H*s. Without recomputation: L * that * s * b. With gradient
              checkpointing (one checkpoint per layer): L * a*h * s*b stored inputs + one layer's
              full activations while it is recomputed.
              A forward without grad (prefill, scoring) holds one layer's transients:
              a*(2*h + 3*i) per token (plain MLP: 2*i), + 2*a*H*s for eager scores.
Logits:       b*s*V*(a + 4*c + [4 if a < 4]): the logits in the compute dtype, their fp32 copy
              when a < 4, and c further fp32 tensors (c = 1 for the language-model loss: the
              log-softmax cross-entropy saves; c = 2 in PPO: logits/temperature, log-softmax).
              PPO computes them over the response tokens only (logits_to_keep).
KV cache:     2 * L * kv * (prompt + new tokens) * b * a (keys and values of every layer).
Sharding over N devices (Rajbhandari et al. 2020, "ZeRO"): ddp replicates everything and keeps
              gradient buckets as big as the gradients (torch DDP, gradient_as_bucket_view off);
              zero2 divides optimizer states, master weights and gradients by N; zero3 and fsdp
              (FULL_SHARD) divide everything held, weights too, by N, and gather one layer at a
              time (counted: 2 layers' weights, the current one and the prefetched one).
QLoRA forward/backward dequantizes one linear at a time (counted: the largest, in the compute
              dtype). A fixed overhead (CUDA context, allocator fragmentation) is added as given.
Peak:         what stays resident + the largest phase (train step, rollout, scoring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from framework.memory.specs import (
    DTYPE_BYTES,
    GIB,
    AdapterSpec,
    HardwareSpec,
    ModelShape,
    EvaluateWorkload,
    PPOWorkload,
    TrainWorkload,
)

ADAMW_BYTES = 8.0  # two fp32 states
ADAMW_8BIT_BLOCK = 2048
ADAMW_8BIT_BYTES = 2.0 + 2 * 4 / ADAMW_8BIT_BLOCK  # two 1-byte states + fp32 absmax per block
NF4_BLOCK, NF4_SECOND_BLOCK = 64, 256
NF4_BYTES = 0.5 + 1 / NF4_BLOCK + 4 / (NF4_BLOCK * NF4_SECOND_BLOCK)  # double quantization

# Components of one kind are divided the same way under sharding.
SHARDED_BY = {
    "zero2": {"grads", "master", "optimizer"},
    "zero3": {"grads", "master", "optimizer", "weights", "adapters"},
    "fsdp": {"grads", "master", "optimizer", "weights", "adapters"},
}
RESIDENT = "resident"


@dataclass
class Component:
    name: str
    kind: str  # weights adapters grads master optimizer activations logits kv_cache workspace overhead
    bytes: float
    phase: str = RESIDENT  # resident, or the phase it belongs to: train, rollout, scoring
    note: str = ""

    @property
    def gib(self) -> float:
        return self.bytes / GIB


@dataclass
class StageEstimate:
    stage: str
    kind: str
    components: list[Component]
    budget_bytes: float
    workload: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)  # knob names for suggestions

    def phase_bytes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.components:
            if c.phase != RESIDENT:
                out[c.phase] = out.get(c.phase, 0.0) + c.bytes
        return out

    @property
    def resident_bytes(self) -> float:
        return sum(c.bytes for c in self.components if c.phase == RESIDENT)

    @property
    def peak_phase(self) -> Optional[str]:
        phases = self.phase_bytes()
        return max(phases, key=phases.get) if phases else None

    @property
    def peak_bytes(self) -> float:
        phases = self.phase_bytes()
        return self.resident_bytes + (max(phases.values()) if phases else 0.0)

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    @property
    def largest(self) -> Component:
        """The largest component held at the peak."""
        at_peak = [c for c in self.components if c.phase in (RESIDENT, self.peak_phase)]
        return max(at_peak, key=lambda c: c.bytes)

    def suggestion(self, hw: HardwareSpec, adapter: AdapterSpec) -> str:
        return suggest(self, hw, adapter)


# ----------------------------------------------------------------------------- formulas
def optimizer_bytes_per_param(optimizer: str) -> float:
    return ADAMW_BYTES if optimizer == "adamw" else ADAMW_8BIT_BYTES


def quantized_linear_bytes(in_features: int, out_features: int, bits: int) -> float:
    n = in_features * out_features
    return n * NF4_BYTES if bits == 4 else n + 4 * out_features


def base_weight_bytes(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
                      lm_head: bool) -> float:
    """A model's own weights (no LoRA): causal LM when `lm_head`, else the backbone."""
    w = hw.weight_bytes
    params = shape.causal_lm_params if lm_head else shape.backbone_params
    if adapter.kind != "qlora":
        return params * w
    linears = sum(quantized_linear_bytes(i, o, adapter.bits) for i, o in shape.linears().values())
    rest = params - shape.layers * shape.linear_params_per_layer
    return shape.layers * linears + rest * w


def layer_activation_bytes_per_token(shape: ModelShape, act: int, seq: int, attention: str,
                                     lora_targets: int = 0, lora_rank: int = 0) -> float:
    """Bytes one decoder layer keeps for backward per token (see the module docstring)."""
    h, i, heads = shape.hidden, shape.intermediate, shape.heads
    total = act * (h + 2 * shape.q_dim + 2 * shape.kv_dim)  # attention
    if attention == "eager":
        total += act * heads * seq
        if shape.dropout:
            total += heads * seq + act * heads * seq
    else:
        total += 4 * heads
    total += 2 * act * h  # norms
    total += act * (h + (4 * i if shape.gated_mlp else 2 * i))  # MLP
    if shape.dropout:
        total += 2 * h
    total += act * lora_rank * lora_targets
    return total


def inference_layer_bytes_per_token(shape: ModelShape, act: int, seq: int,
                                    attention: str) -> float:
    """A forward without grad keeps one layer's transient tensors at a time: the residual, the
    normed input and the MLP's intermediates (see the module docstring)."""
    mlp = 3 * shape.intermediate if shape.gated_mlp else 2 * shape.intermediate
    scores = 2 * act * shape.heads * seq if attention == "eager" else 0
    return act * (2 * shape.hidden + mlp) + scores


def activation_bytes(shape: ModelShape, sequences: int, seq: int, act: int, attention: str,
                     checkpointing: bool, lora_targets: int = 0, lora_rank: int = 0) -> float:
    """All layers' stored activations for `sequences` x `seq` tokens, plus the final norm input."""
    tokens = sequences * seq
    layer = layer_activation_bytes_per_token(shape, act, seq, attention, lora_targets,
                                             lora_rank) * tokens
    final_norm = act * shape.hidden * tokens
    if checkpointing:
        return shape.layers * act * shape.hidden * tokens + layer + final_norm
    return shape.layers * layer + final_norm


def logits_bytes(tokens: int, vocab: int, act: int, fp32_copies: int = 1) -> float:
    return tokens * vocab * (act + 4 * fp32_copies + (4 if act < 4 else 0))


def kv_cache_bytes(shape: ModelShape, sequences: int, seq: int, act: int) -> float:
    return 2 * shape.layers * shape.kv_dim * seq * sequences * act


# ----------------------------------------------------------------------------- stages
class _Builder:
    """Collects components, applying the sharding divisor of each kind."""

    def __init__(self, hw: HardwareSpec):
        self.hw, self.components = hw, []

    def add(self, name, kind, nbytes, phase=RESIDENT, note=""):
        if nbytes <= 0:
            return
        if kind in SHARDED_BY.get(self.hw.sharding, ()):
            nbytes /= self.hw.num_devices
            note = f"{note}; / {self.hw.num_devices} ({self.hw.sharding})".lstrip("; ")
        self.components.append(Component(name, kind, nbytes, phase, note))

    def trainable(self, params: float, full: bool, phase: str = "train"):
        """Gradients, master weights and optimizer states of `params` trainable parameters."""
        hw = self.hw
        grad = hw.weight_bytes if full else 4
        self.add("gradients", "grads", params * grad, phase, f"{params / 1e6:,.1f}M x {grad} B")
        if full and hw.keeps_master_weights:
            self.add("fp32 master weights", "master", params * 4, note=f"{params / 1e6:,.1f}M x 4 B")
        per = optimizer_bytes_per_param(hw.optimizer)
        self.add(f"optimizer states ({hw.optimizer})", "optimizer", params * per,
                 note=f"{params / 1e6:,.1f}M x {per:g} B")
        if hw.sharding == "ddp":
            self.add("DDP gradient buckets", "grads", params * grad, phase)

    def sharded_runtime(self, shape: ModelShape, adapter: AdapterSpec, phase: str = "train"):
        hw = self.hw
        if hw.sharding in ("zero3", "fsdp") and hw.num_devices > 1:
            layer = shape.linear_params_per_layer * hw.weight_bytes
            if adapter.kind == "qlora":
                layer = sum(quantized_linear_bytes(i, o, adapter.bits)
                            for i, o in shape.linears().values())
            self.add("gathered layers (2)", "workspace", 2 * layer, phase,
                     "one layer gathered, the next prefetched")
        if adapter.kind == "qlora":
            largest = max(i * o for i, o in shape.linears().values())
            self.add("dequantized linear", "workspace", largest * hw.act_bytes, phase,
                     "the largest linear, dequantized for its matmul")

    def sample_and_score(self, shape: ModelShape, act: int, batch: int, prompt: int, new: int,
                         phases: tuple[str, str], logits_name: str, fp32_copies: int):
        """Sampling `batch` x (`prompt` + `new`) tokens with the KV cache (the prefill one layer
        at a time, without grad), then a pass over the whole sequences for the response
        tokens' logits over the vocabulary, with `fp32_copies` fp32 copies of them."""
        sample, score = phases
        seq, attention = prompt + new, self.hw.attention
        self.add("KV cache", "kv_cache", kv_cache_bytes(shape, batch, seq, act), sample,
                 f"{batch} x ({prompt} + {new}) tok")
        self.add("prefill workspace (1 layer)", "workspace",
                 inference_layer_bytes_per_token(shape, act, prompt, attention) * batch * prompt,
                 sample)
        self.add(logits_name, "logits", logits_bytes(batch * (new + 1), shape.vocab, act,
                                                      fp32_copies), score,
                 f"{batch} x {new + 1} x {shape.vocab} vocab, {fp32_copies} fp32 copies")
        self.add("scoring workspace (1 layer)", "workspace",
                 inference_layer_bytes_per_token(shape, act, seq, attention) * batch * seq, score)

    def overhead(self):
        self.add("CUDA context, fragmentation", "overhead", self.hw.overhead_gb * GIB,
                 note="fixed (--overhead-gb)")


def _act(hw: HardwareSpec, workload_dtype: Optional[str] = None) -> int:
    return DTYPE_BYTES[hw.compute_dtype or workload_dtype or hw.dtype]


def _checkpointing(hw: HardwareSpec, workload_value: Optional[bool]) -> bool:
    if hw.gradient_checkpointing is not None:
        return hw.gradient_checkpointing
    return bool(workload_value)


def estimate_training(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
                      wl: TrainWorkload) -> StageEstimate:
    """An SFT (causal LM) or reward-model (backbone + scalar head) stage."""
    b = _Builder(hw)
    causal = wl.causal_lm
    act = _act(hw, wl.compute_dtype)
    ckpt = _checkpointing(hw, wl.gradient_checkpointing)
    head = 0 if causal else shape.hidden  # the reward model's score head, Linear(h, 1)
    if adapter.kind == "none":
        params = (shape.causal_lm_params if causal else shape.backbone_params) + head
        b.add("weights", "weights", params * hw.weight_bytes,
              note=f"{params / 1e6:,.1f}M x {hw.weight_bytes} B")
        b.trainable(params, full=True)
        if wl.frozen_reference:
            b.add("reference weights (frozen)", "weights", params * hw.weight_bytes,
                  note=f"{params / 1e6:,.1f}M x {hw.weight_bytes} B, the starting model")
    else:
        base = shape.causal_lm_params if causal else shape.backbone_params
        b.add(f"frozen base weights ({_base_note(adapter, hw)})", "weights",
              base_weight_bytes(shape, adapter, hw, lm_head=causal), note=f"{base / 1e6:,.1f}M")
        params = adapter.lora_params(shape) + head
        b.add("LoRA adapter" + ("" if causal else " + score head"), "adapters", params * 4,
              note=f"{params / 1e6:,.2f}M x 4 B (fp32)")
        b.trainable(params, full=False)
    targets = len(adapter.targets(shape)) if adapter.kind != "none" else 0
    seqs = wl.sequences
    b.add("activations", "activations",
          activation_bytes(shape, seqs, wl.max_length, act, hw.attention, ckpt, targets,
                           adapter.rank),
          "train", f"{seqs} seq x {wl.max_length} tok, {'with' if ckpt else 'no'} grad. "
                   f"checkpointing, {act} B")
    if causal:
        b.add("logits", "logits", logits_bytes(seqs * wl.max_length, shape.vocab, act), "train",
              f"{seqs} x {wl.max_length} x {shape.vocab} vocab")
    b.sharded_runtime(shape, adapter)
    b.overhead()
    args = f"stages.{wl.stage}.params.args"
    return StageEstimate(
        wl.stage, wl.kind, b.components, hw.budget_bytes,
        workload={"sequences_per_device": seqs, "max_length": wl.max_length,
                  "per_device_train_batch_size": wl.batch_size,
                  "gradient_accumulation_steps": wl.gradient_accumulation_steps,
                  "gradient_checkpointing": ckpt, "activation_bytes": act},
        hints={"batch": f"{args}.per_device_train_batch_size (raise "
                        f"{args}.gradient_accumulation_steps to keep the effective batch)",
               "length": f"{args}.max_length", "checkpointing": ckpt},
    )


def estimate_ppo(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
                 wl: PPOWorkload) -> StageEstimate:
    """PPO: policy, frozen reference, value model (backbone + scalar head), frozen reward model.

    Full fine-tuning holds four models. With adapters the policy, reference and value share one
    frozen base (the reference is the base with adapters off; policy and value are adapters, the
    value with its head); the reward model is loaded on its own, as the reward source loads it:
    a qlora reward model on its 4-bit base, any other merged into full weights.
    The PPO trainer does not checkpoint activations, whatever the profile says."""
    b = _Builder(hw)
    act = _act(hw)
    ckpt = False
    head = shape.hidden + 1  # Linear(h, 1) with bias
    if adapter.kind == "none":
        lm = shape.causal_lm_params * hw.weight_bytes
        backbone = shape.backbone_params * hw.weight_bytes
        w = f"x {hw.weight_bytes} B"
        b.add("policy weights", "weights", lm, note=f"{shape.causal_lm_params / 1e6:,.1f}M {w}")
        b.add("reference weights (frozen)", "weights", lm, note="a copy of the starting policy")
        b.add("value model weights", "weights", backbone + head * hw.weight_bytes,
              note=f"{(shape.backbone_params + head) / 1e6:,.1f}M {w}, backbone + head")
        if wl.reward_model:
            b.add("reward model weights (frozen)", "weights", backbone + head * hw.weight_bytes,
                  note="backbone + score head")
        trainable = shape.causal_lm_params + shape.backbone_params + head
        b.trainable(trainable, full=True)
    else:
        b.add(f"shared frozen base ({_base_note(adapter, hw)})", "weights",
              base_weight_bytes(shape, adapter, hw, lm_head=True),
              note="the reference is the base with adapters off")
        lora = adapter.lora_params(shape)
        trainable = 2 * lora + head  # policy and value adapters, value head
        b.add("adapters: policy, value (+ head)", "adapters", trainable * 4,
              note=f"{trainable / 1e6:,.2f}M x 4 B (fp32)")
        if wl.reward_model:
            if adapter.kind == "qlora":
                b.add("reward model: 4-bit base + adapter (frozen)", "weights",
                      base_weight_bytes(shape, adapter, hw, lm_head=False) + (lora + head) * 4)
            else:
                b.add("reward model weights (frozen)", "weights",
                      shape.backbone_params * hw.weight_bytes + head * hw.weight_bytes,
                      note="its adapter merged in")
        b.trainable(trainable, full=False)

    targets = len(adapter.targets(shape)) if adapter.kind != "none" else 0
    seq, new = wl.sequence_length, wl.max_new_tokens
    micro = wl.micro_batch
    # train: policy and value forward/backward on one micro-batch (both graphs alive at once)
    ppo_act = 2 * activation_bytes(shape, micro, seq, act, hw.attention, ckpt, targets, adapter.rank)
    ppo_logits = logits_bytes(micro * (new + 1), shape.vocab, act, fp32_copies=2)
    ptx_act = ptx_logits = 0.0
    if wl.ptx_batch_size:
        ptx_act = activation_bytes(shape, wl.ptx_batch_size, wl.ptx_max_length, act,
                                   hw.attention, ckpt, targets, adapter.rank)
        ptx_logits = logits_bytes(wl.ptx_batch_size * wl.ptx_max_length, shape.vocab, act)
    if ppo_act + ppo_logits >= ptx_act + ptx_logits:
        b.add("activations (policy + value)", "activations", ppo_act, "train",
              f"micro-batch {micro} x {seq} tok, {'with' if ckpt else 'no'} grad. checkpointing")
        b.add("logits (response tokens)", "logits", ppo_logits, "train",
              f"{micro} x {new + 1} x {shape.vocab} vocab")
    else:
        b.add("activations (ptx batch)", "activations", ptx_act, "train",
              f"{wl.ptx_batch_size} x {wl.ptx_max_length} tok")
        b.add("logits (ptx batch)", "logits", ptx_logits, "train",
              f"{wl.ptx_batch_size} x {wl.ptx_max_length} x {shape.vocab} vocab")
    b.sharded_runtime(shape, adapter, "train")
    # rollout: sampling with the KV cache; then log-probs of the whole rollout under policy
    # and reference, without grad
    b.sample_and_score(shape, act, wl.batch_size, wl.max_prompt_length, new,
                       ("rollout", "scoring"), "scoring logits", fp32_copies=2)
    b.overhead()
    params = f"stages.{wl.stage}.params.optimizer.params"
    return StageEstimate(
        wl.stage, "rl", b.components, hw.budget_bytes,
        workload={"rollout_batch_size": wl.batch_size, "micro_batch": micro,
                  "sequence_length": seq, "max_new_tokens": new,
                  "ptx_batch_size": wl.ptx_batch_size, "ptx_max_length": wl.ptx_max_length,
                  "reward_model_on_device": wl.reward_model, "gradient_checkpointing": ckpt,
                  "activation_bytes": act},
        hints={"batch": f"the micro-batch (raise {params}.num_minibatches or "
                        f"{params}.gradient_accumulation_steps)",
               "length": f"{params}.max_prompt_length or {params}.max_new_tokens",
               "rollout": f"{params}.batch_size, {params}.max_prompt_length or "
                          f"{params}.max_new_tokens",
               "ptx": f"{params}.ptx_batch_size or {params}.ptx_max_length",
               "checkpointing": None},  # not an option of the PPO trainer: never suggested
    )


def estimate_evaluate(shape: ModelShape, adapter: AdapterSpec, hw: HardwareSpec,
                      wl: EvaluateWorkload) -> StageEstimate:
    """The evaluate stage: two full-weight causal LMs (an adapter policy is merged into its base
    when it loads, so adapters save nothing here), the reward-model scorers, and two phases:
    sampling (KV cache and one layer's prefill) and scoring (the policy's logits over the
    vocabulary with their fp32 log-softmax and probabilities, and the reference's log-softmax).
    Every process holds whole models: weights are not sharded here, whatever the profile."""
    import dataclasses

    b = _Builder(dataclasses.replace(hw, sharding="ddp" if hw.num_devices > 1 else "none"))
    act = _act(hw)
    lm = shape.causal_lm_params * hw.weight_bytes
    w = f"{shape.causal_lm_params / 1e6:,.1f}M x {hw.weight_bytes} B"
    b.add("baseline policy weights (the KL reference)", "weights", lm, note=w)
    b.add("evaluated policy weights", "weights", lm, note=f"{w}; adapters merged")
    head = shape.hidden + 1
    for i in range(wl.reward_models):
        if adapter.kind == "qlora":
            rm = base_weight_bytes(shape, adapter, hw, lm_head=False) + (
                adapter.lora_params(shape) + head) * 4
        else:
            rm = (shape.backbone_params + head) * hw.weight_bytes
        b.add(f"reward model weights (scorer {i + 1})", "weights", rm, note="frozen")
    for i in range(wl.judge_models):  # as large as the policy, unless it is another model
        b.add(f"judge model weights (scorer {i + 1})", "weights", lm,
              note=f"{w}, if the judge has the policy's shape")
    seq, new = wl.sequence_length, wl.max_new_tokens
    b.sample_and_score(shape, act, wl.batch_size, wl.max_prompt_length, new,
                       ("sampling", "scoring"), "scoring logits (vocabulary)", fp32_copies=3)
    b.overhead()
    params = f"stages.{wl.stage}.params"
    return StageEstimate(
        wl.stage, "evaluate", b.components, hw.budget_bytes,
        workload={"batch_size": wl.batch_size, "sequence_length": seq, "max_new_tokens": new,
                  "reward_models": wl.reward_models, "judge_models": wl.judge_models,
                  "activation_bytes": act},
        hints={"batch": f"{params}.batch_size", "length": f"{params}.max_new_tokens",
               "rollout": f"{params}.batch_size, {params}.max_prompt_length or "
                          f"{params}.max_new_tokens",
               "checkpointing": None,
               "weights": f"fewer reward-model scorers in {params}.scorers, a smaller model, "
                          f"or a device with more memory (the stage loads full weights: an "
                          f"adapter policy is merged)"})


def _base_note(adapter: AdapterSpec, hw: HardwareSpec) -> str:
    if adapter.kind == "qlora":
        return "NF4 + double quant" if adapter.bits == 4 else "int8"
    return hw.dtype


def suggest(est: StageEstimate, hw: HardwareSpec, adapter: AdapterSpec) -> str:
    """What to change first, for the largest component at the peak."""
    kind = est.largest.kind
    more_devices = "--num-devices N" if hw.num_devices == 1 else f"more than {hw.num_devices} devices"
    if kind == "weights":
        if est.hints.get("weights"):
            return est.hints["weights"]
        if adapter.kind != "qlora":
            return "use adapter=qlora (--adapter qlora): a 4-bit frozen base"
        return f"shard the weights (--sharding zero3 or fsdp, {more_devices}) or a smaller model"
    if kind in ("optimizer", "master", "grads", "adapters"):
        if adapter.kind == "none":
            tips = ["use adapter=lora or qlora (--adapter qlora)"]
            if hw.optimizer == "adamw":
                tips.append("--optimizer paged_adamw_8bit")
            if hw.sharding not in SHARDED_BY:
                tips.append(f"--sharding zero2 with {more_devices}")
            return ", or ".join(tips)
        return "lower the LoRA rank (--lora-rank) or target fewer modules"
    if kind == "activations":
        if "ptx" in est.largest.name:
            return f"lower {est.hints['ptx']}"
        if est.hints.get("checkpointing") is False:
            return "turn on gradient checkpointing (--gradient-checkpointing)"
        return f"lower {est.hints['batch']} or {est.hints['length']}"
    if kind == "logits":
        if "ptx" in est.largest.name:
            return f"lower {est.hints['ptx']}"
        if est.largest.phase == "scoring":
            return f"lower {est.hints['rollout']}"
        return f"lower {est.hints['batch']} or {est.hints['length']} (logits are batch x length x vocab)"
    if kind == "kv_cache":
        return f"lower {est.hints['rollout']}"
    return "a device with more memory"
