"""The command line as users run it: from another directory, with Hydra's flags, and with a
third-party plugin installed from its own package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE_PLUGIN = Path(__file__).parent / "example_plugin"


def framework(*args, cwd, env=None, check=True):
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "framework", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def example_plugin():
    """Install the example third-party plugin into this environment, as a user would."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(pip + [str(EXAMPLE_PLUGIN)], check=True, capture_output=True, timeout=300)
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "example-rlhf-plugin"],
                   check=True, capture_output=True, timeout=300)


def test_list_shows_plugins_recipes_and_origins(tmp_path):
    out = framework("list", cwd=tmp_path).stdout
    assert "framework_plugins.stages.sft:SFTStage" in out and "from rlhf-framework" in out
    assert "instructgpt" in out and "recipes/instructgpt.yaml" in out
    assert "model=smollm2" in out


def test_cfg_job_and_info_work_from_another_directory(tmp_path):
    out = framework("+recipe=instructgpt", "seed=7", "--cfg", "job", cwd=tmp_path).stdout
    assert "seed: 7" in out and "plugin: reward_model" in out
    info = framework("+recipe=instructgpt", "--info", "defaults", cwd=tmp_path).stdout
    assert "recipe/instructgpt" in info


def test_config_error_exits_before_loading_weights(tmp_path):
    proc = framework("+recipe=instructgpt", "stages.reward_model.inputs.model=sft.modle",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "stages.reward_model.inputs.model: stage 'sft' has no output 'modle'" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "sft").exists()


def test_third_party_plugin_is_found_and_runs(example_plugin, tmp_path, tiny_model_dir):
    listing = framework("list", cwd=tmp_path).stdout
    assert "length_filter" in listing and "from example-rlhf-plugin" in listing
    assert "keyword" in listing and "filtered_sft" in listing
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": f"Say {i}", "completion": " ".join(["word"] * i)}) + "\n"
                             for i in range(1, 9)))
    run_dir = tmp_path / "run"
    framework("+recipe=filtered_sft", f"model.name_or_path={tiny_model_dir}",
              f"data.demonstrations.path={demos}", "data.demonstrations.eval_fraction=0",
              "stages.filter.params.max_words=5", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["recipe"] == "filtered_sft"
    assert summary["stages"]["filter"]["metrics"] == {"rows_in": 8, "rows_kept": 5, "rows_dropped": 3}
    assert summary["stages"]["sft"]["status"] == "done"
    # the SFT stage trained on the filter's output artifact, wired explicitly
    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert manifest["inputs"]["data"]["location"] == str(run_dir / "filter" / "demonstrations.jsonl")


def test_third_party_artifact_kind_data_format_and_stage(example_plugin, tmp_path):
    """The example package adds an artifact kind, a data format and a stage that produces the
    kind, through entry points alone; planning checks wiring against the new kind."""
    listing = framework("list", cwd=tmp_path).stdout
    assert "word_counts" in listing and "demonstrations.qa" in listing
    demos = tmp_path / "qa.jsonl"  # question/answer columns: the package's own format, detected
    rows = [("Name a colour.", "red red blue"), ("Name a fruit.", "apple red"),
            ("Say a long thing.", " ".join(["long"] * 70))]
    demos.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    run_dir = tmp_path / "run"
    framework("+recipe=word_counts", f"data.demonstrations.path={demos}",
              "data.demonstrations.eval_fraction=0", "stages.counts.params.top=2",
              f"hydra.run.dir={run_dir}", cwd=tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    # the filter (max_words 60) drops the 70-word answer; 5 words remain, 3 distinct
    assert summary["stages"]["filter"]["metrics"]["rows_kept"] == 2
    assert summary["stages"]["counts"]["metrics"] == {"words": 5, "distinct": 3,
                                                       "top": ["red", "blue"]}
    counts = json.loads((run_dir / "counts" / "word_counts.json").read_text())
    assert counts == {"red": 3, "blue": 1, "apple": 1}
    manifest = json.loads((run_dir / "counts" / "manifest.json").read_text())
    assert manifest["artifacts"]["counts"]["kind"] == "word_counts"
    # a stage input that does not accept the new kind says so before anything runs
    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "counts_into_sft.yaml").write_text(
        "# @package _global_\nstages:\n  counts: {plugin: word_counts, inputs: {data: data.demonstrations}}\n"
        "  sft: {plugin: sft, inputs: {model: model, data: counts.counts}}\n")
    bad = framework("--config-dir", str(tmp_path / "conf"), "+recipe=counts_into_sft",
                    f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert ("stages.sft.inputs.data: 'counts.counts' is a 'word_counts' artifact, but this input "
            "accepts 'demonstrations'") in bad.stdout + bad.stderr


def test_multirun_sweeps(example_plugin, tmp_path, tiny_model_dir):
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": f"Say {i}", "completion": "ok " * i}) + "\n" for i in range(1, 5)))
    sweep = tmp_path / "sweep"
    framework("-m", "+recipe=filtered_sft", f"model.name_or_path={tiny_model_dir}",
              f"data.demonstrations.path={demos}", "data.demonstrations.eval_fraction=0",
              "stages.filter.params.max_words=1,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    kept = [json.loads((sweep / str(i) / "summary.json").read_text())["stages"]["filter"]["metrics"]["rows_kept"]
            for i in (0, 1)]
    assert kept == [1, 3]


def test_a_recipe_that_is_not_yaml_gets_one_line_and_exit_2(tmp_path):
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "broken.yaml").write_text("# @package _global_\nstages:\n  sft: {plugin: sft\n  x: [\n")
    proc = framework("--config-dir", str(tmp_path), "+recipe=broken", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"python -m framework: {tmp_path / 'recipe' / 'broken.yaml'}, line 4, column 4: not "
        f"valid YAML (while parsing a flow mapping: expected ',' or '}}', but got ':'). Fix that "
        f"line of the file; recipes and config-group options are YAML.")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_lists_the_commands_and_a_typo_is_answered(tmp_path):
    out = framework("--help", cwd=tmp_path).stdout
    assert "list         installed plugins" in out and "memory       each stage's peak device memory" in out
    assert "report       an HTML report" in out and "serve-reward serve a reward source" in out
    typo = framework("lst", cwd=tmp_path, check=False)
    assert typo.returncode == 2 and "'lst' is not a command. Did you mean 'list'?" in typo.stderr


def test_a_run_directory_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = framework("+recipe=instructgpt", f"hydra.run.dir={afile}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"python -m framework: hydra.run.dir: {afile} is a file, not a "
                                   f"directory; choose another path or move the file.")
    proc = framework("+recipe=instructgpt", f"hydra.run.dir={afile}/below", cwd=tmp_path,
                     check=False)
    assert proc.returncode == 2 and "hydra.run.dir: Not a directory" in proc.stderr
