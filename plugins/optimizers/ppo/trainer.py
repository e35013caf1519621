"""The PPO loop (InstructGPT's PPO-ptx) on accelerate.

Models:
  policy     pi, the causal LM being trained
  reference  pi_ref, frozen: the starting policy, or another (reference_path: the SFT model
             while a later round starts from the previous round's policy); the KL penalty keeps
             pi near it
  value      V, a separate transformer with a scalar head (see value_model.py)

One step:
  1. rollout     sample a response to each of `batch_size` prompts; score them with the reward
  2. experience  log-probs under pi and pi_ref, values, shaped rewards, GAE advantages/returns
  3. update      `ppo_epochs` passes over the rollout in `num_minibatches` minibatches:
                 loss = policy loss + vf_coef * value loss (+ ptx_coef * LM loss on pretraining
                 text), one optimizer step per minibatch
  4. adapt beta to the measured KL; log; checkpoint

Policy and value have separate AdamW optimizers: they are separate networks, so one backward
through their summed loss gives each its own gradient anyway; two optimizers let each have its
own learning rate and its own gradient-norm clip (value gradients are often much larger and
would otherwise eat the policy's clipping budget). vf_coef still scales the value gradient.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from accelerate.utils import set_seed
from torch.utils.tensorboard import SummaryWriter
from transformers import AutoModelForCausalLM

from framework import rollout
from framework.common import training_log
from framework.errors import ConfigError
from framework.hardware.config import HardwareConfig
from framework.hardware.accelerate_args import make_accelerator
from framework.hardware.cpu_allocator import keep_freed_memory
from framework.models.adapters import AdapterConfig
from framework.models.config import ModelConfig
from framework.reward_source import RewardSource, prompt_text
from framework_plugins.optimizers.ppo import checkpoint
from framework_plugins.optimizers.ppo import functional as F
from framework_plugins.optimizers.ppo import guards, shared_base
from framework_plugins.optimizers.ppo.config import PPOConfig
from framework_plugins.optimizers.ppo.data import Prompt, SeededOrder
from framework_plugins.optimizers.ppo.kl_control import AdaptiveKLController, FixedKLController
from framework_plugins.optimizers.ppo.value_model import ValueModel

logger = logging.getLogger(__name__)


def adamw(params, lr: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters (CPU and CUDA floats):
    the same update rule in one pass over each tensor instead of a dozen elementwise ops (what
    transformers' Trainer uses by default). On a shared 2-core CPU one step over 135M fp32
    parameters took 0.5 s fused against 3.9 s unfused; PPO takes two (policy, value) per
    minibatch. Falls back to the default implementation where fused is unsupported."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr)


@dataclass
class PPOInputs:
    """What a PPO run trains on, resolved by the optimizer (plugins/optimizers/ppo/__init__.py)
    from the RL stage's job: paths are local full-weight checkpoints, prompts are loaded."""

    policy_path: str  # the starting policy; also the frozen reference unless reference_path
    tokenizer: Any
    prompts: list[Prompt]
    reward: RewardSource
    output_dir: Path  # checkpoints and TensorBoard logs go here
    seed: int
    load_kwargs: dict = field(default_factory=dict)  # from_pretrained options (remote code, ...)
    pretraining: Optional[list[str]] = None  # texts for the PPO-ptx term
    reward_model_path: Optional[str] = None  # for value_init=reward_model
    hardware: Optional[HardwareConfig] = None
    adapter: Optional[AdapterConfig] = None  # lora/qlora: one shared base (shared_base.py)
    model: ModelConfig = field(default_factory=ModelConfig)  # loading options (dtype, ...)
    stage: str = "rl"  # the stage's key in the recipe, for config paths in errors
    reference_path: Optional[str] = None  # a full-weight reference other than the start


class PPOTrainer:
    def __init__(self, config: PPOConfig, inputs: PPOInputs):
        policy_path, tokenizer, prompts = inputs.policy_path, inputs.tokenizer, inputs.prompts
        pretraining, hardware, adapter = inputs.pretraining, inputs.hardware, inputs.adapter
        seed, model_cfg = inputs.seed, inputs.model
        self.cfg, self.tokenizer, self.reward = config, tokenizer, inputs.reward
        self.policy_path = policy_path
        self.where = f"stages.{inputs.stage}"
        self.prompts, self.pretraining = prompts, pretraining
        self.output_dir = Path(inputs.output_dir)
        self.accelerator = make_accelerator(hardware)  # the profile's precision and device
        if self.accelerator.device.type == "cpu":
            keep_freed_memory()  # see framework/hardware/cpu_allocator.py: ~20% a step
        set_seed(seed)
        load_kwargs = inputs.load_kwargs

        root = self.output_dir / "checkpoints"
        resume_from = checkpoint.latest(root)
        if resume_from is not None and not config.resume:
            raise ConfigError(f"resume=false but {self.output_dir} already holds the checkpoint "
                              f"{resume_from.name}; set resume=true to continue it, or use an "
                              f"empty output_dir.")

        self.shared = None  # the peft model whose one base serves policy, reference and value
        if adapter is not None and adapter.enabled:
            if inputs.reference_path is not None:  # planning refuses it first (reference_problems)
                raise ConfigError(f"{self.where}.inputs.reference: PPO on a shared adapter base "
                                  f"keeps its starting policy as reference; train full weights "
                                  f"({self.where}.adapter.kind=none) to keep another.")
            trainable = self._shared_base_models(policy_path, adapter, model_cfg, hardware,
                                                 load_kwargs, resume_from)
        else:
            trainable = self._separate_models(policy_path, load_kwargs, resume_from,
                                              inputs.reward_model_path,
                                              inputs.reference_path or policy_path)
        self.trainable = trainable  # "policy"/"value" -> the parameters each optimizer steps
        self.optimizers = {
            "policy": adamw(trainable["policy"], config.learning_rate),
            "value": adamw(trainable["value"], config.value_learning_rate),
        }
        if config.adaptive_kl:
            self.kl_ctl = AdaptiveKLController(config.init_kl_coef, config.target_kl,
                                               config.kl_horizon)
        else:
            self.kl_ctl = FixedKLController(config.init_kl_coef)
        self.order = SeededOrder(len(prompts), seed)
        self.ptx_order = SeededOrder(len(pretraining), seed + 1) if pretraining else None
        self.step = self.saved_step = 0
        self.history: list[dict] = []  # each step's stats; a resumed run restores the earlier ones
        if resume_from is not None:
            state = checkpoint.load(resume_from, value_model=self.value, optimizers=self.optimizers)
            self.step = self.saved_step = state["step"]
            self.history = state.get("history", [])  # the steps before the stop, for the log
            self.order.load_state_dict(state["data"])
            self.kl_ctl.load_state_dict(state["kl"])
            if self.ptx_order is not None:
                self.ptx_order.load_state_dict(state["ptx_data"])
            logger.info("Resuming PPO from %s (step %d)", resume_from, self.step)

        acc = self.accelerator
        self.policy, self.value, opt_p, opt_v = acc.prepare(
            self.policy, self.value, self.optimizers["policy"], self.optimizers["value"])
        self.optimizers = {"policy": opt_p, "value": opt_v}
        if self.reference is not None:
            self.reference = acc.prepare_model(self.reference, evaluation_mode=True)
        self.chat_texts = [
            tokenizer.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        self.writer = None
        if acc.is_main_process:
            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"),
                                        purge_step=self.step + 1 if self.step else None)

    def _separate_models(self, policy_path, load_kwargs, resume_from, reward_model_path,
                         reference_path) -> dict:
        """Full fine-tuning: policy, frozen reference and value are three networks."""
        start = resume_from / "policy" if resume_from else policy_path
        self.policy = AutoModelForCausalLM.from_pretrained(start, **load_kwargs)
        self.reference = AutoModelForCausalLM.from_pretrained(reference_path, **load_kwargs)
        self.reference.requires_grad_(False)
        if self.cfg.value_init == "reward_model":
            self.value = ValueModel.from_reward_model(reward_model_path, **load_kwargs)
        else:
            self.value = ValueModel.from_policy(policy_path, **load_kwargs)
        # Dropout off everywhere (eval mode still computes gradients): the rollout's log-probs
        # and the update's must come from the same function, or the ratio is noise at step 0.
        for model in (self.policy, self.reference, self.value):
            model.eval()
        return {"policy": list(self.policy.parameters()), "value": list(self.value.parameters())}

    def _shared_base_models(self, policy_path, adapter, model_cfg, hardware, load_kwargs,
                            resume_from) -> dict:
        """LoRA/QLoRA: one frozen base (4-bit under qlora) with a policy and a value adapter;
        the reference is the base with adapters disabled (see shared_base.py)."""
        from framework.models.adapter_models import (
            CAUSAL_LM,
            load_for_training,
            match_trainable_dtype,
        )

        base, _ = load_for_training(str(policy_path), CAUSAL_LM, model_cfg, adapter, hardware,
                                    where=self.where, init_kwargs=load_kwargs)
        self.shared = shared_base.build_shared_model(base, adapter)
        match_trainable_dtype(self.shared, adapter, model_cfg, hardware)
        if resume_from is not None:
            shared_base.load_adapters(self.shared, resume_from / "policy")
        self.shared.eval()  # no dropout: see _separate_models
        self.policy = self.shared.get_base_model()  # LoRA layers apply the active ("policy") adapter
        self.reference = None
        self.value = shared_base.SharedValueModel(self.shared)
        adapter_weight = next(p for p in self.shared.parameters() if p.requires_grad)
        self.value.head.to(device=adapter_weight.device, dtype=adapter_weight.dtype)
        return {"policy": shared_base.adapter_parameters(self.shared, shared_base.POLICY),
                "value": [*shared_base.adapter_parameters(self.shared, shared_base.VALUE),
                          *self.value.parameters()]}

    # ------------------------------------------------------------------------------ the loop
    def train(self) -> dict:
        stats = {}
        try:
            while self.step < self.cfg.steps:
                guards.stop_if_requested(self)  # SIGINT/SIGTERM: checkpoint, then stop
                experience = self.make_experience()
                self.current_rollout = experience["rollout"]  # named by a divergence error
                guards.check_experience(self, experience)  # finite scores, KL within max_kl
                stats = {**experience.pop("stats"), **self.update(experience)}
                self.kl_ctl.update(stats["kl"], n_steps=self.cfg.batch_size * self.accelerator.num_processes)
                self.step += 1
                self.log(stats, experience)
                if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                    self.save_checkpoint()
            if self.saved_step != self.step:
                self.save_checkpoint()
            if self.accelerator.is_main_process:  # the report's curves
                training_log.write(self.output_dir, self.history)
        finally:
            if self.writer is not None:
                self.writer.close()
        return {"steps": self.step, **stats}

    # ------------------------------------------------------------------ 1-2: rollout, experience
    def next_prompts(self) -> list[int]:
        """This process's share of the next `batch_size` prompts per process."""
        n, rank = self.cfg.batch_size, self.accelerator.process_index
        return self.order.take(n * self.accelerator.num_processes)[rank * n:(rank + 1) * n]

    def make_experience(self) -> dict:
        cfg = self.cfg
        picked = self.next_prompts()
        with torch.no_grad():
            batch = rollout.generate(
                self.accelerator.unwrap_model(self.policy), self.tokenizer,
                [self.chat_texts[i] for i in picked], [self.prompts[i].messages for i in picked],
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                top_p=cfg.top_p, max_prompt_length=cfg.max_prompt_length,
            )
        mask = batch.response_mask
        # The policy and value passes of the first micro-batch of epoch 0 keep their graphs: the
        # weights have not moved yet, so the update's forward there would recompute exactly these
        # numbers (ratio 1). Its backward reuses them, saving one policy and one value forward.
        order = torch.randperm(cfg.batch_size)
        first = order[: cfg.minibatch_size // cfg.gradient_accumulation_steps].to(mask.device)
        rest = order[len(first):].to(mask.device)
        first_pass = self.forward_pass(rollout.select(batch, first))
        logprobs = torch.empty(mask.shape, device=mask.device)
        values = torch.empty(mask.shape, device=mask.device)
        logprobs[first], values[first] = first_pass["logprobs"].detach(), first_pass["values"].detach()
        with torch.no_grad():
            if len(rest):
                rest_pass = self.forward_pass(rollout.select(batch, rest))
                logprobs[rest], values[rest] = rest_pass["logprobs"], rest_pass["values"]
            ref_logprobs = self.reference_logprobs(batch)

        scores = self.reward.score(batch.prompts, batch.responses)
        if len(scores) != len(batch.responses):
            raise RuntimeError(f"The reward source {type(self.reward).__name__} returned "
                               f"{len(scores)} scores for {len(batch.responses)} responses.")
        raw_scores = torch.tensor(scores, dtype=torch.float32, device=mask.device)
        scores = rollout.apply_missing_eos_penalty(raw_scores, batch.ended, cfg.missing_eos_penalty)

        rewards = F.shaped_rewards(scores, logprobs, ref_logprobs, mask, self.kl_ctl.value)
        advantages, returns = F.gae(rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = F.masked_whiten(advantages, mask)
        kl = (F.kl_per_token(logprobs, ref_logprobs) * mask).sum(1)  # per response
        beta = self.kl_ctl.value
        stats = {
            "score": raw_scores.mean(), "score_with_penalty": scores.mean(), "kl": kl.mean(),
            # the objective PPO maximizes (InstructGPT eq. 2 without ptx): the score after the
            # missing-EOS penalty minus beta x KL, i.e. the sum of each response's shaped rewards
            "non_score_reward": (-beta * kl).mean(), "rlhf_reward": rewards.sum(1).mean(),
            "response_length": mask.sum(1).mean(), "ended_with_eos": batch.ended.float().mean(),
            "value_mean": F.masked_mean(values, mask), "return_mean": F.masked_mean(returns, mask),
        }
        # what the reward source reports about this batch (an ensemble's member means, ...)
        stats.update({f"reward/{k}": torch.tensor(float(v), device=mask.device)
                      for k, v in self.reward.metrics().items()})
        stats = {k: self.accelerator.reduce(v.detach(), "mean").item() for k, v in stats.items()}
        stats["beta"] = beta  # the coefficient these rewards used (adapted after the step)
        return {"rollout": batch, "logprobs": logprobs, "values": values,
                "advantages": advantages, "returns": returns, "scores": raw_scores,
                "order": order, "first_pass": first_pass, "stats": stats}

    def reference_logprobs(self, batch: rollout.Rollout) -> torch.Tensor:
        """log pi_ref of the response tokens: the reference model, or the shared base with
        its adapters disabled."""
        if self.shared is not None:
            return shared_base.reference_logprobs(self.shared, batch, self.cfg.temperature)
        return rollout.response_logprobs(self.reference, batch, self.cfg.temperature)

    def forward_pass(self, batch: rollout.Rollout) -> dict:
        """The policy's logits and log-probs and the critic's values on the response tokens."""
        logits = rollout.response_logits(self.policy, batch, self.cfg.temperature)
        return {"logits": logits, "logprobs": F.logprobs_of(logits, batch.response_ids),
                "values": rollout.response_values(self.value, batch)}

    # --------------------------------------------------------------------------- 3: update
    def update(self, exp: dict) -> dict:
        cfg, acc = self.cfg, self.accelerator
        history = defaultdict(list)
        micro_size = cfg.minibatch_size // cfg.gradient_accumulation_steps
        device = exp["logprobs"].device
        for epoch in range(cfg.ppo_epochs):
            shuffled = exp.pop("order") if epoch == 0 else torch.randperm(cfg.batch_size)
            for minibatch in shuffled.split(cfg.minibatch_size):
                for micro in minibatch.split(micro_size):
                    # the first micro-batch's forward was done (with its graph) in the rollout
                    loss, stats = self.loss(exp, micro.to(device), exp.pop("first_pass", None))
                    acc.backward(loss / cfg.gradient_accumulation_steps)
                    for k, v in stats.items():
                        history[k].append(v)
                if cfg.ptx_coef > 0:  # its own backward: one pretraining batch per minibatch
                    ptx = self.ptx_loss()
                    acc.backward(ptx)
                    history["ptx_loss"].append(ptx.item())
                for name, norm in self.optimizer_step().items():
                    history[f"{name}_grad_norm"].append(norm)
        # means over every process's minibatches: each rank logs and reports the same numbers
        keys = sorted(history)
        means = torch.tensor([sum(history[k]) / len(history[k]) for k in keys],
                             dtype=torch.float64, device=device)
        return dict(zip(keys, acc.reduce(means, "mean").tolist()))

    def loss(self, exp: dict, rows: torch.Tensor, current: dict | None = None
             ) -> tuple[torch.Tensor, dict]:
        """PPO's loss on the rollout rows `rows`: clipped policy loss + vf_coef * value loss.
        `current`: the policy/value pass on these rows if already done (else it is run here)."""
        cfg = self.cfg
        mask = exp["rollout"].response_mask[rows]
        current = current or self.forward_pass(rollout.select(exp["rollout"], rows))
        logits, logprobs, values = current["logits"], current["logprobs"], current["values"]
        pg_loss, pg_clipfrac = F.policy_loss(logprobs, exp["logprobs"][rows],
                                             exp["advantages"][rows], mask, cfg.cliprange)
        vf_loss, vf_clipfrac = F.value_loss(values, exp["values"][rows], exp["returns"][rows],
                                            mask, cfg.cliprange_value)
        with torch.no_grad():
            entropy = F.masked_mean(F.entropy_from_logits(logits), mask)
            approx_kl = F.masked_mean(exp["logprobs"][rows] - logprobs, mask)  # pi_old vs pi
        stats = {"policy_loss": pg_loss.item(), "value_loss": vf_loss.item(),
                 "policy_clipfrac": pg_clipfrac.item(), "value_clipfrac": vf_clipfrac.item(),
                 "entropy": entropy.item(), "approx_kl_old": approx_kl.item()}
        return pg_loss + cfg.vf_coef * vf_loss, stats

    def ptx_loss(self) -> torch.Tensor:
        """ptx_coef * LM loss on the next `ptx_batch_size` pretraining documents."""
        texts = [self.pretraining[i] for i in self.ptx_order.take(self.cfg.ptx_batch_size)]
        self.tokenizer.padding_side = "right"
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                               max_length=self.cfg.ptx_max_length).to(self.accelerator.device)
        logits = self.policy(**batch, use_cache=False).logits
        return F.ptx_loss(logits, batch["input_ids"], batch["attention_mask"], self.cfg.ptx_coef)

    def optimizer_step(self) -> dict[str, float]:
        """Clip (max_grad_norm > 0), check and apply each model's gradients; returns their norms
        before clipping. A non-finite gradient stops the run first (guards.clip_gradients)."""
        norms = {}
        for name, optimizer in self.optimizers.items():
            norms[name] = guards.clip_gradients(self, name)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return norms

    # ----------------------------------------------------------------- 4: logging, checkpoints
    def log(self, stats: dict, exp: dict) -> None:
        self.history.append({"step": self.step, **stats})
        if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
            logger.info("PPO step %d/%d | %s", self.step, self.cfg.steps,
                        " | ".join(f"{k} {v:.4g}" for k, v in stats.items()))
            if self.writer is not None:
                for key, value in stats.items():
                    self.writer.add_scalar(f"ppo/{key}", value, self.step)
        if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
            batch, scores = exp["rollout"], exp["scores"].tolist()
            rows = ["| prompt | response | score |", "|---|---|---|"]
            for prompt, response, score in list(zip(batch.prompts, batch.responses, scores))[
                    : self.cfg.num_logged_samples]:
                cells = [c.replace("|", "\\|").replace("\n", " ")
                         for c in (prompt_text(prompt), response)]
                rows.append(f"| {cells[0]} | {cells[1]} | {score:.3f} |")
            table = "\n".join(rows)
            logger.info("PPO samples at step %d:\n%s", self.step, table)
            if self.writer is not None:
                self.writer.add_text("ppo/samples", table, self.step)

    def save_checkpoint(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"data": self.order.state_dict(), "kl": self.kl_ctl.state_dict(),
                     "history": self.history}
            if self.ptx_order is not None:
                state["ptx_data"] = self.ptx_order.state_dict()
            checkpoint.save(
                self.output_dir / "checkpoints", self.step,
                policy=self.shared if self.shared is not None else acc.unwrap_model(self.policy),
                value_model=acc.unwrap_model(self.value), state=state,
                optimizers={k: o.optimizer for k, o in self.optimizers.items()},
                keep=self.cfg.keep_checkpoints,
            )
        self.saved_step = self.step
        acc.wait_for_everyone()

    def save_policy(self, path: Path) -> Path:
        """The final policy as a normal checkpoint (weights, config and tokenizer), or with
        adapters the policy adapter alone, for its base `policy_path`."""
        if self.accelerator.is_main_process:
            if self.shared is not None:
                shared_base.save_policy_adapter(self.shared, path, str(self.policy_path))
            else:
                self.accelerator.unwrap_model(self.policy).save_pretrained(
                    path, safe_serialization=True)
            self.tokenizer.save_pretrained(path)
        self.accelerator.wait_for_everyone()
        return path
