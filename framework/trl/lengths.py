"""Rows a TRL trainer would silently alter at `max_length` (cut or drop), found before it sees
them: an error naming the rows, or with `on_bad_row: skip` left out and reported."""

from __future__ import annotations

from typing import Optional

from framework.errors import DataError


def check_lengths(tokenizer, max_length, train, evaluation, report, where: str, whole: bool = True,
                  completions: tuple[str, ...] = ("completion",)):
    """Rows TRL would silently alter at max_length: a prompt that fills it leaves no response
    token to train on (TRL drops the row), and with `whole` a prompt + response longer than it
    loses the end of its response (TRL cuts it). Either is an error naming the rows, or with
    on_bad_row: skip the rows are left out and reported, before the trainer sees them.
    `completions`: the response columns, each checked with the prompt (a preference pair's
    `chosen` and `rejected`)."""
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
            for column in completions:  # the longest response of each row counts
                for i, (p, c, n) in enumerate(zip(rows["prompt"], rows[column], lengths)):
                    if n < max_length:
                        full[i] = max(full.get(i, 0), full_length(tokenizer, p, c))
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
