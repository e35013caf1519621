"""The SFT stage: argument checks, response-only labels, and a short real run on a tiny model."""

from __future__ import annotations

import json
import logging
import math

import pytest

from framework.data import DataSourceConfig
from framework.data.config import data_artifact
from framework.artifacts import MODEL, Artifact
from framework.errors import ConfigError, DataError
from framework.models import ModelConfig, load_tokenizer
from framework.stage import StageContext
from framework_plugins.stages.sft import SFTStage, SFTStageConfig
from framework_plugins.stages.sft.stage import build_trainer

FAST = {"gradient_checkpointing": False, "per_device_train_batch_size": 4, "logging_steps": 1}
PAIRS = [("Capital of France?", "Paris."), ("Two plus two?", "Four.")]


def stage(**args):
    return SFTStage(SFTStageConfig(args=args))


def demonstrations(tmp_path, pairs, name="demos.jsonl", **source):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs))
    return data_artifact(DataSourceConfig(path=str(path), **source))


def context(tmp_path, name="sft"):
    return StageContext(name=name, output_dir=tmp_path / name, run_dir=tmp_path, seed=0,
                        model=ModelConfig())


def test_unknown_arg_is_named_with_suggestions():
    with pytest.raises(ConfigError, match=r"stages\.sft\.params\.args\.max_stepz: not a parameter of SFTConfig\. Did you mean: max_steps"):
        stage(max_stepz=3).check({}, "stages.sft")


def test_invalid_arg_value_and_owned_args():
    with pytest.raises(ConfigError, match=r"stages\.sft\.params\.args: SFTConfig rejected .*lr_scheduler_type.*not a valid SchedulerType"):
        stage(lr_scheduler_type="sideways").check({}, "stages.sft")
    with pytest.raises(ConfigError, match=r"stages\.sft\.params\.args\.output_dir: set by the framework"):
        stage(output_dir="/tmp/elsewhere").check({}, "stages.sft")


def test_check_validates_the_data_source(tmp_path):
    data = data_artifact(DataSourceConfig(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match=r"stages\.sft\.inputs\.data\.path: '.*nope\.jsonl' does not exist"):
        stage().check({"data": data}, "stages.sft")


def test_loss_is_on_the_response_tokens_only(tiny_model_dir):
    import datasets
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompt = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]
    rows = datasets.Dataset.from_dict(
        {"prompt": [prompt], "completion": [[{"role": "assistant", "content": "Paris."}]]}
    )
    args = stage(**FAST).training_config("unused", 0, "stages.sft")
    trainer = build_trainer(model, tokenizer, args, rows)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()

    n_prompt = labels.count(-100)
    assert labels[:n_prompt] == [-100] * n_prompt  # masked exactly over a prefix...
    assert labels[n_prompt:] == ids[n_prompt:]  # ...and the rest are the input ids
    expected_prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids[:n_prompt]) == expected_prompt
    assert tokenizer.decode(ids[n_prompt:]) == "Paris.<|im_end|>\n"


def test_training_lowers_the_loss_saves_and_resumes(tiny_model_dir, tmp_path, caplog):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    from framework.data import load_examples, source_from_artifact, to_prompt_completion

    data = demonstrations(tmp_path, PAIRS * 5, eval_fraction=0.2, seed=1)
    model_in = Artifact(MODEL, str(tiny_model_dir))
    args = dict(FAST, max_steps=6, learning_rate=2e-2, save_steps=6, warmup_steps=0)

    # The untrained model's eval loss on the same held-out rows, as the baseline.
    tokenizer = load_tokenizer(str(tiny_model_dir))
    _, held_out = load_examples(source_from_artifact(data, "d"), "d", to_prompt_completion)
    untrained = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    baseline_args = stage(**args).training_config(str(tmp_path / "baseline"), 0, "s")
    baseline = build_trainer(untrained, tokenizer, baseline_args, held_out, held_out)
    before = baseline.evaluate()["eval_loss"]

    result = stage(**args).run({"model": model_in, "data": data}, context(tmp_path))
    metrics = result.metrics
    assert metrics["train_rows"] == 8 and metrics["eval_rows"] == 2
    assert metrics["train_steps"] == 6
    assert math.isfinite(metrics["train_loss"])
    assert metrics["eval_loss"] < 0.5 * before, (before, metrics)

    model_dir = tmp_path / "sft" / "model"
    assert result.artifacts["model"] == Artifact(MODEL, str(model_dir))
    assert (model_dir / "model.safetensors").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir)
    trained_weight = reloaded.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(trained_weight, untrained.model.layers[0].mlp.up_proj.weight)
    assert load_tokenizer(str(model_dir)).chat_template == tokenizer.chat_template

    # A second run over the same folder continues from TRL's last checkpoint.
    caplog.set_level(logging.INFO, logger="framework")
    caplog.set_level(logging.INFO, logger="transformers.trainer")
    transformers_logging.enable_propagation()  # so caplog sees the Trainer's own account
    try:
        more = stage(**dict(args, max_steps=7)).run({"model": model_in, "data": data}, context(tmp_path))
    finally:
        transformers_logging.disable_propagation()
    assert more.metrics["train_steps"] == 7
    assert "resuming from" in caplog.text and "checkpoint-6" in caplog.text
    assert "Resuming training from checkpoint with epoch 3 and global step 6" in caplog.text


def test_rows_truncated_to_nothing_are_an_error(tiny_model_dir, tmp_path):
    long_prompt = " ".join(["word"] * 60)
    data = demonstrations(tmp_path, [PAIRS[0], (long_prompt, "Yes."), PAIRS[1]])
    with pytest.raises(DataError, match=r"1 of 3 train rows have no response tokens left after truncation to max_length=48 \(rows, 0-based, of the train split: \[1\]\)"):
        stage(**dict(FAST, max_length=48, max_steps=1)).run(
            {"model": Artifact(MODEL, str(tiny_model_dir)), "data": data}, context(tmp_path)
        )
