"""Prompts for rollouts (a `prompt` column of messages) and plain text for language modelling."""

from __future__ import annotations

from typing import Optional

import datasets

from framework.artifacts import PROMPTS, TEXT
from framework.data.demonstrations import alpaca_prompt
from framework.data.formats import parse_rows, row_error
from framework.data.hh import split_last_reply
from framework.data.messages import as_prompt, check_alternation, check_messages, check_text
from framework.data.report import BadRows


def to_prompts(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """Rows with a `prompt` (string or messages), `messages` (a trailing assistant turn is
    dropped: the policy writes its own), alpaca `instruction`/`input`, or HH-RLHF `chosen` (the
    dialogue before its last Assistant reply) -> a `prompt` column."""
    prompts = parse_rows(PROMPTS, fmt, rows, where, bad_rows if bad_rows is not None else BadRows())
    return datasets.Dataset.from_dict({"prompt": prompts})


def from_prompt(row: dict, where: str, i: int) -> list[dict]:
    return as_prompt(row["prompt"], where, i, "prompt")


def from_hh(row: dict, where: str, i: int) -> list[dict]:
    return split_last_reply(row["chosen"], where, i, "chosen")[0]


def from_alpaca(row: dict, where: str, i: int) -> list[dict]:
    return [alpaca_prompt(row, where, i)]


def from_messages(row: dict, where: str, i: int) -> list[dict]:
    messages = check_messages(row["messages"], where, i, "messages")
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
    texts = parse_rows(TEXT, "text", rows, where, bad_rows if bad_rows is not None else BadRows())
    return datasets.Dataset.from_dict({"text": texts})


def from_text(row: dict, where: str, i: int) -> str:
    return check_text(row["text"], where, i, "text")


def normalize_text(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """`to_text` with the normalizer signature `load_examples` calls."""
    return to_text(rows, where, bad_rows)
