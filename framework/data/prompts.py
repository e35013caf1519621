"""Prompts for rollouts (a `prompt` column of messages) and plain text for language modelling."""

from __future__ import annotations

import datasets

from framework.artifacts import PROMPTS, TEXT
from framework.data.demonstrations import alpaca_prompt
from framework.data.formats import detect_format, row_error
from framework.data.hh import split_last_reply
from framework.data.messages import as_prompt, check_alternation, check_messages, check_text


def to_prompts(rows: datasets.Dataset, fmt: str, where: str) -> datasets.Dataset:
    """Rows with a `prompt` (string or messages), `messages` (a trailing assistant turn is
    dropped: the policy writes its own), alpaca `instruction`/`input`, or HH-RLHF `chosen` (the
    dialogue before its last Assistant reply) -> a `prompt` column."""
    fmt = detect_format(PROMPTS, fmt, rows.column_names, where)
    prompts = []
    for i, row in enumerate(rows):
        if fmt == "prompt":
            prompts.append(as_prompt(row["prompt"], where, i, "prompt"))
        elif fmt == "messages":
            prompts.append(_prompt_of_conversation(row["messages"], where, i))
        elif fmt == "hh":
            prompts.append(split_last_reply(row["chosen"], where, i, "chosen")[0])
        else:
            prompts.append([alpaca_prompt(row, where, i)])
    return datasets.Dataset.from_dict({"prompt": prompts})


def _prompt_of_conversation(value, where: str, i: int) -> list[dict]:
    messages = check_messages(value, where, i, "messages")
    check_alternation(messages, where, i, "messages")
    if messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise row_error(
            where, i, "messages", "has no user turn to answer",
            "give at least one user message",
        )
    return messages


def to_text(rows: datasets.Dataset, where: str) -> datasets.Dataset:
    """Rows with a non-empty string `text` -> a dataset with exactly that column."""
    detect_format(TEXT, "text", rows.column_names, where)
    texts = [check_text(row["text"], where, i, "text") for i, row in enumerate(rows)]
    return datasets.Dataset.from_dict({"text": texts})
