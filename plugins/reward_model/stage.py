"""The reward-model stage: a scalar head on a language model, trained on human comparisons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping

from framework.artifacts import COMPARISONS, MODEL, REWARD_MODEL, Artifact, Port
from framework.data.report import DataReport
from framework.errors import ConfigError, DataError
from framework.stage import Stage, StageContext, StageResult


@dataclass
class RewardModelConfig:
    # Forwarded to trl.RewardConfig(**args), which rejects unknown names, e.g.
    # {num_train_epochs: 1, per_device_train_batch_size: 12, learning_rate: 2e-5, max_length: 512}
    args: Dict[str, Any] = field(default_factory=dict)
    # Freeze the embeddings and the lowest N decoder layers (0: train everything); the
    # backward pass then stops early, which is what makes CPU runs fit in minutes.
    freeze_layers: int = 0


class RewardModelStage(Stage):
    """InstructGPT's reward model: `AutoModelForSequenceClassification` (num_labels=1) built on
    the wired model (the SFT output in the recipe), trained with TRL's RewardTrainer on pairs.
    All pairs of one prompt share a training batch. Outputs the model and its tokenizer."""

    Config = RewardModelConfig
    inputs = {
        "model": Port((MODEL, REWARD_MODEL), doc="the model to start from, usually the SFT output"),
        "data": Port((COMPARISONS,), doc="pairs or rankings of responses"),
    }
    outputs = {"model": REWARD_MODEL}

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self.config.freeze_layers < 0:
            raise ConfigError(f"{where}.params.freeze_layers: must be >= 0, got "
                              f"{self.config.freeze_layers}.")
        from framework.data import check_source, source_from_artifact

        self.reward_config(where, output_dir="unused")
        if "data" in inputs:
            data_where = f"{where}.inputs.data"
            check_source(source_from_artifact(inputs["data"], data_where), data_where)
        if "model" in inputs:
            _check_not_adapter(inputs["model"], f"{where}.inputs.model")

    def reward_config(self, where: str, output_dir: str, seed: int = 0):
        """trl.RewardConfig from `args` (`where` is the stage node); errors name the key."""
        from trl import RewardConfig

        from framework.trl_args import build_config, default_args

        return build_config(RewardConfig, self.config.args, default_args(output_dir, seed), where)

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from transformers.trainer_utils import get_last_checkpoint

        from framework.data import load_comparisons, source_from_artifact
        from framework.models import load_tokenizer, resolve_model_path
        from framework.models.freezing import freeze_lower_layers
        from framework_plugins.reward_model.trainer import GroupedRewardTrainer, pairwise_accuracy

        where = f"stages.{ctx.name}"
        checkpoints = Path(ctx.output_dir) / "checkpoints"
        args = self.reward_config(where, str(checkpoints), ctx.seed)
        source = source_from_artifact(inputs["data"], f"{where}.inputs.data")
        report = DataReport()
        data_report = report.source("data")
        train, evaluation = load_comparisons(source, f"{where}.inputs.data", report=data_report)
        _check_group_sizes(train, args.per_device_train_batch_size, where)
        args.model_init_kwargs = {**_model_init_kwargs(ctx.model), **(args.model_init_kwargs or {})}

        location = inputs["model"].location
        trainer = GroupedRewardTrainer(
            model=resolve_model_path(location),
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=load_tokenizer(location, ctx.model),
        )
        freeze_lower_layers(trainer.model, self.config.freeze_layers, f"{where}.params.freeze_layers")
        skip = source.on_bad_row == "skip"
        trainer.train_dataset, n_train = _check_nothing_dropped(
            train, trainer.train_dataset, args.max_length, where, "train", data_report if skip else None)
        n_eval = 0
        if evaluation is not None:
            trainer.eval_dataset, n_eval = _check_nothing_dropped(
                evaluation, trainer.eval_dataset, args.max_length, where, "eval",
                data_report if skip else None)

        last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if last:
            ctx.logger.info("%s: resuming from %s", where, last)
        result = trainer.train(resume_from_checkpoint=last)

        metrics: dict[str, Any] = {"train_loss": result.training_loss, "train_pairs": n_train}
        if evaluation is not None and n_eval:
            metrics["eval_accuracy"], metrics["eval_pairs"] = pairwise_accuracy(trainer)
        else:
            metrics["eval_pairs"] = 0
        metrics["skipped_rows"] = report.counts()
        report.write(ctx.output_dir)
        out = Path(ctx.output_dir) / "model"
        trainer.save_model(str(out))  # weights, config (with pad_token_id) and tokenizer
        return StageResult(metrics, {"model": Artifact(REWARD_MODEL, str(out))})


def _model_init_kwargs(model_cfg: Any) -> dict:
    """`from_pretrained` options from the `model` node, as JSON-friendly values for RewardConfig."""
    kwargs = {"dtype": model_cfg.dtype, "trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    return kwargs


def _check_not_adapter(model: Artifact, where: str) -> None:
    if (Path(model.location) / "adapter_config.json").exists():
        raise ConfigError(
            f"{where}: {model.location!r} holds a PEFT adapter; the reward model starts from full "
            f"weights. Merge the adapter into its base first (peft's merge_and_unload)."
        )


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
