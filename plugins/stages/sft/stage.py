"""Supervised fine-tuning on demonstrations (InstructGPT step 1), wrapping trl.SFTTrainer."""

from __future__ import annotations

from framework.artifacts import DEMONSTRATIONS, MODEL, Port
from framework.data import load_examples, to_prompt_completion
from framework.errors import ConfigError, DataError
from framework.models.adapter_models import CAUSAL_LM
from framework.trl.lengths import check_lengths, final_train_loss, prompt_length
from framework.trl.stage import TRLStage, TRLStageConfig

SFTStageConfig = TRLStageConfig  # `args` (trl.SFTConfig) and `freeze_layers`


class SFTStage(TRLStage):
    """Fine-tune a causal LM on demonstrated responses; the loss covers the responses only
    (TRL's completion_only_loss: the data is given to TRL as conversational prompt/completion).
    `args` go to trl.SFTConfig (e.g. max_steps, learning_rate, max_length,
    per_device_train_batch_size)."""

    trl_config = "SFTConfig"
    model_task = CAUSAL_LM
    inputs = {
        "model": Port((MODEL,), doc="the model to fine-tune"),
        "data": Port((DEMONSTRATIONS,), doc="prompt -> demonstrated response"),
    }
    outputs = {"model": MODEL}

    def load_data(self, source, where: str, report):
        return load_examples(source, where, to_prompt_completion, report=report)

    def prepare_data(self, tokenizer, args, train, evaluation, report, where: str):
        if not tokenizer.chat_template:
            raise ConfigError(
                f"{where}.inputs.model: the model has no chat template, which conversational "
                f"demonstrations need. Set model.chat_template to a Jinja template."
            )
        return check_lengths(
            tokenizer, args.max_length, train, evaluation, report, f"{where}.inputs.data",
            whole=not args.packing,  # packing cuts sequences into max_length chunks on purpose
        )

    def build_trainer(self, model, tokenizer, args, train, evaluation, peft_config):
        return build_trainer(model, tokenizer, args, train, evaluation, peft_config)

    def check_prepared(self, trainer, tokenizer, args, train, evaluation, source, report,
                       where: str) -> dict[str, int]:
        check_nothing_dropped(trainer, tokenizer, args, train, evaluation, f"{where}.inputs.data")
        return {"train_rows": len(train), "eval_rows": len(evaluation) if evaluation else 0}

    def metrics(self, trainer, output, counts, evaluation) -> dict:
        metrics = {
            "train_loss": final_train_loss(trainer.state.log_history, output.training_loss),
            "train_steps": trainer.state.global_step,
            "train_rows": counts["train_rows"],
        }
        if evaluation is not None:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
            metrics["eval_rows"] = counts["eval_rows"]
        return metrics


def build_trainer(model, tokenizer, args, train, evaluation=None, peft_config=None):
    """An SFTTrainer on conversational prompt/completion rows (loss on the completion); with a
    peft_config it trains that adapter on the (frozen) model."""
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft_config,
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
