"""The reward server: a FastAPI application around one reward source and a Batcher."""

from __future__ import annotations

import hmac
import json
import logging
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from framework.reward_source import RewardSource
from framework.serving import protocol
from framework.serving.batcher import Batcher

log = logging.getLogger("framework")


def create_app(source: RewardSource, name: str, *, token: Optional[str] = None,
               max_batch_pairs: int = 64, max_wait_s: float = 0.002,
               max_request_pairs: int = 4096, max_body_bytes: int = 32 << 20) -> FastAPI:
    batcher = Batcher(source.score, max_batch_pairs=max_batch_pairs, max_wait_s=max_wait_s)
    formatted = Batcher(lambda _, texts: source.score_formatted(texts),
                        max_batch_pairs=max_batch_pairs, max_wait_s=max_wait_s) if hasattr(
        source, "score_formatted") else None

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if formatted is not None:
            formatted.start()
        yield
        await batcher.stop()
        if formatted is not None:
            await formatted.stop()

    app = FastAPI(title="rlhf-framework reward server", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body_of(request: Request):
        """The request's JSON, or the error response that answers it."""
        if token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
                return None, error(401, "missing or wrong bearer token: send "
                                        "'Authorization: Bearer TOKEN'")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return None, error(413, f"the body is {length} bytes, more than the server's "
                                    f"{max_body_bytes}; send fewer pairs per request")
        raw = await request.body()
        if len(raw) > max_body_bytes:
            return None, error(413, f"the body is more than {max_body_bytes} bytes")
        try:
            return json.loads(raw), None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return None, error(400, f"the body is not JSON ({exc})")

    async def scored(run, *args):
        try:
            return await run(*args), None
        except protocol.ProtocolError as exc:
            return None, error(400, str(exc))
        except Exception as exc:  # noqa: BLE001 - the client is told; the server keeps serving
            log.exception("scoring failed")
            return None, error(500, f"the reward source failed: {type(exc).__name__}: {exc}")

    @app.get(protocol.HEALTH)
    async def health():
        s = batcher.stats
        return {"status": "ok", "source": name, "requests": s.requests, "batches": s.batches,
                "pairs": s.pairs, "largest_batch": s.largest_batch}

    @app.post(protocol.SCORE)
    async def score(request: Request):
        body, failure = await body_of(request)
        if failure is not None:
            return failure
        try:
            prompts, responses = protocol.parse_score_request(body, max_request_pairs)
        except protocol.ProtocolError as exc:
            return error(400, str(exc))
        scores, failure = await scored(batcher.submit, prompts, responses)
        return failure if failure is not None else {"scores": scores}

    @app.post(protocol.OPENRLHF)
    async def get_reward(request: Request):
        body, failure = await body_of(request)
        if failure is not None:
            return failure
        if formatted is None:
            return error(400, f"the {name} source scores (prompt, response) pairs, not formatted "
                              f"texts; use POST {protocol.SCORE}")
        try:
            queries = protocol.parse_openrlhf_request(body, max_request_pairs)
        except protocol.ProtocolError as exc:
            return error(400, str(exc))
        scores, failure = await scored(formatted.submit, [None] * len(queries), queries)
        return failure if failure is not None else {"rewards": scores, "scores": scores}

    app.state.batcher = batcher
    return app
