"""The planner rejects bad wiring before any stage runs; the runner records, skips and re-runs."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from framework import plugins
from framework.errors import ConfigError, FrameworkError
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig

from fake_stages import CALLS, FAKES

# Plans with fake hub ids that never load (conftest.hub_cache).
pytestmark = pytest.mark.usefixtures("hub_cache")


@pytest.fixture(autouse=True)
def fake_stages():
    for name, cls in FAKES.items():
        plugins.stages.register(name, cls)
    CALLS.clear()
    yield
    for name in FAKES:
        plugins.stages.unregister(name)


def config(tmp_path, stages, **extra):
    demo = tmp_path / "demo.jsonl"
    demo.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    node = {
        "model": {"name_or_path": "some/hub-model"},
        "data": {"demos": {"kind": "demonstrations", "path": str(demo)},
                 "prompts": {"kind": "prompts", "path": str(prompts)}},
        "stages": stages,
        **extra,
    }
    return OmegaConf.merge(OmegaConf.structured(RootConfig), node)


def two_stages(**sft_params):
    return {
        "sft": {"plugin": "make_model", "inputs": {"model": "model", "data": "data.demos"},
                "params": sft_params},
        "rm": {"plugin": "make_rm", "inputs": {"model": "sft.model"}},
    }


def problems_of(cfg):
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    return err.value.problems


def test_valid_recipe_is_planned_in_order(tmp_path):
    plan = build_plan(config(tmp_path, two_stages(steps=3)))
    assert [p.name for p in plan] == ["sft", "rm"]
    assert plan[0].stage.config.steps == 3
    assert plan[1].inputs["model"].stage == "sft"


def test_unknown_param_and_wrong_type_name_the_config_path(tmp_path):
    (problem,) = problems_of(config(tmp_path, two_stages(stepz=3)))
    assert problem.startswith("stages.sft.params")
    assert "stepz" in problem and "Valid keys: steps, fail, tags." in problem
    (problem,) = problems_of(config(tmp_path, two_stages(steps="many")))
    assert "stages.sft.params.steps" in problem and "many" in problem


def test_wiring_errors_are_all_reported_before_any_stage_runs(tmp_path):
    stages = {
        "sft": {"plugin": "make_model", "inputs": {"model": "rm.model", "extra": "model"}},
        "rm": {"plugin": "make_rm", "inputs": {"model": "data.prompts"}},
        "rl": {"plugin": "use_prompts", "inputs": {"policy": "sft.modle"}},
        "bad": {"plugin": "make_modle"},
    }
    problems = problems_of(config(tmp_path, stages))
    text = "\n".join(problems)
    assert "stages.sft.inputs.extra: stage plugin MakeModel has no input 'extra'" in text
    assert "stages.sft.inputs.model: 'rm' does not run before stage 'sft'" in text
    assert "stages.rm.inputs.model: 'data.prompts' is a 'prompts' artifact, but this input accepts 'model', 'reward_model'" in text
    assert "stages.rl.inputs.policy: stage 'sft' has no output 'modle'; its outputs are: model" in text
    assert "stages.rl.inputs.prompts: required input is not wired" in text
    assert "stages.bad: Unknown stage plugin 'make_modle'. Did you mean 'make_model'?" in text
    assert CALLS == []


def test_unknown_source_suggests_the_closest(tmp_path):
    stages = {"sft": {"plugin": "make_model", "inputs": {"model": "model", "data": "data.demo"}}}
    (problem,) = problems_of(config(tmp_path, stages))
    assert "'data.demo' names no source. Did you mean 'data.demos'?" in problem


def test_plugin_check_runs_at_planning(tmp_path):
    (problem,) = problems_of(config(tmp_path, two_stages(steps=0)))
    assert problem == "stages.sft.params.steps: must be >= 1, got 0."


def test_missing_data_file_fails_at_planning(tmp_path):
    cfg = config(tmp_path, two_stages())
    cfg.data.demos.path = str(tmp_path / "nope.jsonl")
    (problem,) = problems_of(cfg)
    assert problem.startswith("data.demos") and "nope.jsonl" in problem


def test_run_writes_summary_manifests_and_artifacts(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_pipeline(config(tmp_path, two_stages(steps=2)), run_dir, "test")
    assert CALLS == ["sft", "rm"]
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["recipe"] == "test"
    assert set(on_disk["stages"]) == {"sft", "rm"}
    assert on_disk["stages"]["sft"]["status"] == "done"
    assert on_disk["stages"]["sft"]["metrics"] == {"steps": 2}
    assert on_disk["stages"]["sft"]["artifacts"] == {"model": "sft/model.json"}
    assert on_disk["stages"]["rm"]["seconds"] >= 0
    # the reward model really was built from the SFT artifact, passed as an input
    rm_from = json.loads((run_dir / "rm" / "rm.json").read_text())["from"]
    assert rm_from == str(run_dir / "sft" / "model.json")
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert manifest["status"] == "done" and len(manifest["config_hash"]) == 64
    assert (run_dir / "config.yaml").exists()
    assert summary["stages"]["rm"]["status"] == "done"


def test_rerun_skips_done_stages_and_a_change_reruns_from_there(tmp_path):
    run_dir = tmp_path / "run"
    run_pipeline(config(tmp_path, two_stages(steps=2)), run_dir, "test")
    CALLS.clear()
    first = json.loads((run_dir / "summary.json").read_text())["stages"]["sft"]
    summary = run_pipeline(config(tmp_path, two_stages(steps=2)), run_dir, "test")
    assert CALLS == []
    assert [s["status"] for s in summary["stages"].values()] == ["skipped", "skipped"]
    assert summary["stages"]["sft"]["metrics"] == {"steps": 2}
    # a skipped stage keeps what its run cost, apart from this run's (nothing)
    assert summary["stages"]["sft"]["when_run"] == {
        "seconds": first["seconds"], "peak_rss_mib": first["peak_rss_mib"]}
    assert first["peak_rss_mib"] > 0 and summary["stages"]["sft"]["seconds"] == 0.0
    summary = run_pipeline(config(tmp_path, two_stages(steps=5)), run_dir, "test")
    assert CALLS == ["sft", "rm"]  # sft changed, so everything after it re-runs too
    # changing only the last stage re-runs only it
    CALLS.clear()
    cfg = config(tmp_path, two_stages(steps=5))
    cfg.stages.rm.params = {}
    cfg.seed = 42
    run_pipeline(cfg, run_dir, "test")
    assert CALLS == []


def test_deleted_artifact_is_not_trusted(tmp_path):
    run_dir = tmp_path / "run"
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    (run_dir / "sft" / "model.json").unlink()
    CALLS.clear()
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == ["sft", "rm"]


def test_failed_stage_is_recorded_and_later_stages_do_not_run(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(config(tmp_path, two_stages(fail=True)), run_dir, "test")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stages"]["sft"]["status"] == "failed"
    assert "boom" in summary["stages"]["sft"]["error"]
    assert "rm" not in summary["stages"] and CALLS == ["sft"]


def test_stage_must_return_its_declared_outputs(tmp_path):
    stages = {"x": {"plugin": "liar", "inputs": {"model": "model"}}}
    with pytest.raises(FrameworkError, match="returned artifacts {}, but declares outputs {'model': 'model'}"):
        run_pipeline(config(tmp_path, stages), tmp_path / "run", "test")


def test_reuse_checks_the_contents_of_input_data(tmp_path, caplog):
    """A data file edited in place re-runs the stage that read it, and every later stage, and
    says what changed; its checkpoints, made from the old rows, are not resumed."""
    run_dir = tmp_path / "run"
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == ["sft", "rm"]
    again = run_pipeline(config(tmp_path, two_stages()), run_dir, "test")  # rewritten, same rows
    assert [again["stages"][s]["status"] for s in ("sft", "rm")] == ["skipped", "skipped"]
    (run_dir / "sft" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    cfg = config(tmp_path, two_stages())
    with open(tmp_path / "demo.jsonl", "a") as f:  # rows appended, same path, same config
        f.write(json.dumps({"prompt": "and", "completion": "more"}) + "\n")
    CALLS.clear()
    with caplog.at_level("WARNING", logger="framework"):
        summary = run_pipeline(cfg, run_dir, "test")
    assert CALLS == ["sft", "rm"]
    assert [summary["stages"][s]["status"] for s in ("sft", "rm")] == ["done", "done"]
    assert ("stage sft: the contents of its input data (changed: the file) changed since it ran; "
            "running it again, and every stage after it") in caplog.text
    assert not (run_dir / "sft" / "checkpoints").exists()
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    recorded = manifest["input_fingerprints"]["data"]["files"]["."]
    assert recorded["size"] == (tmp_path / "demo.jsonl").stat().st_size


def test_reuse_checks_the_artifacts_are_intact_and_inside_the_run(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    model = run_dir / "sft" / "model.json"
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert manifest["artifact_checksums"]["model"]["files"]["."]["size"] == model.stat().st_size
    with open(model, "r+b") as f:  # a few bytes overwritten in place, same size
        f.seek(2)
        f.write(b"XX")
    CALLS.clear()
    with caplog.at_level("WARNING", logger="framework"):
        run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == ["sft", "rm"]
    assert f"stage sft: its artifact 'model' ({model}) was modified after it was written " \
           f"(changed: the file)" in caplog.text
    # touched but unchanged: rehashed, found equal, reused
    model.touch()
    CALLS.clear()
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == []
    # a manifest pointing outside the run directory is not trusted
    manifest = json.loads((run_dir / "rm" / "manifest.json").read_text())
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    manifest["artifacts"]["model"]["location"] = str(outside)
    (run_dir / "rm" / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level("WARNING", logger="framework"):
        run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == ["rm"]
    assert f"stage rm: its artifact 'model' ({outside}) lies outside the run directory" in caplog.text


def test_a_bad_row_in_a_later_stages_data_stops_the_run_before_any_stage(tmp_path):
    """Every local data source's rows are parsed at planning: a malformed comparisons file is
    not found only after SFT trained."""
    cfg = config(tmp_path, {
        "sft": {"plugin": "make_model", "inputs": {"model": "model", "data": "data.demos"}},
        "use": {"plugin": "use_prompts", "inputs": {"policy": "sft.model", "prompts": "data.prompts"}}})
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "fine"}) + "\n"
                                           + json.dumps({"prompt": ""}) + "\n")
    with pytest.raises(ConfigError) as err:
        run_pipeline(cfg, tmp_path / "run", "test")
    assert CALLS == []
    message = "\n".join(err.value.problems)
    assert f"data.prompts ({tmp_path / 'prompts.jsonl'})" in message and "row 1" in message
    # with on_bad_row: skip the stage reports it instead, and the run goes ahead
    cfg.data.prompts.on_bad_row = "skip"
    run_pipeline(cfg, tmp_path / "run", "test")
    assert CALLS == ["sft", "use"]


def test_reuse_checks_the_commit_a_hub_model_revision_names(tmp_path, hub_cache, caplog):
    """A hub input is compared by the commit its revision names (the hub's answer, or the
    cache's offline): a branch moved to a new commit re-runs the stages from the first that
    read it."""
    from conftest import fill_hub_cache

    run_dir = tmp_path / "run"
    run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert manifest["input_fingerprints"]["model"] == {"commit": "0" * 40, "digest": "0" * 40}
    again = run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert [again["stages"][s]["status"] for s in ("sft", "rm")] == ["skipped", "skipped"]
    fill_hub_cache(hub_cache, "some/hub-model", commit="1" * 40)  # main moved on
    CALLS.clear()
    with caplog.at_level("WARNING", logger="framework"):
        summary = run_pipeline(config(tmp_path, two_stages()), run_dir, "test")
    assert CALLS == ["sft", "rm"]
    assert [summary["stages"][s]["status"] for s in ("sft", "rm")] == ["done", "done"]
    assert ("stage sft: the contents of its input model (hub commit 000000000000 -> "
            "111111111111) changed since it ran") in caplog.text
