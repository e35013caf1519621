"""Running a TRL (transformers) trainer the way every stage should: resume from the last complete
checkpoint, stop cleanly on SIGINT/SIGTERM after saving one, and stop on a non-finite loss or
gradient without ever saving the bad state."""

from __future__ import annotations

import json
import logging
import math
import pickle
import re
import shutil
from pathlib import Path
from typing import Optional

from transformers import TrainerCallback

from framework.common.gradients import gradient_norm
from framework.errors import CheckpointError, TrainingDiverged, TrainingInterrupted
from framework.common.signals import any_process, stop_requested_anywhere

# The Trainer writes trainer_state.json last: a checkpoint folder without it was cut short.
COMPLETE_MARKER = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(folder: Path, logger: Optional[logging.Logger] = None) -> Optional[str]:
    """The newest `checkpoint-N` under `folder` that the Trainer finished writing. Incomplete
    ones (the process was killed while saving) are deleted, so nothing resumes from them."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), key=lambda t: t[0])
    complete = None
    for _, path in found:
        if (path / COMPLETE_MARKER).exists():
            complete = path
        else:
            (logger or logging.getLogger("framework")).warning(
                "%s was not completely written (the run stopped while saving it); removed", path)
            shutil.rmtree(path, ignore_errors=True)
    return str(complete) if complete is not None else None


class GuardCallback(TrainerCallback):
    """Checks each step: gradients finite before the optimizer step, logged losses finite, and a
    stop signal at each step boundary. On divergence it stops training and vetoes every save
    from then on; on a signal it asks the Trainer to save this step and stop."""

    def __init__(self) -> None:
        self.diverged: Optional[tuple[int, str, float]] = None  # (step, quantity, value)
        self.stopped_by: Optional[str] = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:  # fp16's loss scaler skips overflowing steps by design
            return
        norm = gradient_norm(model.parameters())
        if any_process(not math.isfinite(norm)) and self.diverged is None:
            self.diverged = (state.global_step + 1, "gradient norm", norm)
            _veto(control)

    def on_step_end(self, args, state, control, **kwargs):
        if self.diverged:
            _veto(control)
            return
        name = stop_requested_anywhere()
        if name:
            self.stopped_by = name
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value) and not self.diverged:
                self.diverged = (state.global_step, key.replace("_", " "), float(value))
        if self.diverged:
            _veto(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.diverged:
            _veto(control)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.diverged:
            _veto(control)


def train(trainer, checkpoints: Path, where: str, logger: logging.Logger):
    """`trainer.train()`, resumed from the last complete checkpoint under `checkpoints`.
    Raises TrainingDiverged or TrainingInterrupted (after the Trainer saved a checkpoint)."""
    name = stop_requested_anywhere()
    if name:  # asked during the stage's setup (data, model loading): nothing to save yet
        raise TrainingInterrupted(f"{where}: stopped by {name} before training started; "
                                  f"nothing was trained or saved.", signal_name=name)
    resume = last_complete_checkpoint(checkpoints, logger)
    if resume and _is_final(resume, trainer.args.max_steps):
        return _load_final(trainer, resume, where, logger)
    if resume:
        logger.info("%s: resuming from %s", where, resume)
    guard = GuardCallback()
    trainer.add_callback(guard)
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a file
        if not resume:
            raise
        raise CheckpointError(
            f"{where}: the checkpoint {resume} holds a file that does not load safely "
            f"({str(exc).splitlines()[0][:200]}): it is damaged or was altered. Do not load it "
            f"with weights_only=False; delete that checkpoint folder to resume from the one "
            f"before it (or delete {checkpoints} to start the stage over).",
            checkpoint=resume) from None
    state = trainer.state
    if guard.diverged:
        step, quantity, value = guard.diverged
        last = last_complete_checkpoint(checkpoints, logger)
        kept = (f"The last good checkpoint, {Path(last).name}, is kept at {last}; nothing from "
                f"step {step} on was saved." if last else
                "No checkpoint had been saved before it, and none was saved after.")
        raise TrainingDiverged(
            f"{where}: training diverged at step {step}: the {quantity} is {value}. {kept} Lower "
            f"{where}.params.args.learning_rate (now {trainer.args.learning_rate}), keep "
            f"args.max_grad_norm > 0, or look for broken rows in the data (a changed stage config "
            f"starts the stage over).", step=step, quantity=quantity, checkpoint=last)
    if guard.stopped_by and state.global_step < state.max_steps:
        last = last_complete_checkpoint(checkpoints, logger)
        raise TrainingInterrupted(
            f"{where}: stopped by {guard.stopped_by} at step {state.global_step} of "
            f"{state.max_steps}, after saving the checkpoint {last}.",
            signal_name=guard.stopped_by, step=state.global_step, checkpoint=last)
    return output


def _is_final(checkpoint: str, max_steps: int) -> bool:
    """Whether the checkpoint is at the last step of this training (`max_steps`, or for an
    epoch-based run, -1, the checkpoint's own total): the run was stopped after it, during the
    final evaluation or save. A run continued with a higher max_steps trains on."""
    state = json.loads((Path(checkpoint) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    target = max_steps if max_steps > 0 else state.get("max_steps", 0)
    return target > 0 and state["global_step"] >= target


def _load_final(trainer, checkpoint: str, where: str, logger: logging.Logger):
    """The final checkpoint's weights and state, without training: the Trainer resumed from a
    checkpoint at max_steps would still take a step (it skips the epoch's first batches, then
    trains on the next one). The Trainer's mean training loss is not kept in a checkpoint; it is
    rebuilt from the logged interval means when the last one was logged at the final step, else
    it is None (unknown)."""
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    logger.info("%s: %s is the final checkpoint (step %s); loading it instead of training",
                where, checkpoint, Path(checkpoint).name.split("-")[-1])
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / COMPLETE_MARKER))
    return TrainOutput(trainer.state.global_step, _mean_logged_loss(trainer.state), {})


def _mean_logged_loss(state) -> Optional[float]:
    logged = [(e["step"], e["loss"]) for e in state.log_history if "loss" in e and "step" in e]
    if not logged or logged[-1][0] != state.global_step:
        return None
    total, previous = 0.0, 0
    for step, loss in logged:  # each logged loss is the mean over the steps since the last log
        total += loss * (step - previous)
        previous = step
    return total / state.global_step


def _veto(control) -> None:
    control.should_save = False
    control.should_training_stop = True
