"""Stores and labeling apps for tests: tasks with K responses, a store in a folder, the app on
127.0.0.1 in a thread or as `python -m framework label` in a subprocess (so a test can kill -9
it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from framework.labeling.store import LABELER, open_store
from framework.labeling.tasks import Task
from reward_servers import REPO, wait_healthy


def make_tasks(n: int, k: int = 4, prefix: str = "t") -> list[Task]:
    return [Task(f"{prefix}{i:04d}", [{"role": "user", "content": f"Question {i}?"}],
                 [f"Answer {i}.{j} " + "word " * j for j in range(k)],
                 {"round": 1}) for i in range(n)]


def make_store(folder: Path, tasks, wanted=None, allow_ties=True, labelers=()):
    """(store, {labeler: token})"""
    store = open_store(Path(folder) / "labels.sqlite")
    store.publish(tasks, wanted or {t.task_id: 1 for t in tasks},
                  {"stage": "label", "allow_ties": allow_ties, "instructions": "Rank them."})
    return store, {name: store.add_account(name, LABELER) for name in labelers}


def start_label_app(run_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework", "label", str(run_dir), "--port", str(port)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc
