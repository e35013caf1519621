"""KTO's desirable/undesirable labels, from what the data gives: a label as is, a 1-7 score by
two thresholds, a comparison by a response's place among its prompt's responses.

The comparisons rule: within one prompt (all rows with the same prompt), a response's place
from the top is how many of its responses beat it, from the bottom how many it beats. With the
default `desirable_top: 1, undesirable_bottom: 1` the best of a ranking (a pair's chosen) is
desirable, the worst (a pair's rejected) undesirable, and the ones between are left out. A
response that would be both (in a ranking too short for the two settings) is left out too."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import datasets

from framework.errors import ConfigError


@dataclass
class LabelRule:
    # comparisons: desirable if fewer than this many responses of its prompt beat it
    desirable_top: int = 1
    # comparisons: undesirable if it beats fewer than this many responses of its prompt
    undesirable_bottom: int = 1
    # 1-7 scores: desirable at or above, undesirable at or below; those between are left out
    desirable_min_score: float = 5.0
    undesirable_max_score: float = 3.0

    def problems(self, where: str) -> list[str]:
        out = [f"{where}.{key}: must be >= 1, got {getattr(self, key)}."
               for key in ("desirable_top", "undesirable_bottom") if getattr(self, key) < 1]
        if self.undesirable_max_score >= self.desirable_min_score:
            out.append(f"{where}: undesirable_max_score={self.undesirable_max_score} must be below "
                       f"desirable_min_score={self.desirable_min_score}, or a score would be "
                       f"both.")
        return out


def from_comparisons(pairs: datasets.Dataset, rule: LabelRule
                     ) -> tuple[datasets.Dataset, int, list[int]]:
    """(rows of prompt, completion, label; how many responses were left out; the pair each row
    came from first) from pairs with a `group` column (one per prompt). Each distinct response
    counts once."""
    beaten_by, beats = defaultdict(set), defaultdict(set)  # (group, text) -> other texts
    prompts, first_pair, order = {}, {}, []
    for n, (prompt, chosen, rejected, group) in enumerate(zip(
            pairs["prompt"], pairs["chosen"], pairs["rejected"], pairs["group"])):
        a, b = chosen[-1]["content"], rejected[-1]["content"]
        for key in ((group, a), (group, b)):
            if key not in prompts:
                prompts[key], first_pair[key] = prompt, n
                order.append(key)
        beats[(group, a)].add(b)
        beaten_by[(group, b)].add(a)
    rows = {"prompt": [], "completion": [], "label": []}
    left_out, picked = 0, []
    for key in order:
        good = len(beaten_by[key]) < rule.desirable_top
        bad = len(beats[key]) < rule.undesirable_bottom
        if good == bad:  # neither, or (a ranking too short for the rule) both
            left_out += 1
            continue
        rows["prompt"].append(prompts[key])
        rows["completion"].append([{"role": "assistant", "content": key[1]}])
        rows["label"].append(good)
        picked.append(first_pair[key])
    return datasets.Dataset.from_dict(rows), left_out, picked


def from_feedback(rows: datasets.Dataset, rule: LabelRule
                  ) -> tuple[datasets.Dataset, int, list[int]]:
    """(rows of prompt, completion, label; how many scored rows fell between the thresholds;
    the row each kept one is): labels kept, scores thresholded."""
    keep, labels = [], []
    for i, (label, score) in enumerate(zip(rows["label"], rows["score"])):
        if label is None:
            if score >= rule.desirable_min_score:
                label = True
            elif score <= rule.undesirable_max_score:
                label = False
            else:
                continue
        keep.append(i)
        labels.append(label)
    out = rows.select(keep).remove_columns(["label", "score"]).add_column("label", labels)
    return out, len(rows) - len(keep), keep


def check_both_labels(rows: datasets.Dataset, where: str) -> None:
    """KTO weighs desirable against undesirable responses: training needs some of each."""
    counts = {True: 0, False: 0}
    for label in rows["label"]:
        counts[label] += 1
    missing = [name for flag, name in ((True, "desirable"), (False, "undesirable"))
               if counts[flag] == 0]
    if missing:
        raise ConfigError(f"{where}: the training rows have no {' and no '.join(missing)} "
                          f"response ({counts[True]} desirable, {counts[False]} undesirable); "
                          f"KTO needs both. Check the data or the stage's `labels` rule.")
