"""The reward-model stage: group-preserving batches, config errors, and a short real run."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict

import pytest
from accelerate.data_loader import BatchSamplerShard

from framework.artifacts import COMPARISONS, MODEL, REWARD_MODEL, Artifact
from framework.data import DataSourceConfig
from framework.errors import ConfigError
from framework.models import ModelConfig
from framework.stage import StageContext
from framework_plugins.stages.reward_model import RewardModelStage
from framework_plugins.stages.reward_model.batching import GroupBatchSampler

# Group sizes of K=4 rankings (6 pairs), K=3 (3) and plain pairs (1), interleaved.
GROUPS = [g for g, size in enumerate([6, 3, 1, 6, 1, 1, 3, 6, 3, 1, 1, 6]) for _ in range(size)]


def assert_whole_groups(batches, groups, max_size):
    for batch in batches:
        assert len(batch) <= max_size
        for g in {groups[i] for i in batch}:
            assert sorted(i for i in batch if groups[i] == g) == [
                i for i, h in enumerate(groups) if h == g
            ], f"group {g} split"


def test_batches_hold_whole_groups_and_every_pair_once_per_epoch():
    sampler = GroupBatchSampler(GROUPS, batch_size=8, seed=0)
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)  # the same count every epoch
        assert_whole_groups(batches, GROUPS, 8)
        assert sorted(i for b in batches for i in b) == list(range(len(GROUPS)))
        orders.append(batches)
    assert orders[0] != orders[1]  # reshuffled per epoch
    again = GroupBatchSampler(GROUPS, batch_size=8, seed=0)
    again.set_epoch(1)
    assert list(again) == orders[1]  # deterministic: resuming replays the same epoch


def test_batch_count_is_fixed_for_random_mixed_groups():
    rng = random.Random(1)
    groups = [g for g in range(200) for _ in range(rng.choice([1, 3, 6, 10]))]
    sampler = GroupBatchSampler(groups, batch_size=16, seed=5)
    total = len(groups)
    assert len(sampler) >= math.ceil(total / 16)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert_whole_groups(batches, groups, 16)


def test_accelerate_sharding_deals_out_whole_batches():
    """What `accelerator.prepare` does with a batch sampler on 2 processes."""
    sampler = GroupBatchSampler(GROUPS, batch_size=8, seed=0)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=p)) for p in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    seen = [i for shard in shards for b in shard for i in b]
    assert set(seen) == set(range(len(GROUPS)))
    assert_whole_groups([b for shard in shards for b in shard], GROUPS, 8)


def test_a_group_larger_than_the_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="set per_device_train_batch_size to at least 6"):
        GroupBatchSampler(GROUPS, batch_size=4)


def stage(args: dict) -> RewardModelStage:
    return RewardModelStage(RewardModelStage.parse_config({"args": args}, "stages.rm.params"))


def data_artifact(path, **fields) -> Artifact:
    source = DataSourceConfig(kind=COMPARISONS, path=str(path), **fields)
    return Artifact(COMPARISONS, str(path), asdict(source))


def test_check_names_an_unknown_trainer_argument(tmp_path):
    inputs = {"model": Artifact(MODEL, "unused"), "data": data_artifact("builtin:rankings")}
    with pytest.raises(ConfigError, match=(
        r"^stages\.rm\.params\.args\.learning_rat: not a parameter of RewardConfig\. "
        r"Did you mean: learning_rate"
    )):
        stage({"learning_rat": 1e-3}).check(inputs, "stages.rm")
    with pytest.raises(ConfigError, match=r"^stages\.rm\.params\.args\.output_dir: set by the framework"):
        stage({"output_dir": "x"}).check(inputs, "stages.rm")
    with pytest.raises(ConfigError, match=r"stages\.rm\.inputs\.data\.eval_fraction: 1\.5 is outside"):
        stage({}).check({**inputs, "data": data_artifact("builtin:rankings", eval_fraction=1.5)}, "stages.rm")


WORDS = "apple river stone cloud maple tiger lemon piano copper meadow".split()


def learnable_rankings(n: int) -> list[dict]:
    """K=3 rankings: the best answer says 'purple', the worst says 'rotten'."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        a, b, c = (" ".join(rng.sample(WORDS, 3)) for _ in range(3))
        rows.append({"prompt": f"Name three things, please ({i}).",
                     "responses": [f"purple {a}", b, f"{c} rotten"]})
    return rows


def test_reward_model_learns_a_trivial_preference(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    path = tmp_path / "rankings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in learnable_rankings(48)))
    inputs = {
        "model": Artifact(MODEL, str(tiny_model_dir)),
        "data": data_artifact(path, eval_fraction=0.25, seed=0),
    }
    rm = stage({
        "num_train_epochs": 3, "per_device_train_batch_size": 6, "per_device_eval_batch_size": 12,
        "learning_rate": 1e-3, "max_length": 128, "logging_steps": 5, "save_strategy": "no",
        "gradient_checkpointing": False, "report_to": "none", "dataloader_pin_memory": False,
    })
    rm.check(inputs, "stages.rm")
    ctx = StageContext(name="rm", output_dir=tmp_path / "rm", run_dir=tmp_path, seed=0,
                       model=ModelConfig(name_or_path=str(tiny_model_dir)))
    result = rm.run(inputs, ctx)

    m = result.metrics
    assert m["eval_pairs"] == 12 * 3 and m["train_pairs"] == 36 * 3  # 25% of 48 prompts, 3 pairs each
    # Chance is 0.5; the preference is one word, so the model must get nearly all pairs right.
    assert m["eval_accuracy"] >= 0.9, m
    assert m["train_loss"] < math.log(2)  # below the loss of a model indifferent to the pair
    artifact = result.artifacts["model"]
    assert artifact.kind == REWARD_MODEL
    reloaded = AutoModelForSequenceClassification.from_pretrained(artifact.location)
    assert reloaded.config.num_labels == 1
    assert reloaded.config.pad_token_id is not None


def test_pairs_longer_than_max_length_are_an_error_not_dropped(tmp_path, tiny_model_dir):
    from framework.errors import DataError

    rows = learnable_rankings(4)
    rows[2]["responses"][1] = "word " * 200  # only row 2 is too long
    path = tmp_path / "rankings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs = {"model": Artifact(MODEL, str(tiny_model_dir)), "data": data_artifact(path)}
    ctx = StageContext(name="rm", output_dir=tmp_path / "rm", run_dir=tmp_path, seed=0,
                       model=ModelConfig(name_or_path=str(tiny_model_dir)))
    rm = stage({"max_length": 128, "per_device_train_batch_size": 3, "report_to": "none"})
    with pytest.raises(DataError, match=(
        r"^stages\.rm: 2 train pair\(s\) exceed max_length=128 tokens .* from source row\(s\) 2\. "
        r"Raise stages\.rm\.params\.args\.max_length"
    )):
        rm.run(inputs, ctx)
