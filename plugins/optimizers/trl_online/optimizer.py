"""The `grpo` and `rloo` optimizers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping

from framework.artifacts import MODEL, Artifact
from framework.errors import ConfigError
from framework.optimizer import Optimizer, PolicyTrainingJob

log = logging.getLogger("framework")


@dataclass
class OnlineConfig:
    """The settings every recipe sets; anything else of trl.GRPOConfig / trl.RLOOConfig goes in
    `args` (loss_type, scale_rewards, epsilon, use_vllm, vllm_mode, ...)."""

    steps: int = 8  # optimizer steps (TRL's max_steps)
    prompts_per_step: int = 2  # prompts per optimizer step; each gets num_generations samples
    num_generations: int = 4  # the group of samples per prompt the advantage compares
    max_new_tokens: int = 48  # TRL's max_completion_length
    temperature: float = 1.0
    beta: float = 0.04  # the KL coefficient to the reference (the starting policy)
    num_iterations: int = 1  # passes over each batch of samples (TRL's mu)
    learning_rate: float = 1e-6
    save_every: int = 4  # checkpoint every N steps (resume after a kill)
    # Freeze the embeddings and the lowest N decoder layers, as the TRL stages' freeze_layers.
    freeze_layers: int = 0
    args: Dict[str, Any] = field(default_factory=dict)


class _TRLOnlineOptimizer(Optimizer):
    Config = OnlineConfig
    needs_reward = True
    trl_config: ClassVar[str]
    trl_trainer: ClassVar[str]

    @classmethod
    def parse_config(cls, node: Any, where: str) -> OnlineConfig:
        config = super().parse_config(node, where)
        for key in ("steps", "prompts_per_step", "num_generations", "max_new_tokens",
                    "num_iterations", "save_every"):
            if getattr(config, key) < 1:
                raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(config, key)}.")
        if config.num_generations < 2:
            raise ConfigError(f"{where}.num_generations: the advantage compares a prompt's "
                              f"samples, so it needs at least 2, got {config.num_generations}.")
        if config.freeze_layers < 0:
            raise ConfigError(f"{where}.freeze_layers: must be >= 0.")
        cls.trl_args(config, "checkpoints", 0, where.removesuffix(".params"))  # names bad args
        return config

    @classmethod
    def trl_args(cls, config: OnlineConfig, output_dir: str, seed: int, where: str,
                 hardware=None):
        import trl

        from framework.trl.args import build_config, default_args

        typed = {"max_steps": config.steps, "num_generations": config.num_generations,
                 "per_device_train_batch_size": config.prompts_per_step * config.num_generations,
                 "max_completion_length": config.max_new_tokens,
                 "temperature": config.temperature, "beta": config.beta,
                 "num_iterations": config.num_iterations, "learning_rate": config.learning_rate,
                 "save_steps": config.save_every, "logging_steps": 1}
        clash = sorted(set(typed) & set(config.args))
        if clash:
            raise ConfigError(f"{where}.params.args.{clash[0]}: set by the optimizer's own "
                              f"params (see its config); set it there.")
        return build_config(getattr(trl, cls.trl_config), {**typed, **config.args},
                            default_args(output_dir, seed, hardware), where)

    def adapter_problems(self, adapter, where, params_where, hardware=None) -> list[str]:
        return []  # TRL trains the adapter through peft; the reference is the adapter disabled

    def train(self, job: PolicyTrainingJob) -> tuple[Artifact, Mapping[str, Any]]:
        import trl

        from framework.data import load_examples, source_from_artifact, to_prompts
        from framework.data.report import SourceReport
        from framework.models import load_tokenizer
        from framework.models.adapter_models import (
            CAUSAL_LM, finish_adapter, full_weights_dir, load_trainable)
        from framework.common import training_log
        from framework.common.distributed import is_main_process
        from framework.trl import training
        from framework_plugins.optimizers.trl_online.rewards import TRLRewardFunction

        stage = f"stages.{job.stage}"
        cfg, where = self.config, f"{stage}.params.optimizer"
        output_dir = Path(job.output_dir)
        checkpoints = output_dir / "checkpoints"
        args = self.trl_args(cfg, str(checkpoints), job.seed, where, job.hardware)
        # training prompts as messages; the RL stage reported their skipped rows already, and
        # keeps the held-out ones for its before/after evaluation
        train, _ = load_examples(source_from_artifact(job.prompts, f"{stage}.inputs.prompts"),
                                 f"{stage}.inputs.prompts", to_prompts,
                                 report=SourceReport("prompts"))
        location = full_weights_dir(job.policy, output_dir / "start_policy", job.model)
        tokenizer = load_tokenizer(job.policy.location, job.model)
        adapter = job.adapter if job.adapter is not None and job.adapter.enabled else None
        model, peft_config = load_trainable(
            location, CAUSAL_LM, job.model, adapter, job.hardware,
            gradient_checkpointing=args.gradient_checkpointing, freeze_layers=cfg.freeze_layers,
            where=stage, input_where=f"{stage}.inputs.policy",
            freeze_where=f"{where}.params.freeze_layers")
        trainer = getattr(trl, self.trl_trainer)(
            model=model, reward_funcs=[TRLRewardFunction(job.reward)], args=args,
            train_dataset=train, processing_class=tokenizer, peft_config=peft_config)
        training.train(trainer, checkpoints, where, log)
        if is_main_process():
            training_log.write(output_dir, trainer.state.log_history)  # the report's curves
        metrics = _metrics(trainer)
        policy_dir = output_dir / "policy"
        trainer.save_model(str(policy_dir))
        if adapter is not None:
            return finish_adapter(MODEL, policy_dir, adapter, job.policy, location, output_dir,
                                  job.model), metrics
        return Artifact(MODEL, str(policy_dir), {"base": job.policy.location}), metrics


# TRL's logged keys -> the RL stage's train_* metrics (the mean over the run's steps)
LOGGED = {"reward": "reward", "kl": "kl", "completions/mean_length": "response_length",
          "entropy": "entropy", "loss": "loss"}


def _metrics(trainer) -> dict[str, Any]:
    history = [e for e in trainer.state.log_history if "reward" in e]
    out: dict[str, Any] = {"steps": trainer.state.global_step}
    for key, name in LOGGED.items():
        values = [e[key] for e in history if key in e]
        if values:
            out[f"{name}_first"], out[f"{name}_last"] = float(values[0]), float(values[-1])
    return out


class GRPOOptimizer(_TRLOnlineOptimizer):
    """Group relative policy optimization (Shao et al. 2024), trl.GRPOTrainer: each prompt's
    samples are scored and their rewards normalized within the group; no value model."""

    trl_config, trl_trainer = "GRPOConfig", "GRPOTrainer"


class RLOOOptimizer(_TRLOnlineOptimizer):
    """REINFORCE leave-one-out (Ahmadian et al. 2024), trl.RLOOTrainer: each sample's baseline is
    the mean reward of its group's other samples; no value model."""

    trl_config, trl_trainer = "RLOOConfig", "RLOOTrainer"
