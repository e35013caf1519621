"""The `judge` reward source: a generative model rates responses (RLAIF, Constitutional AI).

    reward:
      name: judge                        # a local model, wired to the stage input `judge`
      inputs: {judge: judge}             #   (stage inputs: {judge: model}: the embedded default)
    reward:
      name: judge
      params: {backend: openai, base_url: "http://127.0.0.1:8001/v1", model: NAME,
               api_key_env: OPENAI_API_KEY}

`score()` asks for a rating on `scale_min`..`scale_max` (1-7, InstructGPT's Likert scale) by
`score_template`; `compare()` asks for the better of two responses by `pairwise_template`, in
both orders, and counts a verdict only where both orders agree (a tie otherwise), which cancels
the judge's position bias. A reply that does not parse (prompts.py) is asked again, at
`retry_temperature`, `parse_retries` times; what still does not parse stops the stage
(`unparsed: error`) or scores the scale's midpoint (`unparsed: neutral`); either way it is
counted (`judge_unparsed` in `metrics()`) and never scored 0. Identical queries at temperature
0 are answered once (`cache`). The OpenAI backend sends `concurrency` requests at once, each
with `timeout_s`, retrying no connection, timeouts, 429 and 5xx with backoff
(framework/serving/client.py); the API key is read from `api_key_env` and never written."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from framework.artifacts import MODEL, Artifact, Port
from framework.errors import ConfigError, FrameworkError
from framework.reward_source import Prompt, RewardSource
from framework.serving.client import RequestRefused, RetryPolicy, ServerUnavailable
from framework_plugins.reward_sources.judge import prompts as P


@dataclass
class JudgeConfig:
    backend: str = "local"  # local (the `judge` input) | openai (an OpenAI-compatible endpoint)
    base_url: str = ""  # openai: e.g. https://api.openai.com/v1 or http://127.0.0.1:8001/v1
    model: str = ""  # openai: the model name the endpoint serves
    api_key_env: Optional[str] = "OPENAI_API_KEY"  # openai: null for a server without keys
    rubric: str = P.RUBRIC
    system: str = P.SYSTEM
    score_template: str = P.SCORE_TEMPLATE
    pairwise_template: str = P.PAIRWISE_TEMPLATE
    scale_min: int = 1
    scale_max: int = 7
    pairwise: bool = True  # compare() asks for a choice in both orders; false: by scores
    temperature: float = 0.0
    retry_temperature: float = 0.7  # a reply that does not parse is asked again with this
    parse_retries: int = 2
    unparsed: str = "error"  # error | neutral (the scale's midpoint), counted either way
    max_new_tokens: int = 64
    batch_size: int = 8  # local: queries per generate call
    concurrency: int = 4  # openai: requests in flight
    timeout_s: float = 60.0
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 16.0
    cache: bool = True


class JudgeReward(RewardSource):
    Config = JudgeConfig
    inputs = {"judge": Port((MODEL,), required=False,
                            doc="the local judge model (backend: local)")}

    @classmethod
    def parse_config(cls, node: Any, where: str) -> JudgeConfig:
        config = super().parse_config(node, where)
        problems = _problems(config)
        if problems:
            raise ConfigError([f"{where}.{p}" for p in problems])
        return config

    def __init__(self, config: JudgeConfig):
        super().__init__(config)
        self.where = "reward"
        self.backend = None
        self.cache: dict[str, str] = {}
        self.counts = self._zero()

    def check(self, where: str) -> None:
        import os

        self.where = where
        problems = _problems(self.config)
        env = self.config.api_key_env
        if self.config.backend == "openai" and env and not os.environ.get(env):
            problems.append(f"api_key_env={env}: that environment variable is not set; export "
                            f"the key there, or set api_key_env: null for a server without keys.")
        if problems:
            raise ConfigError([f"{where}.{p}" for p in problems])

    def setup(self, inputs: Mapping[str, Artifact] = None, device=None, model_cfg=None) -> None:
        from framework_plugins.reward_sources.judge.backends import LocalBackend, OpenAIBackend

        cfg = self.config
        if cfg.backend == "openai":
            self.backend = OpenAIBackend(cfg.base_url, cfg.model, cfg.api_key_env, cfg.timeout_s,
                                         RetryPolicy(cfg.retries, cfg.backoff_s, cfg.max_backoff_s),
                                         cfg.concurrency, cfg.max_new_tokens)
            return
        if not inputs or "judge" not in inputs:
            raise ConfigError(f"{self.where}: backend local needs the judge model: wire the "
                              f"stage input `judge` (e.g. judge: model for the run's model), or "
                              f"set backend: openai with base_url and model.")
        import torch

        from framework.models import ModelConfig, load_tokenizer
        from framework.models.adapter_models import CAUSAL_LM, load_merged

        artifact, model_cfg = inputs["judge"], model_cfg or ModelConfig()
        tokenizer = load_tokenizer(artifact.location, model_cfg)
        if tokenizer.chat_template is None:
            raise ConfigError(f"{self.where}.inputs.judge: {artifact.location!r} has no chat "
                              f"template; a judge must be a chat model (or set "
                              f"model.chat_template).")
        model = load_merged(artifact, model_cfg, CAUSAL_LM, f"{self.where}.inputs.judge")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.backend = LocalBackend(model.to(device).eval(), tokenizer, cfg.max_new_tokens,
                                    cfg.batch_size)

    # ------------------------------------------------------------------------------ asking
    @staticmethod
    def _zero() -> dict[str, float]:
        return {"judge_queries": 0, "judge_cache_hits": 0, "judge_unparsed": 0,
                "judge_prompt_tokens": 0, "judge_completion_tokens": 0,
                "judge_order_disagreements": 0}

    def _messages(self, text: str) -> list[dict]:
        return [{"role": "system", "content": self.config.system},
                {"role": "user", "content": text}]

    def _complete(self, queries: list[list[dict]], temperature: float) -> list[str]:
        """Replies, from the cache where an identical query at temperature 0 was answered."""
        cacheable = self.config.cache and temperature == 0
        keys = [hashlib.sha256(json.dumps(q, sort_keys=True).encode()).hexdigest() for q in queries]
        todo = [i for i, k in enumerate(keys) if not (cacheable and k in self.cache)]
        self.counts["judge_cache_hits"] += len(queries) - len(todo)
        try:
            answers = self.backend.complete([queries[i] for i in todo], temperature) if todo else []
        except RequestRefused as exc:
            raise FrameworkError(f"{self.where}: the judge endpoint {self.config.base_url} refused "
                                 f"the request ({exc}); check base_url, model and the key.") from None
        except ServerUnavailable as exc:
            raise FrameworkError(f"{self.where}: the judge endpoint {exc}. No score was made up; "
                                 f"checkpoints saved so far are kept, and the same command "
                                 f"resumes once the endpoint answers.") from None
        replies = {}
        for i, (text, prompt_tokens, completion_tokens) in zip(todo, answers):
            self.counts["judge_queries"] += 1
            self.counts["judge_prompt_tokens"] += prompt_tokens
            self.counts["judge_completion_tokens"] += completion_tokens
            replies[i] = text
            if cacheable:
                self.cache[keys[i]] = text
        return [replies[i] if i in replies else self.cache[keys[i]] for i in range(len(queries))]

    def _ask(self, queries: list[list[dict]], parse, what: str) -> list:
        """Each query's parsed answer; a reply that does not parse is asked again."""
        cfg = self.config
        results: list = [None] * len(queries)
        pending, last = list(range(len(queries))), ""
        for attempt in range(cfg.parse_retries + 1):
            temperature = cfg.temperature if attempt == 0 else cfg.retry_temperature
            for i, text in zip(pending, self._complete([queries[i] for i in pending], temperature)):
                results[i] = parse(text)
                if results[i] is None:
                    last = text
            pending = [i for i in pending if results[i] is None]
            if not pending:
                break
        self.counts["judge_unparsed"] += len(pending)
        if pending and cfg.unparsed == "error":
            raise FrameworkError(
                f"{self.where}: {len(pending)} of {len(queries)} judge replies gave no {what} "
                f"after {cfg.parse_retries + 1} tries (the last: {last[:200]!r}). Use a judge that "
                f"follows the template, adjust {self.where}.score_template / pairwise_template, "
                f"or set {self.where}.unparsed=neutral to score them as the scale's midpoint "
                f"(counted as judge_unparsed).")
        return results

    # ------------------------------------------------------------------------------ scoring
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        cfg = self.config
        self._require_setup()
        self.counts = self._zero()
        queries = [self._messages(cfg.score_template.format(
            rubric=cfg.rubric, conversation=P.conversation(p), response=r,
            scale_min=cfg.scale_min, scale_max=cfg.scale_max)) for p, r in zip(prompts, responses)]
        values = self._ask(queries, lambda t: P.parse_score(t, cfg.scale_min, cfg.scale_max),
                           f"'Score: N' line with N from {cfg.scale_min} to {cfg.scale_max}")
        midpoint = (cfg.scale_min + cfg.scale_max) / 2
        return [float(v) if v is not None else midpoint for v in values]

    def compare(self, prompts: Sequence[Prompt], first: Sequence[str],
                second: Sequence[str]) -> list[float]:
        """1.0 where `first` wins in both orders, 0.0 where `second` does, else 0.5."""
        if not self.config.pairwise:
            return super().compare(prompts, first, second)
        self._require_setup()
        self.counts = self._zero()
        cfg = self.config

        def query(p, a, b):
            return self._messages(cfg.pairwise_template.format(
                rubric=cfg.rubric, conversation=P.conversation(p), response_a=a, response_b=b))

        n = len(prompts)
        queries = [query(p, a, b) for p, a, b in zip(prompts, first, second)] + [
            query(p, b, a) for p, a, b in zip(prompts, first, second)]
        winners = self._ask(queries, P.parse_winner, "'Winner: A|B|tie' line")
        verdicts = []
        for ab, ba in zip(winners[:n], winners[n:]):
            in_order = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(ab, 0.5)
            swapped = {"a": 0.0, "b": 1.0, "tie": 0.5}.get(ba, 0.5)
            if in_order != swapped:
                self.counts["judge_order_disagreements"] += 1
            verdicts.append(in_order if in_order == swapped else 0.5)
        return verdicts

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.counts.items()}

    def _require_setup(self) -> None:
        if self.backend is None:
            raise FrameworkError(f"{self.where}: score() before setup(); the stage sets the "
                                 f"judge up first.")


def _problems(config: JudgeConfig) -> list[str]:
    from urllib.parse import urlparse

    problems = []
    if config.backend not in ("local", "openai"):
        problems.append(f"backend={config.backend!r}: must be local or openai.")
    if config.backend == "openai":
        parsed = urlparse(config.base_url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            problems.append(f"base_url={config.base_url!r}: expected http(s)://HOST[:PORT]/v1.")
        if not config.model:
            problems.append("model: empty; name the model the endpoint serves.")
    if config.scale_min >= config.scale_max:
        problems.append(f"scale_min={config.scale_min}, scale_max={config.scale_max}: the scale "
                        f"needs scale_min < scale_max.")
    if config.unparsed not in ("error", "neutral"):
        problems.append(f"unparsed={config.unparsed!r}: must be error or neutral.")
    for key in ("max_new_tokens", "batch_size", "concurrency"):
        if getattr(config, key) < 1:
            problems.append(f"{key}={getattr(config, key)}: must be >= 1.")
    for key in ("parse_retries", "retries"):
        if getattr(config, key) < 0:
            problems.append(f"{key}={getattr(config, key)}: must be >= 0.")
    if config.temperature < 0 or config.retry_temperature < 0:
        problems.append("temperature and retry_temperature must be >= 0.")
    if not config.timeout_s > 0:
        problems.append(f"timeout_s={config.timeout_s}: must be > 0.")
    problems += P.template_problems(config.score_template, P.SCORE_FIELDS, "score_template")
    problems += P.template_problems(config.pairwise_template, P.PAIRWISE_FIELDS,
                                    "pairwise_template")
    return problems
