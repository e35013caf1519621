"""An HTTP client that retries what may pass: no connection, a timeout, 429 (its Retry-After
honoured) and 5xx, with exponential backoff; other answers fail at once. Shared by the `http`
reward source and the judge's OpenAI-compatible backend. No reply is ever invented: when every
try failed, `ServerUnavailable` says so."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from framework.errors import FrameworkError

RETRIED = {429, 500, 502, 503, 504}


class ServerUnavailable(FrameworkError):
    """The server did not answer after every retry."""


class RequestRefused(FrameworkError):
    """The server answered with an error that retrying cannot fix (400, 401, 404, ...)."""


@dataclass
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 0.5  # before the first retry; doubled each time
    max_backoff_s: float = 8.0


@dataclass
class Counts:
    requests: int = 0
    retries: int = 0


@dataclass
class RetryingClient:
    base_url: str
    timeout_s: float
    policy: RetryPolicy
    headers: dict = field(default_factory=dict, repr=False)  # may hold a secret: never printed
    max_connections: int = 4
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self):
        import httpx

        self.client = httpx.Client(base_url=self.base_url.rstrip("/"), headers=self.headers,
                                   timeout=self.timeout_s,
                                   limits=httpx.Limits(max_connections=self.max_connections))

    def request(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        """The reply's JSON. Raises RequestRefused (not retried) or ServerUnavailable."""
        import httpx

        policy, wait, last = self.policy, self.policy.backoff_s, ""
        started = time.monotonic()
        for attempt in range(policy.retries + 1):
            if attempt:
                self.counts.retries += 1
                time.sleep(wait)
                wait = min(wait * 2, policy.max_backoff_s)
            self.counts.requests += 1
            try:
                response = self.client.request(method, path, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out: may pass
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRIED:
                last = f"HTTP {response.status_code}: {error_text(response)}"
                after = response.headers.get("retry-after", "")
                if response.status_code == 429 and after.replace(".", "", 1).isdigit():
                    wait = min(max(wait, float(after)), policy.max_backoff_s)
                continue
            if response.status_code != 200:
                raise RequestRefused(f"HTTP {response.status_code}: {error_text(response)}")
            try:
                return response.json()
            except ValueError:
                last = f"a reply that is not JSON: {response.text[:120]!r}"
        raise ServerUnavailable(f"{self.base_url.rstrip('/')}{path} did not answer after "
                                f"{policy.retries + 1} tries over "
                                f"{time.monotonic() - started:.1f} s (last: {last})")

    def close(self) -> None:
        self.client.close()


def error_text(response) -> str:
    try:
        body = response.json()
        return str(body.get("error", body) if isinstance(body, dict) else body)[:300]
    except ValueError:
        return response.text[:300]
