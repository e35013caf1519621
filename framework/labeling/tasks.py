"""Tasks and labels, and their JSONL files.

A task is one prompt with the K responses a policy sampled for it (`collect` writes them, with
provenance). A label is one labeler's judgement of one task: `ranks[k]` is response k's rank
(1 = best; equal ranks are ties), optional `scores[k]` on 1-7, `flags` per response, an optional
`correction` (a response rewritten, which becomes a demonstration), `critiques` (per response,
"" for none), or `skipped` with a reason."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from framework.common.files import write_text_atomic
from framework.errors import DataError

TASKS_FILE = "tasks.jsonl"
FLAGS = ("fails_instruction", "harmful", "makes_up_facts", "inappropriate")  # InstructGPT's metadata


@dataclass
class Task:
    task_id: str
    prompt: Any  # chat messages
    responses: list[str]
    provenance: dict = field(default_factory=dict)  # policy, round, seed, sampling settings


@dataclass
class Label:
    task_id: str
    labeler: str
    ranks: Optional[list[int]] = None  # per response, 1 = best; None when skipped
    scores: Optional[list[int]] = None  # per response, 1-7
    flags: Optional[list[list[str]]] = None  # per response
    correction: Optional[dict] = None  # {"response": k, "text": the rewritten response}
    critiques: Optional[list[str]] = None  # per response, "" for none
    skipped: str = ""  # the reason, when the labeler skipped the task

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def write_tasks(path: Path, tasks: Iterable[Task]) -> None:
    write_text_atomic(path, "".join(json.dumps(asdict(t)) + "\n" for t in tasks))


def read_tasks(path: Path) -> list[Task]:
    tasks = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tasks.append(Task(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                raise DataError(f"{path}, line {n}: not a task ({exc}); the file is written by "
                                f"the collect stage, run it again.") from None
    return tasks


def check_label(label: Label, task: Task, where: str, allow_ties: bool) -> None:
    """A label that fits its task; raises DataError naming the task and the field."""
    k = len(task.responses)
    what = f"{where}: label of task {task.task_id} by {label.labeler}"
    if label.skipped:
        return
    ranks = label.ranks
    if (not isinstance(ranks, list) or len(ranks) != k
            or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= k
                       for r in ranks)):
        raise DataError(f"{what}: ranks {ranks!r} must give each of the {k} responses a rank "
                        f"from 1 (best) to {k}.")
    if not allow_ties and sorted(ranks) != list(range(1, k + 1)):
        raise DataError(f"{what}: ranks {ranks!r} tie responses, which this stage does not "
                        f"allow (allow_ties: false).")
    if label.scores is not None and (len(label.scores) != k or not all(
            isinstance(s, int) and 1 <= s <= 7 for s in label.scores)):
        raise DataError(f"{what}: scores {label.scores!r} must be one integer 1-7 per response.")
    if label.flags is not None and (len(label.flags) != k or not all(
            set(f) <= set(FLAGS) for f in label.flags)):
        raise DataError(f"{what}: flags {label.flags!r} must be one list per response of "
                        f"{', '.join(FLAGS)}.")
    if label.critiques is not None and (len(label.critiques) != k or not all(
            isinstance(c, str) for c in label.critiques)):
        raise DataError(f"{what}: critiques must be one text per response (\"\" for none).")
    if label.correction is not None:
        index, text = label.correction.get("response"), label.correction.get("text")
        if not (isinstance(index, int) and 0 <= index < k and isinstance(text, str) and text.strip()):
            raise DataError(f"{what}: a correction is {{response: 0..{k - 1}, text: the "
                            f"rewritten response}}, got {label.correction!r}.")
