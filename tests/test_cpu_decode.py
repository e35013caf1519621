"""framework.hardware.cpu_decode: thin linear products while sampling on a CPU run as
(W @ x^T)^T where that was timed faster, with F.linear's numbers; training is left alone; token
draws by inverse CDF follow the distribution torch.multinomial draws from."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from framework import rollout
from framework.hardware import cpu_decode
from framework.models import load_tokenizer


@pytest.fixture
def calls(monkeypatch):
    """Counts the products StreamedLinear computes in its own form."""
    seen = []
    original = cpu_decode.streamed

    def spy(x, weight, bias):
        seen.append(tuple(x.shape))
        return original(x, weight, bias)

    monkeypatch.setattr(cpu_decode, "streamed", spy)
    return seen


def test_streamed_linear_gives_f_linear_numbers_and_leaves_training_alone(calls):
    torch.manual_seed(0)
    layer = torch.nn.Linear(24, 40)
    thin, long = torch.randn(4, 1, 24), torch.randn(4, 20, 24)
    with torch.no_grad():
        expected = layer(thin), layer(long)
        with cpu_decode.CpuDecoding():
            got = layer(thin), layer(long)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-6)
    assert torch.equal(got[1], expected[1])
    assert calls == [(4, 1, 24)]  # 80 rows: the usual form
    with torch.no_grad(), cpu_decode.CpuDecoding():  # arguments by name
        named = F.linear(input=thin, weight=layer.weight, bias=layer.bias)
    torch.testing.assert_close(named, expected[0], rtol=0, atol=1e-6)
    assert calls == [(4, 1, 24)] * 2

    with cpu_decode.CpuDecoding():
        out = layer(thin)  # autograd on: untouched, gradients as usual
    out.sum().backward()
    assert calls == [(4, 1, 24)] * 2 and layer.weight.grad is not None


def test_generation_samples_the_same_tokens_in_either_form(tiny_model_dir, monkeypatch, calls):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    prompts = ["Name a colour.", "Why is the sea salty?", "Hi"]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    timed = []

    def sample(streamed_is_faster: bool):
        monkeypatch.setattr(cpu_decode, "_decisions", {})
        monkeypatch.setattr(cpu_decode, "faster",
                            lambda weight, rows: timed.append(rows) or streamed_is_faster)
        torch.manual_seed(0)
        return rollout.generate(model, tokenizer, texts, prompts, max_new_tokens=12,
                                temperature=1.0, top_k=0, top_p=1.0, max_prompt_length=256)

    plain = sample(False)
    assert calls == [] and timed == [3]
    streamed = sample(True)
    assert len(calls) > 11 and all(shape[0] * shape[1] == 3 for shape in calls)  # decode steps
    assert torch.equal(streamed.input_ids, plain.input_ids)
    assert streamed.responses == plain.responses
    sample(True)
    assert timed == [3, 3, 3]  # timed once per (model, rows): each sample() clears the cache


def test_the_decision_is_timed_once_and_only_for_a_few_rows_on_a_cpu(monkeypatch):
    timed = []
    monkeypatch.setattr(cpu_decode, "_decisions", {})
    monkeypatch.setattr(cpu_decode, "faster", lambda weight, rows: timed.append(rows) or True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 64))
    for rows in (8, 8, 1, 64):
        with cpu_decode.decoding(model, rows):
            mode = torch.overrides._get_current_function_mode()
        assert isinstance(mode, cpu_decode.CpuDecoding)  # token draws on a CPU: always
        assert mode.streamed_linear == (rows == 8)
    assert timed == [8]  # cached; 1 row and 64 rows never timed


@pytest.mark.parametrize("plain, streamed, expected", [(10.0, 8.0, True), (10.0, 9.0, False),
                                                       (10.0, 12.0, False)])
def test_faster_keeps_the_streamed_form_only_for_a_clear_gain(monkeypatch, plain, streamed,
                                                              expected):
    """Best of the interleaved repeats: kept at <= MIN_GAIN (0.85) of the usual form's time."""
    durations = iter([plain, streamed] * 3)
    now = [0.0]

    def clock():  # each product's start, then its end after its fake duration
        now[0] += next(durations) if clock.started else 0.0
        clock.started = not clock.started
        return now[0]

    clock.started = False
    monkeypatch.setattr(cpu_decode.time, "perf_counter", clock)
    assert cpu_decode.faster(torch.randn(64, 16), rows=8, repeats=3) is expected


def test_timing_leaves_the_global_rng_alone():
    """Sampling and resumed runs depend on torch's global RNG; the first generation's timing
    must not draw from it."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    cpu_decode.faster(torch.randn(64, 16, generator=torch.Generator()), rows=8, repeats=1)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("weights", [[0.1, 0.0, 0.6, 0.3], [1.0, 0.0, 6.0, 3.0]])
def test_inverse_cdf_draws_from_the_multinomial_distribution(weights):
    """20000 seeded draws (normalized or not): each token's share within 0.015 of its
    probability, a zero-weight token never; the same seed draws the same tokens."""
    probs = torch.tensor(weights).expand(20000, 4)
    torch.manual_seed(0)
    with cpu_decode.CpuDecoding(streamed_linear=False):
        drawn = torch.multinomial(probs, num_samples=1)
    assert drawn.shape == (20000, 1) and drawn.dtype == torch.long
    shares = torch.bincount(drawn.flatten(), minlength=4).double() / 20000
    torch.testing.assert_close(shares, torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64),
                               rtol=0, atol=0.015)
    assert shares[1] == 0
    torch.manual_seed(0)
    assert torch.equal(cpu_decode.inverse_cdf(probs), drawn)
    one_row = cpu_decode.inverse_cdf(torch.tensor(weights))  # 1-d weights, as multinomial
    assert one_row.shape == (1,) and int(one_row) != 1


def test_inverse_cdf_never_picks_zero_weight_tokens_at_the_ends(monkeypatch):
    """Uniforms at 0 and at 1 (rounding can carry u * total up to the total) land on the first
    and the last token with weight."""
    probs = torch.tensor([[0.0, 0.5, 0.5, 0.0]] * 2)
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.tensor(
        [[0.0], [1.0]], dtype=kw["dtype"]))
    assert cpu_decode.inverse_cdf(probs).flatten().tolist() == [1, 2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_invalid_probabilities_still_raise_multinomials_error(bad):
    probs = torch.tensor([[0.2, bad, 0.5]])
    assert cpu_decode.inverse_cdf(probs) is None
    with cpu_decode.CpuDecoding(), pytest.raises(RuntimeError, match="inf.*nan|element < 0"):
        torch.multinomial(probs, 1)
    with cpu_decode.CpuDecoding(), pytest.raises(RuntimeError, match="sum"):
        torch.multinomial(torch.zeros(1, 3), 1)
