"""Run one stage in several processes: the runner's branch for distributed hardware profiles.

The `python -m framework` process (already done planning: every check has passed) writes a
request (the resolved config, the stage, its concrete inputs) to a private temporary folder
and starts `accelerate launch ... -m framework.pipeline.worker REQUEST` with arguments built
from the profile. Every process rebuilds the plan from the config and runs the stage; rank 0
alone writes artifacts. The result (rank 0's metrics and artifacts) comes back through the
folder; the runner then writes the manifest and the summary as for an in-process stage.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from framework import errors
from framework.artifacts import Artifact
from framework.hardware.accelerate_args import accelerate_config, launch_args, launch_env
from framework.hardware.config import HardwareConfig, total_processes
from framework.stage import StageContext, StageResult

log = logging.getLogger("framework")

REQUEST, RESULT = "request.json", "result.json"
ACCELERATE_CONFIG = "accelerate_config.json"
ERROR = "error.rank{rank}.json"
# How long a stopped run's processes get to finish (e.g. save a checkpoint) before a kill.
STOP_GRACE_SECONDS = 120


class StageProcessError(RuntimeError):
    """A launched stage failed with an error that is not a FrameworkError (its traceback is in
    the log above, printed by the failing process)."""


def launch_stage(name: str, inputs: dict[str, Artifact], ctx: StageContext, cfg,
                 hw: HardwareConfig) -> StageResult:
    with tempfile.TemporaryDirectory(prefix=f"framework-{name}-") as tmp:
        folder = Path(tmp)
        request = {
            "stage": name,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "inputs": {k: a.to_json() for k, a in inputs.items()},
            "run_dir": str(Path(ctx.run_dir).resolve()),
        }
        (folder / REQUEST).write_text(json.dumps(request, default=str), encoding="utf-8")
        (folder / ACCELERATE_CONFIG).write_text(json.dumps(accelerate_config(hw)), encoding="utf-8")
        command = [sys.executable, "-m", "accelerate.commands.launch",
                   *launch_args(hw, str(folder / ACCELERATE_CONFIG)),
                   "-m", "framework.pipeline.worker", str(folder / REQUEST)]
        log.info("stage %s: launching %d process(es) (machine %d of %d): %s", name,
                 total_processes(hw), hw.machine_rank, hw.num_machines, shlex.join(command[1:]))
        code = _run(command, {**os.environ, **launch_env(hw)})
        if code != 0:
            raise _failure(name, folder, code)
        result = json.loads((folder / RESULT).read_text(encoding="utf-8"))
    return StageResult(result["metrics"],
                       {k: Artifact.from_json(a) for k, a in result["artifacts"].items()})


def _run(command: list[str], env: dict[str, str]) -> int:
    """Run the launcher. A stop request this process receives meanwhile (its handler only sets
    a flag, see signals.py) is passed on as the same signal, so the stage processes checkpoint
    and stop as they would in-process; an exception here (a second signal) sends SIGTERM and
    kills them after STOP_GRACE_SECONDS."""
    from framework.common import signals

    process = subprocess.Popen(command, env=env)
    forwarded = False
    try:
        while True:
            try:
                return process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                name = signals.stop_requested()
                if name and not forwarded:
                    process.send_signal(signals.signal_number(name))
                    forwarded = True
    except BaseException:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except BaseException:
                process.kill()
        raise


def _failure(name: str, folder: Path, code: int) -> Exception:
    """The error of the first failing rank, re-raised as its own FrameworkError class where it
    is one (a ConfigError still exits with status 2), else a StageProcessError."""
    reports = sorted(folder.glob(ERROR.format(rank="*")),
                     key=lambda p: int(p.stem.rsplit("rank", 1)[1]))
    if not reports:
        return StageProcessError(
            f"stage {name!r}: the launched processes exited with status {code} without "
            f"reporting an error (killed, or out of memory?); see the log above.")
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    cls = getattr(errors, report["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.FrameworkError):
        if issubclass(cls, errors.ConfigError):
            return cls(report.get("problems") or report["message"])
        if issubclass(cls, errors.TrainingInterrupted):  # exits 128 + the signal's number
            return cls(report["message"], signal_name=report.get("signal_name") or "SIGTERM")
        try:
            return cls(report["message"])
        except TypeError:
            return errors.FrameworkError(report["message"])
    return StageProcessError(
        f"stage {name!r} failed in process {report['rank']} of {report['world_size']}: "
        f"{report['type']}: {report['message']} (its traceback is above)")
