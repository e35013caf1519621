"""Comparison data: pairs or K-way rankings, turned into (prompt, chosen, rejected) pairs.

Every pair carries `group`, the index of the first source row with its prompt, so the pairs of
one prompt (the K(K-1)/2 pairs of a ranking, InstructGPT section 3.5) can stay together: on the
same side of the held-out split, and in the same training batch.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any, Optional

import datasets

from framework.artifacts import COMPARISONS
from framework.data.config import DataSourceConfig
from framework.data.formats import detect_format, formats_of, row_error
from framework.data.hh import split_hh_pair
from framework.data.messages import (
    as_prompt,
    check_alternation,
    check_messages,
    check_present,
    check_text,
)
from framework.data.report import BadRows, SourceReport
from framework.data.sources import load_examples


def expand_ranking(responses_best_first: list) -> list[tuple[Any, Any]]:
    """All K(K-1)/2 (better, worse) pairs of a ranking given best first."""
    return list(combinations(responses_best_first, 2))


def load_comparisons(
    source: DataSourceConfig, where: str, report: Optional[SourceReport] = None
) -> tuple[datasets.Dataset, Optional[datasets.Dataset]]:
    """(train pairs, held-out pairs or None). A held-out fraction takes whole prompt groups.
    Bad rows are skipped into `report` when the source says `on_bad_row: skip`."""
    return load_examples(source, where, to_pairs, group_key="group", report=report)


def to_pairs(
    rows: datasets.Dataset, fmt: str, where: str, bad_rows: Optional[BadRows] = None
) -> datasets.Dataset:
    """Canonical pairs: `prompt` (messages), `chosen`/`rejected` (one assistant message each)
    and `group` (the first row index holding the same prompt). A bad row raises, or is left
    out and reported when `bad_rows` says skip."""
    fmt = detect_format(COMPARISONS, fmt, rows.column_names, where)
    parse = formats_of(COMPARISONS)[fmt].parser()
    bad_rows = bad_rows if bad_rows is not None else BadRows()
    columns: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "group": []}
    first_row_of_prompt: dict[str, int] = {}
    for i, (prompt, pairs) in bad_rows.parsed(rows, lambda row, i: parse(row, where, i)):
        group = first_row_of_prompt.setdefault(json.dumps(prompt, sort_keys=True), i)
        for chosen, rejected in pairs:
            columns["prompt"].append(prompt)
            columns["chosen"].append([{"role": "assistant", "content": chosen}])
            columns["rejected"].append([{"role": "assistant", "content": rejected}])
            columns["group"].append(group)
            bad_rows.kept(i)
    return datasets.Dataset.from_dict(columns)


# ---------------------------------------------------------------------------- formats
# A parser turns one row into (prompt messages, [(chosen text, rejected text), ...]).
ParsedRow = tuple[list[dict], list[tuple[str, str]]]


def pairs_row(row: dict, where: str, i: int) -> ParsedRow:
    """`prompt`, `chosen`, `rejected` as strings or messages, or (implicit prompt) chosen and
    rejected as whole conversations that share everything but the last assistant message."""
    if "prompt" in row:
        prompt = as_prompt(row["prompt"], where, i, "prompt")
        chosen = _response(row["chosen"], where, i, "chosen")
        rejected = _response(row["rejected"], where, i, "rejected")
    else:
        prompt, chosen = _split_conversation(row["chosen"], where, i, "chosen")
        prompt_rejected, rejected = _split_conversation(row["rejected"], where, i, "rejected")
        if prompt != prompt_rejected:
            raise row_error(
                where, i, "rejected", "its messages before the last one differ from chosen's",
                "in the implicit-prompt form both conversations must share the same prompt "
                "messages; or give an explicit `prompt` column",
            )
    _check_differ(chosen, rejected, where, i)
    return prompt, [(chosen, rejected)]


def hh_row(row: dict, where: str, i: int) -> ParsedRow:
    """Anthropic HH-RLHF: `chosen` and `rejected` are whole "\n\nHuman: ...\n\nAssistant: ..."
    dialogues sharing everything but the last Assistant reply (the prompt)."""
    prompt, chosen, rejected = split_hh_pair(row["chosen"], row["rejected"], where, i)
    _check_differ(chosen["content"], rejected["content"], where, i)
    return prompt, [(chosen["content"], rejected["content"])]


def hh_or_pairs_row(row: dict, where: str, i: int) -> ParsedRow:
    """`hh` and the implicit-prompt `pairs` form share their columns; the type tells them apart,
    row by row: HH text ("\n\nHuman: ...") is a string, a conversation a list of messages."""
    if isinstance(row["chosen"], list):
        return pairs_row(row, where, i)
    return hh_row(row, where, i)


def ranking_row(row: dict, where: str, i: int) -> ParsedRow:
    """`prompt` and `responses` (K >= 2), best first unless `ranks` (1 = best) is given."""
    prompt = as_prompt(row["prompt"], where, i, "prompt")
    responses = row["responses"]
    check_present(responses, where, i, "responses")
    if not isinstance(responses, list) or len(responses) < 2:
        raise row_error(
            where, i, "responses", f"expected a list of at least 2 responses, got {responses!r}",
            "give K >= 2 responses to rank, or drop the row",
        )
    texts = [_response(r, where, i, f"responses[{k}]") for k, r in enumerate(responses)]
    ranks = row.get("ranks")  # optional: absent means best first
    if ranks is not None:
        k = len(texts)
        if not isinstance(ranks, list) or not all(
                isinstance(r, int) and not isinstance(r, bool) for r in ranks):
            raise row_error(
                where, i, "ranks", f"{ranks!r} must be a list of integers",
                f"give each of the {k} responses a distinct integer rank from 1 (best) to {k} "
                f"(worst), e.g. [2, 1, 3], not strings",
            )
        if sorted(ranks) != list(range(1, k + 1)):
            raise row_error(
                where, i, "ranks", f"{ranks!r} is not a permutation of 1..{k}",
                f"give each of the {k} responses a distinct rank from 1 (best) to {k} (worst)",
            )
        texts = [text for _, text in sorted(zip(ranks, texts))]
    duplicate = next((t for t in texts if texts.count(t) > 1), None)
    if duplicate is not None:
        raise row_error(
            where, i, "responses", f"{duplicate[:60]!r} appears twice and would be paired with "
            f"itself", "remove the duplicate response",
        )
    return prompt, expand_ranking(texts)


# ---------------------------------------------------------------------------- fields


def _check_differ(chosen: str, rejected: str, where: str, i: int) -> None:
    if chosen == rejected:
        raise row_error(
            where, i, "rejected", "identical to chosen, so the pair states no preference",
            "remove the row or fix one of the responses",
        )


def _response(value: Any, where: str, i: int, field: str) -> str:
    """A response: a string, or a list holding exactly one assistant message."""
    check_present(value, where, i, field)
    if isinstance(value, list):
        messages = check_messages(value, where, i, field)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise row_error(
                where, i, field, f"expected one assistant message, got roles "
                f"{[m['role'] for m in messages]}",
                "give the response alone; the conversation before it belongs in `prompt`",
            )
        return messages[0]["content"]
    return check_text(value, where, i, field)


def _split_conversation(value: Any, where: str, i: int, field: str) -> tuple[list[dict], str]:
    """An implicit-prompt conversation -> (prompt messages, the final assistant reply)."""
    messages = check_messages(value, where, i, field)
    check_alternation(messages, where, i, field)
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise row_error(
            where, i, field, "expected a conversation ending in the assistant's response",
            "without a `prompt` column, chosen and rejected must be whole conversations "
            "(prompt messages, then the response); or add a `prompt` column",
        )
    return messages[:-1], messages[-1]["content"]
