"""What a user sees when a stage fails in a way nobody planned for: one line on the console, the
traceback in the run's log file, the resume command, exit status 1 (not an input error)."""

from __future__ import annotations

import json
import sys

import pytest

from framework import plugins

from fake_stages import FAKES


@pytest.fixture
def make_model_stage():
    plugins.stages.register("make_model", FAKES["make_model"])
    yield
    plugins.stages.unregister("make_model")


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log_file(
        tmp_path, tiny_model_dir, make_model_stage, monkeypatch, capsys):
    from framework.cli import main

    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "crash.yaml").write_text(
        "# @package _global_\nstages:\n"
        "  x: {plugin: make_model, inputs: {model: model}, params: {fail: true}}\n")
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [
        "framework", "--config-dir", str(tmp_path / "conf"), "+recipe=crash",
        f"model.name_or_path={tiny_model_dir}", f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    console = capsys.readouterr()
    out = console.out + console.err
    assert "unexpected RuntimeError: boom" in out
    assert "This is a bug in the framework or a plugin, not in your input" in out
    assert f"the traceback is in {run_dir / 'framework.log'}" in out
    assert f"python -m framework --config-dir {tmp_path / 'conf'} +recipe=crash" in out
    assert "Traceback" not in out
    log_text = (run_dir / "framework.log").read_text()
    assert "Traceback (most recent call last)" in log_text and 'raise RuntimeError("boom")' in log_text
    manifest = json.loads((run_dir / "x" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: boom"
