"""The evaluate stage and its measures: diversity and win rate against hand computation, the
sampled KL and entropy against direct computation, and every number of a run's table recomputed
from the samples it wrote."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer

from framework import rollout
from framework.data.builtin import labeler
from framework.errors import ConfigError
from framework.evaluation import diversity, sampling
from framework.evaluation.calibration import pairwise_agreement, sigmoid
from framework.evaluation.win_rate import win_rate
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig
from framework_plugins.reward_sources.function import FunctionReward

pytestmark = pytest.mark.usefixtures("one_thread")
LABELER = "framework.data.builtin.labeler:score"


# --- measures by hand --------------------------------------------------------------------------
def test_words_are_13a_tokens_lower_cased():
    assert diversity.words("Hi, THERE. It's") == ["hi", ",", "there", ".", "it's"]


def test_distinct_n_by_hand():
    samples = ["the cat sat", "The cat ran"]
    assert diversity.distinct_n(samples, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran
    assert diversity.distinct_n(samples, 2) == pytest.approx(3 / 4)  # (the cat) twice
    assert diversity.distinct_n(["one"], 2) is None  # no bigram at all
    groups = [["a b", "a b"], ["a b", "c d"]]  # 1/2 and 2/2
    assert diversity.per_prompt_mean(groups, diversity.distinct_n, 2) == pytest.approx(0.75)


def test_self_bleu_by_hand():
    assert diversity.self_bleu(["a b c d e", "a b c d e"]) == pytest.approx(100.0)
    # each against the other: n-gram precisions 4/5, 3/4, 2/3, 1/2, same length (no penalty)
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert diversity.self_bleu(["a b c d e", "a b c d f"]) == pytest.approx(expected, abs=1e-6)
    assert diversity.self_bleu(["alone"]) is None


def test_win_rate_counts_ties_half_and_bootstraps_over_prompts():
    result = win_rate([[1, 0.5], [0, 1]], resamples=2000, seed=3)
    assert (result.wins, result.ties, result.losses) == (2, 1, 1)
    assert result.win_rate == pytest.approx(0.625)
    # resampling whole prompts: a resample's mean is 0.75 (both prompt 1), 0.5 (both prompt 2)
    # or 0.625; the 95% interval spans the two extremes
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.5), pytest.approx(0.75))
    same = win_rate([[1, 0], [1, 0]], resamples=100)
    assert same.ci_low == same.ci_high == same.win_rate == 0.5
    assert win_rate([[1, 0.5], [0, 1]], seed=3) == win_rate([[1, 0.5], [0, 1]], seed=3)


def test_compare_by_scores_with_ties():
    scorer = FunctionReward(FunctionReward.parse_config({"function": LABELER}, "p"))
    good, cut = "A bicycle needs air in its tyres, check them weekly.", "A bicycle needs"
    verdicts = scorer.compare(["Give me a bicycle tip."] * 3, [good, cut, good], [cut, good, good])
    assert verdicts == [1.0, 0.0, 0.5]


# --- sampling ----------------------------------------------------------------------------------
def test_kl_and_entropy_against_direct_computation(tiny_model_dir):
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * torch.randn_like(p))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [[{"role": "user", "content": f"Say something about {w}."}] for w in ("rain", "sun")]
    kwargs = dict(max_new_tokens=6, temperature=0.8, batch_size=2, seed=5)
    out = sampling.sample(policy, tokenizer, prompts, reference=reference, entropy=True, **kwargs)
    again = sampling.sample(policy, tokenizer, prompts, **kwargs)
    assert again.responses == out.responses and again.kl == [] and again.entropy == []
    assert sampling.sample(policy, tokenizer, prompts, reference=policy, **kwargs).kl == [0.0, 0.0]

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    torch.manual_seed(5)
    batch = rollout.generate(policy, tokenizer, texts, prompts, max_new_tokens=6, temperature=0.8,
                             top_k=0, top_p=1.0, max_prompt_length=1024)
    assert batch.responses == out.responses
    with torch.no_grad():
        logits = rollout.plain_forward(policy, batch).logits[:, batch.prompt_length - 1:-1] / 0.8
        ref_logits = rollout.plain_forward(reference, batch).logits[:, batch.prompt_length - 1:-1] / 0.8
    for row in range(2):
        n = int(batch.response_mask[row].sum())
        tokens = batch.response_ids[row, :n]
        p, q = torch.log_softmax(logits[row, :n], -1), torch.log_softmax(ref_logits[row, :n], -1)
        kl = (p.gather(1, tokens[:, None]) - q.gather(1, tokens[:, None])).sum()
        entropy = torch.distributions.Categorical(logits=logits[row, :n]).entropy().mean()
        assert out.kl[row] == pytest.approx(float(kl), abs=1e-4)
        assert out.entropy[row] == pytest.approx(float(entropy), abs=1e-4)
        assert out.lengths[row] == n


def test_pairwise_agreement_by_hand():
    # margins 2, 0 (a tie, half a point) and -2; each pair read in both orders
    result = pairwise_agreement([2.0, 0.0, 1.0], [0.0, 0.0, 3.0], bins=10)
    assert result["pairs"] == 3 and result["accuracy"] == pytest.approx(0.5)
    assert result["mean_margin"] == pytest.approx(0.0)
    p = 1 / (1 + 2.718281828459045 ** -2)  # sigmoid(2) = 0.8808
    assert [(row["low"], row["count"]) for row in result["calibration"]] == [
        (0.1, 2), (0.5, 2), (0.8, 2)]
    assert [row["predicted"] for row in result["calibration"]] == pytest.approx([1 - p, 0.5, p])
    assert [row["observed"] for row in result["calibration"]] == [0.5, 0.5, 0.5]
    assert result["ece"] == pytest.approx((2 * (0.5 - (1 - p)) + 2 * (p - 0.5)) / 6)
    # a margin so large that sigmoid rounds to 1.0 lands in the top bin, not outside the table
    assert pairwise_agreement([800.0], [0.0], bins=4)["calibration"][-1]["count"] == 1
    assert sigmoid(-800.0) == 0.0
    with pytest.raises(ValueError, match="one chosen and one rejected score per pair"):
        pairwise_agreement([1.0], [])


# --- the stage ---------------------------------------------------------------------------------
def evaluate_config(tmp_path, model_dir, params=None, inputs=None, sft=True):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}."}) + "\n"
                               for i in range(20)))
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}.",
                                         "completion": "It is a fine topic."}) + "\n"
                             for i in range(16)))
    stages = {}
    if sft:
        stages["sft"] = {"plugin": "sft", "inputs": {"model": "model", "data": "data.demos"},
                         "params": {"args": {"max_steps": 4, "learning_rate": 5e-3,
                                             "per_device_train_batch_size": 4, "max_length": 64}}}
    stages["evaluate"] = {
        "plugin": "evaluate",
        "inputs": inputs or {"base": "model", "tuned": "sft.model", "prompts": "data.prompts"},
        "params": {"policies": ["base", "tuned"], "num_prompts": 4, "samples_per_prompt": 3,
                   "max_new_tokens": 8, "batch_size": 6, "bootstrap_resamples": 200,
                   "scorers": {"labeler": {"name": "function", "params": {"function": LABELER}},
                               "words": {"name": "function",
                                         "params": {"function": "tests.test_rl_stage:words"}}},
                   **(params or {})}}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(model_dir)},
        "data": {"prompts": {"kind": "prompts", "path": str(prompts), "eval_fraction": 0.25},
                 "demos": {"kind": "demonstrations", "path": str(demos)}},
        "stages": stages})


def test_every_number_of_the_table_comes_from_the_samples(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    metrics = run_pipeline(evaluate_config(tmp_path, tiny_model_dir), run_dir, "t")[
        "stages"]["evaluate"]["metrics"]
    assert (metrics["baseline"], metrics["judge"], metrics["prompts"]) == ("base", "labeler", 4)
    assert json.loads((run_dir / "evaluate" / "evaluation.json").read_text()) == metrics
    rows = [json.loads(line) for line in (run_dir / "evaluate" / "samples.jsonl").open()]
    by_policy = defaultdict(list)
    for row in rows:
        by_policy[row["policy"]].append(row)
    assert {k: len(v) for k, v in by_policy.items()} == {"base": 12, "tuned": 12}
    assert [r["prompt_index"] for r in by_policy["base"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for name, samples in by_policy.items():
        table = metrics["policies"][name]
        for row in samples:  # scored on the right pair
            assert row["scores"]["labeler"] == pytest.approx(
                labeler.score(row["prompt"][-1]["content"], row["response"]))
            assert row["scores"]["words"] == len(row["response"].split())
        for key in ("labeler", "words"):
            assert table[key] == pytest.approx(sum(r["scores"][key] for r in samples) / 12)
        for key in ("kl", "entropy", "response_length"):
            assert table[key] == pytest.approx(sum(r[key] for r in samples) / 12)
        groups = [[r["response"] for r in samples[i:i + 3]] for i in range(0, 12, 3)]
        bigrams = []
        for group in groups:
            grams = [tuple(w[i:i + 2]) for w in map(diversity.words, group) for i in range(len(w) - 1)]
            bigrams.append(len(set(grams)) / len(grams))
        assert table["distinct_2"] == pytest.approx(sum(bigrams) / 4)
        assert table["self_bleu"] == pytest.approx(
            sum(diversity.self_bleu(g) for g in groups) / 4)
    assert metrics["policies"]["base"]["kl"] == 0.0
    assert metrics["policies"]["tuned"]["kl"] != 0.0
    # the win rate: tuned's sample j of a prompt against base's sample j, by labeler score
    outcomes = []
    for t, b in zip(by_policy["tuned"], by_policy["base"]):
        x, y = t["scores"]["labeler"], b["scores"]["labeler"]
        outcomes.append(0.5 if abs(x - y) <= 1e-9 else float(x > y))
    won = metrics["win_rate"]["tuned"]
    assert won["win_rate"] == pytest.approx(sum(outcomes) / 12)
    assert (won["wins"], won["ties"], won["losses"]) == (
        outcomes.count(1.0), outcomes.count(0.5), outcomes.count(0.0))
    assert won["ci_low"] <= won["win_rate"] <= won["ci_high"]
    assert metrics["policies"]["tuned"]["win_rate"] == won["win_rate"]


def test_pairwise_accuracy_and_calibration_on_held_out_comparisons(tmp_path, tiny_model_dir):
    # 8 pairs, each chosen response one word longer than its rejected one; half held out
    comparisons = tmp_path / "comparisons.jsonl"
    comparisons.write_text("".join(json.dumps({
        "prompt": f"Question {i}?", "chosen": "yes it is " + "so " * i,
        "rejected": "yes it " + "so " * i}) + "\n" for i in range(8)))
    cfg = evaluate_config(tmp_path, tiny_model_dir, sft=False,
                          params={"policies": ["base"], "pairwise": ["words"], "num_prompts": 2,
                                  "calibration_bins": 4},
                          inputs={"base": "model", "prompts": "data.prompts",
                                  "comparisons": "data.comparisons"})
    cfg = OmegaConf.merge(cfg, {"data": {"comparisons": {
        "kind": "comparisons", "path": str(comparisons), "eval_fraction": 0.5}}})
    metrics = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["evaluate"]["metrics"]
    words = metrics["pairwise"]["words"]
    # by hand: every margin is +1 word, so accuracy 1; sigmoid(1) = 0.731 is observed preferred
    # every time (bin [0.5, 0.75)), and its mirror 0.269 never (bin [0.25, 0.5))
    p = sigmoid(1.0)
    assert (words["pairs"], words["accuracy"], words["mean_margin"]) == (4, 1.0, 1.0)
    assert [(r["low"], r["count"], r["observed"]) for r in words["calibration"]] == [
        (0.25, 4, 0.0), (0.5, 4, 1.0)]
    assert words["ece"] == pytest.approx(1 - p)
    assert "pairwise" not in metrics["policies"]["base"]


def test_the_same_policy_twice_ties_every_match(tmp_path, tiny_model_dir):
    # common random numbers: the same weights with the same seeds draw the same samples
    cfg = evaluate_config(tmp_path, tiny_model_dir, sft=False,
                          inputs={"base": "model", "tuned": "model", "prompts": "data.prompts"})
    metrics = run_pipeline(cfg, tmp_path / "run", "t")["stages"]["evaluate"]["metrics"]
    base, tuned = metrics["policies"]["base"], metrics["policies"]["tuned"]
    assert tuned["kl"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["win_rate"]["tuned"]["ties"] == 12 and tuned["win_rate"] == 0.5
    assert {k: v for k, v in tuned.items() if k not in ("kl", "win_rate")} == pytest.approx(
        {k: v for k, v in base.items() if k != "kl"})


def problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    return "\n".join(err.value.problems)


@pytest.mark.parametrize("params, inputs, message", [
    ({"policies": []}, None, "stages.evaluate.params.policies: empty"),
    ({"baseline": "sft"}, None, "stages.evaluate.params.baseline: 'sft' is not one of policies"),
    ({"judge": "human"}, None, "stages.evaluate.params.judge: 'human' is not one of scorers"),
    ({"scorers": {}}, None, "stages.evaluate.params.scorers: empty"),
    ({"scorers": {"kl": {"name": "function", "params": {"function": LABELER}}}}, None,
     "['kl'] are reserved metric names"),
    ({"scorers": {"s": {"name": "nope"}}}, None, "stages.evaluate.params.scorers.s.name"),
    ({"samples_per_prompt": 0}, None, "stages.evaluate.params.samples_per_prompt: must be >= 1"),
    ({"confidence": 1.5}, None, "stages.evaluate.params.confidence: must lie in (0, 1)"),
    ({"pairwise": ["reward"]}, None,
     "stages.evaluate.params.pairwise: ['reward'] are not among scorers ['labeler', 'words']"),
    ({"pairwise": ["words"]}, None,
     "stages.evaluate.inputs.comparisons: params.pairwise ['words'] needs held-out comparisons"),
    ({}, {"base": "model", "prompts": "data.prompts"},
     "stages.evaluate.inputs.tuned: required input is not wired"),
])
def test_bad_settings_are_named(tmp_path, params, inputs, message):
    cfg = evaluate_config(tmp_path, "some/model", params=params, inputs=inputs)
    assert message in problems(cfg)


def test_held_out_prompts_are_required(tmp_path):
    cfg = evaluate_config(tmp_path, "some/model")
    cfg.data.prompts.eval_fraction = 0.0
    assert "the evaluation is measured on held-out prompts" in problems(cfg)
