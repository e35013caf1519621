"""The label store on SQLite (the interface: framework/labeling/store.py).

One file in the label stage's folder, in WAL mode with synchronous=FULL: a submission the server
answered is on disk, and readers never block the writer. Each method opens its own connection,
so the app's worker threads share nothing; assignments take the write lock first (BEGIN
IMMEDIATE), so two labelers asking at once never get the same overlap slot."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from framework.labeling import accounts as secrets_
from framework.labeling.store import (
    ADMIN, LABELER, Account, AlreadyLabeled, LabelRecord, LabelStore, Progress, StoreError)
from framework.labeling.tasks import Label, Task

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, position INTEGER NOT NULL,
    body TEXT NOT NULL, wanted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (task_id TEXT NOT NULL REFERENCES tasks(task_id),
    labeler TEXT NOT NULL REFERENCES accounts(name), assigned_at REAL NOT NULL,
    PRIMARY KEY (task_id, labeler));
CREATE TABLE IF NOT EXISTS labels (task_id TEXT NOT NULL, labeler TEXT NOT NULL,
    body TEXT NOT NULL, submitted_at REAL NOT NULL, seconds REAL,
    PRIMARY KEY (task_id, labeler),
    FOREIGN KEY (task_id, labeler) REFERENCES assignments(task_id, labeler));
"""


class SQLiteStore(LabelStore):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)",
                       (json.dumps(secrets_.new_token()),))

    @contextlib.contextmanager
    def _connect(self, write: bool = False):
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            if write:
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if db.in_transaction:
                db.execute("COMMIT")
        finally:
            db.close()

    # --- tasks and settings

    def publish(self, tasks: Sequence[Task], wanted: dict[str, int], settings: dict) -> None:
        with self._connect(write=True) as db:
            start = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            for task in tasks:
                body = json.dumps(asdict(task), sort_keys=True)
                row = db.execute("SELECT body FROM tasks WHERE task_id = ?",
                                 (task.task_id,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?)",
                               (task.task_id, start, body, wanted[task.task_id]))
                    start += 1
                elif row[0] != body:
                    raise StoreError(
                        f"{self.path}: task {task.task_id} is stored with other responses than "
                        f"the collect stage's samples now hold (the samples changed after "
                        f"labeling began). Its labels would be wrong for them: move {self.path} "
                        f"away to label the new samples from scratch.")
            self._set(db, settings)

    def update_settings(self, settings: dict) -> None:
        with self._connect(write=True) as db:
            self._set(db, settings)

    @staticmethod
    def _set(db, settings: dict) -> None:
        for key, value in settings.items():
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def settings(self) -> dict:
        with self._connect() as db:
            return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}

    def tasks(self) -> list[Task]:
        with self._connect() as db:
            return [Task(**json.loads(body)) for (body,) in
                    db.execute("SELECT body FROM tasks ORDER BY position")]

    def task(self, task_id: str) -> Optional[Task]:
        with self._connect() as db:
            row = db.execute("SELECT body FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return Task(**json.loads(row[0])) if row else None

    # --- accounts

    def add_account(self, name: str, role: str, replace: bool = False) -> str:
        if role not in (LABELER, ADMIN):
            raise StoreError(f"role {role!r}: must be {LABELER!r} or {ADMIN!r}.")
        secrets_.check_name(name)
        token = secrets_.new_token()
        with self._connect(write=True) as db:
            row = db.execute("SELECT role FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is not None and not replace:
                raise StoreError(f"account {name!r} exists ({row[0]}). To give it a new token "
                                 f"(its old link stops working), ask for a new link.")
            if row is not None and row[0] != role:
                raise StoreError(f"account {name!r} is a {row[0]}, not a {role}.")
            db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?)",
                       (name, role, secrets_.hash_token(token), time.time()))
        return token

    def accounts(self) -> list[Account]:
        with self._connect() as db:
            return [Account(n, r) for n, r in
                    db.execute("SELECT name, role FROM accounts ORDER BY created_at, name")]

    def account_for_token(self, token: str) -> Optional[Account]:
        if not token:
            return None
        with self._connect() as db:
            row = db.execute("SELECT name, role FROM accounts WHERE token_hash = ?",
                             (secrets_.hash_token(token),)).fetchone()
        return Account(*row) if row else None

    # --- assignments

    def next_task(self, labeler: str) -> Optional[str]:
        with self._connect(write=True) as db:
            open_ = db.execute(
                "SELECT a.task_id FROM assignments a JOIN tasks t USING (task_id) "
                "LEFT JOIN labels l ON l.task_id = a.task_id AND l.labeler = a.labeler "
                "WHERE a.labeler = ? AND l.task_id IS NULL ORDER BY t.position LIMIT 1",
                (labeler,)).fetchone()
            if open_:
                return open_[0]
            # a place on a task is taken by a label, or by an assignment younger than the
            # lease; an older open one stays its labeler's (they may still submit) but no
            # longer holds the place, so an abandoned task goes to the next who asks
            lease = db.execute("SELECT value FROM meta WHERE key = 'lease_seconds'").fetchone()
            since = time.time() - json.loads(lease[0]) if lease else float("-inf")
            row = db.execute(
                "SELECT t.task_id FROM tasks t WHERE "
                "(SELECT COUNT(*) FROM assignments a LEFT JOIN labels l ON l.task_id = "
                "a.task_id AND l.labeler = a.labeler WHERE a.task_id = t.task_id AND "
                "(l.task_id IS NOT NULL OR a.assigned_at > ?)) < t.wanted "
                "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.task_id = t.task_id "
                "AND a.labeler = ?) ORDER BY t.position LIMIT 1", (since, labeler)).fetchone()
            if row is None:
                return None
            db.execute("INSERT INTO assignments VALUES (?, ?, ?)", (row[0], labeler, time.time()))
            return row[0]

    def is_assigned(self, task_id: str, labeler: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM assignments WHERE task_id = ? AND labeler = ?",
                              (task_id, labeler)).fetchone() is not None

    def assigned(self, labeler: str) -> list[str]:
        with self._connect() as db:
            return [t for (t,) in db.execute(
                "SELECT task_id FROM assignments WHERE labeler = ? ORDER BY assigned_at, rowid",
                (labeler,))]

    def release(self, labeler: str) -> list[str]:
        with self._connect(write=True) as db:
            open_ = [t for (t,) in db.execute(
                "SELECT a.task_id FROM assignments a LEFT JOIN labels l ON l.task_id = "
                "a.task_id AND l.labeler = a.labeler WHERE a.labeler = ? AND l.task_id IS NULL",
                (labeler,))]
            db.executemany("DELETE FROM assignments WHERE task_id = ? AND labeler = ?",
                           [(t, labeler) for t in open_])
        return open_

    # --- labels

    def submit(self, label: Label) -> None:
        now = time.time()
        with self._connect(write=True) as db:
            row = db.execute("SELECT assigned_at FROM assignments WHERE task_id = ? AND "
                             "labeler = ?", (label.task_id, label.labeler)).fetchone()
            if row is None:
                raise StoreError(f"task {label.task_id} is not assigned to {label.labeler}.")
            try:
                db.execute("INSERT INTO labels VALUES (?, ?, ?, ?, ?)",
                           (label.task_id, label.labeler, json.dumps(label.to_json()), now,
                            now - row[0]))
            except sqlite3.IntegrityError:
                raise AlreadyLabeled(f"task {label.task_id} was already labeled by "
                                     f"{label.labeler}; a label cannot be changed once "
                                     f"submitted.") from None

    def label(self, task_id: str, labeler: str) -> Optional[Label]:
        with self._connect() as db:
            row = db.execute("SELECT body FROM labels WHERE task_id = ? AND labeler = ?",
                             (task_id, labeler)).fetchone()
        return Label(**json.loads(row[0])) if row else None

    def records(self) -> list[LabelRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT body, submitted_at, seconds FROM labels "
                              "ORDER BY submitted_at, rowid").fetchall()
        return [LabelRecord(Label(**json.loads(body)), at, seconds) for body, at, seconds in rows]

    def progress(self) -> Progress:
        with self._connect() as db:
            tasks, wanted = db.execute("SELECT COUNT(*), COALESCE(SUM(wanted), 0) "
                                       "FROM tasks").fetchone()
            labels = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
            complete = db.execute(
                "SELECT COUNT(*) FROM tasks t WHERE (SELECT COUNT(*) FROM labels l "
                "WHERE l.task_id = t.task_id) >= t.wanted").fetchone()[0]
            labeled = db.execute("SELECT COUNT(DISTINCT task_id) FROM labels WHERE "
                                 "json_extract(body, '$.skipped') IS NULL").fetchone()[0]
        return Progress(tasks, wanted, labels, complete, labeled)
