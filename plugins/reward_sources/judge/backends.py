"""Where the judge's replies come from: a local causal LM (loaded like every other model) or an
OpenAI-compatible chat endpoint. Both take chat messages and return (text, prompt tokens,
completion tokens) per query."""

from __future__ import annotations

import os
from typing import Optional, Sequence

from framework.serving.client import RetryingClient, RetryPolicy


class LocalBackend:
    """A causal LM answering with its chat template; greedy at temperature 0."""

    def __init__(self, model, tokenizer, max_new_tokens: int, batch_size: int):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def complete(self, queries: Sequence[list[dict]], temperature: float) -> list[tuple]:
        import torch
        from transformers import GenerationConfig

        from framework.rollout import eos_ids

        tok = self.tokenizer
        tok.padding_side = "left"
        out = []
        for start in range(0, len(queries), self.batch_size):
            chunk = queries[start:start + self.batch_size]
            texts = [tok.apply_chat_template(q, tokenize=False, add_generation_prompt=True)
                     for q in chunk]
            batch = tok(texts, return_tensors="pt", padding=True,
                        add_special_tokens=False).to(self.model.device)
            config = GenerationConfig(
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                top_k=None, top_p=None, max_new_tokens=self.max_new_tokens,
                eos_token_id=eos_ids(tok, self.model), pad_token_id=tok.pad_token_id)
            with torch.no_grad():
                generated = self.model.generate(**batch, generation_config=config)
            width = batch["input_ids"].shape[1]
            for row, mask in zip(generated[:, width:], batch["attention_mask"]):
                stop = set(eos_ids(tok, self.model)) | {tok.pad_token_id}
                tokens = [int(t) for t in row]
                n = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
                out.append((tok.decode(tokens[:n], skip_special_tokens=True), int(mask.sum()),
                            n))
        return out


class OpenAIBackend:
    """POST {base_url}/chat/completions, as OpenAI's API and vLLM, SGLang or llama.cpp servers
    answer it. The key is read from the environment; it goes only into the request header."""

    def __init__(self, base_url: str, model: str, api_key_env: Optional[str], timeout_s: float,
                 policy: RetryPolicy, concurrency: int, max_tokens: int):
        headers = {}
        if api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(api_key_env, '')}"
        self.client = RetryingClient(base_url, timeout_s, policy, headers, concurrency)
        self.model, self.max_tokens, self.concurrency = model, max_tokens, concurrency

    def complete(self, queries: Sequence[list[dict]], temperature: float) -> list[tuple]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda q: self._one(q, temperature), queries))

    def _one(self, messages: list[dict], temperature: float) -> tuple:
        reply = self.client.request("POST", "/chat/completions", {
            "model": self.model, "messages": messages, "temperature": temperature,
            "max_tokens": self.max_tokens})
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            text = None  # counted as a reply that does not parse
        usage = reply.get("usage") or {} if isinstance(reply, dict) else {}
        return (text if isinstance(text, str) else "", int(usage.get("prompt_tokens", 0) or 0),
                int(usage.get("completion_tokens", 0) or 0))
