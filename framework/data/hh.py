"""Anthropic HH-RLHF dialogues ("\\n\\nHuman: ...\\n\\nAssistant: ...") as chat messages.

A row holds two whole dialogues, `chosen` and `rejected`, that share every turn up to the last
assistant reply and differ in that reply (Bai et al. 2022). A turn starts where a line begins
with "Human:" or "Assistant:"; its content runs to the next marker, surrounding whitespace
stripped.
"""

from __future__ import annotations

import re
from typing import Any

from framework.data.formats import row_error
from framework.data.messages import check_alternation, check_messages, check_present

# A speaker marker at the start of the text or of a line.
_MARKER = re.compile(r"(?:\A|\n)[ \t]*(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_MARKER_OF = {"user": "Human", "assistant": "Assistant"}


def parse_hh_dialogue(text: Any, where: str, row: int, field: str) -> list[dict]:
    """HH text -> [{role: user|assistant, content}], starting with the user and alternating."""
    check_present(text, where, row, field)
    if not isinstance(text, str):
        raise row_error(
            where, row, field, f"expected HH dialogue text, got {type(text).__name__}",
            'give the dialogue as text: "\\n\\nHuman: ...\\n\\nAssistant: ..."',
        )
    text = text.strip()
    if not text:
        raise row_error(where, row, field, "is empty", "give the dialogue text or remove the row")
    markers = list(_MARKER.finditer(text))
    if not markers:
        raise row_error(
            where, row, field, f"no 'Human:' or 'Assistant:' marker in {_head(text)}",
            "give HH dialogue text, or set the source's `format` (e.g. pairs with a `prompt` "
            "column)",
        )
    if markers[0].start() != 0:
        raise row_error(
            where, row, field,
            f"text before the first marker: {_head(text[:markers[0].start()].strip())}",
            "start the dialogue with 'Human:'",
        )
    messages = []
    for k, marker in enumerate(markers):
        end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
        role = _ROLES[marker.group(1)]
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            problem = (
                "the dialogue starts with 'Assistant:'" if k == 0 else
                f"turn {k} (0-based) is '{marker.group(1)}:' right after another "
                f"'{marker.group(1)}:' turn"
            )
            raise row_error(
                where, row, field, problem,
                "turns must alternate 'Human:', 'Assistant:', ... starting with 'Human:'; merge "
                "or remove the repeated turn, or remove the row",
            )
        content = text[marker.end():end].strip()
        if not content:
            raise row_error(
                where, row, field, f"turn {k} (0-based, '{marker.group(1)}:') is empty",
                "give the turn its text, or remove the row",
            )
        messages.append({"role": role, "content": content})
    return messages


def dialogue_messages(value: Any, where: str, row: int, field: str) -> list[dict]:
    """A dialogue given as HH text, or already as messages (the conversational form of the same
    data, e.g. {chosen: [{role, content}, ...]})."""
    if isinstance(value, list):
        messages = check_messages(value, where, row, field)
        check_alternation(messages, where, row, field)
        return messages
    return parse_hh_dialogue(value, where, row, field)


def split_last_reply(value: Any, where: str, row: int, field: str) -> tuple[list[dict], dict]:
    """A dialogue -> (the messages before its last assistant turn, that assistant message)."""
    messages = dialogue_messages(value, where, row, field)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise row_error(
            where, row, field,
            f"the last turn is the {_MARKER_OF.get(messages[-1]['role'], 'system')}'s, not the "
            f"Assistant's",
            "end the dialogue with the 'Assistant:' reply being compared, or remove the row",
        )
    return messages[:-1], messages[-1]


def split_hh_pair(
    chosen: Any, rejected: Any, where: str, row: int
) -> tuple[list[dict], dict, dict]:
    """(shared prompt messages, chosen assistant message, rejected assistant message)."""
    prompt, chosen_reply = split_last_reply(chosen, where, row, "chosen")
    prompt_rejected, rejected_reply = split_last_reply(rejected, where, row, "rejected")
    if prompt != prompt_rejected:
        turn = next(
            (k for k, (a, b) in enumerate(zip(prompt, prompt_rejected)) if a != b),
            min(len(prompt), len(prompt_rejected)),
        )
        raise row_error(
            where, row, "rejected",
            f"the dialogue before the last Assistant turn differs from chosen's at turn {turn} "
            f"(0-based; chosen has {len(prompt)} turns before its reply, rejected "
            f"{len(prompt_rejected)})",
            "chosen and rejected must share every turn but the last Assistant reply",
        )
    return prompt, chosen_reply, rejected_reply


def _head(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")
