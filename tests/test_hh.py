"""Anthropic HH-RLHF: dialogue parsing, the `hh` format of each data kind, and the recipe."""

from __future__ import annotations

import json

import datasets
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from framework.config_sources import register_configs
from framework.data import (
    DataSourceConfig,
    load_comparisons,
    load_examples,
    source_from_artifact,
    to_pairs,
    to_prompt_completion,
    to_prompts,
)
from framework.data.hh import parse_hh_dialogue, split_hh_pair
from framework.errors import DataError
from framework.pipeline.plan import build_plan

register_configs()
WHERE = "data.x"

# A 3-turn dialogue (3 Human turns) ending in the reply being compared; multi-paragraph replies.
SHARED = (
    "\n\nHuman: What should I pack for a day hike?"
    "\n\nAssistant: Water, snacks, a map and a warm layer.\n\nSunscreen too."
    "\n\nHuman: How much water?"
    "\n\nAssistant: About half a litre per hour of hiking."
    "\n\nHuman: And if it is hot?"
)
CHOSEN = SHARED + "\n\nAssistant: Take twice that, and rest in the shade."
REJECTED = SHARED + "\n\nAssistant: Just drink from streams."
ROW = {"chosen": CHOSEN, "rejected": REJECTED}

PROMPT = [
    {"role": "user", "content": "What should I pack for a day hike?"},
    {"role": "assistant", "content": "Water, snacks, a map and a warm layer.\n\nSunscreen too."},
    {"role": "user", "content": "How much water?"},
    {"role": "assistant", "content": "About half a litre per hour of hiking."},
    {"role": "user", "content": "And if it is hot?"},
]
GOOD = {"role": "assistant", "content": "Take twice that, and rest in the shade."}
BAD = {"role": "assistant", "content": "Just drink from streams."}


# ---------------------------------------------------------------------------- parsing


def test_three_turn_dialogue_parses_to_alternating_messages():
    assert parse_hh_dialogue(CHOSEN, WHERE, 0, "chosen") == PROMPT + [GOOD]


@pytest.mark.parametrize("text", [
    "Human: hi\n\nAssistant: hello",                        # no leading blank lines
    "  \n\n\nHuman:   hi  \n\n\n\nAssistant:hello\n\n  ",      # extra blank lines and spaces
    "\nHuman: hi\nAssistant: hello\n",                      # single newlines
    "\r\n\r\nHuman: hi\r\n\r\nAssistant: hello",             # Windows line ends
])
def test_whitespace_quirks_are_tolerated(text):
    assert parse_hh_dialogue(text, WHERE, 0, "chosen") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
    ]


def test_a_marker_inside_a_line_is_content_not_a_turn():
    text = "\n\nHuman: Finish: 'Human: Assistant:'\n\nAssistant: ok"
    assert parse_hh_dialogue(text, WHERE, 0, "chosen")[0]["content"] == "Finish: 'Human: Assistant:'"


@pytest.mark.parametrize("text, problem", [
    ("\n\nAssistant: hello\n\nHuman: hi", "field 'chosen': the dialogue starts with 'Assistant:'"),
    ("\n\nHuman: a\n\nHuman: b\n\nAssistant: c",
     "field 'chosen': turn 1 (0-based) is 'Human:' right after another 'Human:' turn"),
    ("\n\nHuman: a\n\nAssistant: b\n\nAssistant: c",
     "turn 2 (0-based) is 'Assistant:' right after another 'Assistant:' turn"),
    ("\n\nHuman: a\n\nAssistant:   \n\nHuman: c", "turn 1 (0-based, 'Assistant:') is empty"),
    ("\n\nHuman: a\n\nAssistant:", "turn 1 (0-based, 'Assistant:') is empty"),
    ("Hello there\n\nHuman: a\n\nAssistant: b", "text before the first marker: 'Hello there'"),
    ("just some text", "no 'Human:' or 'Assistant:' marker in 'just some text'"),
    ("  \n ", "field 'chosen': is empty"),
    (None, "field 'chosen': is missing"),
    (3, "expected HH dialogue text, got int"),
])
def test_malformed_dialogues_name_row_field_and_problem(text, problem):
    with pytest.raises(DataError) as err:
        parse_hh_dialogue(text, WHERE, 7, "chosen")
    message = str(err.value)
    assert message.startswith(f"{WHERE}: row 7 (0-based), field 'chosen'")
    assert problem in message
    assert "Fix:" in message


def test_split_pair_gives_shared_prompt_and_both_replies():
    assert split_hh_pair(CHOSEN, REJECTED, WHERE, 0) == (PROMPT, GOOD, BAD)


def test_split_pair_rejects_a_different_history():
    rejected = REJECTED.replace("How much water?", "How much food?")
    with pytest.raises(DataError, match=(
        r"row 3 \(0-based\), field 'rejected': the dialogue before the last Assistant turn differs "
        r"from chosen's at turn 2 \(0-based; chosen has 5 turns before its reply, rejected 5\)"
    )):
        split_hh_pair(CHOSEN, rejected, WHERE, 3)


def test_split_pair_rejects_a_history_of_another_length():
    with pytest.raises(DataError, match=r"differs from chosen's at turn 1 .*chosen has 5 turns .* rejected 1\)"):
        split_hh_pair(CHOSEN, "\n\nHuman: What should I pack for a day hike?\n\nAssistant: x", WHERE, 0)


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_split_pair_needs_each_dialogue_to_end_with_the_assistant(field):
    row = dict(ROW, **{field: SHARED})
    with pytest.raises(DataError, match=(
        rf"field '{field}': the last turn is the Human's, not the Assistant's\. Fix: end the "
        r"dialogue with the 'Assistant:' reply"
    )):
        split_hh_pair(row["chosen"], row["rejected"], WHERE, 0)


# ---------------------------------------------------------------------------- the formats


def rows(*items):
    return datasets.Dataset.from_list(list(items))


def test_comparisons_hh_gives_the_prompt_and_last_replies():
    single = {"chosen": "Human: hi\n\nAssistant: hello!", "rejected": "Human: hi\n\nAssistant: go away"}
    pairs = to_pairs(rows(ROW, single, ROW), "auto", WHERE)
    assert pairs.column_names == ["prompt", "chosen", "rejected", "group"]
    assert pairs[0] == {"prompt": PROMPT, "chosen": [GOOD], "rejected": [BAD], "group": 0}
    assert pairs[1] == {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello!"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
        "group": 1,
    }
    assert pairs["group"] == [0, 1, 0]  # the same dialogue prompt is one group
    assert to_pairs(rows(ROW), "hh", WHERE)[0] == pairs[0]


def test_comparisons_conversation_lists_stay_the_implicit_prompt_pairs_form():
    as_lists = {"chosen": PROMPT + [GOOD], "rejected": PROMPT + [BAD]}
    assert to_pairs(rows(as_lists), "auto", WHERE)[0] == to_pairs(rows(ROW), "auto", WHERE)[0]


def test_comparisons_hh_errors_name_the_row():
    same = {"chosen": CHOSEN, "rejected": CHOSEN + "  "}
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'rejected': identical to chosen"):
        to_pairs(rows(ROW, same), "auto", WHERE)
    plain = {"chosen": "a good answer", "rejected": "a bad answer"}
    with pytest.raises(DataError, match=(
        r"row 0 \(0-based\), field 'chosen': no 'Human:' or 'Assistant:' marker in 'a good answer'"
        r"\. Fix: give HH dialogue text, or set the source's `format`"
    )):
        to_pairs(rows(plain), "auto", WHERE)


def test_demonstrations_hh_trains_on_the_chosen_last_reply():
    demos = to_prompt_completion(rows(ROW), "auto", WHERE)
    assert demos[0] == {"prompt": PROMPT, "completion": [GOOD]}
    assert to_prompt_completion(rows(ROW), "hh", WHERE)[0] == demos[0]
    as_lists = {"chosen": PROMPT + [GOOD], "rejected": PROMPT + [BAD]}
    assert to_prompt_completion(rows(as_lists), "auto", WHERE)[0] == demos[0]


def test_demonstrations_hh_names_a_malformed_chosen():
    broken = {"chosen": "\n\nHuman: a\n\nHuman: b\n\nAssistant: c", "rejected": REJECTED}
    with pytest.raises(DataError, match=r"row 1 \(0-based\), field 'chosen': turn 1 \(0-based\) is 'Human:'"):
        to_prompt_completion(rows(ROW, broken), "auto", WHERE)


def test_prompts_hh_is_the_chosen_dialogue_before_its_last_reply():
    prompts = to_prompts(rows(ROW, {"chosen": "Human: hi\n\nAssistant: hello", "rejected": "x"}), "auto", WHERE)
    assert prompts["prompt"] == [PROMPT, [{"role": "user", "content": "hi"}]]
    with pytest.raises(DataError, match=r"row 0 \(0-based\), field 'chosen': the last turn is the Human's"):
        to_prompts(rows({"chosen": SHARED, "rejected": REJECTED}), "hh", WHERE)


def test_explicit_hh_format_needs_both_columns():
    with pytest.raises(DataError, match=r"format 'hh' needs column\(s\) rejected"):
        to_prompt_completion(rows({"chosen": CHOSEN}), "hh", WHERE)


# ---------------------------------------------------------------------------- the recipe


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def hh_rows(n: int) -> list[dict]:
    return [
        {"chosen": f"\n\nHuman: Question {i}?\n\nAssistant: Reply {i}.\n\nHuman: Why?"
                   f"\n\nAssistant: Because {i}.",
         "rejected": f"\n\nHuman: Question {i}?\n\nAssistant: Reply {i}.\n\nHuman: Why?"
                     f"\n\nAssistant: No idea."}
        for i in range(n)
    ]


def local_overrides(tmp_path, n: int = 8) -> list[str]:
    """The hh_rlhf data sources pointed at local HH-format files (a single file has no `test`
    split, so a held-out fraction replaces it)."""
    data = write_jsonl(tmp_path / "hh.jsonl", hh_rows(n))
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "Some pretraining text."}])
    overrides = [f"data.pretraining.path={text}"]
    for kind in ("demonstrations", "comparisons", "prompts"):
        overrides += [f"data.{kind}.path={data}", f"data.{kind}.eval_split=null",
                      f"data.{kind}.eval_fraction=0.25"]
    return overrides


def compose_with(*overrides):
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_recipe_reads_hh_rlhf_from_the_hub_by_default():
    cfg = compose_with("+recipe=hh_rlhf")
    for kind in ("demonstrations", "comparisons", "prompts"):
        assert (cfg.data[kind].path, cfg.data[kind].format, cfg.data[kind].eval_split) == (
            "Anthropic/hh-rlhf", "hh", "test")
    assert cfg.data.pretraining.kind == "text"
    assert cfg.stages.sft.params.args.max_length == 512


def test_recipe_plans_on_local_hh_files(tmp_path):
    plan = {p.name: p for p in build_plan(compose_with("+recipe=hh_rlhf", *local_overrides(tmp_path)))}
    assert list(plan) == ["sft", "reward_model", "rl", "evaluate"]
    assert plan["sft"].inputs["data"].meta["format"] == "hh"
    assert (plan["rl"].inputs["reward_model"].stage, plan["rl"].inputs["policy"].stage) == ("reward_model", "sft")
    assert (plan["reward_model"].inputs["model"].stage, plan["reward_model"].inputs["model"].output) == ("sft", "model")


def test_recipe_data_loads_through_the_stage_loaders(tmp_path):
    cfg = compose_with("+recipe=hh_rlhf", *local_overrides(tmp_path))
    plan = {p.name: p for p in build_plan(cfg)}

    demos = source_from_artifact(plan["sft"].inputs["data"], "sft")
    train, evaluation = load_examples(demos, "sft", to_prompt_completion)
    assert (len(train), len(evaluation)) == (6, 2)
    assert train[0]["completion"] == [{"role": "assistant", "content": "Because 0."}]

    pairs = source_from_artifact(plan["reward_model"].inputs["data"], "rm")
    train, evaluation = load_comparisons(pairs, "rm")
    assert (len(train), len(evaluation)) == (6, 2)
    assert train[0]["rejected"] == [{"role": "assistant", "content": "No idea."}]

    prompts_source = DataSourceConfig(**OmegaConf.to_container(cfg.data.prompts))
    train, evaluation = load_examples(prompts_source, "prompts", to_prompts)
    assert (len(train), len(evaluation)) == (6, 2)
    assert train[0]["prompt"] == [
        {"role": "user", "content": "Question 0?"},
        {"role": "assistant", "content": "Reply 0."},
        {"role": "user", "content": "Why?"},
    ]


def test_recipe_runs_every_stage_on_hh_rows(tmp_path, tiny_model_dir):
    from framework.pipeline.runner import run_pipeline

    fast = {"max_steps": 2, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "warmup_steps": 0, "per_device_train_batch_size": 2, "max_length": 128}
    overrides = [f"++stages.{stage}.params.args.{k}={v}" for stage in ("sft", "reward_model")
                 for k, v in fast.items()]
    rl = "stages.rl.params"
    cfg = compose_with("+recipe=hh_rlhf", f"model.name_or_path={tiny_model_dir}",
                       "stages.reward_model.params.args.per_device_eval_batch_size=2",
                       f"++{rl}.optimizer.params.steps=1", f"++{rl}.optimizer.params.batch_size=2",
                       f"++{rl}.optimizer.params.max_new_tokens=4", f"++{rl}.optimizer.params.ptx_batch_size=1",
                       f"++{rl}.reward.params.calibration_size=4", f"++{rl}.evaluation.num_prompts=2",
                       f"++{rl}.evaluation.max_new_tokens=4",
                       "stages.evaluate.params.num_prompts=2", "stages.evaluate.params.max_new_tokens=4",
                       "stages.evaluate.params.samples_per_prompt=2",
                       *overrides, *local_overrides(tmp_path))
    summary = run_pipeline(cfg, tmp_path / "run", "hh_rlhf")
    assert [s["status"] for s in summary["stages"].values()] == ["done"] * 4
    evaluation = summary["stages"]["evaluate"]["metrics"]
    assert evaluation["prompts"] == 2 and set(evaluation["policies"]) == {"sft", "rl"}
    assert summary["stages"]["rl"]["metrics"]["eval_prompts"] == 2
    assert summary["stages"]["sft"]["metrics"]["train_rows"] == 6
    assert summary["stages"]["reward_model"]["metrics"]["eval_pairs"] == 2
