"""One run per run directory: a second `python -m framework` into it is refused, naming the
first; a run killed with SIGKILL leaves no lock behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from framework.errors import ConfigError
from framework.pipeline.run_lock import HOLDER, run_dir_lock

HOLD = ("import sys, time; from framework.pipeline.run_lock import run_dir_lock\n"
        "with run_dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n")


def hold_in_another_process(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_first(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(ConfigError) as err:
            with run_dir_lock(tmp_path):
                pass
        message = str(err.value)
        assert message.startswith(f"hydra.run.dir: {tmp_path} is in use by another run (pid "
                                  f"{holder.pid} on {socket.gethostname()}, started ")
        assert "choose another directory with hydra.run.dir=DIR" in message
        # the whole command: exit status 2 and nothing written into the run directory
        before = sorted(p.name for p in tmp_path.iterdir())
        proc = subprocess.run([sys.executable, "-m", "framework", "+recipe=instructgpt",
                               f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"is in use by another run (pid {holder.pid}" in proc.stdout + proc.stderr
        assert "config.yaml" not in before and not (tmp_path / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_leaves_no_lock(tmp_path):
    holder = hold_in_another_process(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with run_dir_lock(tmp_path):
        assert (tmp_path / HOLDER).exists()
    assert time.monotonic() - start < 5
    assert not (tmp_path / HOLDER).exists()
