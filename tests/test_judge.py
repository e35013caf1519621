"""The judge reward source: strict parsing by hand; the OpenAI-compatible backend against a
chat server started by the test (the protocol, the key in the header only, malformed and slow
replies, 429 and 500, the cache, both orders of a pairwise question); the local backend with
the embedded model and, inside an evaluate stage, the tiny model (the mechanics)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from omegaconf import OmegaConf
from reward_servers import app_in_thread

from framework.artifacts import MODEL, Artifact
from framework.errors import ConfigError, FrameworkError
from framework_plugins.reward_sources.judge import JudgeReward
from framework_plugins.reward_sources.judge.prompts import (
    PAIRWISE_FIELDS, SCORE_FIELDS, parse_score, parse_winner, template_problems)

KEY = "sk-test-0123456789"


@pytest.mark.parametrize("reply, expected", [
    ("Score: 5", 5), ("It is fine.\nscore = 3/7", 3), ("**Score:** 6", 6), ("Score: 4.", 4),
    ("Score: 2\nOn reflection:\nScore: 6", 6),  # the last line of the form counts
    ("I'd give it a 5", None), ("Score: 9", None), ("Score: five", None), ("", None),
    ("My score: 5 because", None),  # a line of exactly that form, nothing else on it
])
def test_scores_are_parsed_strictly(reply, expected):
    assert parse_score(reply, 1, 7) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Winner: A", "a"), ("winner: b", "b"), ("**Winner:** tie", "tie"), ("A is better", None),
    ("Winner: C", None)])
def test_winners_are_parsed_strictly(reply, expected):
    assert parse_winner(reply) == expected


def test_templates_are_checked():
    assert template_problems("{conversation} {response} {bogus}", SCORE_FIELDS, "t") == [
        f"t: unknown fields ['bogus']; the fields are {sorted(SCORE_FIELDS)}."]
    assert "lacks ['response_b']" in template_problems("{conversation} {response_a}",
                                                       PAIRWISE_FIELDS, "t")[0]
    assert "not a valid format string" in template_problems("{oops", SCORE_FIELDS, "t")[0]


# --- an OpenAI-compatible chat server --------------------------------------------------------
def chat_server(plan: list, seen: list, bias: str | None = None, never: str | None = None):
    """/v1/chat/completions: the n-th request follows plan[n] ("ok", "garbage", "slow", 429,
    500, 401), then "ok". An "ok" reply scores a response by its 'quality N' and picks the
    higher-quality one of a pair (or always `bias`, a position-biased judge). A query holding
    `never` always gets a reply that does not parse."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        seen.append({"auth": request.headers.get("authorization"), "body": body})
        step = plan.pop(0) if plan else "ok"
        if isinstance(step, int):
            return JSONResponse({"error": {"message": f"planned {step}"}}, status_code=step)
        if step == "slow":
            await asyncio.sleep(2)
        text = body["messages"][-1]["content"]
        qualities = [int(q) for q in re.findall(r"quality (\d)", text)]
        if step == "garbage" or (never and never in text):
            content = "I think it is pretty good overall."
        elif "Response A:" in text:
            content = f"Winner: {bias or ('A' if qualities[0] > qualities[1] else 'B')}"
        else:
            content = f"The response is clear.\nScore: {qualities[0]}"
        return {"choices": [{"message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 7}}

    return app


def openai_judge(url, monkeypatch, **params) -> JudgeReward:
    monkeypatch.setenv("JUDGE_KEY", KEY)
    judge = JudgeReward(JudgeReward.parse_config(
        {"backend": "openai", "base_url": f"{url}/v1", "model": "judge-model",
         "api_key_env": "JUDGE_KEY", "backoff_s": 0.01, "concurrency": 1, **params},
        "reward.params"))
    judge.check("reward.params")
    judge.setup({})
    return judge


RESPONSES = ["Paris, quality 6.", "No idea, quality 2.", "Lyon, quality 4."]
PROMPTS = ["Capital of France?"] * 3


def test_openai_backend_scores_by_the_protocol(monkeypatch, caplog):
    seen = []
    with app_in_thread(chat_server([], seen)) as url:
        judge = openai_judge(url, monkeypatch)
        assert judge.score(PROMPTS, RESPONSES) == [6.0, 2.0, 4.0]
        assert judge.metrics()["judge_prompt_tokens"] == 300
        assert judge.metrics()["judge_completion_tokens"] == 21
        # identical queries at temperature 0 are answered from the cache
        assert judge.score(PROMPTS, RESPONSES) == [6.0, 2.0, 4.0]
        assert judge.metrics()["judge_cache_hits"] == 3 and judge.metrics()["judge_queries"] == 0
    assert len(seen) == 3
    request = seen[0]["body"]
    assert request["model"] == "judge-model" and request["temperature"] == 0
    assert request["messages"][0]["role"] == "system"
    assert "helpful" in request["messages"][1]["content"]  # the default rubric
    assert "Capital of France?" in request["messages"][1]["content"]
    assert all(s["auth"] == f"Bearer {KEY}" for s in seen)
    assert KEY not in caplog.text and KEY not in repr(judge.backend.client)


def test_malformed_slow_and_failing_replies(monkeypatch):
    seen = []
    plan = ["garbage", "slow", 429, 500]
    with app_in_thread(chat_server(plan, seen)) as url:
        judge = openai_judge(url, monkeypatch, timeout_s=0.5, retries=3)
        # query 1: garbage (does not parse) -> asked again at retry_temperature: slow (timed out)
        # -> retried: 429 -> 500 -> ok
        assert judge.score(PROMPTS[:1], RESPONSES[:1]) == [6.0]
    assert [s["body"]["temperature"] for s in seen] == [0, 0.7, 0.7, 0.7, 0.7]
    assert judge.metrics()["judge_unparsed"] == 0


def test_a_reply_that_never_parses_is_an_error_or_counted_never_zero(monkeypatch):
    seen = []
    with app_in_thread(chat_server(["garbage"] * 3, seen)) as url:
        judge = openai_judge(url, monkeypatch, parse_retries=2)
        with pytest.raises(FrameworkError, match=r"1 of 1 judge replies gave no 'Score: N' line "
                                                 r"with N from 1 to 7 after 3 tries"):
            judge.score(PROMPTS[:1], RESPONSES[:1])
    with app_in_thread(chat_server([], [], never="Paris")) as url:
        judge = openai_judge(url, monkeypatch, parse_retries=2, unparsed="neutral")
        assert judge.score(PROMPTS[:2], RESPONSES[:2]) == [4.0, 2.0]  # the midpoint, counted
        assert judge.metrics()["judge_unparsed"] == 1


def test_refused_and_unreachable_endpoints(monkeypatch):
    with app_in_thread(chat_server([401], [])) as url:
        with pytest.raises(FrameworkError, match=r"refused the request \(HTTP 401"):
            openai_judge(url, monkeypatch).score(PROMPTS[:1], RESPONSES[:1])
    judge = openai_judge("http://127.0.0.1:9", monkeypatch, retries=1)
    with pytest.raises(FrameworkError, match="did not answer after 2 tries.*No score was made up"):
        judge.score(PROMPTS[:1], RESPONSES[:1])


def test_pairwise_in_both_orders_cancels_position_bias(monkeypatch):
    first, second = ["quality 6", "quality 1", "quality 3"], ["quality 2", "quality 5", "quality 3"]
    with app_in_thread(chat_server([], [])) as url:
        judge = openai_judge(url, monkeypatch)
        # 6 > 2: first; 1 < 5: second; 3 = 3: this judge says B twice, once for each side
        assert judge.compare(PROMPTS, first, second) == [1.0, 0.0, 0.5]
        assert judge.metrics()["judge_order_disagreements"] == 1
    with app_in_thread(chat_server([], [], bias="A")) as url:
        judge = openai_judge(url, monkeypatch)  # always "A": no verdict survives both orders
        assert judge.compare(PROMPTS, first, second) == [0.5, 0.5, 0.5]
        assert judge.metrics()["judge_order_disagreements"] == 3


@pytest.mark.parametrize("params, message", [
    ({"backend": "remote"}, "backend='remote': must be local or openai"),
    ({"backend": "openai", "model": "m"}, "base_url='': expected http(s)://HOST[:PORT]/v1"),
    ({"backend": "openai", "base_url": "http://x/v1"}, "model: empty"),
    ({"scale_min": 7, "scale_max": 1}, "the scale needs scale_min < scale_max"),
    ({"unparsed": "zero"}, "unparsed='zero': must be error or neutral"),
    ({"score_template": "{conversation}"}, "lacks ['response']"),
])
def test_bad_settings_are_named(params, message):
    with pytest.raises(ConfigError) as err:
        JudgeReward.parse_config(params, "stages.rl.params.reward.params")
    assert message in str(err.value) and "stages.rl.params.reward.params." in str(err.value)


def test_an_unset_key_variable_is_found_at_planning(monkeypatch):
    monkeypatch.delenv("NO_KEY_HERE", raising=False)
    judge = JudgeReward(JudgeReward.parse_config(
        {"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m",
         "api_key_env": "NO_KEY_HERE"}, "p"))
    with pytest.raises(ConfigError, match="api_key_env=NO_KEY_HERE: that environment variable"):
        judge.check("reward.params")


# --- the local backend ---------------------------------------------------------------------
def test_the_embedded_model_as_a_local_judge():
    """The mechanics: SmolLM2-135M answers the template; its replies are parsed strictly, and
    what does not parse is counted, not scored 0."""
    judge = JudgeReward(JudgeReward.parse_config(
        {"unparsed": "neutral", "parse_retries": 1, "max_new_tokens": 24}, "reward.params"))
    judge.setup({"judge": Artifact(MODEL, "embedded:smollm2-135m-instruct")}, device="cpu")
    scores = judge.score(PROMPTS[:2], ["Paris is the capital of France.", "I do not know."])
    counts = judge.metrics()
    assert len(scores) == 2 and all(1 <= s <= 7 for s in scores)
    assert counts["judge_queries"] >= 2 and counts["judge_completion_tokens"] > 0
    # every score is a parsed rating or, counted, the midpoint
    assert sum(s == 4.0 for s in scores) >= counts["judge_unparsed"]


def test_a_local_judge_without_its_model_is_named():
    judge = JudgeReward(JudgeReward.parse_config({}, "reward.params"))
    with pytest.raises(ConfigError, match="backend local needs the judge model: wire the stage input"):
        judge.setup({})


def test_the_tiny_model_judges_an_evaluate_stage(tmp_path, tiny_model_dir):
    from framework.pipeline.runner import run_pipeline
    from framework.pipeline.schema import RootConfig

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about {i}."}) + "\n"
                               for i in range(8)))
    cfg = OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"prompts": {"kind": "prompts", "path": str(prompts), "eval_fraction": 0.5}},
        "stages": {"evaluate": {
            "plugin": "evaluate",
            "inputs": {"a": "model", "b": "model", "prompts": "data.prompts", "judge": "model"},
            "params": {"policies": ["a", "b"], "num_prompts": 2, "samples_per_prompt": 2,
                       "max_new_tokens": 6, "bootstrap_resamples": 50,
                       "scorers": {"judge": {"name": "judge", "params": {
                           "unparsed": "neutral", "parse_retries": 0, "max_new_tokens": 8}}}}}}})
    metrics = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["evaluate"]["metrics"]
    # a random tiny model never writes "Score: N": every rating is the counted midpoint, and
    # its pairwise verdicts (asked in both orders) give a win rate
    assert metrics["policies"]["a"]["judge"] == 4.0
    won = metrics["win_rate"]["b"]
    assert won["wins"] + won["ties"] + won["losses"] == 4


def test_the_judge_labeler_ranks_a_task_through_an_endpoint_in_both_orders(monkeypatch):
    from framework.labeling.tasks import Task
    from framework_plugins.labelers.judge import JudgeLabeler

    monkeypatch.setenv("JUDGE_KEY", KEY)
    source = {"name": "judge", "params": {
        "backend": "openai", "base_url": "", "model": "judge-model", "api_key_env": "JUDGE_KEY",
        "backoff_s": 0.01, "concurrency": 1}}
    task = Task("t1", "Capital of France?", ["Lyon, quality 4.", "Paris, quality 6.",
                                             "No idea, quality 2.", "Paris again, quality 6."])
    seen = []
    with app_in_thread(chat_server([], seen)) as url:
        source["params"]["base_url"] = f"{url}/v1"
        labeler = JudgeLabeler(JudgeLabeler.parse_config({"source": source}, "labeler.params"))
        labeler.check("labeler.params")
        labeler.setup({})
        [label] = labeler.label([task])
    # wins over the 3 others: Lyon 1 (No idea), Paris 2.5, No idea 0, Paris again 2.5 (the
    # quality-6 pair gets "B" in both orders, which is no verdict: half a win each)
    assert label.ranks == [3, 1, 4, 1] and label.labeler == "judge:judge"
    assert len(seen) == 12  # 6 pairs, each asked in both orders
