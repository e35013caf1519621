"""The critic: a transformer backbone with a scalar head at every position."""

from __future__ import annotations

import torch
from torch import nn

from framework.errors import ConfigError


class ValueModel(nn.Module):
    """V(s_t) for every prefix of a sequence: `backbone` (an `AutoModel`, no LM head) followed by
    `head` = Linear(hidden, 1) on each position's last hidden state."""

    def __init__(self, backbone: nn.Module, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Linear(backbone.config.hidden_size, 1)
        if head is None:  # a fresh head predicts ~0 at first
            nn.init.normal_(self.head.weight, std=1.0 / (backbone.config.hidden_size + 1) ** 0.5)
            nn.init.zeros_(self.head.bias)
        self.head.to(dtype=next(backbone.parameters()).dtype)

    def forward(self, input_ids, attention_mask=None, position_ids=None,
                use_cache=False) -> torch.Tensor:
        """[B, L] token ids -> [B, L] values."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=use_cache,
        ).last_hidden_state
        return self.head(hidden).squeeze(-1)

    @classmethod
    def from_policy(cls, path: str, **load_kwargs) -> "ValueModel":
        """The policy's transformer with a fresh head (the value starts out knowing nothing)."""
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(path, **load_kwargs))

    @classmethod
    def from_reward_model(cls, path: str, **load_kwargs) -> "ValueModel":
        """InstructGPT's choice: the reward model's transformer and its `score` head, so V starts
        from the RM's estimate of the final score."""
        from transformers import AutoModelForSequenceClassification

        rm = AutoModelForSequenceClassification.from_pretrained(path, **load_kwargs)
        score = getattr(rm, "score", None)
        if not isinstance(score, nn.Linear) or score.out_features != 1:
            raise ConfigError(
                f"value_init=reward_model: the checkpoint {path!r} has no `score` Linear head with "
                f"one output (found {score!r}); use value_init=policy instead."
            )
        head = nn.Linear(score.in_features, 1)
        with torch.no_grad():
            head.weight.copy_(score.weight)
            head.bias.copy_(score.bias if score.bias is not None else torch.zeros(1))
        return cls(rm.base_model, head)
