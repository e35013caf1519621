"""Hardware profiles: each conf/hardware option as TRL arguments, accelerate launch arguments,
DeepSpeed/FSDP configs (built, never launched here), planning-time checks, the large-model
adapter, the memory planner's hardware, and the parent's view of a failed launch."""

from __future__ import annotations

import json
import os
import signal as signal_module
import sys
import threading

import pytest
from omegaconf import OmegaConf

from framework import errors
from framework.errors import ConfigError
from framework.hardware import config as hardware_config
from framework.common import distributed
from framework.hardware.accelerate_args import accelerate_config, launch_args, make_accelerator
from framework.hardware.config import HardwareConfig, as_hardware, hardware_problems, launches
from framework.pipeline.large_models import apply_large_model_adapter
from framework.hardware.training_args import checkpointing_key, training_args
from framework.memory.command import compose
from framework.memory.command import main as memory_main
from framework.pipeline.launch import StageProcessError, _failure

PROFILES = ("cpu", "single_gpu", "multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp")


def profile(name: str, *overrides: str) -> HardwareConfig:
    return as_hardware(compose([f"hardware={name}", *overrides]).hardware)


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has N GPUs with bf16 (the planning checks and `auto` read this)."""
    def set_count(n: int):
        monkeypatch.setattr(hardware_config, "local_gpu_count", lambda: n)
        monkeypatch.setattr("torch.cuda.is_available", lambda: n > 0)
        monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda *a, **k: True)
    return set_count


def test_the_default_is_the_cpu_profile_in_this_process():
    hw = as_hardware(compose([]).hardware)
    assert hw.name == "cpu" and not launches(hw)
    assert training_args(hw) == {"use_cpu": True, "bf16": False, "fp16": False,
                                 checkpointing_key(): False}


def test_single_gpu_profile_as_trl_args(gpus):
    gpus(1)
    hw = profile("single_gpu")
    assert not launches(hw) and hw.large_model_adapter == "qlora" and hw.device_memory_gb == 24
    assert training_args(hw) == {"use_cpu": False, "bf16": True, "fp16": False,
                                 checkpointing_key(): True, "optim": "paged_adamw_8bit"}
    assert hardware_problems(hw) == []


def test_stage_args_win_over_the_profile():
    from framework_plugins.stages.sft import SFTStage

    hw = HardwareConfig(gradient_checkpointing=True, optim="adafactor")
    stage = SFTStage(SFTStage.parse_config({"args": {"gradient_checkpointing": False}}, "s"))
    args = stage.training_config("out", 0, "stages.sft", hardware=hw)
    assert args.gradient_checkpointing is False  # the stage's own
    assert args.optim == "adafactor" and args.use_cpu is True  # the profile's
    # under its new name too (transformers' deprecated alias must not lose to the profile)
    stage = SFTStage(SFTStage.parse_config({"args": {checkpointing_key(): False}}, "s"))
    assert stage.training_config("out", 0, "stages.sft", hardware=hw).gradient_checkpointing is False


def test_our_configs_cause_no_deprecation_warning():
    """The profile sets checkpointing under the name the installed transformers reads without a
    warning (it renamed gradient_checkpointing to activation_checkpointing)."""
    import warnings

    from framework_plugins.stages.reward_model import RewardModelStage
    from framework_plugins.stages.sft import SFTStage

    for name in ("cpu", "single_gpu", "fsdp"):
        hw = HardwareConfig(name=name, gradient_checkpointing=name != "cpu", use_cpu=True)
        for cls in (SFTStage, RewardModelStage):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                cls(cls.parse_config({}, "s")).training_config("out", 0, "stages.s", hardware=hw)


def test_multi_gpu_launch_args_on_one_machine(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    hw = profile("multi_gpu", "hardware.num_processes=8")
    assert launches(hw)
    # the generated config file stands in for a user's `accelerate config` default
    (tmp_path / "accelerate.json").write_text(json.dumps(accelerate_config(hw)))
    loaded = load_config_from_file(str(tmp_path / "accelerate.json"))
    assert (loaded.distributed_type, loaded.num_processes, loaded.gpu_ids) == ("MULTI_GPU", 8, "all")
    args = launch_args(hw)
    assert args[0] == "--multi_gpu"
    pairs = dict(zip(args[1::2], args[2::2]))
    assert pairs == {"--num_processes": "8", "--num_machines": "1", "--main_process_port": "0",
                     "--mixed_precision": pairs["--mixed_precision"], "--dynamo_backend": "no"}


def test_several_machines_pass_accelerate_its_own_arguments():
    from accelerate.commands.launch import launch_command_parser

    hw = profile("multi_gpu", "hardware.num_processes=16", "hardware.num_machines=2",
                 "hardware.machine_rank=1", "hardware.main_process_ip=10.0.0.1",
                 "hardware.mixed_precision=bf16")
    parsed = launch_command_parser().parse_args([*launch_args(hw), "-m", "framework.pipeline.worker"])
    assert (parsed.multi_gpu, parsed.num_processes, parsed.num_machines, parsed.machine_rank,
            parsed.main_process_ip, parsed.main_process_port, parsed.mixed_precision) == (
        True, 16, 2, 1, "10.0.0.1", 29500, "bf16")


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_profiles_build_the_deepspeed_config(name, stage):
    hw = profile(name, "hardware.num_processes=8")
    ds = training_args(hw)["deepspeed"]
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage and "offload_optimizer" not in zero and "offload_param" not in zero
    # batch sizes, accumulation, clipping and precision come from the stage's TRL args
    assert {ds[k] for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                            "gradient_clipping", "train_batch_size")} == {"auto"}
    assert ds["bf16"] == {"enabled": "auto"} and "optimizer" not in ds  # the Trainer's own
    offload = training_args(profile(name, "hardware.deepspeed.offload_optimizer=true"))["deepspeed"]
    assert offload["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert offload["optimizer"]["type"] == "AdamW"  # DeepSpeed's CPU Adam steps offloaded states
    # ZeRO-3 saves one ordinary checkpoint, gathered from the shards
    assert zero.get("stage3_gather_16bit_weights_on_model_save", False) is (stage == 3)
    assert "--multi_gpu" in launch_args(hw)  # started as torchrun; the Trainer starts DeepSpeed


def test_transformers_fills_in_the_deepspeed_config():
    pytest.importorskip("deepspeed")
    from trl import SFTConfig

    hw = HardwareConfig(distributed="deepspeed", num_processes=2, use_cpu=False,
                        mixed_precision="no")
    args = SFTConfig(output_dir="out", per_device_train_batch_size=4, max_grad_norm=0.5,
                     gradient_accumulation_steps=2, **training_args(hw))
    config = args.hf_deepspeed_config.config
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"],
            config["gradient_clipping"], config["bf16"]) == (4, 2, 0.5, {"enabled": False})


def test_fsdp_profile_builds_fsdp_config_with_its_own_checkpointing():
    from trl import SFTConfig

    args = training_args(profile("fsdp", "hardware.num_processes=4"))
    assert args["fsdp"] is True and args[checkpointing_key()] is False
    assert args["fsdp_config"] == {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                   "reshard_after_forward": True, "cpu_offload": False,
                                   "state_dict_type": "FULL_STATE_DICT",
                                   "activation_checkpointing": True}
    plugin = SFTConfig(output_dir="out", **{**args, "bf16": False}).fsdp_plugin_args
    assert (plugin["fsdp_version"], plugin["activation_checkpointing"]) == (2, True)


def test_every_profile_is_a_valid_hardware_config():
    for name in PROFILES:
        hw = profile(name)
        assert hw.name == name
        assert (hw.distributed == "no") == (name in ("cpu", "single_gpu"))


# ----------------------------------------------------------------------- planning checks
def test_fewer_gpus_than_processes_is_a_config_error(gpus):
    gpus(2)
    (problem,) = hardware_problems(profile("multi_gpu", "hardware.num_processes=4"))
    assert problem.startswith("hardware.num_processes: profile 'multi_gpu' needs 4 GPU(s) on "
                              "this machine, which has 2")
    # per machine: 4 processes over 2 machines fit 2 GPUs each
    assert hardware_problems(profile("multi_gpu", "hardware.num_processes=4",
                                     "hardware.num_machines=2", "hardware.main_process_ip=h0")) == []


def test_on_cpu_any_number_of_processes_is_fine(gpus):
    gpus(0)
    assert hardware_problems(profile("multi_gpu", "hardware.num_processes=5",
                                     "hardware.use_cpu=true")) == []
    (problem,) = hardware_problems(profile("single_gpu"))
    assert problem == ("hardware.use_cpu: profile 'single_gpu' runs on GPUs and this machine has "
                       "none; use hardware=cpu, or set hardware.use_cpu=true to run its 1 "
                       "process(es) on the CPU.")


def test_bad_process_layouts_name_their_keys(gpus):
    gpus(8)
    problems = hardware_problems(profile("multi_gpu", "hardware.num_processes=3",
                                         "hardware.num_machines=2"))
    assert problems[0].startswith("hardware.num_processes=3 is not divisible by num_machines=2")
    assert problems[1].startswith("hardware.main_process_ip: required with num_machines > 1")
    (problem,) = hardware_problems(profile("cpu", "hardware.num_processes=2"))
    assert "choose a distributed profile, e.g. hardware=multi_gpu" in problem
    (problem,) = hardware_problems(profile("multi_gpu", "hardware.machine_rank=1"))
    assert problem.startswith("hardware.machine_rank: must be in 0..0")
    problems = hardware_problems(profile("deepspeed_zero2", "hardware.use_cpu=true",
                                         "hardware.num_processes=2"))
    assert ("hardware.use_cpu: deepspeed shards over GPUs; on a CPU use hardware=multi_gpu "
            "hardware.use_cpu=true (DDP over gloo).") in problems


def test_missing_deepspeed_is_reported_at_planning(gpus):
    if hardware_config._importable("deepspeed"):
        pytest.skip("deepspeed is installed here")
    gpus(8)
    assert hardware_problems(profile("deepspeed_zero3")) == [
        "hardware.distributed: deepspeed is not installed; pip install deepspeed."]


def test_hardware_problems_are_planning_problems(gpus, tmp_path):
    from framework.pipeline.plan import build_plan
    from framework.pipeline.schema import RootConfig

    gpus(1)
    cfg = OmegaConf.merge(OmegaConf.structured(RootConfig),
                          {"hardware": {"name": "multi_gpu", "distributed": "ddp",
                                        "num_processes": 2, "use_cpu": False}})
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    assert any(p.startswith("hardware.num_processes: profile 'multi_gpu' needs 2 GPU(s)")
               for p in err.value.problems)
    assert any(p.startswith("stages: the recipe has no stages") for p in err.value.problems)


# ------------------------------------------------------------------------ large models
def test_single_gpu_trains_qlora_adapters_for_a_7b_model(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, vocab_size=32000).save_pretrained(tmp_path / "llama7b")
    cfg = compose(["hardware=single_gpu", f"model.name_or_path={tmp_path / 'llama7b'}"])
    message = apply_large_model_adapter(cfg)
    assert cfg.adapter.kind == "qlora" and "has 6.7B parameters" in message
    # full fine-tuning stays: the 135M default, another profile, the switch off, an adapter asked for
    llama = f"model.name_or_path={tmp_path / 'llama7b'}"
    for overrides in (["hardware=single_gpu"], ["hardware=multi_gpu", llama],
                      ["hardware=single_gpu", "hardware.large_model_adapter=null", llama]):
        cfg = compose(overrides)
        assert apply_large_model_adapter(cfg) is None and cfg.adapter.kind == "none"
    cfg = compose(["hardware=single_gpu", "adapter=lora", llama])
    assert apply_large_model_adapter(cfg) is None and cfg.adapter.kind == "lora"


# ------------------------------------------------------------------------ memory planner
def test_memory_planner_reads_the_hardware_profile(capsys):
    assert memory_main(["+recipe=instructgpt", "hardware=deepspeed_zero3",
                        "hardware.num_processes=8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    hw = out["hardware"]
    assert (hw["name"], hw["num_devices"], hw["sharding"], hw["device_gb"]) == (
        "deepspeed_zero3", 8, "zero3", 80)
    sft, _, rl, evaluate = out["stages"]
    assert any("/ 8 (zero3)" in c["note"] for c in sft["components"])
    assert not any("/ 8" in c["note"] for c in rl["components"])  # PPO runs as DDP
    assert not any("/ 8" in c["note"] for c in evaluate["components"])  # whole models per rank
    # the profile's gradient checkpointing is for the TRL stages; PPO has none
    assert (sft["workload"]["gradient_checkpointing"], rl["workload"]["gradient_checkpointing"]) \
        == (True, False)


def test_memory_flags_override_the_profile(capsys):
    assert memory_main(["+recipe=instructgpt", "hardware=single_gpu", "--device-gb", "40",
                        "--json"]) in (0, 1)
    hw = json.loads(capsys.readouterr().out)["hardware"]
    assert (hw["device_gb"], hw["optimizer"], hw["gradient_checkpointing"], hw["compute_dtype"]) \
        == (40, "paged_adamw_8bit", True, "bfloat16")


# ------------------------------------------------------------------ running and failing
def test_ppo_accelerator_follows_the_profile():
    accelerator = make_accelerator(HardwareConfig(use_cpu=True, mixed_precision="no"))
    assert accelerator.device.type == "cpu" and accelerator.mixed_precision == "no"


def test_shards_cover_the_list_in_order(monkeypatch):
    items = list(range(5))
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        parts.append(distributed.shard(items))
    assert parts == [[0, 1, 2], [3, 4]]


def test_a_failed_launch_reraises_the_ranks_error(tmp_path):
    report = {"rank": 1, "world_size": 2, "message": "m", "traceback": ""}
    (tmp_path / "error.rank1.json").write_text(json.dumps(
        {**report, "type": "ConfigError", "problems": ["stages.sft.params.args.x: bad"]}))
    err = _failure("sft", tmp_path, 1)
    assert isinstance(err, errors.ConfigError) and err.problems == ["stages.sft.params.args.x: bad"]
    (tmp_path / "error.rank1.json").write_text(json.dumps({**report, "type": "ValueError"}))
    (tmp_path / "error.rank0.json").write_text(json.dumps({**report, "rank": 0, "type": "DataError"}))
    err = _failure("sft", tmp_path, 1)
    assert isinstance(err, errors.DataError) and str(err) == "m"  # the lowest rank's
    (tmp_path / "error.rank0.json").unlink()
    err = _failure("sft", tmp_path, 1)
    assert isinstance(err, StageProcessError)
    assert str(err) == "stage 'sft' failed in process 1 of 2: ValueError: m (its traceback is above)"
    (tmp_path / "error.rank1.json").unlink()
    assert "exited with status 137 without reporting an error" in str(_failure("sft", tmp_path, 137))


def test_an_interrupted_launch_keeps_the_signal(tmp_path):
    (tmp_path / "error.rank0.json").write_text(json.dumps(
        {"rank": 0, "world_size": 2, "message": "stopped", "traceback": "",
         "type": "TrainingInterrupted", "signal_name": "SIGINT"}))
    err = _failure("rl", tmp_path, 130)
    assert isinstance(err, errors.TrainingInterrupted) and err.signal_name == "SIGINT"


CHILD = """
import signal, sys, time
def stop(signum, frame):
    open(sys.argv[1], "w").write(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1], "w").write("ready")
time.sleep(60)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_request_reaches_the_launched_processes(name, tmp_path, monkeypatch):
    """The parent's handler only sets a flag (signals.py); while it waits for `accelerate
    launch`, the launcher module passes that same signal on to the stage processes."""
    from framework.common import signals
    from framework.pipeline import launch

    seen = tmp_path / "seen"
    monkeypatch.setattr(signals, "_received", None)

    def request_stop():  # as the handler would, once the child is up
        for _ in range(200):
            if seen.exists() and seen.read_text() == "ready":
                break
            threading.Event().wait(0.05)
        monkeypatch.setattr(signals, "_received", int(signal_module.Signals[name]))

    threading.Thread(target=request_stop, daemon=True).start()
    code = launch._run([sys.executable, "-c", CHILD, str(seen)], env=dict(os.environ))
    assert seen.read_text() == name
    assert code == 128 + int(signal_module.Signals[name])
