"""Labels into training data.

Comparisons: each labeled task gives the K(K-1)/2 (chosen, rejected) pairs its ranking orders
(tied pairs state no preference and are left out), as pairs rows that carry `task_id` and
`labeler`; the reward-model stage keeps one prompt's pairs in one batch. Where several labelers
ranked one task, each pair's preference is the majority of their votes (a tie in votes drops the
pair): one row per pair and task, with the votes it got. Demonstrations: each correction, the
prompt with the rewritten response. Critiques and scores: one row per critiqued or scored
response, with the response's text. Every row carries its task id and labeler(s)."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
import json
from pathlib import Path
from typing import Sequence

from framework.labeling.tasks import Label, Task


def comparison_rows(tasks: Sequence[Task], labels: Sequence[Label]) -> list[dict]:
    by_task = defaultdict(list)
    for label in labels:
        if not label.skipped:
            by_task[label.task_id].append(label)
    rows = []
    for task in tasks:
        votes = by_task.get(task.task_id)
        if not votes:
            continue
        for a, b in combinations(range(len(task.responses)), 2):
            for_a = sum(v.ranks[a] < v.ranks[b] for v in votes)
            for_b = sum(v.ranks[b] < v.ranks[a] for v in votes)
            if for_a == for_b:
                continue
            chosen, rejected = (a, b) if for_a > for_b else (b, a)
            rows.append({"prompt": task.prompt, "chosen": task.responses[chosen],
                         "rejected": task.responses[rejected], "task_id": task.task_id,
                         "labelers": sorted(v.labeler for v in votes),
                         "votes": [max(for_a, for_b), min(for_a, for_b)]})
    return rows


def demonstration_rows(tasks: Sequence[Task], labels: Sequence[Label]) -> list[dict]:
    prompts = {t.task_id: t.prompt for t in tasks}
    return [{"prompt": prompts[label.task_id], "completion": label.correction["text"],
             "task_id": label.task_id, "labeler": label.labeler}
            for label in labels if label.correction and not label.skipped]


def critique_rows(tasks: Sequence[Task], labels: Sequence[Label]) -> list[dict]:
    known = {t.task_id: t for t in tasks}
    return [{"prompt": known[label.task_id].prompt, "response": known[label.task_id].responses[k],
             "response_index": k, "critique": text, "task_id": label.task_id,
             "labeler": label.labeler}
            for label in labels if label.critiques and not label.skipped
            for k, text in enumerate(label.critiques) if text.strip()]


def score_rows(tasks: Sequence[Task], labels: Sequence[Label]) -> list[dict]:
    known = {t.task_id: t for t in tasks}
    return [{"prompt": known[label.task_id].prompt, "response": known[label.task_id].responses[k],
             "response_index": k, "score": score, "rank": label.ranks[k],
             "flags": label.flags[k] if label.flags else [], "task_id": label.task_id,
             "labeler": label.labeler}
            for label in labels if label.scores and not label.skipped
            for k, score in enumerate(label.scores)]


EXPORTS = {"labels.jsonl": lambda tasks, labels: [label.to_json() for label in labels],
           "comparisons.jsonl": comparison_rows, "demonstrations.jsonl": demonstration_rows,
           "critiques.jsonl": critique_rows, "scores.jsonl": score_rows}


def write_exports(folder: Path, tasks: Sequence[Task], labels: Sequence[Label]) -> dict[str, int]:
    """Every export as JSONL in `folder`; returns the rows written per file."""
    from framework.common.files import write_text_atomic

    counts = {}
    for name, rows_of in EXPORTS.items():
        rows = rows_of(tasks, labels)
        write_text_atomic(Path(folder) / name, "".join(json.dumps(r) + "\n" for r in rows))
        counts[name] = len(rows)
    return counts
