"""The bad-config catalogue: every kind of mistake that can be found without loading weights is
found at planning time (composition or build_plan), with the config path and a fix.

One row per kind: the command-line overrides on top of `+recipe=instructgpt` that make the
mistake, and fragments the error must contain. `{tmp}` stands for a folder with a few prepared
files (a pickle-only checkpoint, a data directory with a stray file, a .txt file). Adapter and
hardware profile checks live with their config groups (tests/test_adapter_config.py, ...)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from framework.config_sources import register_configs
from framework.errors import ConfigError
from framework.pipeline.plan import build_plan

register_configs()

RL, PPO, REWARD = "stages.rl.params", "stages.rl.params.optimizer.params", "stages.rl.params.reward.params"
EVALUATE = "stages.evaluate.params"
NO_RECIPE = "no recipe"

# kind -> (overrides, fragments the error message must contain)
CATALOGUE: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # --- the composed config against the root schema -------------------------------------
    "unknown key": (["model.foo=1"], ("model.foo",)),
    # `++` forces a key past the schema; planning still catches the typo
    "unknown root key forced in with ++": (["++sed=1"],
                                            ("sed: not a setting. Did you mean 'seed'?",)),
    "unknown model key forced in with ++": (["++model.dtyp=bfloat16"],
                                             ("model.dtyp: not a setting. Did you mean 'dtype'?",)),
    "unknown data key forced in with ++": (["++data.prompts.eval_fractoin=0.1"],
                                            ("data.prompts.eval_fractoin: not a setting. Did you "
                                             "mean 'eval_fraction'?",)),
    "unknown stage key forced in with ++": (["++stages.sft.param.x=1"],
                                             ("stages.sft.param: not a setting. Did you mean "
                                              "'params'?",)),
    "wrong type of a root key": (["seed=abc"], ("seed", "abc")),
    "wrong type of a data key": (["data.prompts.eval_fraction=lots"], ("eval_fraction", "lots")),
    "unknown recipe": (["+recipe=instructgpx"], ("recipe/instructgpx",)),
    "no stages": ([NO_RECIPE], ("stages: the recipe has no stages", "+recipe=NAME")),
    # --- plugins ---------------------------------------------------------------------------
    "unknown stage plugin": (["stages.sft.plugin=sfx"],
                             ("stages.sft: Unknown stage plugin 'sfx'. Did you mean 'sft'?",)),
    "stage plugin named by a file path": (["stages.sft.plugin=/tmp/evil.py:Stage"],
                                          ("stages.sft:", "not a 'package.module:Class' name")),
    "unknown plugin parameter": (["++stages.reward_model.params.freeze_layer=2"],
                                 ("stages.reward_model.params", "freeze_layer", "Valid keys")),
    "wrong type of a plugin parameter": (["stages.reward_model.params.freeze_layers=many"],
                                         ("stages.reward_model.params.freeze_layers", "many")),
    "negative freeze_layers": (["stages.reward_model.params.freeze_layers=-1"],
                               ("stages.reward_model.params.freeze_layers: must be >= 0",)),
    "PPO critic from the reward model under adapters": (
        ["adapter=lora"], (f"{PPO}.value_init=reward_model: with adapter kind 'lora'",
                           f"set {PPO}.value_init=policy")),
    "PPO on a shared adapter base in several processes": (
        ["adapter=lora", f"{PPO}.value_init=policy", "hardware=multi_gpu",
         "hardware.num_processes=2"],
        ("stages.rl.adapter.kind=lora: PPO on a shared adapter base runs in one process",)),
    "unknown optimizer": ([f"{RL}.optimizer.name=ppx"],
                          ("stages.rl.params.optimizer.name: Unknown optimizer plugin 'ppx'. "
                           "Did you mean 'ppo'?",)),
    "unknown reward source": ([f"{RL}.reward.name=reward_modle"],
                              ("stages.rl.params.reward.name: Unknown reward source plugin",
                               "Did you mean 'reward_model'?")),
    "reward function that does not import": (
        [f"{EVALUATE}.scorers.labeler.params.function=nowhere.mod:f"],
        ("stages.evaluate.params.scorers.labeler.params.function: cannot import 'nowhere.mod:f'",)),
    "optimizer that needs a reward source without one": (
        [f"{RL}.reward=null"], ("stages.rl.params.reward: optimizer 'ppo' needs a reward source",)),
    "reserved scorer name": (
        [f"++{EVALUATE}.scorers.entropy={{name: function, params: {{function: "
         f"'framework.data.builtin.labeler:score'}}}}"], ("stages.evaluate.params.scorers:",
                                                         "reserved metric names")),
    "evaluate baseline that is not a policy": (
        [f"++{EVALUATE}.baseline=dpo"],
        ("stages.evaluate.params.baseline: 'dpo' is not one of policies ['sft', 'rl']",)),
    "reserved report name": (
        [f"++{RL}.evaluation.num_prompts=24", f"++{RL}.report.kl={{name: function, params: {{function: "
         f"'framework.data.builtin.labeler:score'}}}}"], ("stages.rl.params.report:",
                                                         "reserved metric names")),
    # --- TRL trainer arguments (sft, reward_model) ------------------------------------------
    "unknown trainer argument": (["++stages.sft.params.args.learning_rat=0.1"],
                                 ("stages.sft.params.args.learning_rat: not a parameter of "
                                  "SFTConfig. Did you mean: learning_rate",)),
    "invalid trainer argument value": (["stages.sft.params.args.lr_scheduler_type=sideways"],
                                       ("stages.sft.params.args: SFTConfig rejected",)),
    "framework-owned trainer argument": (["++stages.sft.params.args.output_dir=/tmp/x"],
                                         ("stages.sft.params.args.output_dir: set by the "
                                          "framework",)),
    "trainer learning rate <= 0 (sft)": (["stages.sft.params.args.learning_rate=0"],
                                         ("stages.sft.params.args.learning_rate: 0", "must be > 0")),
    "trainer learning rate <= 0 (reward model)": (
        ["stages.reward_model.params.args.learning_rate=-1e-5"],
        ("stages.reward_model.params.args.learning_rate: -1e-05 must be > 0",)),
    "negative trainer steps": (["stages.reward_model.params.args.max_steps=-5"],
                               ("stages.reward_model.params.args.max_steps: -5 must be a positive "
                                "number of steps, or -1",)),
    "zero epochs": (["stages.sft.params.args.num_train_epochs=0"],
                    ("stages.sft.params.args.num_train_epochs: 0", "must be > 0")),
    "zero batch size": (["stages.sft.params.args.per_device_train_batch_size=0"],
                        ("stages.sft.params.args.per_device_train_batch_size: 0 must be >= 1",)),
    "zero gradient accumulation": (["++stages.sft.params.args.gradient_accumulation_steps=0"],
                                   ("stages.sft.params.args.gradient_accumulation_steps: 0 must be "
                                    ">= 1",)),
    "zero save_steps": (["++stages.sft.params.args.save_steps=0"],
                        ("stages.sft.params.args.save_steps: 0", "save_strategy")),
    "zero max_length": (["stages.sft.params.args.max_length=0"],
                        ("stages.sft.params.args.max_length: 0 must be >= 1",)),
    "negative max_grad_norm": (["++stages.sft.params.args.max_grad_norm=-1"],
                               ("stages.sft.params.args.max_grad_norm: -1", "must be >= 0")),
    "negative warmup": (["stages.sft.params.args.warmup_steps=-1"],
                        ("stages.sft.params.args: SFTConfig rejected", "warmup_steps")),
    "evaluation during training without held-out data": (
        ["data.demonstrations.eval_fraction=0", "++stages.sft.params.args.eval_strategy=steps"],
        ("stages.sft.params.args.eval_strategy: 'steps' evaluates during training", "eval_fraction")),
    # --- PPO ----------------------------------------------------------------------------------
    "unknown PPO parameter": ([f"++{PPO}.stepz=3"], (f"{PPO}.stepz",)),
    "PPO learning rate <= 0": ([f"{PPO}.learning_rate=0"],
                               (f"{PPO}.learning_rate=0.0: must be > 0",)),
    "PPO value learning rate <= 0": ([f"{PPO}.value_learning_rate=-1e-5"],
                                     (f"{PPO}.value_learning_rate=-1e-05: must be > 0",)),
    "negative PPO steps": ([f"{PPO}.steps=-3"], (f"{PPO}.steps=-3: must be > 0",)),
    "PPO batch not divisible into minibatches": (
        [f"{PPO}.num_minibatches=3"],
        (f"{PPO}.batch_size=8 is not divisible by num_minibatches=3",)),
    "PPO minibatch not divisible by gradient accumulation": (
        [f"++{PPO}.gradient_accumulation_steps=3"],
        (f"{PPO}.gradient_accumulation_steps=3 does not divide the minibatch size "
         f"batch_size/num_minibatches=4",)),
    "PPO discount out of range": ([f"++{PPO}.gamma=1.5"], (f"{PPO}.gamma=1.5: must be in [0, 1]",)),
    "PPO top_p out of range": ([f"++{PPO}.top_p=0"], (f"{PPO}.top_p=0.0: must be in (0, 1]",)),
    "PPO temperature <= 0": ([f"++{PPO}.temperature=0"], (f"{PPO}.temperature=0.0: must be > 0",)),
    "PPO unknown value_init": ([f"{PPO}.value_init=critic"], (f"{PPO}.value_init='critic'",)),
    "PPO max_kl <= 0": ([f"++{PPO}.max_kl=0"], (f"{PPO}.max_kl=0.0: must be > 0",)),
    "PPO negative save_every": ([f"{PPO}.save_every=-1"], (f"{PPO}.save_every=-1: must be >= 0",)),
    "PPO negative missing_eos_penalty": ([f"++{PPO}.missing_eos_penalty=-1"],
                                         (f"{PPO}.missing_eos_penalty=-1.0",)),
    "reward model batch size < 1": ([f"++{REWARD}.batch_size=0"],
                                    (f"{REWARD}.batch_size=0: must be >= 1",)),
    "calibration over fewer than 2 samples": ([f"{REWARD}.calibration_size=1"],
                                              (f"{REWARD}.calibration_size=1",
                                               "at least 2 samples")),
    "negative evaluation prompts": ([f"{RL}.evaluation.num_prompts=-1"],
                                    ("stages.rl.params.evaluation.num_prompts: must be >= 0",)),
    "evaluation temperature <= 0": ([f"++{RL}.evaluation.temperature=0"],
                                    ("stages.rl.params.evaluation.temperature: must be > 0",)),
    "evaluation without held-out prompts": (
        ["data.prompts.eval_fraction=0"],
        ("stages.evaluate.inputs.prompts: the evaluation is measured on held-out prompts",)),
    "RL evaluation without held-out prompts": (
        ["data.prompts.eval_fraction=0", f"{RL}.evaluation.num_prompts=24",
         "~stages.evaluate"],
        ("stages.rl.inputs.prompts: reward_before/reward_after are measured on held-out prompts",)),
    # --- wiring -----------------------------------------------------------------------------
    "input wired to nothing": (["stages.reward_model.inputs.data=data.comparisonz"],
                               ("stages.reward_model.inputs.data: 'data.comparisonz' names no "
                                "source. Did you mean 'data.comparisons'?",)),
    "input wired to the wrong kind": (["stages.reward_model.inputs.data=data.prompts"],
                                      ("stages.reward_model.inputs.data: 'data.prompts' is a "
                                       "'prompts' artifact",)),
    "input wired to a later stage": (["stages.sft.inputs.model=rl.model"],
                                     ("stages.sft.inputs.model: 'rl' does not run before stage "
                                      "'sft'",)),
    "input wired to an unknown output": (["stages.reward_model.inputs.model=sft.modle"],
                                         ("stages.reward_model.inputs.model: stage 'sft' has no "
                                          "output 'modle'",)),
    "undeclared input": (["++stages.sft.inputs.extra=model"],
                         ("stages.sft.inputs.extra: stage plugin SFTStage has no input 'extra'",)),
    "required input not wired": (["~stages.sft.inputs.data"],
                                 ("stages.sft.inputs.data: required input is not wired",)),
    "input the params make unused": ([f"{PPO}.ptx_coef=0"],
                                     ("stages.rl.inputs.pretraining: wired, but unused",
                                      "ptx_coef > 0")),
    "input the params need, not wired": (["~stages.rl.inputs.pretraining"],
                                         ("stages.rl.inputs.pretraining: required input is not "
                                          "wired",)),
    # --- data sources -------------------------------------------------------------------------
    "missing data file": (["data.demonstrations.path=/nonexistent/x.jsonl"],
                          ("data.demonstrations.path: '/nonexistent/x.jsonl' does not exist",)),
    "unsupported data file type": (["data.demonstrations.path={tmp}/notes.txt"],
                                   ("data.demonstrations.path:", "unsupported extension")),
    "data file in a directory matching no split": (
        ["data.demonstrations.path={tmp}/demos"],
        ("data.demonstrations.path:", "'extra.jsonl' match(es) no split and would be silently "
                                      "ignored", "train/training")),
    "unknown builtin data set": (["data.prompts.path=builtin:promptz"],
                                 ("data.prompts.path: unknown builtin data set 'promptz'",)),
    "unknown data kind": (["data.demonstrations.kind=demos"],
                          ("data.demonstrations.kind: 'demos' is not a data kind",)),
    "format of another kind": (["data.demonstrations.format=pairs"],
                               ("data.demonstrations.format: 'pairs' is not a format of "
                                "demonstrations data",)),
    "eval_fraction out of range": (["data.comparisons.eval_fraction=1.5"],
                                   ("data.comparisons.eval_fraction: 1.5 is outside [0, 1)",)),
    "eval_split and eval_fraction both": (["++data.comparisons.eval_split=test"],
                                          ("data.comparisons: both eval_split",)),
    "split of a single file": (["data.prompts.split=validation"],
                               ("data.prompts.split:", "is a single file, which holds only the "
                                                       "'train' split",)),
    "row limit < 1": (["data.prompts.limit=0"], ("data.prompts.limit: 0 must be at least 1",)),
    "unknown on_bad_row": (["data.prompts.on_bad_row=ignore"],
                           ("data.prompts.on_bad_row: 'ignore' is not a choice",)),
    # --- the model ------------------------------------------------------------------------------
    "unknown dtype": (["model.dtype=float8"], ("model.dtype: 'float8' is not one of",)),
    "unknown embedded model": (["model.name_or_path=embedded:nope"],
                               ("model.name_or_path: unknown embedded model 'nope'",)),
    "pickle-only checkpoint": (["model.name_or_path={tmp}/pickled"],
                               ("model.name_or_path:", "holds weights only as pickle files",
                                "model.allow_pickle=true")),
}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-configs")
    (folder / "notes.txt").write_text("not data\n")
    (folder / "demos").mkdir()
    for name in ("train.jsonl", "test.jsonl", "extra.jsonl"):
        (folder / "demos" / name).write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    (folder / "pickled").mkdir()
    (folder / "pickled" / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(1)}, folder / "pickled" / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module", autouse=True)
def hydra():
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        yield


def error_of(overrides: list[str]) -> str:
    """The error the overrides cause: at composition (Hydra, against the schema) or planning."""
    if overrides == [NO_RECIPE]:
        overrides = []
    elif not any(o.startswith("+recipe=") for o in overrides):
        overrides = ["+recipe=instructgpt", *overrides]
    try:
        build_plan(compose(config_name="config", overrides=overrides))
    except ConfigCompositionException as exc:
        return f"{exc} {exc.__cause__ or ''}"
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"{overrides} were accepted")


@pytest.mark.parametrize("kind", list(CATALOGUE))
def test_bad_config_is_reported_before_weights_load(kind, tmp):
    overrides, fragments = CATALOGUE[kind]
    message = error_of([o.replace("{tmp}", str(tmp)) for o in overrides])
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp)) in message, (kind, message)


def test_the_catalogue(capsys):
    with capsys.disabled():
        print(f"\nbad-config kinds in the catalogue: {len(CATALOGUE)}")
    assert len(CATALOGUE) == 78
    # the recipe itself is fine: each row fails because of its own overrides
    assert build_plan(compose(config_name="config", overrides=["+recipe=instructgpt"]))


def test_machine_level_problems_get_one_line_with_the_file_and_the_fix(tmp_path):
    """A model folder whose config.json is not JSON, and a data path that is a symlink loop,
    are found at planning; an OS error while running (a full disk) is one line naming the file
    and the fix."""
    import errno

    from framework.cli import os_error_message
    from framework.data import DataSourceConfig, check_source
    from framework.models.loading import check_local_config

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^model\.name_or_path: {model / 'config.json'} is not "
                                          rf"valid JSON \(.*\); restore it"):
        check_local_config(str(model), "model.name_or_path")
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(tmp_path / "other.jsonl")
    (tmp_path / "other.jsonl").symlink_to(loop)
    with pytest.raises(ConfigError, match=r"data\.d\.path: .*loop\.jsonl' is a symbolic link that "
                                          r"leads nowhere"):
        check_source(DataSourceConfig(kind="demonstrations", path=str(loop)), "data.d")
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "sft" / "model"))
    assert os_error_message(full) == (
        f"No space left on device: {tmp_path / 'sft' / 'model'}. Fix: free space on that disk or "
        f"set hydra.run.dir to another one; finished stages and checkpoints are kept, so the same "
        f"command resumes.")
