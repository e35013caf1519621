"""The `http` reward source: scores from a reward server (`python -m framework serve-reward`, or
any server speaking framework/serving/protocol.py).

    reward:
      name: http
      params: {url: "http://127.0.0.1:8000", token_env: RM_TOKEN}

A call to score() splits the pairs into requests of `batch_size`, sends up to `concurrency` at
once, and retries a request that fails for a reason that may pass (no connection, a timeout, 429,
5xx) `retries` times, waiting `backoff_s`, then twice that, ... up to `max_backoff_s` (a 429's
Retry-After is honoured). Every reply is checked (one finite score per pair). When a request
still fails, score() raises: no score is ever made up, so the RL stage stops before the step
that needed it, with its last checkpoint intact; the same command resumes once the server is
back. A request the server refuses as malformed (400, 401, 413) fails at once, with its message.
The token is read from the environment variable `token_env`, never from the config.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

from framework.errors import ConfigError, FrameworkError
from framework.reward_source import Prompt, RewardSource, prompt_messages
from framework.serving import protocol
from framework.serving.client import (
    Counts, RequestRefused, RetryingClient, RetryPolicy, ServerUnavailable)

class RewardServerUnavailable(FrameworkError):
    """The reward server did not answer after every retry."""


@dataclass
class HTTPRewardConfig:
    url: str = ""  # the server's base address, e.g. http://127.0.0.1:8000
    batch_size: int = 64  # pairs per request
    concurrency: int = 4  # requests in flight at once
    timeout_s: float = 60.0  # per request
    retries: int = 5
    backoff_s: float = 0.5  # before the first retry; doubled each time
    max_backoff_s: float = 8.0
    token_env: Optional[str] = None  # environment variable with the bearer token


class HTTPReward(RewardSource):
    Config = HTTPRewardConfig

    @classmethod
    def parse_config(cls, node: Any, where: str) -> HTTPRewardConfig:
        config = super().parse_config(node, where)
        problems = _problems(config)
        if problems:
            raise ConfigError([f"{where}.{p}" for p in problems])
        return config

    def __init__(self, config: HTTPRewardConfig):
        super().__init__(config)
        self.where = "reward"
        self.client: Optional[RetryingClient] = None

    def check(self, where: str) -> None:
        self.where = where
        problems = _problems(self.config)
        env = self.config.token_env
        if env and not os.environ.get(env):
            problems.append(f"token_env={env}: that environment variable is not set or empty; "
                            f"export the server's token there first.")
        if problems:
            raise ConfigError([f"{where}.{p}" for p in problems])

    def setup(self, inputs=None, device=None, model_cfg=None) -> None:
        """Open the connection pool and ask /health, so a server that is down stops the stage
        before any weights load (with the same retries as scoring)."""
        cfg = self.config
        headers = {}
        if cfg.token_env:
            headers["Authorization"] = f"Bearer {os.environ.get(cfg.token_env, '')}"
        self.client = RetryingClient(cfg.url, cfg.timeout_s, RetryPolicy(
            cfg.retries, cfg.backoff_s, cfg.max_backoff_s), headers, cfg.concurrency)
        self._request("GET", protocol.HEALTH, None)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        if self.client is None:
            self.setup()
        if len(prompts) != len(responses):
            raise ValueError(f"{self.where}: {len(prompts)} prompts but {len(responses)} responses.")
        size = self.config.batch_size
        chunks = [(list(prompts[i:i + size]), list(responses[i:i + size]))
                  for i in range(0, len(prompts), size)]
        self.client.counts = Counts()
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            replies = list(pool.map(self._score_chunk, chunks))
        return [s for chunk in replies for s in chunk]

    def metrics(self) -> dict[str, float]:
        counts = self.client.counts if self.client is not None else Counts()
        return {"http_requests": float(counts.requests), "http_retries": float(counts.retries)}

    # ----------------------------------------------------------------------------- requests
    def _score_chunk(self, chunk) -> list[float]:
        prompts, responses = chunk
        body = {"prompts": [p if isinstance(p, str) else prompt_messages(p) for p in prompts],
                "responses": responses}
        reply = self._request("POST", protocol.SCORE, body)
        try:
            return protocol.parse_scores(reply, len(responses))
        except protocol.ProtocolError as exc:
            raise FrameworkError(f"{self.where}: the reward server at {self.config.url} broke the "
                                 f"protocol: {exc}. No score was used.") from None

    def _request(self, method: str, path: str, body) -> Any:
        try:
            return self.client.request(method, path, body)
        except RequestRefused as exc:
            raise FrameworkError(
                f"{self.where}: the reward server at {self.config.url} refused the request "
                f"({exc}); this is not retried. Fix the request or the server's settings "
                f"(token, --max-request-pairs).") from None
        except ServerUnavailable as exc:
            raise RewardServerUnavailable(
                f"{self.where}: the reward server at {exc}. No score was made up and no step "
                f"trained without one; checkpoints saved so far are kept. Start the server "
                f"(python -m framework serve-reward ...) and run the same command again to "
                f"resume.") from None


def _problems(config: HTTPRewardConfig) -> list[str]:
    problems = []
    parsed = urlparse(config.url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        problems.append(f"url={config.url!r}: expected http://HOST:PORT (the address "
                        f"serve-reward prints).")
    for key in ("batch_size", "concurrency"):
        if getattr(config, key) < 1:
            problems.append(f"{key}={getattr(config, key)}: must be >= 1.")
    if config.retries < 0:
        problems.append(f"retries={config.retries}: must be >= 0.")
    for key in ("timeout_s", "max_backoff_s"):
        if not getattr(config, key) > 0:
            problems.append(f"{key}={getattr(config, key)}: must be > 0.")
    if config.backoff_s < 0:
        problems.append(f"backoff_s={config.backoff_s}: must be >= 0.")
    return problems
