"""The reward-model stage: a scalar head on a language model, trained on human comparisons."""

from __future__ import annotations

from collections import Counter
from typing import Any

from framework.artifacts import COMPARISONS, MODEL, REWARD_MODEL, Port
from framework.errors import ConfigError, DataError
from framework.models.adapter_models import SEQ_CLS, load_for_training
from framework.trl.stage import TRLStage


class RewardModelStage(TRLStage):
    """InstructGPT's reward model: `AutoModelForSequenceClassification` (num_labels=1) built on
    the wired model (the SFT output in the recipe), trained with TRL's RewardTrainer on pairs
    (`args` go to trl.RewardConfig). All pairs of one prompt share a training batch. Outputs
    the model and its tokenizer; with an adapter, the adapter and the score head (an SFT adapter
    input is merged into its base first)."""

    trl_config = "RewardConfig"
    model_task = SEQ_CLS
    sequences_per_row = 2  # chosen and rejected
    inputs = {
        "model": Port((MODEL, REWARD_MODEL), doc="the model to start from, usually the SFT output"),
        "data": Port((COMPARISONS,), doc="pairs or rankings of responses"),
    }
    outputs = {"model": REWARD_MODEL}

    def load_data(self, source, where: str, report):
        from framework.data import load_comparisons

        return load_comparisons(source, where, report=report)

    def prepare_data(self, tokenizer, args, train, evaluation, report, where: str):
        _check_group_sizes(train, args.per_device_train_batch_size, where)
        return train, evaluation

    def load_model(self, location: str, args, adapter, ctx, where: str):
        """A path for full weights: TRL builds the model from it with model_init_kwargs."""
        from transformers import set_seed

        if adapter.enabled:
            set_seed(args.seed)  # the new score head's initialization, as TRL does before loading
            init_kwargs, args.model_init_kwargs = args.model_init_kwargs, None
            return load_for_training(
                location, SEQ_CLS, ctx.model, adapter, ctx.hardware,
                gradient_checkpointing=args.gradient_checkpointing,
                freeze_layers=self.config.freeze_layers, where=where, init_kwargs=init_kwargs)
        args.model_init_kwargs = {**_model_init_kwargs(ctx.model, str(location), where),
                                  **(args.model_init_kwargs or {})}
        return str(location), None

    def build_trainer(self, model, tokenizer, args, train, evaluation, peft_config):
        from framework_plugins.stages.reward_model.trainer import GroupedRewardTrainer

        return GroupedRewardTrainer(model=model, args=args, train_dataset=train,
                                    eval_dataset=evaluation, processing_class=tokenizer,
                                    peft_config=peft_config)

    def check_prepared(self, trainer, tokenizer, args, train, evaluation, source, report,
                       where: str) -> dict[str, int]:
        report = report if source.on_bad_row == "skip" else None
        trainer.train_dataset, n_train = _check_nothing_dropped(
            train, trainer.train_dataset, args.max_length, where, "train", report)
        n_eval = 0
        if evaluation is not None:
            trainer.eval_dataset, n_eval = _check_nothing_dropped(
                evaluation, trainer.eval_dataset, args.max_length, where, "eval", report)
        return {"train_pairs": n_train, "eval_pairs": n_eval}

    def metrics(self, trainer, output, counts, evaluation) -> dict:
        from framework_plugins.stages.reward_model.trainer import pairwise_accuracy

        metrics: dict[str, Any] = {"train_loss": output.training_loss,
                                   "train_pairs": counts["train_pairs"],
                                   "train_steps": trainer.state.global_step}
        if evaluation is not None and counts["eval_pairs"]:
            metrics["eval_accuracy"], metrics["eval_pairs"] = pairwise_accuracy(trainer)
        else:
            metrics["eval_pairs"] = 0
        return metrics


def _model_init_kwargs(model_cfg: Any, location: str, where: str) -> dict:
    """`from_pretrained` options for `location` from the `model` node (framework.models'
    load_kwargs: remote code and pickle weights only where allowed), as JSON-friendly values for
    RewardConfig. A pickle-only checkpoint is refused here, before TRL loads it."""
    from framework.models import check_weights_format, load_kwargs

    check_weights_format(location, model_cfg, f"{where}.inputs.model")
    return {**load_kwargs(model_cfg, location), "dtype": model_cfg.dtype}


def _check_group_sizes(pairs, batch_size: int, where: str) -> None:
    """Checked before weights load; the sampler raises the same error without the place."""
    group, size = Counter(pairs["group"]).most_common(1)[0]
    if size > batch_size:
        raise ConfigError(
            f"{where}.params.args.per_device_train_batch_size: {batch_size} is smaller than the "
            f"{size} comparison pairs of source row {group}, which must share a batch; set it to "
            f"at least {size}."
        )


def _check_nothing_dropped(pairs, prepared, max_length, where: str, split: str, report=None):
    """TRL silently filters pairs longer than max_length; turn that into an error, or with
    on_bad_row: skip (a `report` given) leave out the whole prompt group of such a pair (its
    pairs must stay together) and report each of its source rows. Returns (prepared, pairs)."""
    if len(prepared) == len(pairs):
        return prepared, len(prepared)
    kept = Counter(prepared["group"])
    short = sorted(g for g, n in Counter(pairs["group"]).items() if kept[g] < n)
    if report is None:
        raise DataError(
            f"{where}: {len(pairs) - len(prepared)} {split} pair(s) exceed max_length={max_length} "
            f"tokens (prompt + response, chat template included), from source row(s) "
            f"{', '.join(map(str, short[:10]))}{' ...' if len(short) > 10 else ''}. Raise "
            f"{where}.params.args.max_length, shorten those rows, or set the source's "
            f"on_bad_row: skip to leave them out and report them."
        )
    dropped, bad = Counter(pairs["group"]), set(short)
    origins = report.origins.get(split) or list(pairs["group"])
    group_of = {origins[i]: g for i, g in enumerate(pairs["group"]) if g in bad}
    for row, group in sorted(group_of.items()):
        report.skip({"row": row, "field": None, "reason": (
            f"{dropped[group] - kept[group]} of the {dropped[group]} pairs of its prompt (first "
            f"at row {group}) exceed max_length={max_length} tokens (prompt + response, chat "
            f"template included); a prompt's pairs stay together, so all are left out")}, split)
    prepared = prepared.filter(lambda group: group not in bad, input_columns="group")
    if split == "train" and len(prepared) == 0:
        raise DataError(f"{where}: every train pair exceeds max_length={max_length} tokens; raise "
                        f"{where}.params.args.max_length.")
    return prepared, len(prepared)
