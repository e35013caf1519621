"""The `reward_model` reward source: training-format scoring, batching, normalization, errors."""

from __future__ import annotations

import pytest
import torch

from framework.artifacts import MODEL, REWARD_MODEL, Artifact
from framework.errors import ConfigError, DataError, FrameworkError
from framework_plugins.reward_sources.reward_model import RewardModelReward

SYSTEM = {"role": "system", "content": "Be brief."}
PROMPTS = ["What is 2 + 2?", "Name a colour.", "Write a haiku about the sea, please.", "Hi"]
RESPONSES = ["4", "Blue, or perhaps a deep shade of green.", "Waves fold on the shore", "Hello!"]


@pytest.fixture(scope="module")
def rm_dir(tiny_reward_model_dir):
    return tiny_reward_model_dir


def source(rm_dir, where="stages.rl.reward.params", **params) -> RewardModelReward:
    src = RewardModelReward(RewardModelReward.parse_config(params, where))
    src.check(where)
    src.setup({"reward_model": Artifact(REWARD_MODEL, str(rm_dir))}, device="cpu")
    return src


def forward(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_scores_are_a_forward_pass_on_the_text_the_reward_trainer_trains_on(rm_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from framework.models import load_tokenizer

    prompts = [[SYSTEM, {"role": "user", "content": p}] for p in PROMPTS]
    # The reward-model stage's canonical rows: prompt messages, one assistant message per side.
    rows = Dataset.from_dict({
        "prompt": prompts,
        "chosen": [[{"role": "assistant", "content": r}] for r in RESPONSES],
        "rejected": [[{"role": "assistant", "content": "no"}] for _ in RESPONSES],
    })
    tokenizer = load_tokenizer(str(rm_dir))
    trainer = RewardTrainer(
        model=str(rm_dir), processing_class=tokenizer, train_dataset=rows,
        args=RewardConfig(output_dir=str(tmp_path), report_to="none", bf16=False, max_length=None),
    )
    src = source(rm_dir)
    assert [src.encode(p, r) for p, r in zip(prompts, RESPONSES)] == trainer.train_dataset["chosen_ids"]

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    expected = []
    for p, r in zip(prompts, RESPONSES):
        text = tokenizer.apply_chat_template(p + [{"role": "assistant", "content": r}], tokenize=False)
        assert text.endswith(f"<|im_start|>assistant\n{r}<|im_end|>\n")
        expected.append(forward(model, tokenizer(text, add_special_tokens=False)["input_ids"]))
    assert src.score(prompts, RESPONSES) == pytest.approx(expected, abs=1e-5)


def test_batching_and_prompt_form_do_not_change_scores(rm_dir):
    one, many = source(rm_dir, batch_size=1), source(rm_dir, batch_size=16)
    single = one.score(PROMPTS, RESPONSES)
    assert len(set(single)) == len(single)  # distinct pairs, distinct scores: order is checkable
    assert many.score(PROMPTS, RESPONSES) == pytest.approx(single, abs=1e-5)
    as_messages = [[{"role": "user", "content": p}] for p in PROMPTS]
    assert many.score(as_messages, RESPONSES) == pytest.approx(single, abs=1e-5)
    # The system turn is part of the formatted text, so it changes the score.
    assert many.score([[SYSTEM] + m for m in as_messages], RESPONSES) != pytest.approx(single)
    assert many.score([], []) == []


def test_packed_scoring_reads_the_last_non_pad_token_as_the_models_own_pass(rm_dir):
    """Scores come from one packed pass (a prefix the pairs share once, no padding) and equal
    each row's own pass, which reads the rightmost token that is not the pad id: pad-id tokens
    inside a row stay, those at its end are not run."""
    src = source(rm_dir)
    assert src.packed is not None  # the tiny Llama's backbone runs packed
    pad = src.tokenizer.pad_token_id
    rows = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 20, 21, pad], [5, 6, 7, 8, 30, pad, 31, pad, pad]]
    batch = src.tokenizer.pad({"input_ids": rows}, padding_side="left", return_tensors="pt")
    widths = []
    backbone = src.packed[0]
    hook = backbone.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        with torch.no_grad():
            scores = src.logits(batch).tolist()
    finally:
        hook.remove()
    assert scores == pytest.approx([forward(src.model, r) for r in rows], abs=1e-5)
    assert widths == [4 + 3 + 2 + 3]  # 5, 6, 7, 8 once; then 9 10 11 | 20 21 | 30 pad 31


def test_normalized_scores_have_mean_0_and_std_1_on_the_calibration_set(rm_dir):
    prompts, responses = PROMPTS * 2, RESPONSES + [r + " Indeed." for r in RESPONSES]
    raw = torch.tensor(source(rm_dir).score(prompts, responses))
    src = source(rm_dir, normalize=True, calibration_size=8)
    assert src.needs_calibration
    stats = src.calibrate(prompts + ["ignored"], responses + ["beyond calibration_size"])
    assert stats["count"] == 8 and not src.needs_calibration
    assert stats["mean"] == pytest.approx(torch.mean(raw).item(), abs=1e-6)
    assert stats["std"] == pytest.approx(torch.std(raw).item(), abs=1e-6)
    scores = torch.tensor(src.score(prompts, responses))
    assert scores.mean().item() == pytest.approx(0, abs=1e-5)
    assert scores.std().item() == pytest.approx(1, abs=1e-5)
    assert scores.tolist() == pytest.approx(((raw - raw.mean()) / raw.std()).tolist(), abs=1e-5)

    restored = source(rm_dir, normalize=True, calibration_size=8)
    restored.load_state_dict(src.state_dict())
    assert restored.score(prompts, responses) == pytest.approx(scores.tolist(), abs=1e-6)


def test_registered_source_parses_its_config_by_name(rm_dir):
    from framework.plugins import reward_sources

    added = "reward_model" not in reward_sources  # the entry point may already provide it
    if added:
        reward_sources.register("reward_model", RewardModelReward)
    try:
        cls = reward_sources.get("reward_model")
        assert cls is RewardModelReward and cls.inputs["reward_model"].kinds == (REWARD_MODEL,)
        assert cls.parse_config({"batch_size": 4}, "reward").batch_size == 4
        with pytest.raises(ConfigError, match=r"^reward\.batch_sise: .*Valid keys: batch_size"):
            cls.parse_config({"batch_sise": 4}, "reward")
    finally:
        if added:
            reward_sources.unregister("reward_model")


@pytest.mark.parametrize("params, message", [
    ({"batch_size": 0}, r"^w\.batch_size=0: must be >= 1\.$"),
    ({"max_length": 0}, r"^w\.max_length=0: must be >= 1\.$"),
    ({"calibration_size": 1}, r"^w\.calibration_size=1: a standard deviation needs at least 2"),
])
def test_invalid_values_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        RewardModelReward.parse_config(params, "w")


def test_scoring_errors_name_the_setting_and_the_fix(rm_dir):
    src = source(rm_dir, where="r", normalize=True, calibration_size=4)
    with pytest.raises(FrameworkError, match=r"^r\.normalize=true but the source is not calibrated: call calibrate"):
        src.score(PROMPTS, RESPONSES)
    with pytest.raises(ValueError, match=r"^r\.calibration_size=4: calibrate\(\) got only 2 samples"):
        src.calibrate(PROMPTS[:2], RESPONSES[:2])
    with pytest.raises(FrameworkError, match=r"std 0\.0; normalizing needs .*\(raise r\.calibration_size\)"):
        src.calibrate(["same"] * 4, ["same"] * 4)
    with pytest.raises(ConfigError, match=r"^r\.normalize is false, so calibration would be unused"):
        source(rm_dir, where="r").calibrate(PROMPTS, RESPONSES)

    short = source(rm_dir, where="r", max_length=40)
    with pytest.raises(DataError, match=r"^r\.max_length: pair 1 is \d+ tokens .* set r\.truncate=true"):
        short.score(["hi", "hi"], ["ok", "word " * 40])
    cut = source(rm_dir, where="r", max_length=40, truncate=True)
    full = source(rm_dir).encode("hi", "word " * 40)
    assert len(full) > 40 and cut.encode("hi", "word " * 40) == full[-40:]  # keeps the response's end
    with pytest.raises(DataError, match=r"^r: prompt 0 is 3; expected a string or a non-empty list"):
        short.score([3], ["ok"])


def test_setup_errors_name_the_input(rm_dir, tiny_model_dir):
    src = RewardModelReward(RewardModelReward.Config())
    with pytest.raises(FrameworkError, match=r"^reward: score\(\) before setup\(\)"):
        src.score(PROMPTS, RESPONSES)
    with pytest.raises(ConfigError, match=r"^reward: the reward_model source needs its `reward_model` input"):
        src.setup({}, device="cpu")
    with pytest.raises(ConfigError, match=r"^reward\.inputs\.reward_model: .* has num_labels=2 .* wire the reward-model stage"):
        src.setup({"reward_model": Artifact(MODEL, str(tiny_model_dir))}, device="cpu")


def test_a_function_that_cannot_score_is_refused_at_planning():
    """`os:system` is callable but takes one argument: refused with its signature."""
    from framework_plugins.reward_sources.function import FunctionReward

    source = FunctionReward(FunctionReward.parse_config({"function": "os:system"}, "r"))
    with pytest.raises(ConfigError, match=r"^r\.function: 'os:system' has the signature "
                                          r"\(command\), which cannot be called as "
                                          r"f\(prompt: str, response: str\) -> float\."):
        source.check("r")
    ok = FunctionReward(FunctionReward.parse_config(
        {"function": "framework.data.builtin.labeler:score"}, "r"))
    ok.check("r")


def test_every_unknown_param_is_reported_at_once():
    from framework_plugins.reward_sources.function import FunctionReward

    with pytest.raises(ConfigError) as err:
        FunctionReward.parse_config({"function": "f:g", "normalize": True, "calibraton_size": 3},
                                    "stages.rl.params.reward.params")
    assert err.value.problems == [
        "stages.rl.params.reward.params.normalize: not a parameter. Valid keys: function, batched.",
        "stages.rl.params.reward.params.calibraton_size: not a parameter. Valid keys: function, "
        "batched."]
