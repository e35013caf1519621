"""What stops a PPO run before it can damage itself: a non-finite reward score, KL or gradient
(checked before the optimizer step that would spread it into the weights), a KL to the
reference beyond `max_kl`, and SIGINT/SIGTERM (checked at step boundaries, after which the
state is checkpointed). Divergence never reaches a checkpoint: the last one on disk is the last
good state, and the error says which step, which quantity and which prompts."""

from __future__ import annotations

import math

import torch

from framework.errors import TrainingDiverged, TrainingInterrupted
from framework.common.signals import any_process, stop_requested_anywhere
from framework.reward_source import prompt_text
from framework.common.gradients import gradient_norm
from framework_plugins.optimizers.ppo import checkpoint


def stop_if_requested(trainer) -> None:
    """At a step boundary: on a stop signal, checkpoint the finished steps and stop."""
    name = stop_requested_anywhere()
    if not name:
        return
    if trainer.saved_step != trainer.step:
        trainer.save_checkpoint()
    last = checkpoint.latest(trainer.output_dir / "checkpoints")
    saved = (f"after saving the checkpoint {last}" if last is not None
             else "before its first step; there was nothing to checkpoint")
    raise TrainingInterrupted(
        f"PPO stopped by {name} at step {trainer.step} of {trainer.cfg.steps}, {saved}.",
        signal_name=name, step=trainer.step, checkpoint=str(last) if last else None)


def check_experience(trainer, experience: dict) -> None:
    """Before the update: every reward score finite, the KL finite and within max_kl."""
    scores = experience["scores"].float()
    batch = experience["rollout"]
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if any_process(bool(bad)):
        shown = [f"{prompt_text(batch.prompts[i])[:80]!r} -> {scores[i].item()}" for i in bad[:8]]
        raise diverged(trainer, "reward score", (
            f"the reward source {type(trainer.reward).__name__} returned non-finite scores for "
            f"{len(bad)} of {len(scores)} responses (prompt -> score: {'; '.join(shown)})"),
            "make the reward source return finite numbers for every response")
    kl = experience["stats"]["kl"]  # mean KL per response, already agreed across processes
    limit = trainer.cfg.max_kl
    if not math.isfinite(kl) or (limit is not None and kl > limit):
        why = "is not finite" if not math.isfinite(kl) else f"exceeds max_kl={limit}"
        raise diverged(trainer, "kl", (
            f"the KL to the reference policy, {kl} nats per response, {why} (batch prompts: "
            f"{_prompts(batch)})"),
            "lower optimizer.params.learning_rate, raise init_kl_coef (or set adaptive_kl), or "
            "raise max_kl")


def clip_gradients(trainer, name: str) -> float:
    """The gradient norm of the `name` ("policy"/"value") parameters before the optimizer step,
    clipped to `max_grad_norm` when it is > 0 (one pass computes the norm for both). A non-finite
    norm (from a non-finite loss) stops the run before the optimizer applies it."""
    params = list(trainer.trainable[name])
    norm = None
    if trainer.cfg.max_grad_norm > 0:
        norm = trainer.accelerator.clip_grad_norm_(params, trainer.cfg.max_grad_norm)
    if norm is None:  # not clipping (or a backend that clips internally and returns nothing)
        norm = gradient_norm(params)
    norm = float(norm)
    if any_process(not math.isfinite(norm)):
        raise diverged(trainer, f"{name} gradient norm", (
            f"the {name} gradient norm is {norm} before the optimizer step: the PPO loss (or "
            f"the ptx loss) was not finite (batch prompts: "
            f"{_prompts(getattr(trainer, 'current_rollout', None))})"),
            "lower optimizer.params.learning_rate / value_learning_rate, keep max_grad_norm "
            "> 0, and check the reward scale")
    return norm


def diverged(trainer, quantity: str, what: str, fix: str) -> TrainingDiverged:
    step = trainer.step + 1
    last = checkpoint.latest(trainer.output_dir / "checkpoints")
    kept = (f"The last good checkpoint, {last.name} (step {trainer.saved_step}), is kept at "
            f"{last}; nothing from step {step} on was saved." if last is not None else
            "No checkpoint had been saved before it, and none was saved after.")
    return TrainingDiverged(f"PPO diverged at step {step}: {what}. {kept} To fix: {fix}.",
                            step=step, quantity=quantity, checkpoint=str(last) if last else None)


def _prompts(batch) -> list[str]:
    if batch is None:
        return []
    return [prompt_text(p)[:80] for p in batch.prompts[:8]]
