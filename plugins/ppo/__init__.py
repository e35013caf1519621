"""PPO (InstructGPT's PPO-ptx), owned by the framework: written on transformers, accelerate and
torch. Start with README.md; the arithmetic is in functional.py, the loop in trainer.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from framework.artifacts import MODEL, Artifact
from framework.errors import ConfigError
from framework.optimizer import Optimizer, PolicyTrainingJob
from framework_plugins.ppo.config import PPOConfig

__all__ = ["PPOConfig", "PPOOptimizer"]


class PPOOptimizer(Optimizer):
    """Proximal policy optimization against a reward source, with a KL penalty to the starting
    policy, a learned value function, and an optional pretraining (ptx) term."""

    Config = PPOConfig
    needs_reward = True

    def __init__(self, config: PPOConfig):
        super().__init__(config)
        validate(config, "optimizer")

    @classmethod
    def parse_config(cls, node: Any, where: str) -> PPOConfig:
        config = super().parse_config(node, where)
        validate(config, where)
        return config

    def uses_pretraining(self) -> bool:
        return self.config.ptx_coef > 0

    def uses_reward_model(self) -> bool:
        return self.config.value_init == "reward_model"

    def train(self, job: PolicyTrainingJob) -> tuple[Artifact, Mapping[str, Any]]:
        from framework.models import load_kwargs, load_tokenizer, resolve_model_path
        from framework_plugins.ppo.data import load_prompts, load_texts
        from framework_plugins.ppo.trainer import PPOTrainer

        cfg = self.config
        if job.reward is None:
            raise ConfigError("PPO needs a reward source: wire one into the RL stage's `reward`.")
        if cfg.ptx_coef > 0 and job.pretraining is None:
            raise ConfigError(f"optimizer.ptx_coef={cfg.ptx_coef} needs pretraining text: wire a "
                              f"`pretraining` input, or set ptx_coef=0.")
        if cfg.ptx_coef == 0 and job.pretraining is not None:
            raise ConfigError("A `pretraining` input is wired but optimizer.ptx_coef=0 would "
                              "ignore it; set ptx_coef > 0 (InstructGPT used 27.8) or remove it.")
        reward_model = job.reward_model
        if cfg.value_init == "reward_model" and reward_model is None:
            raise ConfigError("optimizer.value_init=reward_model needs a reward-model checkpoint "
                              "in the job; set value_init=policy to start the value model from "
                              "the policy.")

        # The RL stage loaded and reported the prompts already; a report of its own keeps their
        # skipped rows from being logged twice. Pretraining text is reported here, once.
        from framework.data.report import SourceReport

        report = job.data_report
        prompts = load_prompts(job.prompts, report=SourceReport("prompts") if report is not None else None)
        pretraining = None
        if job.pretraining is not None:
            pretraining = load_texts(
                job.pretraining, report=report.source("pretraining") if report is not None else None)
        output_dir = Path(job.output_dir)
        policy_path = resolve_model_path(job.policy.location)
        tokenizer = load_tokenizer(job.policy.location, job.model)
        trainer = PPOTrainer(
            cfg, policy_path=policy_path, tokenizer=tokenizer, reward=job.reward,
            prompts=prompts, output_dir=output_dir, seed=job.seed,
            load_kwargs=load_kwargs(job.model),
            pretraining=pretraining,
            reward_model_path=resolve_model_path(reward_model.location) if reward_model else None,
        )
        metrics = trainer.train()
        policy_dir = trainer.save_policy(output_dir / "policy")
        return Artifact(MODEL, str(policy_dir), {"base": job.policy.location}), metrics


def validate(config: PPOConfig, where: str) -> None:
    problems = config.problems()
    if problems:
        raise ConfigError([f"{where}.{p}" for p in problems])
