"""Supervised fine-tuning on demonstrations (InstructGPT step 1), wrapping trl.SFTTrainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from framework.artifacts import DEMONSTRATIONS, MODEL, Artifact, Port
from framework.data import check_source, load_examples, source_from_artifact, to_prompt_completion
from framework.data.report import DataReport
from framework.errors import ConfigError, DataError
from framework.stage import Stage, StageContext, StageResult
from framework.models.freezing import freeze_lower_layers
from framework.trl_args import build_config, default_args


@dataclass
class SFTStageConfig:
    # Forwarded to trl.SFTConfig (e.g. max_steps, learning_rate, max_length,
    # per_device_train_batch_size). The loss is on the completion only (TRL's
    # completion_only_loss) because the data is given to TRL as prompt/completion.
    args: Dict[str, Any] = field(default_factory=dict)
    # Freeze the embeddings and the lowest N decoder layers (0: train everything); the
    # backward pass then stops early, which is what makes CPU runs fit in minutes.
    freeze_layers: int = 0


class SFTStage(Stage):
    """Fine-tune a causal LM on demonstrated responses; the loss covers the responses only."""

    Config = SFTStageConfig
    inputs = {
        "model": Port((MODEL,), doc="the model to fine-tune"),
        "data": Port((DEMONSTRATIONS,), doc="prompt -> demonstrated response"),
    }
    outputs = {"model": MODEL}

    def training_config(self, output_dir: str, seed: int, where: str):
        from trl import SFTConfig

        return build_config(SFTConfig, self.config.args, default_args(output_dir, seed), where)

    def check(self, inputs: Mapping[str, Artifact], where: str) -> None:
        if self.config.freeze_layers < 0:
            raise ConfigError(f"{where}.params.freeze_layers: must be >= 0, got "
                              f"{self.config.freeze_layers}.")
        self.training_config("checkpoints", 0, where)
        if "data" in inputs:
            data_where = f"{where}.inputs.data"
            check_source(source_from_artifact(inputs["data"], data_where), data_where)

    def run(self, inputs: Mapping[str, Artifact], ctx: StageContext) -> StageResult:
        from transformers import AutoModelForCausalLM
        from transformers.trainer_utils import get_last_checkpoint

        from framework.models import load_kwargs, load_tokenizer, resolve_model_path

        where = f"stages.{ctx.name}"
        checkpoints = Path(ctx.output_dir) / "checkpoints"
        args = self.training_config(str(checkpoints), ctx.seed, where)
        source = source_from_artifact(inputs["data"], f"{where}.inputs.data")
        report = DataReport()
        data_report = report.source("data")
        train, evaluation = load_examples(
            source, f"{where}.inputs.data", to_prompt_completion, report=data_report
        )

        location = resolve_model_path(inputs["model"].location)
        tokenizer = load_tokenizer(location, ctx.model)
        if not tokenizer.chat_template:
            raise ConfigError(
                f"{where}: the model {inputs['model'].location!r} has no chat template, which "
                f"conversational demonstrations need. Set model.chat_template to a Jinja template."
            )
        train, evaluation = check_lengths(
            tokenizer, args.max_length, train, evaluation, data_report, f"{where}.inputs.data"
        )
        model = AutoModelForCausalLM.from_pretrained(location, **load_kwargs(ctx.model))
        freeze_lower_layers(model, self.config.freeze_layers, f"{where}.params.freeze_layers")
        trainer = build_trainer(model, tokenizer, args, train, evaluation)
        check_nothing_dropped(trainer, tokenizer, args, train, evaluation, f"{where}.inputs.data")

        resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
        if resume:
            ctx.logger.info("%s: resuming from %s", where, resume)
        output = trainer.train(resume_from_checkpoint=resume)

        metrics = {
            "train_loss": final_train_loss(trainer.state.log_history, output.training_loss),
            "train_steps": trainer.state.global_step,
            "train_rows": len(train),
        }
        if evaluation is not None:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
            metrics["eval_rows"] = len(evaluation)
        metrics["skipped_rows"] = report.counts()
        report.write(ctx.output_dir)

        model_dir = Path(ctx.output_dir) / "model"
        trainer.save_model(str(model_dir))  # weights as safetensors, plus the tokenizer
        return StageResult(metrics=metrics, artifacts={"model": Artifact(MODEL, str(model_dir))})


def build_trainer(model, tokenizer, args, train, evaluation=None):
    """An SFTTrainer on conversational prompt/completion rows (loss on the completion)."""
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
    )


def check_nothing_dropped(trainer, tokenizer, args, train, evaluation, where: str) -> None:
    """TRL drops rows whose completion is truncated away entirely; make that an error instead."""
    for split, rows, prepared in (("train", train, trainer.train_dataset),
                                  ("eval", evaluation, trainer.eval_dataset)):
        if rows is None or len(prepared) == len(rows):
            continue
        too_long = [
            i for i, prompt in enumerate(rows["prompt"])
            if prompt_length(tokenizer, prompt) >= args.max_length
        ]
        raise DataError(
            f"{where}: {len(rows) - len(prepared)} of {len(rows)} {split} rows have no response "
            f"tokens left after truncation to max_length={args.max_length} (rows, 0-based, of the "
            f"{split} split: {too_long[:20]}). Raise args.max_length or shorten those prompts, or "
            f"set the source's on_bad_row: skip to leave them out and report them."
        )


def check_lengths(tokenizer, max_length, train, evaluation, report, where: str):
    """Rows whose prompt alone fills max_length would be dropped by TRL (no response token left
    to train on): an error naming them, or with on_bad_row: skip left out and reported, before
    the trainer sees them. `check_nothing_dropped` still guards against any other drop."""
    if max_length is None:
        return train, evaluation
    kept = []
    for split, rows in (("train", train), ("eval", evaluation)):
        if rows is None:
            kept.append(rows)
            continue
        origins = report.origins.get(split) or list(range(len(rows)))
        lengths = [prompt_length(tokenizer, prompt) for prompt in rows["prompt"]]
        too_long = [i for i, n in enumerate(lengths) if n >= max_length]
        if too_long and report.on_bad_row != "skip":
            raise DataError(
                f"{where}: {len(too_long)} of {len(rows)} {split} rows have no response tokens "
                f"left after truncation to max_length={max_length} (rows, 0-based, of the {split} "
                f"split: {too_long[:20]}). Source rows, 0-based: "
                f"{[origins[i] for i in too_long[:20]]}. Raise args.max_length or shorten those prompts, or set the source's "
                f"on_bad_row: skip to leave them out and report them."
            )
        for i in too_long:
            report.skip({"row": origins[i], "field": "prompt", "reason": (
                f"the prompt is {lengths[i]} tokens (chat template included), filling "
                f"max_length={max_length}: no response token would be left to train on")}, split)
        good = [i for i, n in enumerate(lengths) if n < max_length]
        if split == "train" and not good:
            raise DataError(f"{where}: every train row is longer than max_length={max_length} "
                            f"tokens; raise args.max_length.")
        report.origins[split] = [origins[i] for i in good]
        kept.append(None if not good else rows.select(good) if too_long else rows)
    return kept[0], kept[1]


def final_train_loss(log_history: list[dict], mean_loss: Optional[float]) -> float:
    """The last logged training loss; the run's mean when no step was logged (short runs)."""
    logged = [entry["loss"] for entry in log_history if "loss" in entry]
    return float(logged[-1]) if logged else float(mean_loss)


def prompt_length(tokenizer, prompt: list[dict]) -> int:
    encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
    return len(encoded["input_ids"])
