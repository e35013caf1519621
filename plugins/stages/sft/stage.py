"""Supervised fine-tuning on demonstrations (InstructGPT step 1), wrapping trl.SFTTrainer."""

from __future__ import annotations

from typing import Optional

from framework.artifacts import DEMONSTRATIONS, MODEL, Port
from framework.data import load_examples, to_prompt_completion
from framework.errors import ConfigError, DataError
from framework.models.adapter_models import CAUSAL_LM
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


def check_lengths(tokenizer, max_length, train, evaluation, report, where: str, whole: bool = True):
    """Rows TRL would silently alter at max_length: a prompt that fills it leaves no response
    token to train on (TRL drops the row), and with `whole` a prompt + response longer than it
    loses the end of its response (TRL cuts it). Either is an error naming the rows, or with
    on_bad_row: skip the rows are left out and reported, before the trainer sees them.
    `check_nothing_dropped` still guards against any other drop."""
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
        full = {}
        if whole:
            full = {i: full_length(tokenizer, p, c) for i, (p, c, n) in enumerate(
                zip(rows["prompt"], rows["completion"], lengths)) if n < max_length}
        cut = [i for i, n in full.items() if n > max_length]
        if cut and report.on_bad_row != "skip":
            raise DataError(
                f"{where}: {len(cut)} of {len(rows)} {split} rows are longer than "
                f"max_length={max_length} tokens (prompt + response, chat template included: "
                f"{[full[i] for i in cut[:20]]}), so training would silently cut the end of their "
                f"responses (rows, 0-based, of the {split} split: {cut[:20]}). Source rows, "
                f"0-based: {[origins[i] for i in cut[:20]]}. Raise args.max_length, shorten those "
                f"responses, or set the source's on_bad_row: skip to leave them out and report "
                f"them."
            )
        for i in too_long:
            report.skip({"row": origins[i], "field": "prompt", "reason": (
                f"the prompt is {lengths[i]} tokens (chat template included), filling "
                f"max_length={max_length}: no response token would be left to train on")}, split)
        for i in cut:
            report.skip({"row": origins[i], "field": "completion", "reason": (
                f"prompt + response are {full[i]} tokens (chat template included), more than "
                f"max_length={max_length}: the end of the response would be cut")}, split)
        bad = set(too_long) | set(cut)
        good = [i for i in range(len(rows)) if i not in bad]
        if split == "train" and not good:
            raise DataError(f"{where}: every train row is longer than max_length={max_length} "
                            f"tokens; raise args.max_length.")
        report.origins[split] = [origins[i] for i in good]
        kept.append(None if not good else rows.select(good) if bad else rows)
    return kept[0], kept[1]


def final_train_loss(log_history: list[dict], mean_loss: Optional[float]) -> Optional[float]:
    """The last logged training loss; the run's mean when no step was logged (short runs), None
    when neither is known (a run loaded from its final checkpoint, framework.trl.training)."""
    logged = [entry["loss"] for entry in log_history if "loss" in entry]
    if logged:
        return float(logged[-1])
    return None if mean_loss is None else float(mean_loss)


def prompt_length(tokenizer, prompt: list[dict]) -> int:
    encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
    return len(encoded["input_ids"])


def full_length(tokenizer, prompt: list[dict], completion: list[dict]) -> int:
    """Tokens of prompt + response as TRL tokenizes a conversational prompt/completion row."""
    encoded = tokenizer.apply_chat_template(list(prompt) + list(completion), return_dict=True)
    return len(encoded["input_ids"])
