"""What the preference stages (DPO, KTO) share: the frozen reference they are measured
against, and their metrics from TRL's logs."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional

from framework.errors import ConfigError
from framework.models.adapter_models import CAUSAL_LM
from framework.trl.stage import TRLStage


def reference_model(model, peft_config) -> Optional[Any]:
    """The frozen reference: a copy of the starting weights for full fine-tuning (the very
    weights loaded, with the framework's loading options, rather than a second load by TRL);
    None with an adapter, where TRL scores the reference with the adapter disabled."""
    import copy

    if peft_config is not None or hasattr(model, "peft_config"):
        return None
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.eval()


# TRL's evaluation keys -> the stage's metric names
EVAL_METRICS = {"eval_loss": "eval_loss", "eval_rewards/accuracies": "eval_reward_accuracy",
                "eval_rewards/margins": "eval_reward_margin",
                "eval_rewards/chosen": "eval_reward_chosen",
                "eval_rewards/rejected": "eval_reward_rejected", "eval_kl": "eval_kl"}


def eval_metrics(results: Mapping[str, float]) -> dict[str, float]:
    """The held-out figures TRL logged, under the stage's metric names."""
    return {name: float(results[key]) for key, name in EVAL_METRICS.items() if key in results}


class PreferenceStage(TRLStage):
    """A TRL preference trainer (`trl_trainer`, e.g. "DPOTrainer") on the wired model, which is
    also its frozen reference; conversational rows; TRL's held-out figures as metrics."""

    model_task = CAUSAL_LM
    trl_trainer: ClassVar[str]
    frozen_reference = True  # without an adapter; the planner counts the copy

    def check_chat_template(self, tokenizer, where: str) -> None:
        if not tokenizer.chat_template:
            raise ConfigError(f"{where}.inputs.model: the model has no chat template, which "
                              f"conversational preference data needs; set model.chat_template.")

    def build_trainer(self, model, tokenizer, args, train, evaluation, peft_config):
        import trl

        return getattr(trl, self.trl_trainer)(
            model=model, ref_model=reference_model(model, peft_config), args=args,
            train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
            peft_config=peft_config)

    def metrics(self, trainer, output, counts, evaluation) -> dict[str, Any]:
        from framework.trl.lengths import final_train_loss

        metrics: dict[str, Any] = {
            "train_loss": final_train_loss(trainer.state.log_history, output.training_loss),
            "train_steps": trainer.state.global_step, **counts}
        if evaluation is not None and len(evaluation):
            metrics.update(eval_metrics(trainer.evaluate()))
        return metrics
