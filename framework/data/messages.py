"""Validation of chat messages ({role, content}) shared by the row formats."""

from __future__ import annotations

from typing import Any

from framework.data.formats import row_error

ROLES = ("system", "user", "assistant")


def check_present(value: Any, where: str, row: int, field: str) -> None:
    """Rows of a file need not all have the same keys; a missing one reads as None."""
    if value is None:
        raise row_error(where, row, field, "is missing", f"give every row a {field!r} value")


def check_messages(value: Any, where: str, row: int, field: str) -> list[dict]:
    """`value` as a list of {role, content} with known roles and non-empty string content."""
    check_present(value, where, row, field)
    if not isinstance(value, list) or not value:
        raise row_error(
            where, row, field, f"expected a non-empty list of {{role, content}} messages, got "
            f"{_show(value)}", "give messages like [{role: user, content: ...}]"
        )
    messages = []
    for j, message in enumerate(value):
        at = f"{field}[{j}]"
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise row_error(
                where, row, at, f"expected a {{role, content}} mapping, got {_show(message)}",
                "give each message a role and a content",
            )
        if message["role"] not in ROLES:
            raise row_error(
                where, row, f"{at}.role", f"unknown role {message['role']!r}",
                f"use one of {', '.join(ROLES)}",
            )
        check_text(message["content"], where, row, f"{at}.content")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def check_alternation(messages: list[dict], where: str, row: int, field: str) -> None:
    """An optional system message, then user and assistant turns alternating from user."""
    start = 1 if messages[0]["role"] == "system" else 0
    for j in range(start, len(messages)):
        expected = "user" if (j - start) % 2 == 0 else "assistant"
        if messages[j]["role"] != expected:
            raise row_error(
                where, row, f"{field}[{j}].role",
                f"expected {expected!r} but got {messages[j]['role']!r}",
                "after an optional first system message, turns must alternate user, assistant, "
                "user, ...",
            )


def check_text(value: Any, where: str, row: int, field: str) -> str:
    check_present(value, where, row, field)
    if not isinstance(value, str):
        raise row_error(where, row, field, f"expected a string, got {_show(value)}", "give text")
    if not value.strip():
        raise row_error(where, row, field, "is empty", "give non-empty text or remove the row")
    return value


def as_prompt(value: Any, where: str, row: int, field: str) -> list[dict]:
    """A prompt given as a string (one user turn) or as messages ending with a user turn."""
    check_present(value, where, row, field)
    if isinstance(value, str):
        return [{"role": "user", "content": check_text(value, where, row, field)}]
    messages = check_messages(value, where, row, field)
    check_alternation(messages, where, row, field)
    if messages[-1]["role"] != "user":
        raise row_error(
            where, row, f"{field}[{len(messages) - 1}].role",
            f"the prompt ends with a {messages[-1]['role']!r} message",
            "end the prompt with the user's turn",
        )
    return messages


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{type(value).__name__} {text}"


