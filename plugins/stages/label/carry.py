"""The label stage's `earlier` input: the comparisons of earlier rounds carried into this
round's, so that round r's reward model trains on every comparison so far.

The held-out split stays honest across rounds. The earlier comparisons keep the split their
reward model saw (read as that stage reads them: their eval split, or their eval_fraction of
whole prompts); this round's pairs are split by whole prompt with the stage's eval_fraction, as
the reward model would split them alone, except that a prompt the earlier comparisons already
hold keeps the side it has there. So a held-out pair stays held out in every later round, and no
prompt is on both sides. The result is a folder of pairs, train.jsonl and test.jsonl (the
artifact names `test` as its eval split)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from framework.artifacts import COMPARISONS, Artifact
from framework.common.files import write_text_atomic
from framework.labeling.export import comparison_rows
from framework.labeling.tasks import Label, Task

TRAIN, TEST = "train.jsonl", "test.jsonl"


def carry(earlier: Artifact, tasks: Sequence[Task], labels: Sequence[Label],
          eval_fraction: float, folder: Path, where: str) -> tuple[Artifact, dict]:
    """(the comparisons artifact of earlier and this round's pairs, metrics)."""
    from framework.data import load_comparisons, source_from_artifact

    at = f"{where}.inputs.earlier"
    old_train, old_eval = load_comparisons(source_from_artifact(earlier, at), at)
    old_train, old_eval = _rows(old_train), _rows(old_eval)
    new_train, new_eval = _split(comparison_rows(tasks, labels), eval_fraction, where)
    held_out = {_key(r) for r in old_eval}
    trained = {_key(r) for r in old_train}
    train = old_train + [r for r in new_train if _key(r) not in held_out] + \
        [r for r in new_eval if _key(r) in trained]
    test = old_eval + [r for r in new_eval if _key(r) not in trained] + \
        [r for r in new_train if _key(r) in held_out]
    _write(folder / TRAIN, train)
    _write(folder / TEST, test)
    metrics = {"earlier_pairs": len(old_train) + len(old_eval), "train_pairs": len(train),
               "eval_pairs": len(test)}
    meta = {"format": "pairs", **({"eval_split": "test"} if test else {})}
    return Artifact(COMPARISONS, str(folder), meta), metrics


def _split(rows: list[dict], eval_fraction: float, where: str) -> tuple[list, list]:
    """This round's pairs, split by whole prompt as the reward model splits a pairs file."""
    import datasets

    from framework.data import split_by_group, to_pairs

    if not rows:
        return [], []
    pairs = to_pairs(datasets.Dataset.from_list(rows), "pairs", f"{where} (this round's pairs)")
    if not eval_fraction:
        return _rows(pairs), []
    train, evaluation = split_by_group(pairs, eval_fraction, 0, "group", where)
    return _rows(train), _rows(evaluation)


def _rows(pairs) -> list[dict]:
    """Canonical pairs (framework.data.comparisons) as rows of the pairs format."""
    if pairs is None:
        return []
    return [{"prompt": p, "chosen": c[0]["content"], "rejected": r[0]["content"]}
            for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]


def _key(row: dict) -> str:
    return json.dumps(row["prompt"], sort_keys=True)


def _write(path: Path, rows: list[dict]) -> None:
    if rows:
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    else:  # no split file, rather than an empty one (or a stale one from an earlier attempt)
        path.unlink(missing_ok=True)
