"""PPO (InstructGPT's PPO-ptx), owned by the framework: written on transformers, accelerate and
torch. Start with README.md; the arithmetic is in functional.py, the loop in trainer.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from framework.artifacts import MODEL, REWARD_MODEL, Artifact
from framework.errors import ConfigError
from framework.common.distributed import record_weights, world_size
from framework.optimizer import Optimizer, PolicyTrainingJob
from framework_plugins.optimizers.ppo.config import PPOConfig

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

    def adapter_problems(self, adapter, where: str, params_where: str,
                         hardware=None) -> list[str]:
        """With lora/qlora the policy, reference and value share one frozen base (shared_base.py):
        a critic started from the reward model would be a second base, and DDP would wrap the
        one base once for two adapters, so it runs in one process."""
        from framework.hardware.config import total_processes

        problems = []
        if adapter.enabled and self.config.value_init == "reward_model":
            problems.append(
                f"{params_where}.value_init=reward_model: with adapter kind {adapter.kind!r} the "
                f"value model is an adapter on the policy's base, so it cannot start from the "
                f"reward model; set {params_where}.value_init=policy, or {where}.kind=none to "
                f"train the RL stage's full weights.")
        if adapter.enabled and hardware is not None and (
                total_processes(hardware) > 1 or hardware.num_machines > 1):
            problems.append(
                f"{where}.kind={adapter.kind}: PPO on a shared adapter base runs in one process "
                f"for now, but hardware.num_processes={hardware.num_processes}; set "
                f"{where}.kind=none for the RL stage, or run RL with hardware=single_gpu.")
        return problems

    def uses_reward_model(self) -> bool:
        return self.config.value_init == "reward_model"

    def accepts_reference(self) -> bool:
        return True

    def reference_problems(self, adapter, where: str, adapter_where: str) -> list[str]:
        """On a shared adapter base the reference is the base with adapters off, which is the
        starting policy: another reference would need a second base."""
        if not adapter.enabled:
            return []
        return [f"{where}: with adapter kind {adapter.kind!r} PPO's reference is its starting "
                f"policy (the shared base with the adapters off), so it cannot keep another "
                f"reference; set {adapter_where}.kind=none to train the RL stage's full weights, "
                f"or remove {where} to keep the starting policy as reference."]

    def memory_workload(self, stage: str, reward=None):
        from framework.memory.specs import PPOWorkload

        ppo = self.config
        return PPOWorkload(
            stage=stage, batch_size=ppo.batch_size, num_minibatches=ppo.num_minibatches,
            gradient_accumulation_steps=ppo.gradient_accumulation_steps,
            max_prompt_length=ppo.max_prompt_length, max_new_tokens=ppo.max_new_tokens,
            ptx_batch_size=ppo.ptx_batch_size if ppo.ptx_coef > 0 else 0,
            ptx_max_length=ppo.ptx_max_length if ppo.ptx_coef > 0 else 0,
            # a learned reward model held on the device next to the policy
            reward_model=reward is not None and any(
                REWARD_MODEL in port.kinds for port in getattr(reward.cls, "inputs", {}).values()),
        )

    def train(self, job: PolicyTrainingJob) -> tuple[Artifact, Mapping[str, Any]]:
        from framework.models import load_tokenizer
        from framework.models.adapter_models import full_weights_dir
        from framework_plugins.optimizers.ppo.data import check_prompt_lengths, load_prompts, load_texts
        from framework_plugins.optimizers.ppo.trainer import PPOInputs, PPOTrainer

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
        prompts_report = SourceReport("prompts") if report is not None else None
        prompts = load_prompts(job.prompts, report=prompts_report)
        pretraining = None
        if job.pretraining is not None:
            pretraining = load_texts(
                job.pretraining, report=report.source("pretraining") if report is not None else None)
        adapter = job.adapter if job.adapter is not None and job.adapter.enabled else None
        if adapter is not None and world_size() > 1:
            raise ConfigError(
                f"adapter kind {adapter.kind!r} in the RL stage runs in one process for now (the "
                f"policy and value adapters share one base, which DDP would wrap once for both); "
                f"use a single-process hardware profile for RL, or stages.{job.stage}.adapter.kind=none.")
        output_dir = Path(job.output_dir)
        # adapter inputs (LoRA/QLoRA stage outputs) are merged into their bases once, on disk
        policy_path = full_weights_dir(job.policy, output_dir / "start_policy", job.model)
        reference_path = None if job.reference is None else str(full_weights_dir(
            job.reference, output_dir / "start_reference", job.model))
        reward_model_path = None if reward_model is None else full_weights_dir(
            reward_model, output_dir / "start_reward_model", job.model)
        tokenizer = load_tokenizer(job.policy.location, job.model)
        prompts = check_prompt_lengths(prompts, tokenizer, cfg.max_prompt_length, job.prompts,
                                       prompts_report, report)
        kwargs = _load_kwargs(job.model, str(policy_path), f"stages.{job.stage}",
                              str(reward_model_path) if cfg.value_init == "reward_model" else None,
                              reference_path)
        trainer = PPOTrainer(cfg, PPOInputs(
            policy_path=policy_path, tokenizer=tokenizer, reward=job.reward, prompts=prompts,
            output_dir=output_dir, seed=job.seed, load_kwargs=kwargs, pretraining=pretraining,
            reward_model_path=reward_model_path, hardware=job.hardware, adapter=adapter,
            model=job.model, stage=job.stage, reference_path=reference_path))
        metrics = trainer.train()
        record_weights("policy", trainer.accelerator.unwrap_model(trainer.policy))  # diagnostics
        policy_dir = trainer.save_policy(output_dir / "policy")
        if adapter is not None:  # the policy adapter on the (merged) starting policy
            from framework.models.adapter_models import finish_adapter

            return finish_adapter(MODEL, policy_dir, adapter, job.policy, policy_path, output_dir,
                                  job.model), metrics
        return Artifact(MODEL, str(policy_dir), {"base": job.policy.location}), metrics


def _load_kwargs(model_cfg, policy_path: str, where: str, value_path: str | None,
                 reference_path: str | None = None) -> dict:
    """One set of from_pretrained options serves the policy, its reference and the value model,
    so they must agree on trusting remote code; weights must be safetensors (unless allowed)."""
    from framework.models import check_weights_format, load_kwargs, trusts_remote_code

    check_weights_format(policy_path, model_cfg, f"{where}.inputs.policy")
    others = [(reference_path, "reference", "a local copy of the reference"),
              (value_path, "reward_model", "optimizer.value_init=policy or a local copy of the "
                                           "reward model")]
    for path, name, fix in others:
        if path is None:
            continue
        check_weights_format(path, model_cfg, f"{where}.inputs.{name}")
        if trusts_remote_code(model_cfg, path) != trusts_remote_code(model_cfg, policy_path):
            raise ConfigError(
                f"{where}.inputs.{name}: loading {path!r} with the policy's options would run "
                f"its code with trust_remote_code, which model.trust_remote_code enables only "
                f"for {model_cfg.name_or_path!r} and local checkpoints; use {fix}.")
    return load_kwargs(model_cfg, policy_path)


def validate(config: PPOConfig, where: str) -> None:
    problems = config.problems()
    if problems:
        raise ConfigError([f"{where}.{p}" for p in problems])
