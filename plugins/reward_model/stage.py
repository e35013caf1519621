"""The reward-model stage: a scalar head on a language model, trained on human comparisons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping

from framework.artifacts import COMPARISONS, MODEL, REWARD_MODEL, Artifact, Port
from framework.data.report import DataReport
from framework.errors import ConfigError, DataError
from framework.models.adapters import ADAPTER_KINDS, AdapterConfig
from framework.hardware.distributed import is_main_process, record_weights
from framework.stage import Stage, StageContext, StageResult


@dataclass
class RewardModelConfig:
    # Forwarded to trl.RewardConfig(**args), which rejects unknown names, e.g.
    # {num_train_epochs: 1, per_device_train_batch_size: 12, learning_rate: 2e-5, max_length: 512}
    args: Dict[str, Any] = field(default_factory=dict)
    # Freeze the embeddings and the lowest N decoder layers (0: train everything); the
    # backward pass then stops early, which is what makes CPU runs fit in minutes. With an
    # adapter (lora, qlora), the adapters go on the layers above the lowest N only.
    freeze_layers: int = 0


class RewardModelStage(Stage):
    """InstructGPT's reward model: `AutoModelForSequenceClassification` (num_labels=1) built on
    the wired model (the SFT output in the recipe), trained with TRL's RewardTrainer on pairs.
    All pairs of one prompt share a training batch. Outputs the model and its tokenizer; with an
    adapter, the adapter and the score head (an SFT adapter input is merged into its base first)."""

    Config = RewardModelConfig
    inputs = {
        "model": Port((MODEL, REWARD_MODEL), doc="the model to start from, usually the SFT output"),
        "data": Port((COMPARISONS,), doc="pairs or rankings of responses"),
    }
    outputs = {"model": REWARD_MODEL}
    adapter_kinds = ADAPTER_KINDS

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self.config.freeze_layers < 0:
            raise ConfigError(f"{where}.params.freeze_layers: must be >= 0, got "
                              f"{self.config.freeze_layers}.")
        from framework.data import check_source, source_from_artifact

        from framework.trl_args import check_eval_data

        args = self.reward_config(where, output_dir="unused")
        if "data" in inputs:
            data_where = f"{where}.inputs.data"
            source = source_from_artifact(inputs["data"], data_where)
            check_source(source, data_where)
            check_eval_data(args, source, where)

    def reward_config(self, where: str, output_dir: str, seed: int = 0, hardware=None):
        """trl.RewardConfig from `args` (`where` is the stage node); errors name the key."""
        from trl import RewardConfig

        from framework.trl_args import build_config, default_args

        return build_config(RewardConfig, self.config.args,
                            default_args(output_dir, seed, hardware), where)

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from framework import trl_training
        from framework.data import load_comparisons, source_from_artifact
        from transformers import set_seed

        from framework.models import load_tokenizer
        from framework.models.adapter_models import (
            SEQ_CLS, finish_adapter, full_weights_dir, load_for_training, match_trainable_dtype)
        from framework.models.freezing import freeze_lower_layers
        from framework_plugins.reward_model.trainer import GroupedRewardTrainer, pairwise_accuracy

        where = f"stages.{ctx.name}"
        adapter = ctx.adapter or AdapterConfig()
        checkpoints = Path(ctx.output_dir) / "checkpoints"
        args = self.reward_config(where, str(checkpoints), ctx.seed, ctx.hardware)
        source = source_from_artifact(inputs["data"], f"{where}.inputs.data")
        report = DataReport()
        data_report = report.source("data")
        train, evaluation = load_comparisons(source, f"{where}.inputs.data", report=data_report)
        _check_group_sizes(train, args.per_device_train_batch_size, where)

        # an adapter input (the SFT adapter) is merged into its base first; this stage trains on that
        location = full_weights_dir(inputs["model"], Path(ctx.output_dir) / "start_model", ctx.model)
        model, peft_config = location, None  # a path: TRL builds the model with model_init_kwargs
        if adapter.enabled:
            set_seed(args.seed)  # the new score head's initialization, as TRL does before loading
            model, peft_config = load_for_training(
                location, SEQ_CLS, ctx.model, adapter, ctx.hardware,
                gradient_checkpointing=args.gradient_checkpointing,
                freeze_layers=self.config.freeze_layers, where=where,
                init_kwargs=args.model_init_kwargs)
            args.model_init_kwargs = None
        else:
            args.model_init_kwargs = {**_model_init_kwargs(ctx.model, str(location), where),
                                      **(args.model_init_kwargs or {})}
        trainer = GroupedRewardTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=load_tokenizer(inputs["model"].location, ctx.model),
            peft_config=peft_config,
        )
        match_trainable_dtype(trainer.model, adapter, ctx.model, ctx.hardware)
        if not adapter.enabled:
            freeze_lower_layers(trainer.model, self.config.freeze_layers,
                                f"{where}.params.freeze_layers")
        skip = source.on_bad_row == "skip"
        trainer.train_dataset, n_train = _check_nothing_dropped(
            train, trainer.train_dataset, args.max_length, where, "train", data_report if skip else None)
        n_eval = 0
        if evaluation is not None:
            trainer.eval_dataset, n_eval = _check_nothing_dropped(
                evaluation, trainer.eval_dataset, args.max_length, where, "eval",
                data_report if skip else None)

        result = trl_training.train(trainer, checkpoints, where, ctx.logger)

        metrics: dict[str, Any] = {"train_loss": result.training_loss, "train_pairs": n_train,
                                   "train_steps": trainer.state.global_step}
        if evaluation is not None and n_eval:
            metrics["eval_accuracy"], metrics["eval_pairs"] = pairwise_accuracy(trainer)
        else:
            metrics["eval_pairs"] = 0
        metrics["skipped_rows"] = report.counts()
        if is_main_process():
            report.write(ctx.output_dir)
        out = Path(ctx.output_dir) / "model"
        record_weights("model", trainer.model)  # diagnostics: ranks must agree
        trainer.save_model(str(out))  # weights (or adapter and head), config, tokenizer
        artifact = Artifact(REWARD_MODEL, str(out))
        if adapter.enabled:
            artifact = finish_adapter(REWARD_MODEL, out, adapter, inputs["model"], location,
                                      ctx.output_dir, ctx.model)
        return StageResult(metrics, {"model": artifact})


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
