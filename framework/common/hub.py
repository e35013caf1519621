"""The Hugging Face hub, asked once and quickly: is it reachable, what does the local cache hold,
which commit does a revision name. Planning uses it so that a hub id with no network is one
clear error instead of a minute of retries, and reuse checks compare hub inputs by commit."""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from typing import Optional
from urllib.parse import urlparse

log = logging.getLogger("framework")

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
CONNECT_TIMEOUT_S = 3.0


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def go_offline(reason: str) -> None:
    """Every later hub call (here and in launched stage processes) reads the cache only."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    log.info("HF_HUB_OFFLINE=1 for this run: %s", reason)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass


@functools.lru_cache(maxsize=None)
def unreachable_reason() -> Optional[str]:
    """None when the hub endpoint (HF_ENDPOINT) accepts a TCP connection within a few seconds,
    else why not, in words. Asked once per process."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"{constants.ENDPOINT} cannot be reached ({exc.strerror or exc})"
    return None


def cached_commit(repo_id: str, repo_type: str, revision: Optional[str]) -> Optional[str]:
    """The commit the local cache holds for `revision` (a branch, tag or commit), or None."""
    from huggingface_hub import constants

    revision = revision or "main"
    folder = os.path.join(constants.HF_HUB_CACHE,
                          f"{repo_type}s--{repo_id.replace('/', '--')}")
    if COMMIT.match(revision):
        return revision if os.path.isdir(os.path.join(folder, "snapshots", revision)) else None
    try:
        with open(os.path.join(folder, "refs", revision), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def resolved_commit(repo_id: str, repo_type: str, revision: Optional[str]) -> Optional[str]:
    """The commit `revision` names now: a commit as given, else asked of the hub when it can
    be reached, else the cached one; None when none of these knows."""
    if revision and COMMIT.match(revision):
        return revision
    if not is_offline() and unreachable_reason() is None:
        commit = _hub_commit(repo_id, repo_type, revision)
        if commit is not None:
            return commit
    return cached_commit(repo_id, repo_type, revision)


@functools.lru_cache(maxsize=None)
def _hub_commit(repo_id: str, repo_type: str, revision: Optional[str]) -> Optional[str]:
    """The hub's answer, asked once per process (every stage reading the input checks it)."""
    from huggingface_hub import HfApi

    try:
        return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except Exception as exc:  # noqa: BLE001 - a private or missing repo: the cache decides
        log.debug("hub: %s %s: %s", repo_type, repo_id, exc)
        return None


def check_reachable(repo_id: str, repo_type: str, revision: Optional[str], where: str) -> None:
    """A hub repository a run needs is cached or the hub can be reached; raises ConfigError
    otherwise. Cached but unreachable: the run goes offline (no retries) and reads the cache."""
    from framework.errors import ConfigError

    cached = cached_commit(repo_id, repo_type, revision)
    if is_offline():
        if cached is None:
            raise ConfigError(
                f"{where}: {repo_id!r} (a hub {repo_type}) is not in the local HF cache and "
                f"HF_HUB_OFFLINE is set. Download it once with network, unset HF_HUB_OFFLINE, or "
                f"give a local folder.")
        return
    reason = unreachable_reason()
    if reason is None:
        return
    if cached is None:
        raise ConfigError(
            f"{where}: {repo_id!r} is not a local path and not in the local HF cache, and "
            f"{reason}. Give a local folder (or an embedded model), connect to the network, or "
            f"set HF_ENDPOINT to a reachable mirror.")
    go_offline(f"{reason}; {repo_id!r} is read from the local cache")
