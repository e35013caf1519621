"""The `ensemble` reward source: a weighted sum of member sources, each normalized first.

    reward:
      name: ensemble
      params:
        members:                       # nested specs, each with its own params and inputs
          reward: {name: reward_model}
          labeler: {name: function, params: {function: framework.data.builtin.labeler:score}}
        weights: {reward: 1.0, labeler: 0.5}   # default 1.0 each

Scales differ (a reward model's logits, a 1-7 judge, a 0/1 check), so with `normalize: true` (the
default) the RL stage calibrates the ensemble on samples of the starting policy: each member's
scores there give its mean and standard deviation, and the ensemble scores
sum_i w_i * (s_i - mean_i) / std_i. A member that normalizes itself is calibrated first, on the
same samples. Each member's mean score over the last scored batch is in `metrics()`, which the
PPO loop logs as `reward/NAME`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Sequence

from framework import plugins
from framework.errors import ConfigError, FrameworkError
from framework.plugin_spec import parse_spec
from framework.reward_source import Prompt, RewardSource


@dataclass
class EnsembleConfig:
    members: Dict[str, Any] = field(default_factory=dict)  # name -> {name, params, inputs}
    weights: Dict[str, float] = field(default_factory=dict)  # name -> weight (default 1.0)
    normalize: bool = True  # each member to mean 0, std 1 on starting-policy samples
    calibration_size: int = 32


class EnsembleReward(RewardSource):
    Config = EnsembleConfig

    @classmethod
    def parse_config(cls, node: Any, where: str) -> EnsembleConfig:
        config = super().parse_config(node, where)
        if not config.members:
            raise ConfigError(f"{where}.members: empty; name at least two reward sources, e.g. "
                              f"{{reward: {{name: reward_model}}, labeler: {{name: function, "
                              f"params: {{function: ...}}}}}}.")
        config.members = {k: parse_spec(plugins.reward_sources, v, f"{where}.members.{k}")
                          for k, v in config.members.items()}
        unknown = sorted(set(config.weights) - set(config.members))
        if unknown:
            raise ConfigError(f"{where}.weights: {unknown} are not members "
                              f"({', '.join(config.members)}).")
        for name, weight in config.weights.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"{where}.weights.{name}: {weight!r} is not a finite number.")
        if config.normalize and config.calibration_size < 2:
            raise ConfigError(f"{where}.calibration_size: a standard deviation needs at least 2 "
                              f"samples, got {config.calibration_size}.")
        return config

    def __init__(self, config: EnsembleConfig):
        if not all(hasattr(m, "instance") for m in config.members.values()):
            config = self.parse_config(dict(vars(config)), "reward.params")  # built directly
        super().__init__(config)
        self.where = "reward"
        self.stats: dict[str, dict] | None = None
        self.last_means: dict[str, float] = {}

    def nested(self):
        return self.config.members

    def check(self, where: str) -> None:
        self.where = where
        for name, member in self.config.members.items():
            member.instance.check(f"{where}.members.{name}.params")

    def setup(self, inputs: Mapping, device=None, model_cfg=None) -> None:
        for member in self.config.members.values():
            member.instance.setup(member.artifacts, device=device, model_cfg=model_cfg)

    # ------------------------------------------------------------------------- normalization
    @property
    def needs_calibration(self) -> bool:
        return self.config.normalize and self.stats is None

    @property
    def calibration_size(self) -> int:
        sizes = [m.instance.calibration_size for m in self.config.members.values()
                 if m.instance.needs_calibration]
        return max([self.config.calibration_size, *sizes])

    def calibrate(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> dict:
        stats = {}
        for name, member in self.config.members.items():
            source = member.instance
            if source.needs_calibration:
                source.calibrate(prompts, responses)
            n = self.config.calibration_size
            scores = source.score(prompts[:n], responses[:n])
            mean = sum(scores) / len(scores)
            std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
            if not std > 0:
                raise FrameworkError(
                    f"{self.where}.members.{name}: its {len(scores)} calibration scores are all "
                    f"{mean}, so it cannot be normalized; give it varied samples (raise "
                    f"{self.where}.calibration_size), drop it, or set {self.where}.normalize=false.")
            stats[name] = {"mean": mean, "std": std, "count": len(scores)}
        self.stats = stats
        return {name: dict(s) for name, s in stats.items()}

    def state_dict(self) -> dict:
        return {name: dict(s) for name, s in (self.stats or {}).items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stats = {name: dict(s) for name, s in state.items()} if state else None

    # ------------------------------------------------------------------------- scoring
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if self.needs_calibration:
            raise FrameworkError(f"{self.where}.normalize=true but the ensemble is not "
                                 f"calibrated: the stage calls calibrate() on starting-policy "
                                 f"samples first, or set {self.where}.normalize=false.")
        total = [0.0] * len(responses)
        self.last_means = {}
        for name, member in self.config.members.items():
            scores = member.instance.score(prompts, responses)
            if len(scores) != len(responses):
                raise FrameworkError(f"{self.where}.members.{name}: returned {len(scores)} scores "
                                     f"for {len(responses)} responses.")
            self.last_means[name] = sum(scores) / max(1, len(scores))
            if self.stats is not None:
                mean, std = self.stats[name]["mean"], self.stats[name]["std"]
                scores = [(s - mean) / std for s in scores]
            weight = self.config.weights.get(name, 1.0)
            total = [t + weight * s for t, s in zip(total, scores)]
        return total

    def metrics(self) -> dict[str, float]:
        """Each member's mean raw score over the last scored batch."""
        return dict(self.last_means)
