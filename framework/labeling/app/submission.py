"""A labeler's submission (a page's form or the JSON API) into a Label.

Both speak in display positions: the page shows task responses shuffled per labeler
(`display_order`), so that no position tells which policy wrote a response. A submission gives
`order`, the positions best first; `tied`, the positions ranked equal to the one above them;
and per position a score 1-7, flags, an edited text (the one response whose text changed is the
correction) and a critique. Or `skip` with a reason. Everything is checked here, and each
problem named, before anything is stored."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from framework.labeling.tasks import FLAGS, Label, Task

MAX_TEXT = 20_000  # characters in one edit, critique or skip reason


class SubmissionError(ValueError):
    """What is wrong with a submission, in words for the labeler."""


@dataclass
class Submission:
    order: list[int] = field(default_factory=list)
    tied: set[int] = field(default_factory=set)
    scores: dict[int, int] = field(default_factory=dict)
    flags: dict[int, list[str]] = field(default_factory=dict)
    edits: dict[int, str] = field(default_factory=dict)
    critiques: dict[int, str] = field(default_factory=dict)
    skip: str = ""


def display_order(task: Task, labeler: str, secret: str) -> list[int]:
    """display position -> response index; the same on every visit, different per labeler."""
    seed = hashlib.sha256(f"{secret}:{task.task_id}:{labeler}".encode()).digest()
    order = list(range(len(task.responses)))
    random.Random(seed).shuffle(order)
    return order


def from_form(form: dict[str, list[str]], k: int) -> Submission:
    """A parsed application/x-www-form-urlencoded body (parse_qs) into a Submission."""
    def one(name: str) -> str:
        values = form.get(name, [])
        if len(values) > 1:
            raise SubmissionError(f"field {name!r} was sent {len(values)} times.")
        return values[0] if values else ""

    sub = Submission(skip=one("skip_reason").strip() if one("action") == "skip" else "")
    sub.order = _positions(one("order").split(",") if one("order") else [], "order", k)
    for d in range(k):
        if one(f"tie_{d}"):
            sub.tied.add(d)
        if one(f"score_{d}"):
            sub.scores[d] = _int(one(f"score_{d}"), f"score_{d}")
        if form.get(f"flag_{d}"):
            sub.flags[d] = form[f"flag_{d}"]
        if f"edit_{d}" in form:
            sub.edits[d] = one(f"edit_{d}")
        if one(f"critique_{d}"):
            sub.critiques[d] = one(f"critique_{d}")
    return sub


def from_json(body: Any, k: int) -> Submission:
    """The JSON API's body: {"order": [...], "tied": [...], "scores": [...], "flags": [[...]],
    "edits": {"POS": text}, "critiques": [...], "skip": reason}; lists are per position."""
    if not isinstance(body, dict):
        raise SubmissionError("the body must be a JSON object.")
    unknown = set(body) - {"order", "tied", "scores", "flags", "edits", "critiques", "skip"}
    if unknown:
        raise SubmissionError(f"unknown fields {sorted(unknown)}; the fields are order, tied, "
                              f"scores, flags, edits, critiques, skip.")
    sub = Submission(skip=_text(body.get("skip") or "", "skip").strip())
    sub.order = _positions(body.get("order") or [], "order", k)
    sub.tied = set(_positions(body.get("tied") or [], "tied", k, complete=False))
    for name, target, convert in (("scores", sub.scores, _int), ("critiques", sub.critiques, _text),
                                  ("flags", sub.flags, _flag_list)):
        values = body.get(name)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != k:
            raise SubmissionError(f"{name}: one entry per response ({k}), got {values!r:.80}.")
        for d, value in enumerate(values):
            if value not in (None, "", []):
                target[d] = convert(value, f"{name}[{d}]")
    edits = body.get("edits") or {}
    if not isinstance(edits, dict):
        raise SubmissionError('edits: an object {"POSITION": "the edited text"}.')
    for key, text in edits.items():
        [d] = _positions([key], "edits", k, complete=False)
        sub.edits[d] = _text(text, f"edits[{key}]")
    return sub


def to_label(sub: Submission, task: Task, order: list[int], labeler: str,
             allow_ties: bool) -> Label:
    """The Label in response indices (order[d] is the response at position d)."""
    k = len(task.responses)
    if sub.skip:
        return Label(task.task_id, labeler, skipped=_text(sub.skip, "skip reason"))
    if sorted(sub.order) != list(range(k)):
        raise SubmissionError(f"the ranking must place each of the {k} responses once.")
    if sub.tied and not allow_ties:
        raise SubmissionError("this task does not allow ties: give each response its own rank.")
    if sub.order and sub.order[0] in sub.tied:
        raise SubmissionError("the response ranked first has nothing above it to tie with.")
    ranks = [0] * k
    rank = 0
    for place, d in enumerate(sub.order):
        rank = rank if d in sub.tied else place + 1
        ranks[order[d]] = rank
    label = Label(task.task_id, labeler, ranks=ranks)
    if sub.scores:
        if len(sub.scores) != k:
            raise SubmissionError(f"score every response 1-7, or none: {len(sub.scores)} of {k} "
                                  f"are scored.")
        if not all(1 <= s <= 7 for s in sub.scores.values()):
            raise SubmissionError("scores go from 1 (terrible) to 7 (excellent).")
        label.scores = [sub.scores[order.index(i)] for i in range(k)]
    if sub.flags:
        for d, flags in sub.flags.items():
            bad = set(flags) - set(FLAGS)
            if bad:
                raise SubmissionError(f"unknown flags {sorted(bad)}; flags are {', '.join(FLAGS)}.")
        label.flags = [sorted(set(sub.flags.get(order.index(i), []))) for i in range(k)]
    changed = {d: _text(t, f"edit of response {d + 1}") for d, t in sub.edits.items()
               if _same_text(t) != _same_text(task.responses[order[d]])}
    if len(changed) > 1:
        raise SubmissionError(f"{len(changed)} responses were edited; edit one (the best).")
    for d, text in changed.items():
        if not text.strip():
            raise SubmissionError(f"the edit of response {d + 1} is empty; undo it or write the "
                                  f"corrected response.")
        label.correction = {"response": order[d], "text": _same_text(text)}
    if any(c.strip() for c in sub.critiques.values()):
        label.critiques = [_text(sub.critiques.get(order.index(i), ""), "critique").strip()
                           for i in range(k)]
    return label


def _same_text(text: str) -> str:
    return text.replace("\r\n", "\n")  # browsers send textarea lines as CRLF


def _positions(values, name: str, k: int, complete: bool = True) -> list[int]:
    if not isinstance(values, list):
        raise SubmissionError(f"{name}: a list of response positions, got {values!r:.80}.")
    out = [_int(v, name) for v in values]
    if any(not 0 <= d < k for d in out) or len(set(out)) != len(out):
        raise SubmissionError(f"{name}: positions 0-{k - 1}, each at most once, got {out}.")
    if complete and out and len(out) != k:
        raise SubmissionError(f"{name}: the ranking must place each of the {k} responses once.")
    return out


def _int(value, name: str) -> int:
    if isinstance(value, bool):
        raise SubmissionError(f"{name}: a whole number, got {value!r}.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SubmissionError(f"{name}: a whole number, got {str(value)[:40]!r}.") from None
    if isinstance(value, float) and value != number:
        raise SubmissionError(f"{name}: a whole number, got {value!r}.")
    return number


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise SubmissionError(f"{name}: text, got {type(value).__name__}.")
    if len(value) > MAX_TEXT:
        raise SubmissionError(f"{name}: {len(value)} characters, more than the {MAX_TEXT} "
                              f"allowed.")
    return value


def _flag_list(value, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise SubmissionError(f"{name}: a list of flag names.")
    return value
