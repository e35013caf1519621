"""The `human` labeler: people label the tasks in the labeling app.

The first run publishes the tasks into the stage's store (STAGE/labels.sqlite), creates the
accounts named in `labelers` (their secret links go to STAGE/labeler_links.txt, readable by the
owner only), and stops the run cleanly: waiting for labels, with the app's command, the progress
and the command that continues. `python -m framework label RUN_DIR` serves the app. Running the
same command again continues once `target` of the tasks have all their labels, or at once with
what is labeled so far (at least one task) after `python -m framework label RUN_DIR --stage
STAGE --accept-partial` (recorded in the store, so the config and its hash stay as they were),
or with `accept_partial: true` in the config.

A share `overlap` of the tasks goes to `overlap_labelers` labelers each, for the agreement the
admin page shows; the others go to one labeler each. Tasks are handed out in order, to whoever
asks next. A skip fills the labeler's place on the task (it is kept, with its reason, and casts
no vote); `python -m framework label RUN_DIR --release NAME` hands a labeler's open tasks to
others at once, and `lease_minutes` after it was opened an unsubmitted task goes to the next
labeler who asks anyway (the first may still submit: a label is never refused for that)."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

from framework.errors import ConfigError, WaitingForLabels
from framework.labeling.labeler import LabelSession, Labeler
from framework.labeling.tasks import Label, Task

INSTRUCTIONS = ("Rank the responses from best to worst. A good response follows the "
                "instruction, is truthful, and is harmless; prefer the one that helps the user "
                "most. Score each response from 1 (terrible) to 7 (excellent), tick what "
                "applies, and where the best response can be improved, edit it.")


@dataclass
class HumanConfig:
    target: float = 1.0  # the share of tasks with all their labels before the stage goes on
    accept_partial: bool = False  # go on now with the tasks labeled so far
    overlap: float = 0.0  # the share of tasks labeled by several labelers (agreement)
    overlap_labelers: int = 2
    labelers: list = field(default_factory=list)  # accounts created on the first run
    # an opened task not submitted within this long also goes to the next labeler who asks
    lease_minutes: float = 60.0
    instructions: str = INSTRUCTIONS
    host: str = "127.0.0.1"  # where `python -m framework label` serves, for the printed URL
    port: int = 8765


class HumanLabeler(Labeler):
    Config = HumanConfig

    def check(self, where: str) -> None:
        from framework.labeling.accounts import check_name

        cfg = self.config
        if not 0 < cfg.target <= 1:
            raise ConfigError(f"{where}.target: a share of the tasks in (0, 1], got {cfg.target}.")
        if not 0 <= cfg.overlap <= 1:
            raise ConfigError(f"{where}.overlap: a share of the tasks in [0, 1], got "
                              f"{cfg.overlap}.")
        if cfg.lease_minutes <= 0:
            raise ConfigError(f"{where}.lease_minutes: must be > 0, got {cfg.lease_minutes}.")
        if cfg.overlap and cfg.overlap_labelers < 2:
            raise ConfigError(f"{where}.overlap_labelers: at least 2 for agreement, got "
                              f"{cfg.overlap_labelers}.")
        for i, name in enumerate(cfg.labelers):
            try:
                check_name(str(name))
            except ConfigError as exc:
                raise ConfigError(f"{where}.labelers[{i}]: {exc}") from None

    def setup(self, inputs, device=None, model_cfg=None, session: Optional[LabelSession] = None):
        if session is None:
            raise ConfigError("the human labeler runs inside a label stage (it keeps its store "
                              "in the stage's folder).")
        self.session = session

    def label(self, tasks: Sequence[Task]) -> list[Label]:
        from framework.labeling.store import LABELER, STORE_FILE, open_store

        cfg, session = self.config, self.session
        store = open_store(session.output_dir / STORE_FILE)
        store.publish(tasks, self.wanted(tasks), {
            "stage": session.stage, "allow_ties": session.allow_ties,
            "instructions": cfg.instructions, "target": cfg.target,
            "lease_seconds": 60 * cfg.lease_minutes})
        self._create_accounts(store)
        progress = store.progress()
        needed = math.ceil(cfg.target * progress.tasks)
        accept = cfg.accept_partial or store.settings().get("accept_partial", False)
        if progress.complete_tasks >= needed or (accept and progress.labeled_tasks):
            return store.labels()
        run_dir = session.run_dir
        accounts = [a.name for a in store.accounts() if a.role == LABELER]
        message = (
            f"stage {session.stage}: waiting for labels. {progress.complete_tasks} of "
            f"{progress.tasks} tasks have all their labels ({progress.labels} labels of "
            f"{progress.wanted_labels} wanted); {needed} are needed (target {cfg.target}).\n"
            f"Serve the labeling app (http://{cfg.host}:{cfg.port}/):\n"
            f"  python -m framework label {run_dir} --stage {session.stage} "
            f"--host {cfg.host} --port {cfg.port}\n"
            f"Labelers: {', '.join(accounts) if accounts else 'none yet'}"
            f"{'; their links are in ' + str(self._links_file()) if accounts else ''}. "
            f"Add one: python -m framework label {run_dir} --stage {session.stage} "
            f"--add-labeler NAME; the admin page's token: --admin-token.")
        raise WaitingForLabels(message, stage=session.stage,
                               accept_command=f"python -m framework label {run_dir} --stage "
                                              f"{session.stage} --accept-partial")

    def wanted(self, tasks: Sequence[Task]) -> dict[str, int]:
        """overlap_labelers for the `overlap` share of tasks that hash lowest, else 1."""
        cfg = self.config
        order = sorted(tasks, key=lambda t: hashlib.sha256(t.task_id.encode()).hexdigest())
        shared = {t.task_id for t in order[: round(cfg.overlap * len(tasks))]}
        return {t.task_id: cfg.overlap_labelers if t.task_id in shared else 1 for t in tasks}

    def _links_file(self):
        return self.session.output_dir / "labeler_links.txt"

    def _create_accounts(self, store) -> None:
        from framework.labeling.links import login_link
        from framework.labeling.store import LABELER

        existing = {a.name for a in store.accounts()}
        new = [str(n) for n in self.config.labelers if str(n) not in existing]
        if not new:
            return
        lines = [f"{name}\t{login_link(self.config.host, self.config.port, store.add_account(name, LABELER))}\n"
                 for name in new]
        path = self._links_file()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.writelines(lines)
