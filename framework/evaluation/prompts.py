"""The prompts a policy is evaluated on: a prompt source's held-out split."""

from __future__ import annotations

from framework.artifacts import Artifact
from framework.errors import ConfigError


def prompt_splits(artifact: Artifact, where: str, report=None) -> tuple[list, list]:
    """(training prompts, held-out prompts) as chat message lists; bad rows skipped (with
    on_bad_row: skip) are recorded in `report` (a framework.data.report.DataReport source)."""
    from framework.data import load_examples, source_from_artifact, to_prompts

    source = source_from_artifact(artifact, where)
    train, held_out = load_examples(source, where, to_prompts, report=report)
    return list(train["prompt"]), list(held_out["prompt"]) if held_out is not None else []


def check_held_out(artifact: Artifact, where: str, what: str, turn_off: str) -> None:
    """Planning: the prompt source has a held-out split (`what` is measured on it; `turn_off`
    is the setting that skips it)."""
    from framework.data import source_from_artifact

    source = source_from_artifact(artifact, where)
    if not (source.eval_split or source.eval_fraction > 0):
        raise ConfigError(
            f"{where}: {what} measured on held-out prompts, but data source {source.path!r} has "
            f"none; set its eval_fraction (or eval_split), or set {turn_off}."
        )
