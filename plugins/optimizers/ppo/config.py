"""PPO's settings. Defaults suit a 135M-parameter policy on a CPU; scale them up on a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class PPOConfig:
    # --- schedule -------------------------------------------------------------------------
    steps: int = 100  # PPO steps; each is one rollout batch followed by the update epochs
    batch_size: int = 8  # prompts per rollout (per process)
    num_minibatches: int = 2  # the rollout is split into this many minibatches per epoch
    ppo_epochs: int = 4  # passes over the rollout per step
    gradient_accumulation_steps: int = 1  # micro-batches per minibatch (one optimizer step)
    # --- optimization ---------------------------------------------------------------------
    learning_rate: float = 3e-6  # policy
    value_learning_rate: float = 1e-5  # value model (its own optimizer)
    max_grad_norm: float = 1.0  # clip each model's gradient norm; 0 turns clipping off
    cliprange: float = 0.2  # PPO ratio clip epsilon
    cliprange_value: float = 0.2  # value clip around the rollout's values
    vf_coef: float = 0.1  # weight of the value loss in the total loss
    gamma: float = 1.0  # GAE discount
    lam: float = 0.95  # GAE lambda
    whiten_advantages: bool = True
    # --- KL penalty ------------------------------------------------------------------------
    init_kl_coef: float = 0.05  # beta in r = score - beta * KL
    adaptive_kl: bool = False  # steer beta towards target_kl (Ziegler et al. 2019)
    target_kl: float = 6.0  # target KL per response, in nats (adaptive_kl only)
    kl_horizon: int = 10000  # samples for beta to move by e^0.2 at full error (adaptive_kl only)
    # A bound on the mean KL per response (nats) to the reference: RL stops with an error when a
    # rollout exceeds it, keeping the last checkpoint within it. null turns it off.
    max_kl: Optional[float] = None
    # --- PPO-ptx (InstructGPT): pretraining language-model loss mixed into the update ------
    ptx_coef: float = 0.0  # 0 turns it off; needs a `pretraining` input when > 0
    ptx_batch_size: int = 4  # pretraining documents per minibatch
    ptx_max_length: int = 256  # tokens per pretraining document (truncated)
    # --- sampling ------------------------------------------------------------------------------
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    max_prompt_length: int = 256  # longer prompts keep their last tokens
    missing_eos_penalty: Optional[float] = None  # subtracted from the score of unfinished responses
    # --- models --------------------------------------------------------------------------------
    value_init: str = "policy"  # policy (fresh head) | reward_model (RM backbone and score head)
    # --- logging and checkpoints -------------------------------------------------------------
    log_every: int = 1
    sample_every: int = 10  # log a table of (prompt, response, score) every N steps; 0 = never
    num_logged_samples: int = 4
    save_every: int = 50  # checkpoint every N steps (and always at the end); 0 = only at the end
    keep_checkpoints: int = 1  # how many recent checkpoints to keep
    resume: bool = True  # continue from the newest checkpoint in output_dir, if there is one

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    def problems(self) -> list[str]:
        """Every invalid setting, each naming the key and the fix (empty when all is well)."""
        p = []

        def positive(key, integer=False):
            value = getattr(self, key)
            if not value > 0:
                p.append(f"{key}={value!r}: must be > 0{' (an integer)' if integer else ''}.")

        for key in ("steps", "batch_size", "num_minibatches", "ppo_epochs",
                    "gradient_accumulation_steps", "max_new_tokens", "ptx_batch_size",
                    "ptx_max_length", "max_prompt_length", "log_every", "kl_horizon",
                    "keep_checkpoints", "num_logged_samples"):
            positive(key, integer=True)
        for key in ("learning_rate", "value_learning_rate", "cliprange", "cliprange_value",
                    "temperature", "target_kl"):
            positive(key)
        if not p and self.batch_size % self.num_minibatches:
            p.append(f"batch_size={self.batch_size} is not divisible by num_minibatches="
                     f"{self.num_minibatches}; pick num_minibatches among the divisors of "
                     f"batch_size.")
        elif not p and self.minibatch_size % self.gradient_accumulation_steps:
            p.append(f"gradient_accumulation_steps={self.gradient_accumulation_steps} does not "
                     f"divide the minibatch size batch_size/num_minibatches="
                     f"{self.minibatch_size}; pick a divisor of it.")
        for key in ("vf_coef", "ptx_coef", "init_kl_coef", "max_grad_norm", "top_k",
                    "sample_every", "save_every"):
            if getattr(self, key) < 0:
                p.append(f"{key}={getattr(self, key)!r}: must be >= 0.")
        for key in ("gamma", "lam"):
            if not 0 <= getattr(self, key) <= 1:
                p.append(f"{key}={getattr(self, key)!r}: must be in [0, 1].")
        if not 0 < self.top_p <= 1:
            p.append(f"top_p={self.top_p!r}: must be in (0, 1]; 1.0 turns it off.")
        if self.max_kl is not None and not self.max_kl > 0:
            p.append(f"max_kl={self.max_kl!r}: must be > 0 nats per response, or null to turn "
                     f"the bound off.")
        if self.missing_eos_penalty is not None and self.missing_eos_penalty < 0:
            p.append(f"missing_eos_penalty={self.missing_eos_penalty!r}: it is subtracted from "
                     f"the score, so give a value >= 0 (or null to turn it off).")
        if self.value_init not in ("policy", "reward_model"):
            p.append(f"value_init={self.value_init!r}: must be 'policy' or 'reward_model'.")
        return p
