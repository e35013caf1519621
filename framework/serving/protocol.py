"""The reward server's JSON protocol, shared by the server and the `http` reward source.

    GET  /health        -> {"status": "ok", "source": NAME, "requests": N, "batches": N, "pairs": N}
    POST /score         {"prompts": [PROMPT, ...], "responses": [TEXT, ...]}
                        -> {"scores": [FLOAT, ...]}            one per pair, in order
    POST /get_reward    OpenRLHF's remote reward model: {"query": [TEXT, ...], ...}, each text
                        the prompt and response already formatted with the chat template
                        -> {"rewards": [FLOAT, ...], "scores": [FLOAT, ...]}

A PROMPT is a string (one user turn) or a chat conversation, [{"role": ..., "content": ...}].
With a token, requests carry `Authorization: Bearer TOKEN` (/health needs none). Errors answer
{"error": MESSAGE} with 400 (a malformed request), 401 (no or a wrong token), 413 (too large),
500 (the source failed) or 503 (the server is stopping)."""

from __future__ import annotations

import math
from typing import Any

HEALTH, SCORE, OPENRLHF = "/health", "/score", "/get_reward"


class ProtocolError(ValueError):
    """A request or reply that does not follow the protocol; the message says what and where."""


def check_prompt(prompt: Any, where: str) -> Any:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise ProtocolError(f"{where}: expected a string or a non-empty list of {{role, content}} "
                        f"messages with string values, got {str(prompt)[:120]!r}")


def parse_score_request(body: Any, max_pairs: int) -> tuple[list, list[str]]:
    """(prompts, responses) of a /score request body."""
    if not isinstance(body, dict):
        raise ProtocolError("the body must be a JSON object {\"prompts\": [...], \"responses\": [...]}")
    unknown = sorted(set(body) - {"prompts", "responses"})
    if unknown:
        raise ProtocolError(f"unknown fields {unknown}; a /score request has prompts and responses")
    prompts, responses = body.get("prompts"), body.get("responses")
    if not isinstance(prompts, list) or not isinstance(responses, list):
        raise ProtocolError("prompts and responses must both be lists")
    if len(prompts) != len(responses):
        raise ProtocolError(f"{len(prompts)} prompts but {len(responses)} responses; send one "
                            f"prompt per response")
    if len(prompts) > max_pairs:
        raise ProtocolError(f"{len(prompts)} pairs in one request, more than the server's "
                            f"--max-request-pairs {max_pairs}; split the request")
    for i, response in enumerate(responses):
        if not isinstance(response, str):
            raise ProtocolError(f"responses[{i}]: expected a string, got {type(response).__name__}")
    return [check_prompt(p, f"prompts[{i}]") for i, p in enumerate(prompts)], responses


def parse_openrlhf_request(body: Any, max_pairs: int) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("query"), list):
        raise ProtocolError("an OpenRLHF request is a JSON object with \"query\": a list of texts")
    queries = body["query"]
    if len(queries) > max_pairs:
        raise ProtocolError(f"{len(queries)} queries in one request, more than the server's "
                            f"--max-request-pairs {max_pairs}; split the request")
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise ProtocolError(f"query[{i}]: expected a string, got {type(query).__name__}")
    return queries


def parse_scores(body: Any, expected: int) -> list[float]:
    """The scores of a /score reply: exactly `expected` finite numbers."""
    scores = body.get("scores") if isinstance(body, dict) else None
    if not isinstance(scores, list):
        raise ProtocolError(f"the reply has no \"scores\" list: {str(body)[:200]!r}")
    if len(scores) != expected:
        raise ProtocolError(f"the reply holds {len(scores)} scores for {expected} pairs")
    for i, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ProtocolError(f"scores[{i}] is {score!r}, not a finite number")
    return [float(s) for s in scores]
