"""Prompts for rollouts (a `prompt` column of messages) and plain text for language modelling."""

from __future__ import annotations

from typing import Optional

import datasets

from framework.artifacts import PROMPTS, TEXT
from framework.data.demonstrations import alpaca_prompt
from framework.data.formats import detect_format, row_error
from framework.data.hh import split_last_reply
from framework.data.messages import as_prompt, check_alternation, check_messages, check_text
from framework.data.report import BadRows


def to_prompts(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """Rows with a `prompt` (string or messages), `messages` (a trailing assistant turn is
    dropped: the policy writes its own), alpaca `instruction`/`input`, or HH-RLHF `chosen` (the
    dialogue before its last Assistant reply) -> a `prompt` column."""
    fmt = detect_format(PROMPTS, fmt, rows.column_names, where)
    bad_rows = bad_rows if bad_rows is not None else BadRows()

    def parse(row: dict, i: int) -> list[dict]:
        if fmt == "prompt":
            return as_prompt(row["prompt"], where, i, "prompt")
        if fmt == "messages":
            return _prompt_of_conversation(row["messages"], where, i)
        if fmt == "hh":
            return split_last_reply(row["chosen"], where, i, "chosen")[0]
        return [alpaca_prompt(row, where, i)]

    prompts = []
    for i, prompt in bad_rows.parsed(rows, parse):
        prompts.append(prompt)
        bad_rows.kept(i)
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


def to_text(
    rows: datasets.Dataset, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """Rows with a non-empty string `text` -> a dataset with exactly that column."""
    detect_format(TEXT, "text", rows.column_names, where)
    bad_rows = bad_rows if bad_rows is not None else BadRows()
    texts = []
    for i, text in bad_rows.parsed(rows, lambda row, i: check_text(row["text"], where, i, "text")):
        texts.append(text)
        bad_rows.kept(i)
    return datasets.Dataset.from_dict({"text": texts})


def normalize_text(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """`to_text` with the normalizer signature `load_examples` calls."""
    return to_text(rows, where, bad_rows)
