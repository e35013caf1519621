"""Unpaired feedback (KTO data): one response per row, labelled desirable or undesirable, or
scored on InstructGPT's 1-7 scale. Canonical columns: `prompt` (messages), `completion` (one
assistant message), `label` (bool, or None for a scored row) and `score` (float or None)."""

from __future__ import annotations

import math
from typing import Any, Optional

import datasets

from framework.artifacts import FEEDBACK
from framework.data.demonstrations import from_messages as demonstration_from_messages
from framework.data.demonstrations import from_prompt_completion
from framework.data.formats import parse_rows, row_error
from framework.data.report import BadRows

SCORE_RANGE = (1, 7)

# A parsed row: (prompt messages, response text, label or None, score or None)
ParsedRow = tuple[list[dict], str, Optional[bool], Optional[float]]


def to_feedback(rows: datasets.Dataset, fmt: str, where: str,
                bad_rows: Optional[BadRows] = None) -> datasets.Dataset:
    parsed = parse_rows(FEEDBACK, fmt, rows, where, bad_rows if bad_rows is not None else BadRows())
    return datasets.Dataset.from_dict({
        "prompt": [p for p, _, _, _ in parsed],
        "completion": [[{"role": "assistant", "content": r}] for _, r, _, _ in parsed],
        "label": [label for _, _, label, _ in parsed],
        "score": [score for _, _, _, score in parsed]})


def _label(value: Any, where: str, i: int) -> bool:
    if not isinstance(value, bool):
        raise row_error(where, i, "label", f"must be true or false, got {value!r}",
                        "write the label as a JSON boolean (true: a desirable response)")
    return value


def from_messages(row: dict, where: str, i: int) -> ParsedRow:
    prompt, response = demonstration_from_messages(row, where, i)
    return prompt, response, _label(row["label"], where, i), None


def from_labelled(row: dict, where: str, i: int) -> ParsedRow:
    prompt, response = from_prompt_completion(row, where, i)
    return prompt, response, _label(row["label"], where, i), None


def from_scored(row: dict, where: str, i: int) -> ParsedRow:
    prompt, response = from_prompt_completion(row, where, i)
    score = row["score"]
    low, high = SCORE_RANGE
    if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score) \
            or not low <= score <= high:
        raise row_error(where, i, "score", f"must be a number from {low} to {high}, got {score!r}",
                        f"give each response's score on the {low}-{high} scale")
    return prompt, response, None, float(score)
