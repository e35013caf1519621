"""Each training stage's logged metrics, step by step, in `<stage>/training_log.jsonl`: one JSON
object per logged step, the file the report draws its curves from (framework/report/).

TRL stages write their Trainer's `log_history` (which a resumed run restores from its
checkpoint); the PPO loop writes its per-step stats (kept in its checkpoints for the same
reason). Entries carry `step`; other keys are whatever the trainer logged under its own names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from framework.common.files import write_text_atomic

FILE = "training_log.jsonl"


def write(folder: Path, entries: Iterable[dict]) -> Path:
    """Replace `folder`'s log with `entries` (plain numbers; NaN and infinities as null)."""
    path = Path(folder) / FILE
    lines = [json.dumps({k: _plain(v) for k, v in entry.items()}) for entry in entries]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def read(folder: Path) -> list[dict]:
    """`folder`'s log, or [] when the stage logged nothing."""
    path = Path(folder) / FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a diverged step reads as a gap in the curve
    return value
