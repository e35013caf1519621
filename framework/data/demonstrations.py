"""Demonstrations (SFT data) in the conversational prompt/completion form TRL trains on.

`prompt` is a list of messages (an optional system message, then user/assistant turns ending
with the user's); `completion` is one assistant message. With TRL's completion_only_loss the
loss then falls on the demonstrated response only, as in InstructGPT.
"""

from __future__ import annotations

from typing import Any, Optional

import datasets

from framework.artifacts import DEMONSTRATIONS
from framework.data.formats import detect_format, formats_of, row_error
from framework.data.hh import split_last_reply
from framework.data.messages import as_prompt, check_alternation, check_messages, check_text
from framework.data.report import BadRows


def to_prompt_completion(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """Rows of any demonstration format -> columns `prompt` and `completion` (messages).
    A bad row raises, or is left out and reported when `bad_rows` says skip."""
    fmt = detect_format(DEMONSTRATIONS, fmt, rows.column_names, where)
    parse = formats_of(DEMONSTRATIONS)[fmt].parser()
    bad_rows = bad_rows if bad_rows is not None else BadRows()
    prompts, completions = [], []
    for i, (prompt, response) in bad_rows.parsed(rows, lambda row, i: parse(row, where, i)):
        prompts.append(prompt)
        completions.append([{"role": "assistant", "content": response}])
        bad_rows.kept(i)
    return datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})


def from_messages(row: dict, where: str, i: int) -> tuple[list[dict], str]:
    messages = check_messages(row["messages"], where, i, "messages")
    check_alternation(messages, where, i, "messages")
    last = len(messages) - 1
    if messages[last]["role"] != "assistant":
        raise row_error(
            where, i, f"messages[{last}].role",
            "the conversation must end with an assistant message that answers a user turn",
            "end each conversation with the demonstrated assistant reply",
        )
    return messages[:-1], messages[last]["content"]


def from_prompt_completion(row: dict, where: str, i: int) -> tuple[list[dict], str]:
    prompt = as_prompt(row["prompt"], where, i, "prompt")
    completion = row["completion"]
    if isinstance(completion, list):
        messages = check_messages(completion, where, i, "completion")
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise row_error(
                where, i, "completion",
                f"expected one assistant message, got roles {[m['role'] for m in messages]}",
                "give the completion as a string or as [{role: assistant, content: ...}]",
            )
        return prompt, messages[0]["content"]
    return prompt, check_text(completion, where, i, "completion")


def from_alpaca(row: dict, where: str, i: int) -> tuple[list[dict], str]:
    return [alpaca_prompt(row, where, i)], check_text(row["output"], where, i, "output")


def alpaca_prompt(row: dict, where: str, i: int) -> dict:
    """The user message of an alpaca row: instruction, then the input after a blank line."""
    instruction = check_text(row["instruction"], where, i, "instruction")
    extra: Any = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise row_error(where, i, "input", f"expected a string, got {type(extra).__name__}",
                        "give the input as text, or leave it empty")
    content = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return {"role": "user", "content": content}


def from_hh(row: dict, where: str, i: int) -> tuple[list[dict], str]:
    """Anthropic HH-RLHF: SFT on the `chosen` dialogue (HH text or messages), the loss on its
    last Assistant reply. `rejected` is not a demonstration and is not read."""
    prompt, reply = split_last_reply(row["chosen"], where, i, "chosen")
    return prompt, reply["content"]
