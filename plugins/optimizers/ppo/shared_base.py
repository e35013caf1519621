"""PPO with adapters: one frozen base shared by the three models PPO needs.

  policy     base + the "policy" LoRA adapter
  reference  the same base with adapters disabled: exactly the starting policy, at no extra
             memory (the base is the SFT model, an SFT adapter merged in first)
  value      base + the "value" LoRA adapter, with its own scalar head on the last hidden state

The base is stored once (in 4 bits under qlora); only the two adapters and the head train.
`use()` switches the active adapter without changing what is trainable, so a policy forward and
a value forward can share one backward pass. Forward passes go through the peft-injected
transformers model itself, so `framework.rollout`'s helpers (shared-prefix KV cache,
logits_to_keep) apply unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from framework.models.adapter_models import CAUSAL_LM
from framework.models.adapters import AdapterConfig, lora_config

POLICY, VALUE = "policy", "value"
ADAPTERS = (POLICY, VALUE)


def build_shared_model(base, adapter: AdapterConfig):
    """A PeftModel over `base` (a causal LM, frozen; quantized and prepared for qlora, see
    framework.models.adapter_models.load_for_training) with fresh "policy" and "value" adapters,
    both trainable. LoRA's B starts at zero: at first the policy is the reference."""
    from peft import get_peft_model

    model = get_peft_model(base, lora_config(adapter, CAUSAL_LM), adapter_name=POLICY)
    model.add_adapter(VALUE, lora_config(adapter, CAUSAL_LM))
    model.set_adapter(POLICY)
    model.set_requires_grad(list(ADAPTERS), True)
    return model


@contextmanager
def use(model, name: str):
    """Run the block with adapter `name` active. peft's set_adapter also freezes the other
    adapters; both stay trainable here (a summed PPO loss backpropagates into both)."""
    previous = model.active_adapter
    model.set_adapter(name)
    model.set_requires_grad(list(ADAPTERS), True)
    try:
        yield model.get_base_model()
    finally:
        model.set_adapter(previous)
        model.set_requires_grad(list(ADAPTERS), True)


def load_adapters(model, path) -> None:
    """Restore both adapters from `model.save_pretrained(path)` (peft writes one folder per
    named adapter); every saved weight must find its place."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    device = str(next(model.parameters()).device)
    for name in ADAPTERS:
        result = set_peft_model_state_dict(
            model, load_peft_weights(str(Path(path) / name), device=device), adapter_name=name)
        if result.unexpected_keys:
            raise RuntimeError(f"{path}/{name}: weights {result.unexpected_keys[:3]} do not fit "
                               f"this model's {name!r} adapter; the checkpoint is from another "
                               f"adapter config.")
    model.set_requires_grad(list(ADAPTERS), True)


def save_policy_adapter(model, path, base: str) -> None:
    """The policy adapter alone, as a peft folder that PeftModel.from_pretrained loads onto
    `base` (the merged starting policy)."""
    import shutil
    import tempfile

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.peft_config[POLICY].base_model_name_or_path = base
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        model.save_pretrained(tmp, selected_adapters=[POLICY], safe_serialization=True)
        for item in (Path(tmp) / POLICY).iterdir():  # peft nests a named adapter in a folder
            shutil.move(str(item), str(path / item.name))


def adapter_parameters(model, name: str) -> list[nn.Parameter]:
    """The trainable weights of adapter `name` (for its own optimizer or learning rate)."""
    return [p for n, p in model.named_parameters() if f".{name}." in n or n.endswith(f".{name}")]


def policy_logprobs(model, rollout, temperature: float) -> torch.Tensor:
    """log pi(y_t | s_t) under base + policy adapter: [B, T]."""
    from framework.rollout import response_logprobs

    with use(model, POLICY) as lm:
        return response_logprobs(lm, rollout, temperature)


@torch.no_grad()
def reference_logprobs(model, rollout, temperature: float) -> torch.Tensor:
    """log pi_ref(y_t | s_t): the same base with every adapter disabled: [B, T]."""
    from framework.rollout import response_logprobs

    with model.disable_adapter():
        return response_logprobs(model.get_base_model(), rollout, temperature)


class SharedValueModel(nn.Module):
    """V(s_t) from base + value adapter, with a Linear(hidden, 1) head; called like
    value_model.ValueModel (so rollout.response_values works). The shared model is referenced,
    not registered: this module's parameters are the head only; the value adapter's weights
    come from adapter_parameters(shared, VALUE)."""

    def __init__(self, shared, head: Optional[nn.Linear] = None):
        super().__init__()
        self.__dict__["shared"] = shared  # not a submodule: its base belongs to no one optimizer
        hidden = shared.get_base_model().config.get_text_config().hidden_size
        self.head = head if head is not None else nn.Linear(hidden, 1)
        if head is None:  # a fresh head predicts ~0 at first, as ValueModel's
            nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
            nn.init.zeros_(self.head.bias)

    @property
    def backbone(self):
        """The transformers model the critic runs (for framework/packing.py)."""
        return self.shared.get_base_model()

    def forward(self, input_ids, attention_mask=None, position_ids=None,
                use_cache=False) -> torch.Tensor:
        """[B, L] token ids -> [B, L] values."""
        with use(self.shared, VALUE) as lm:
            hidden = lm.base_model(  # the transformer without its LM head
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=use_cache,
            ).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)
