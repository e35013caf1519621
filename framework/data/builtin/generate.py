"""Regenerate the built-in data set (deterministic: fixed seeds, CPU, float32).

    python -m framework.data.builtin.generate                 # writes framework/data/builtin/*.jsonl
    python -m framework.data.builtin.generate --out /tmp/d --limit 8   # quick look, 8 prompts per set

Responses are sampled from the embedded SmolLM2-135M-Instruct. Each ranking prompt gets one
sample under each of the K = 4 hidden STEERING settings (a system prompt, a temperature and a
max_new_tokens), so their quality genuinely differs; `labeler.rank` orders them. Only the user
prompt is kept in the rows. Each demonstration is one sample under a STEERING setting drawn with
the seed (DEMO_MAX_NEW_TOKENS to finish), cut back to its last complete sentence if it was cut off
(`trim_to_sentence`), and not picked by the labeler: uneven demonstrators. The RL prompts
need no responses, and the pretraining paragraphs are templated encyclopedic sentences
(`prompts_source.pretraining_paragraphs`), not model text.

Identical or empty responses within a ranking are resampled (new seed, same setting) up to
MAX_RESAMPLE times; one still left is an error, never a silently dropped row. Exact score ties are
kept, broken by the labeler's documented rule, and counted in the printed summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from framework.data.builtin import labeler
from framework.data.builtin.prompts_source import SEED, pretraining_paragraphs, split_prompts

MODEL = "embedded:smollm2-135m-instruct"
HERE = Path(__file__).resolve().parent
MAX_RESAMPLE = 3
SENTENCE_END = re.compile(r"(?<![0-9])[.!?][\"')\]]*(?=\s)")


@dataclass(frozen=True)
class Steering:
    name: str
    system: Optional[str]  # None: the chat template's default system prompt
    temperature: float
    max_new_tokens: int


STEERING = (
    Steering("one_sentence", "Answer in one short sentence.", 0.7, 56),
    Steering("default", None, 0.9, 40),
    Steering("few_sentences", "Answer in two or three sentences.", 0.8, 48),
    Steering("detailed", "Answer in detail, with examples.", 1.0, 64),
)
# Demonstrations: one sample per prompt under a setting drawn with the seed, with room to finish
# (DEMO_MAX_NEW_TOKENS). Not picked by the labeler: demonstrators of uneven style, so the SFT
# policy still varies in length and completeness and RL has something to improve.
DEMO_MAX_NEW_TOKENS = 96


class Sampler:
    def __init__(self, threads: int, batch_size: int):
        import torch
        from transformers import AutoModelForCausalLM

        from framework.models import load_tokenizer, resolve_model_path

        torch.set_num_threads(threads)
        self.torch = torch
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(MODEL)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(MODEL), dtype=torch.float32
        ).eval()
        self.tokens = 0

    def sample(self, prompts: list[str], steering: Steering, seed: int) -> list[str]:
        """One response per prompt; batch b is seeded with (seed, b) so the result is fixed."""
        out = []
        n_batches = -(-len(prompts) // self.batch_size)
        size = -(-len(prompts) // max(1, n_batches))  # equal batches: no small last one
        for b in range(0, len(prompts), size):
            chunk = prompts[b : b + size]
            texts = [self._chat(p, steering) for p in chunk]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True)
            self.torch.manual_seed(seed * 100_003 + b)
            with self.torch.inference_mode():
                ids = self.model.generate(
                    **enc,
                    do_sample=True,
                    temperature=steering.temperature,
                    top_p=0.95,
                    top_k=50,
                    max_new_tokens=steering.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            self.tokens += new.numel()
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out

    def _chat(self, prompt: str, steering: Steering) -> str:
        messages = [{"role": "user", "content": prompt}]
        if steering.system is not None:
            messages.insert(0, {"role": "system", "content": steering.system})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _needs_resample(responses: list[str]) -> list[int]:
    """Indices of empty responses and of repeats of an earlier response."""
    seen, bad = set(), []
    for k, r in enumerate(responses):
        if not r or r in seen:
            bad.append(k)
        seen.add(r)
    return bad


def build_rankings(sampler: Sampler, prompts: list[str]) -> tuple[list[dict], int]:
    columns = [sampler.sample(prompts, s, seed=SEED + k) for k, s in enumerate(STEERING)]
    responses = [list(row) for row in zip(*columns)]
    resampled = 0
    for attempt in range(1, MAX_RESAMPLE + 1):
        todo = [(i, k) for i, row in enumerate(responses) for k in _needs_resample(row)]
        if not todo:
            break
        for k, s in enumerate(STEERING):
            rows = [i for i, kk in todo if kk == k]
            if rows:
                fresh = sampler.sample([prompts[i] for i in rows], s, seed=SEED + 1000 * attempt + k)
                for i, r in zip(rows, fresh):
                    responses[i][k] = r
                resampled += len(rows)
    bad = [prompts[i] for i, row in enumerate(responses) if _needs_resample(row)]
    if bad:
        raise RuntimeError(f"still empty or duplicate responses after {MAX_RESAMPLE} resamples: {bad}")
    rows = [
        {"prompt": p, "responses": rs, "ranks": labeler.rank(p, rs)}
        for p, rs in zip(prompts, responses)
    ]
    return rows, resampled


def trim_to_sentence(text: str) -> str:
    """Cut a response that was cut off back to its last complete sentence, if it has one."""
    if labeler.completeness(text):
        return text
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    trimmed = text[: ends[-1]].strip() if ends else text
    return trimmed if len(trimmed.split()) >= 4 else text


def build_demonstrations(sampler: Sampler, prompts: list[str]) -> list[dict]:
    """One sample per prompt under a seeded random STEERING setting, trimmed to its last
    complete sentence; no selection by the labeler."""
    draw = random.Random(SEED + 500)
    settings = [draw.randrange(len(STEERING)) for _ in prompts]
    completions = [""] * len(prompts)
    for k, steering in enumerate(STEERING):
        rows = [i for i, s in enumerate(settings) if s == k]
        setting = dataclasses.replace(steering, max_new_tokens=DEMO_MAX_NEW_TOKENS)
        for i, text in zip(rows, sampler.sample([prompts[i] for i in rows], setting,
                                                seed=SEED + 500 + k)):
            completions[i] = trim_to_sentence(text)
    empty = [prompts[i] for i, c in enumerate(completions) if not c]
    if empty:
        raise RuntimeError(f"empty demonstrations for: {empty}")
    return [{"prompt": p, "completion": c} for p, c in zip(prompts, completions)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def summarize(rankings: list[dict], demonstrations: list[dict]) -> list[str]:
    def words(t):
        return len(t.split())

    lines = []
    by_rank = {r: [] for r in range(1, 5)}
    by_steering = {s.name: [] for s in STEERING}
    gaps, ties, best_shortest = [], 0, 0
    for row in rankings:
        scores = [labeler.score(row["prompt"], r) for r in row["responses"]]
        for k, (resp, rk, sc) in enumerate(zip(row["responses"], row["ranks"], scores)):
            by_rank[rk].append((sc, words(resp), labeler.completeness(resp)))
            by_steering[STEERING[k].name].append((sc, words(resp), labeler.completeness(resp), rk))
        ordered = sorted(scores, reverse=True)
        gaps += [ordered[a] - ordered[b] for a in range(4) for b in range(a + 1, 4)]
        ties += any(abs(ordered[a] - ordered[a + 1]) < 1e-9 for a in range(3))
        lengths = [words(r) for r in row["responses"]]
        best_shortest += lengths[row["ranks"].index(1)] == min(lengths)
    n = len(rankings)
    lines.append(f"rankings: {n} prompts x 4 responses = {6 * n} pairs")
    for rk, vals in by_rank.items():
        lines.append(
            f"  rank {rk}: mean score {statistics.mean(v[0] for v in vals):.3f}, "
            f"mean words {statistics.mean(v[1] for v in vals):.1f}, "
            f"complete {statistics.mean(v[2] for v in vals):.2f}"
        )
    for name, vals in by_steering.items():
        lines.append(
            f"  steering {name:14s}: mean score {statistics.mean(v[0] for v in vals):.3f}, "
            f"mean words {statistics.mean(v[1] for v in vals):.1f}, "
            f"complete {statistics.mean(v[2] for v in vals):.2f}, "
            f"mean rank {statistics.mean(v[3] for v in vals):.2f}"
        )
    lines.append(
        f"  pair score gap: mean {statistics.mean(gaps):.3f}, median {statistics.median(gaps):.3f}; "
        f"pairs with gap < 0.1: {sum(g < 0.1 for g in gaps) / len(gaps):.2f}, "
        f"exact ties: {sum(g < 1e-9 for g in gaps)} pairs in {ties} rows"
    )
    lines.append(f"  best response is the shortest in {best_shortest / n:.2f} of rows")
    demo_scores = [labeler.score(d["prompt"], d["completion"]) for d in demonstrations]
    lines.append(
        f"demonstrations: {len(demonstrations)} rows, mean score {statistics.mean(demo_scores):.3f}, "
        f"mean words {statistics.mean(words(d['completion']) for d in demonstrations):.1f}, "
        f"complete {statistics.mean(labeler.completeness(d['completion']) for d in demonstrations):.2f}"
    )
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: the package)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts per set")
    # One thread: on a shared machine, several spin-waiting OpenMP threads ran 4x slower.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--only", choices=("demonstrations",),
                        help="regenerate only this set, keeping the other files in --out")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.time()
    splits = {k: v[: args.limit] for k, v in split_prompts().items()}
    sampler = Sampler(args.threads, args.batch_size)
    if args.only == "demonstrations":
        demonstrations = build_demonstrations(sampler, splits["demonstrations"])
        write_jsonl(args.out / "demonstrations.jsonl", demonstrations)
        rankings = [json.loads(line) for line in (args.out / "rankings.jsonl").open()]
        print("\n".join(summarize(rankings, demonstrations)))
        print(f"done in {time.time() - start:.0f} s; wrote {args.out / 'demonstrations.jsonl'}")
        return
    rankings, resampled = build_rankings(sampler, splits["rankings"])
    print(f"rankings sampled ({time.time() - start:.0f} s)", flush=True)
    demonstrations = build_demonstrations(sampler, splits["demonstrations"])
    print(f"demonstrations sampled ({time.time() - start:.0f} s)", flush=True)
    pretraining = [{"text": t} for t in pretraining_paragraphs()[: args.limit]]

    write_jsonl(args.out / "rankings.jsonl", rankings)
    write_jsonl(args.out / "demonstrations.jsonl", demonstrations)
    write_jsonl(args.out / "prompts.jsonl", [{"prompt": p} for p in splits["prompts"]])
    write_jsonl(args.out / "pretraining.jsonl", pretraining)

    for line in summarize(rankings, demonstrations):
        print(line)
    print(f"prompts: {len(splits['prompts'])} rows; pretraining: {len(pretraining)} rows")
    print(f"resampled responses: {resampled}; generated token slots: {sampler.tokens}")
    print(f"done in {time.time() - start:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
