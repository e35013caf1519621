"""The `reward_model` reward source: a sequence-classification checkpoint scores each pair.

A pair is formatted exactly as TRL's RewardTrainer formatted it in the reward-model stage: the
prompt messages plus the response as one assistant message, through the tokenizer's chat
template; a string prompt is one user turn. The score is the model's single logit, read at the
last token that is not the pad id, as the model's own pass reads it. Decoder models with a `score`
head run packed (framework/packing.py): no padding, a prefix the pairs share (a system prompt)
once.

With `normalize: true` the RL stage calls `calibrate()` on samples of the starting (SFT) policy;
scores are then `(raw - mean) / std` of those samples, so the SFT policy scores 0 on average as in
InstructGPT. `state_dict()` / `load_state_dict()` save and restore the statistics.

Loading options (dtype, revision, trust_remote_code, chat_template) come from the `model` config
node when the stage gives one: `setup(inputs, device, model_cfg=...)` or the `model_cfg` attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from framework.artifacts import REWARD_MODEL, Artifact, Port
from framework.errors import ConfigError, DataError, FrameworkError
from framework.reward_source import Prompt, RewardSource, prompt_messages

if TYPE_CHECKING:
    import torch


@dataclass
class RewardModelSourceConfig:
    batch_size: int = 16  # pairs per forward pass
    max_length: int = 512  # tokens of prompt + response, chat template included
    truncate: bool = False  # keep the last max_length tokens of a longer pair instead of failing
    normalize: bool = False  # score (raw - mean) / std of SFT-policy samples, see calibrate()
    calibration_size: int = 64  # samples the normalization statistics are computed over

    def problems(self) -> list[str]:
        p = [f"{key}={getattr(self, key)!r}: must be >= 1." for key in ("batch_size", "max_length")
             if getattr(self, key) < 1]
        if self.calibration_size < 2:
            p.append(f"calibration_size={self.calibration_size!r}: a standard deviation needs at "
                     f"least 2 samples; InstructGPT-style runs use dozens (default 64).")
        return p


class RewardModelReward(RewardSource):
    Config = RewardModelSourceConfig
    # fed by the enclosing stage's `reward_model` input unless the spec's `inputs` says otherwise
    inputs = {"reward_model": Port((REWARD_MODEL,),
                                   doc="the reward-model stage's output, a path, a hub id")}
    model_cfg: Any = None  # the `model` config node, if the stage sets it before setup()

    def __init__(self, config: RewardModelSourceConfig):
        super().__init__(config)
        self.where = "reward"  # the config node, for messages; check() sets the real one
        validate(config, self.where)
        self.model = self.tokenizer = self.device = self.packed = None
        self.stats: Optional[dict] = None

    @classmethod
    def parse_config(cls, node: Any, where: str) -> RewardModelSourceConfig:
        config = super().parse_config(node, where)
        validate(config, where)
        return config

    def check(self, where: str) -> None:
        self.where = where
        validate(self.config, where)

    # ------------------------------------------------------------------------- loading

    def setup(self, inputs: Mapping[str, Artifact], device=None, model_cfg=None) -> None:
        import torch
        from framework.models import ModelConfig, load_tokenizer
        from framework.models.adapter_models import SEQ_CLS, load_for_scoring

        if "reward_model" not in (inputs or {}):
            raise ConfigError(f"{self.where}: the reward_model source needs its `reward_model` "
                              f"input; wire the reward-model stage's output, a local path or a "
                              f"hub id to it.")
        model_cfg = model_cfg if model_cfg is not None else self.model_cfg
        artifact = inputs["reward_model"]
        location = artifact.location
        tokenizer = load_tokenizer(location, model_cfg)
        if tokenizer.chat_template is None:
            raise ConfigError(f"{self.where}.inputs.reward_model: the tokenizer of {location!r} has no "
                              f"chat template, so pairs cannot be formatted as in training; set "
                              f"model.chat_template to the one the reward model was trained with.")
        # a lora adapter is merged into its base; a qlora one runs on its 4-bit base
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = load_for_scoring(artifact, model_cfg or ModelConfig(), SEQ_CLS,
                                 f"{self.where}.inputs.reward_model", self.device)
        if model.config.num_labels != 1:
            raise ConfigError(f"{self.where}.inputs.reward_model: {location!r} has num_labels="
                              f"{model.config.num_labels} ({model.config.architectures}), not a "
                              f"reward model's single score; wire the reward-model stage's output.")
        # As RewardTrainer does: the model finds each sequence's last token by the pad id.
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.packed = packed_scoring(self.model)

    def encode(self, prompt: Prompt, response: str, index: int = 0) -> list[int]:
        """Token ids of one pair, built as RewardTrainer builds `prompt + chosen` in training."""
        messages = _messages(prompt, f"{self.where}: prompt {index}")
        messages.append({"role": "assistant", "content": response})
        encoded = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        ids = list(encoded["input_ids"])
        limit = self.config.max_length
        if len(ids) > limit:
            if not self.config.truncate:
                raise DataError(
                    f"{self.where}.max_length: pair {index} is {len(ids)} tokens (chat template "
                    f"included), more than max_length={limit}. Raise it (up to the length the "
                    f"reward model was trained on), shorten prompts or responses, or set "
                    f"{self.where}.truncate=true to score the last {limit} tokens.")
            ids = ids[-limit:]  # the score is read at the last token: keep the response's end
        return ids

    # ------------------------------------------------------------------------- scoring

    def raw_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Unnormalized scores, `batch_size` pairs per forward pass."""
        if self.model is None:
            raise FrameworkError(f"{self.where}: score() before setup(); the stage must call "
                                 f"setup(inputs, device) first.")
        if len(prompts) != len(responses):
            raise ValueError(f"{self.where}: {len(prompts)} prompts but {len(responses)} responses.")
        return self._score_ids([self.encode(p, r, i)
                                for i, (p, r) in enumerate(zip(prompts, responses))])

    def score_formatted(self, texts: Sequence[str]) -> list[float]:
        """Raw scores of texts already formatted with the chat template (prompt and response),
        as OpenRLHF's remote reward model receives them (serve-reward's /get_reward)."""
        if self.model is None:
            raise FrameworkError(f"{self.where}: score_formatted() before setup().")
        encoded = []
        for i, text in enumerate(texts):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > self.config.max_length:
                if not self.config.truncate:
                    raise DataError(f"{self.where}.max_length: text {i} is {len(ids)} tokens, "
                                    f"more than max_length={self.config.max_length}.")
                ids = ids[-self.config.max_length:]
            encoded.append(ids)
        return self._score_ids(encoded)

    def _score_ids(self, encoded: list[list[int]]) -> list[float]:
        import torch

        # Similar lengths share a batch so that little compute goes to padding.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores = [0.0] * len(encoded)
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                # the plain pass pads right, as RewardTrainer's collator; the packed pass left,
                # where packing.shared_prefix_length finds the rows' common start
                batch = self.tokenizer.pad(
                    {"input_ids": [encoded[i] for i in chunk]}, padding=True,
                    padding_side="left" if self.packed else "right", return_tensors="pt")
                logits = self.logits(batch.to(self.device)).float().tolist()
                for i, value in zip(chunk, logits):
                    if not math.isfinite(value):
                        raise FrameworkError(f"{self.where}: the reward model returned {value} for "
                                             f"pair {i}; check the checkpoint and model.dtype.")
                    scores[i] = value
        return scores

    def logits(self, batch) -> torch.Tensor:
        """[B] scores of a padded batch: packed (no padding, a prefix the pairs share once) where
        the model allows, else the model's own pass."""
        from framework import packing

        if self.packed is None:
            return self.model(**batch).logits[:, 0]
        backbone, head = self.packed
        ids, mask = batch["input_ids"], batch["attention_mask"]
        shared = packing.shared_prefix_length(ids, mask)  # on the left-padded rows
        pad = self.model.config.get_text_config().pad_token_id
        if pad is not None:  # read, as the model's own pass, at the last token that is not pad
            trailing = (ids != pad).flip(1).cumsum(1).flip(1) == 0
            mask = mask * ~trailing
            shared = max(0, min(shared, int(mask.sum(1).min()) - 1))
        rows = packing.PackedRows.last_tokens(ids, mask, shared)
        hidden = packing.forward(backbone, rows).last_hidden_state[0]
        return head(hidden[rows.response_index[:, 0]])[:, 0]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if not self.config.normalize:
            return self.raw_scores(prompts, responses)
        if self.stats is None:
            raise FrameworkError(
                f"{self.where}.normalize=true but the source is not calibrated: call "
                f"calibrate(prompts, responses) with SFT-policy samples (or load_state_dict() with "
                f"saved statistics) before scoring, or set {self.where}.normalize=false.")
        mean, std = self.stats["mean"], self.stats["std"]
        return [(s - mean) / std for s in self.raw_scores(prompts, responses)]

    # ------------------------------------------------------------------------- normalization

    @property
    def needs_calibration(self) -> bool:
        return self.config.normalize and self.stats is None

    @property
    def calibration_size(self) -> int:
        return self.config.calibration_size

    def calibrate(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> dict:
        """Mean and std of the raw scores of the first `calibration_size` pairs; later scores are
        normalized by them. Returns the statistics (also `state_dict()`)."""
        import torch

        n = self.config.calibration_size
        if not self.config.normalize:
            raise ConfigError(f"{self.where}.normalize is false, so calibration would be unused; "
                              f"set {self.where}.normalize=true or do not call calibrate().")
        if len(prompts) < n:
            raise ValueError(f"{self.where}.calibration_size={n}: calibrate() got only "
                             f"{len(prompts)} samples; pass at least {n} or lower calibration_size.")
        raw = torch.tensor(self.raw_scores(prompts[:n], responses[:n]), dtype=torch.float64)
        stats = {"mean": raw.mean().item(), "std": raw.std().item(), "count": n}
        self.load_state_dict(stats)
        return dict(stats)

    def state_dict(self) -> dict:
        return dict(self.stats) if self.stats is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            self.stats = None
            return
        missing = [k for k in ("mean", "std", "count") if k not in state]
        if missing:
            raise ValueError(f"{self.where}: normalization state lacks {', '.join(missing)}; "
                             f"expected what state_dict() returned.")
        if not state["std"] > 0 or not math.isfinite(state["mean"]):
            raise FrameworkError(
                f"{self.where}: the {state['count']} calibration samples have mean "
                f"{state['mean']} and std {state['std']}; normalizing needs a finite mean and a "
                f"std > 0. Calibrate on varied samples (raise {self.where}.calibration_size) or "
                f"set {self.where}.normalize=false.")
        self.stats = {"mean": float(state["mean"]), "std": float(state["std"]),
                      "count": int(state["count"])}


def packed_scoring(model) -> tuple | None:
    """(backbone, score head) of a sequence classifier whose score is its `score` Linear on the
    backbone's last hidden state at the last token (transformers' `*ForSequenceClassification`
    of decoder models) and whose backbone can run packed (framework/packing.py); else None."""
    from torch import nn
    from transformers import PreTrainedModel

    from framework import packing

    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = getattr(model, "score", None)
    if (isinstance(model, PreTrainedModel) and isinstance(head, nn.Linear)
            and packing.supported(backbone)):
        return backbone, head
    return None


def validate(config: RewardModelSourceConfig, where: str) -> None:
    problems = config.problems()
    if problems:
        raise ConfigError([f"{where}.{p}" for p in problems])


def _messages(prompt: Prompt, where: str) -> list[dict]:
    """A prompt as chat messages (a string is one user turn), with a clear error otherwise."""
    if isinstance(prompt, str) or (isinstance(prompt, (list, tuple)) and prompt and all(
            isinstance(m, Mapping) and "role" in m and "content" in m for m in prompt)):
        return prompt_messages(prompt)
    raise DataError(f"{where} is {prompt!r:.200}; expected a string or a non-empty list of "
                    f"{{role, content}} chat messages.")
