"""The RL stage's parameters: which optimizer, which reward source, how to evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from framework.plugin_spec import PluginSpec


@dataclass
class EvaluationConfig:
    """reward_before / reward_after / kl, measured on held-out prompts (the prompt source's
    eval split) by sampling from the starting and the final policy with a fixed seed."""

    num_prompts: int = 32  # 0 turns the evaluation off
    samples_per_prompt: int = 1
    max_new_tokens: int = 48
    temperature: float = 0.7
    batch_size: int = 16


@dataclass
class RLConfig:
    optimizer: PluginSpec = field(default_factory=lambda: PluginSpec("ppo"))
    reward: Optional[PluginSpec] = field(default_factory=lambda: PluginSpec("reward_model"))
    # Further reward sources scored before and after RL without being optimized, e.g. the
    # simulated labeler whose preference the reward model learned: {labeler: {name: function,
    # params: {function: framework.data.builtin.labeler:score}}} reports labeler_before/_after.
    report: Dict[str, PluginSpec] = field(default_factory=dict)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
