"""A decoder-only transformer's shape (layers, widths, heads, vocabulary), read from its config
alone: never from weights. The memory planner and the hardware profiles size models with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from framework.errors import ConfigError

# Model types whose MLP is up -> activation -> down (no gate). Everything else is taken to be
# gated (SwiGLU/GeGLU: gate, up, down), as in Llama, Mistral, Qwen2, Gemma, SmolLM.
NON_GATED_MODEL_TYPES = {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "gpt_bigcode",
                         "starcoder2", "codegen"}
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
            from framework.models.embedded import gguf_location

            folder, gguf_file = gguf_location(embedded)
            config = AutoConfig.from_pretrained(str(folder), gguf_file=gguf_file)
    else:
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.name_or_path: cannot read the config of {name_or_path!r} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]}). Give a local "
                              f"checkpoint folder, or a hub id with network or a filled HF "
                              f"cache.") from None
    return model_shape_from_config(config, name=name_or_path)
