"""serve-reward and the http reward source: the served reward model scores as in-process to
1e-5; tokens, malformed and oversize requests are refused with clear messages; concurrent
requests are batched without a score lost or swapped; the client retries what may pass (no
connection, 429, 5xx), refuses broken replies, and stops with a clear error when the server
stays down."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from reward_servers import app_in_thread, free_port, start_serve_reward, stop

from framework.artifacts import REWARD_MODEL, Artifact
from framework.errors import ConfigError, FrameworkError
from framework.serving.app import create_app
from framework.serving.command import main as serve_main
from framework_plugins.reward_sources.http import HTTPReward, RewardServerUnavailable
from framework_plugins.reward_sources.reward_model import RewardModelReward

TOKEN = "s3cret-token"
PROMPTS = [f"Tell me about topic {i}." for i in range(20)] + [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i}?"}]
    for i in range(20)]
RESPONSES = [f"Topic {i} is {'very ' * (i % 5)}interesting." for i in range(40)]


def http_source(url, **params) -> HTTPReward:
    source = HTTPReward(HTTPReward.parse_config({"url": url, **params}, "reward.params"))
    source.check("reward.params")
    source.setup()
    return source


@pytest.fixture(scope="module")
def served_rm(tiny_reward_model_dir):
    port = free_port()
    proc = start_serve_reward(["--reward-model", str(tiny_reward_model_dir), "--token-env",
                               "RM_TOKEN", "--max-batch-pairs", "16"], port,
                              env={"RM_TOKEN": TOKEN})
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def local_rm(tiny_reward_model_dir):
    source = RewardModelReward(RewardModelReward.parse_config({}, "reward.params"))
    source.setup({"reward_model": Artifact(REWARD_MODEL, str(tiny_reward_model_dir))}, device="cpu")
    return source


def test_served_scores_equal_in_process_scores(served_rm, local_rm, monkeypatch):
    monkeypatch.setenv("RM_TOKEN", TOKEN)
    remote = http_source(served_rm, token_env="RM_TOKEN", batch_size=7, concurrency=3)
    expected = local_rm.score(PROMPTS, RESPONSES)
    got = remote.score(PROMPTS, RESPONSES)
    assert len(got) == 40 and max(abs(a - b) for a, b in zip(got, expected)) < 1e-5
    assert len(set(round(e, 4) for e in expected)) > 10  # the scores differ: a swap would show
    assert remote.metrics() == {"http_requests": 6.0, "http_retries": 0.0}  # ceil(40 / 7)
    # OpenRLHF's request: texts already formatted with the chat template
    texts = [local_rm.tokenizer.decode(local_rm.encode(p, r)) for p, r in zip(PROMPTS, RESPONSES)]
    reply = httpx.post(f"{served_rm}/get_reward", json={"query": texts, "prompts": PROMPTS[:1]},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).json()
    assert max(abs(a - b) for a, b in zip(reply["rewards"], expected)) < 1e-5


@pytest.mark.parametrize("body, headers, status, message", [
    ({"prompts": ["a"], "responses": ["b"]}, {}, 401, "missing or wrong bearer token"),
    ({"prompts": ["a"], "responses": ["b"]}, {"Authorization": "Bearer wrong"}, 401, "wrong bearer"),
    ("not json{", None, 400, "the body is not JSON"),
    ({"prompts": ["a", "b"], "responses": ["c"]}, None, 400, "2 prompts but 1 responses"),
    ({"prompts": [3], "responses": ["c"]}, None, 400, "prompts[0]: expected a string or"),
    ({"prompts": ["a"], "responses": [None]}, None, 400, "responses[0]: expected a string"),
    ({"prompts": ["a"], "responses": ["b"], "extra": 1}, None, 400, "unknown fields ['extra']"),
    ({"prompts": ["a"] * 5000, "responses": ["b"] * 5000}, None, 400, "more than the server's"),
])
def test_bad_requests_are_refused_with_a_message(served_rm, body, headers, status, message):
    headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
    content = body if isinstance(body, str) else json.dumps(body)
    reply = httpx.post(f"{served_rm}/score", content=content, timeout=60,
                       headers={**headers, "Content-Type": "application/json"})
    assert reply.status_code == status and message in reply.json()["error"]


def test_health_needs_no_token_and_counts(served_rm):
    health = httpx.get(f"{served_rm}/health", timeout=10).json()
    assert health["status"] == "ok" and health["source"] == "reward_model"
    assert health["pairs"] >= health["batches"] >= 0


def test_concurrent_requests_are_batched_and_each_gets_its_own_scores():
    calls = []

    class Echo:  # the score says which pair it was, and scoring is slow enough to queue
        def score(self, prompts, responses):
            calls.append(len(responses))
            time.sleep(0.05)
            return [float(r) for r in responses]

    app = create_app(Echo(), "echo", max_batch_pairs=64, max_wait_s=0.01)
    with app_in_thread(app) as url:
        async def client(i):
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                out = []
                for j in range(5):
                    pairs = [str(1000 * i + 10 * j + k) for k in range(3)]
                    reply = await c.post("/score", json={"prompts": ["p"] * 3, "responses": pairs})
                    out.append((pairs, reply.json()["scores"]))
                return out

        async def all_clients():
            return await asyncio.gather(*(client(i) for i in range(8)))

        results = asyncio.run(all_clients())
        health = httpx.get(f"{url}/health").json()
    for per_client in results:
        for pairs, scores in per_client:
            assert scores == [float(p) for p in pairs]  # no score lost, swapped or duplicated
    assert health["requests"] == 40 and health["pairs"] == 120 == sum(calls)
    assert health["batches"] == len(calls) < 40 / 2  # batched: several requests per call
    assert health["largest_batch"] > 3


def flaky_app(plan: list):
    """Answers /score by `plan` (a status or "ok", "short", "nan"), then "ok" forever."""
    app = FastAPI()
    seen = {"score": 0}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/score")
    async def score(body: dict):
        step = plan.pop(0) if plan else "ok"
        seen["score"] += 1
        n = len(body["responses"])
        if step == "ok":
            return {"scores": [1.5] * n}
        if step == "short":
            return {"scores": [1.5] * (n - 1)}
        if step == "nan":
            # what a server writing Python's json.dumps of a NaN sends
            return Response('{"scores": [' + ", ".join(["NaN"] * n) + "]}",
                            media_type="application/json")
        headers = {"Retry-After": "0.05"} if step == 429 else {}
        return JSONResponse({"error": f"planned {step}"}, status_code=step, headers=headers)

    return app, seen


def test_429_and_500_are_retried_then_scored():
    app, seen = flaky_app([429, 500, 503])
    with app_in_thread(app) as url:
        source = http_source(url, retries=3, backoff_s=0.01)
        assert source.score(["p"], ["r"]) == [1.5]
    assert seen["score"] == 4 and source.metrics()["http_retries"] == 3


@pytest.mark.parametrize("step, message", [
    ("short", "holds 1 scores for 2 pairs"), ("nan", "scores[0] is nan, not a finite number")])
def test_a_broken_reply_is_never_used(step, message):
    app, _ = flaky_app([step])
    with app_in_thread(app) as url:
        with pytest.raises(FrameworkError, match="broke the protocol") as err:
            http_source(url, retries=0).score(["p", "q"], ["r", "s"])
    assert message in str(err.value) and "No score was used" in str(err.value)


def test_a_refused_request_is_not_retried():
    app, seen = flaky_app([400])
    with app_in_thread(app) as url:
        with pytest.raises(FrameworkError, match=r"refused the request \(HTTP 400: planned 400\)"):
            http_source(url, retries=5, backoff_s=0.01).score(["p"], ["r"])
    assert seen["score"] == 1


def test_a_server_that_stays_down_stops_with_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(RewardServerUnavailable) as err:
        http_source(url, retries=2, backoff_s=0.05)  # setup() asks /health first
    text = str(err.value)
    assert f"the reward server at {url}/health did not answer after 3 tries" in text
    assert "No score was made up" in text and "run the same command again to resume" in text
    assert time.monotonic() - start < 10


def test_a_slow_server_times_out_and_is_retried():
    app = FastAPI()
    slow = {"left": 1}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/score")
    async def score(body: dict):
        if slow["left"]:
            slow["left"] -= 1
            await asyncio.sleep(2)
        return {"scores": [0.25] * len(body["responses"])}

    with app_in_thread(app) as url:
        source = http_source(url, timeout_s=0.3, retries=2, backoff_s=0.01)
        assert source.score(["p"], ["r"]) == [0.25]
        assert source.metrics()["http_retries"] == 1


@pytest.mark.parametrize("params, message", [
    ({"url": "localhost:8000"}, "url='localhost:8000': expected http://HOST:PORT"),
    ({"url": "http://127.0.0.1:1", "batch_size": 0}, "batch_size=0: must be >= 1"),
    ({"url": "http://127.0.0.1:1", "timeout_s": 0}, "timeout_s=0.0: must be > 0"),
])
def test_bad_settings_are_named(params, message):
    with pytest.raises(ConfigError, match="reward.params") as err:
        HTTPReward.parse_config(params, "reward.params")
    assert message in str(err.value)


def test_a_missing_token_variable_is_found_at_planning(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    source = HTTPReward(HTTPReward.parse_config(
        {"url": "http://127.0.0.1:1", "token_env": "NO_SUCH_TOKEN"}, "p"))
    with pytest.raises(ConfigError, match="token_env=NO_SUCH_TOKEN: that environment variable"):
        source.check("stages.rl.params.reward.params")


@pytest.mark.parametrize("args, message", [
    (["--reward-model", "/no/such/dir"], "/no/such/dir: no such file or directory"),
    (["--function", "os:nope"], "cannot import 'os:nope'"),
    (["--reward-model", "x/y", "--token-env", "UNSET_TOKEN_VAR"], "--token-env UNSET_TOKEN_VAR"),
    (["--source", "function", "--params", "{bad"], "--params: not JSON"),
    (["--source", "reward_model"], "needs --input reward_model=PATH"),
    (["--function", "os:getcwd", "--input", "x=y"], "--input x: the function source has no"),
])
def test_serve_reward_refuses_bad_arguments_before_loading(args, message, capsys, monkeypatch):
    monkeypatch.delenv("UNSET_TOKEN_VAR", raising=False)
    assert serve_main(args) == 2
    assert message in capsys.readouterr().err


def test_the_threaded_helper_stops_its_server():
    app, _ = flaky_app([])
    with app_in_thread(app) as url:
        assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=1)
    assert threading.active_count() >= 1
