"""The evaluate stage's parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from framework.plugin_spec import PluginSpec


@dataclass
class EvaluateConfig:
    # The stage inputs that hold the policies, in table order, e.g. [sft, rl]; each is wired
    # under `inputs:` like any other input (sft: sft.model).
    policies: List[str] = field(default_factory=list)
    # The policy every other is measured against: the KL reference and the win-rate baseline.
    # Default: the first of `policies` (the SFT model, as InstructGPT compares).
    baseline: Optional[str] = None
    # Reward sources each sample is scored with, e.g. the simulated labeler and the learned
    # reward model: {labeler: {name: function, params: {function: ...}}}.
    scorers: Dict[str, PluginSpec] = field(default_factory=dict)
    # The scorer whose pairwise verdicts give the win rate (its `compare`). Default: the first.
    judge: Optional[str] = None
    # Scorers measured against held-out comparisons (the `comparisons` input's held-out split):
    # pairwise accuracy and a calibration table of sigmoid(score margin) against what the
    # labelers preferred, e.g. [reward] for the learned reward model's raw scores.
    pairwise: List[str] = field(default_factory=list)
    calibration_bins: int = 10
    num_prompts: int = 24  # from the prompt source's held-out split
    samples_per_prompt: int = 4  # diversity needs several; each policy gets the same seeds
    max_new_tokens: int = 48
    max_prompt_length: int = 1024  # longer prompts are cut from the left, as in rollouts
    temperature: float = 0.7
    batch_size: int = 24
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
