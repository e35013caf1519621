"""`python tests/kill_at.py MOMENT [framework args]`: `python -m framework` that SIGKILLs
itself at one exact moment of a TRL stage's end, for the resume tests:

- `final_evaluation`: as the final evaluation (after the last training step) starts;
- `final_save`: half-way through writing the stage's model (the file cut short, as a kill in
  the middle of the write leaves it).

The framework itself is not changed: transformers' Trainer methods are wrapped from outside."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_in_final_evaluation(trainer_cls) -> None:
    evaluate = trainer_cls.evaluate

    def wrapped(self, *args, **kwargs):
        if self.state.global_step >= self.args.max_steps:
            die()
        return evaluate(self, *args, **kwargs)

    trainer_cls.evaluate = wrapped


def kill_in_final_save(trainer_cls) -> None:
    save_model = trainer_cls.save_model

    def wrapped(self, output_dir=None, _internal_call=False):
        save_model(self, output_dir, _internal_call)
        if not _internal_call:  # the stage's own save, not a checkpoint's
            weights = Path(output_dir) / "model.safetensors"
            with open(weights, "r+b") as f:
                f.truncate(weights.stat().st_size // 2)
            die()

    trainer_cls.save_model = wrapped


MOMENTS = {"final_evaluation": kill_in_final_evaluation, "final_save": kill_in_final_save}

if __name__ == "__main__":
    import transformers

    moment = sys.argv.pop(1)
    MOMENTS[moment](transformers.Trainer)
    from framework.cli import main

    sys.argv[0] = "framework"
    main()
