"""Untrusted inputs: remote code only where enabled, weights from safetensors only (unless
allowed), checkpoint state loaded without arbitrary pickles, plugins only from entry points or
module names, and secrets kept out of every file and log of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from framework import plugins
from framework.errors import ConfigError, FrameworkError, PluginError
from framework.models import ModelConfig, load_kwargs, load_pretrained, trusts_remote_code
from framework.common.redact import REDACTED, is_secret_key, redact, redacted_config
from framework.stage import Stage, StageResult

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ remote code
def test_remote_code_runs_only_for_the_model_it_was_enabled_for(tmp_path):
    off = ModelConfig(name_or_path="acme/model")
    assert load_kwargs(off)["trust_remote_code"] is False
    assert load_kwargs(off, "acme/model")["trust_remote_code"] is False
    on = ModelConfig(name_or_path="acme/model", trust_remote_code=True)
    assert load_kwargs(on)["trust_remote_code"] is True
    assert load_kwargs(on, "acme/model")["trust_remote_code"] is True
    assert trusts_remote_code(on, str(tmp_path))  # a local checkpoint, e.g. a stage's output
    # another hub repository (a reward model, say) does not inherit the trust
    assert load_kwargs(on, "someone-else/reward-model")["trust_remote_code"] is False


# ------------------------------------------------------------------------------ safetensors
def test_weights_load_from_safetensors_only_unless_pickle_is_allowed(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    assert load_kwargs(ModelConfig())["use_safetensors"] is True
    assert "use_safetensors" not in load_kwargs(ModelConfig(allow_pickle=True))

    pickled = tmp_path / "pickled"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pickled.mkdir()
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=(
            r"^stages\.sft\.inputs\.model: '.*pickled' holds weights only as pickle files "
            r"\(pytorch_model\.bin\), which can run arbitrary code when loaded; .* or set "
            r"model\.allow_pickle=true if you trust the file\.")):
        load_pretrained(AutoModelForCausalLM, str(pickled), ModelConfig(), "stages.sft.inputs.model")
    loaded = load_pretrained(AutoModelForCausalLM, str(pickled), ModelConfig(allow_pickle=True))
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert load_pretrained(AutoModelForCausalLM, str(tiny_model_dir), ModelConfig()) is not None


def test_a_pickle_only_model_is_refused_at_planning(tmp_path):
    from omegaconf import OmegaConf

    from framework.pipeline.plan import build_plan
    from framework.pipeline.schema import RootConfig

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"not really")
    cfg = OmegaConf.merge(OmegaConf.structured(RootConfig), {"model": {"name_or_path": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"model\.name_or_path: .* only as pickle files \(model\.pt\)"):
        build_plan(cfg)


# ------------------------------------------------------------------------- our own checkpoints
class Payload:
    """Stands for an object a tampered checkpoint could smuggle in."""


def test_ppo_checkpoint_state_loads_without_arbitrary_pickles(tmp_path):
    import random

    import numpy as np

    from framework_plugins.optimizers.ppo import checkpoint

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()

    class Policy:
        def save_pretrained(self, path, safe_serialization):
            Path(path).mkdir(parents=True)

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = checkpoint.save(tmp_path, 5, policy=Policy(), value_model=model,
                           optimizers={"policy": optimizer}, state={"data": {}})
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = checkpoint.load(path, value_model=model, optimizers={"policy": optimizer})
    assert state["step"] == 5
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected  # RNG restored

    torch.save({"python": Payload()}, path / "rng.pt")  # tampered: an arbitrary object
    with pytest.raises(FrameworkError, match=r"rng\.pt holds objects other than tensors"):
        checkpoint.load(path, value_model=model, optimizers={"policy": optimizer})


# ----------------------------------------------------------------------------------- plugins
def test_plugins_come_from_entry_points_or_module_names_never_files(tmp_path):
    evil = tmp_path / "evil.py"
    evil.write_text("import pathlib; pathlib.Path(__file__).with_name('ran').touch()\n")
    for name in (str(evil) + ":Stage", "./evil.py:Stage", "evil", "evil:"):
        with pytest.raises(PluginError) as err:
            plugins.stages.get(name)
        assert "Unknown stage plugin" in str(err.value) or "not a 'package.module:Class'" in str(err.value)
    assert not (tmp_path / "ran").exists()  # nothing was imported from the file
    from framework_plugins.reward_sources.function import resolve_function

    with pytest.raises(ConfigError, match="nor a 'package.module:function' path"):
        resolve_function(f"{evil}:score", "stages.rl.params.reward.params.function")
    assert not (tmp_path / "ran").exists()


# ----------------------------------------------------------------------------------- secrets
@pytest.mark.parametrize("key,secret", [
    ("hub_token", True), ("HF_TOKEN", True), ("api_key", True), ("openaiApiKey", True),
    ("OPENAI_API_KEY", True), ("password", True), ("client_secret", True),
    ("Authorization", True), ("key", True),
    ("max_new_tokens", False), ("pad_token", False), ("eos_token", False),
    ("keep_checkpoints", False), ("tokenizer", False), ("learning_rate", False),
])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_redaction_of_values_keys_and_interpolations(monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-123456789")
    data = {"a": {"api_key": "sk-abc", "note": "uses tok-123456789 here", "pad_token": "<pad>"},
            "args": ["x.hub_token=hf_zzzzzz", "lr=1"]}
    assert redact(data) == {"a": {"api_key": REDACTED, "note": f"uses {REDACTED} here",
                                  "pad_token": "<pad>"},
                            "args": [f"x.hub_token={REDACTED}", "lr=1"]}
    cfg = OmegaConf.create({"p": {"hub_token": "${oc.env:MY_SERVICE_TOKEN}", "password": "pw-98765"}})
    assert redacted_config(cfg) == {"p": {"hub_token": "${oc.env:MY_SERVICE_TOKEN}",
                                          "password": REDACTED}}


class SecretStage(Stage):
    """Uses its settings, logs them and reports them: a careless plugin."""

    @dataclass
    class Config:
        settings: Dict[str, Any] = field(default_factory=dict)

    def run(self, inputs, ctx):
        ctx.logger.info("connecting with %s", self.config.settings)
        return StageResult({"echo": str(self.config.settings)}, {})


def test_secrets_never_reach_the_run_files_or_logs(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_TOKEN": "hf_secretvalue123", "HYDRA_FULL_ERROR": "0",
           "PYTHONPATH": str(REPO)}
    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "secret.yaml").write_text(
        "# @package _global_\n"
        "stages:\n"
        "  s:\n"
        "    plugin: tests.test_untrusted:SecretStage\n"
        "    params:\n"
        "      settings: {hub_token: '${oc.env:HF_TOKEN}', api_key: sk-literal-999,\n"
        "                 url: 'https://example.org'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "--config-dir", str(tmp_path / "conf"),
         "+recipe=secret", f"hydra.run.dir={run_dir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "connecting with" in proc.stdout + proc.stderr  # the log line is there, redacted
    files = [run_dir / "config.yaml", run_dir / "summary.json", run_dir / "s" / "manifest.json",
             run_dir / "framework.log", *sorted((run_dir / ".hydra").glob("*.yaml"))]
    assert len(files) == 7
    for text in [proc.stdout + proc.stderr] + [f.read_text() for f in files]:
        assert "hf_secretvalue123" not in text and "sk-literal-999" not in text
    config = (run_dir / "config.yaml").read_text()
    assert "hub_token: ${oc.env:HF_TOKEN}" in config and f"api_key: {REDACTED}" in config
    assert "url: https://example.org" in config  # everything else is kept
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stages"]["s"]["status"] == "done"
    assert REDACTED in summary["stages"]["s"]["metrics"]["echo"]


def test_a_trl_argument_secret_reaches_no_file_the_run_writes(tmp_path, tiny_model_dir,
                                                              monkeypatch):
    """TRL's Trainer pickles its config, hub_token included, into training_args.bin in every
    checkpoint and in the saved model: the framework pickles it redacted."""
    import torch

    import pipeline_runs as runs
    from framework.pipeline.runner import run_pipeline

    secret = "hf_trlargsecret4242"
    monkeypatch.setenv("MY_HUB_TOKEN", secret)
    cfg = runs.sft_config(tmp_path, tiny_model_dir, rows=6, max_steps=2, save_steps=1,
                          hub_token="${oc.env:MY_HUB_TOKEN}")
    run_dir = tmp_path / "run"
    run_pipeline(cfg, run_dir, "test")
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    pickled = [p for p in written if p.name == "training_args.bin"]
    assert len(pickled) >= 2  # the model and at least one checkpoint
    assert [p for p in written if secret.encode() in p.read_bytes()] == []
    args = torch.load(pickled[0], weights_only=False)
    assert args.hub_token == REDACTED and args.max_steps == 2  # the rest is kept
    # only pickles are redacted: copies in memory keep the token (pushing to the hub needs it)
    import copy

    from framework_plugins.stages.sft import SFTStage

    stage = SFTStage(SFTStage.parse_config({"args": {"hub_token": secret}}, "s"))
    live = stage.training_config(str(tmp_path / "o"), 0, "stages.s")
    assert copy.deepcopy(live).hub_token == copy.copy(live).hub_token == secret


def test_a_rejected_command_leaves_a_finished_runs_files_as_they_were(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(REPO)}
    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "one.yaml").write_text(
        "# @package _global_\nstages:\n  s:\n    plugin: tests.test_untrusted:SecretStage\n"
        "    params:\n      settings: {url: 'https://example.org'}\n")
    command = [sys.executable, "-m", "framework", "--config-dir", str(tmp_path / "conf"),
               "+recipe=one", f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    before = {p: p.read_bytes() for p in [*run_dir.glob(".hydra/*.yaml"), run_dir / "config.yaml",
                                          run_dir / "summary.json"]}
    assert len(before) == 5
    rejected = subprocess.run(command + ["++stages.s.params.setings=1"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    assert rejected.returncode == 2 and "stages.s.params.setings" in rejected.stdout + rejected.stderr
    assert {p: p.read_bytes() for p in before} == before
