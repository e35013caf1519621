"""A hub id the run cannot get is one planning error, not a minute of the hub client's retries;
a cached one with no network is read from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from huggingface_hub import constants
from omegaconf import OmegaConf

from framework.common import hub
from framework.errors import ConfigError
from framework.pipeline.plan import build_plan
from framework.pipeline.schema import RootConfig

from conftest import fill_hub_cache

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """Online mode, an endpoint that refuses connections, an empty cache of the test's own."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", CLOSED)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub.unreachable_reason.cache_clear()
    yield tmp_path / "hf-cache"
    hub.unreachable_reason.cache_clear()


def sft_on(tmp_path, model: str, data_path=None):
    demo = tmp_path / "demo.jsonl"
    demo.write_text(json.dumps({"prompt": "hi", "completion": "hello"}) + "\n")
    node = {"model": {"name_or_path": model},
            "data": {"demos": {"kind": "demonstrations", "path": data_path or str(demo)}},
            "stages": {"sft": {"plugin": "sft", "inputs": {"model": "model", "data": "data.demos"}}}}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), node)


def test_an_uncached_hub_model_with_no_network_fails_at_planning(tmp_path, no_network):
    with pytest.raises(ConfigError) as err:
        build_plan(sft_on(tmp_path, "acme/missing-model"))
    assert err.value.problems == [
        f"model.name_or_path: 'acme/missing-model' is not a local path and not in the local HF "
        f"cache, and {CLOSED} cannot be reached (Connection refused). Give a local folder (or "
        f"an embedded model), connect to the network, or set HF_ENDPOINT to a reachable mirror."]


def test_an_uncached_hub_data_set_with_no_network_fails_at_planning(tmp_path, no_network,
                                                                    tiny_model_dir):
    with pytest.raises(ConfigError) as err:
        build_plan(sft_on(tmp_path, str(tiny_model_dir), data_path="acme/some-data"))
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(
        "data.demos.path: 'acme/some-data' is not a local path and not in the local HF cache")


def test_offline_mode_names_the_missing_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with pytest.raises(ConfigError, match=r"model.name_or_path: 'acme/missing-model' \(a hub "
                                          r"model\) is not in the local HF cache and "
                                          r"HF_HUB_OFFLINE is set"):
        build_plan(sft_on(tmp_path, "acme/missing-model"))


def test_a_cached_hub_model_with_no_network_makes_the_run_read_the_cache(tmp_path, no_network,
                                                                       monkeypatch):
    fill_hub_cache(no_network, "acme/cached-model")
    plan = build_plan(sft_on(tmp_path, "acme/cached-model"))
    assert [p.name for p in plan] == ["sft"]
    assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"


def test_cached_commit_follows_refs_and_pinned_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    fill_hub_cache(tmp_path, "acme/data", "dataset", commit="a" * 40, revision="v1")
    assert hub.cached_commit("acme/data", "dataset", "v1") == "a" * 40
    assert hub.cached_commit("acme/data", "dataset", None) is None  # main never downloaded
    assert hub.cached_commit("acme/data", "dataset", "a" * 40) == "a" * 40
    assert hub.cached_commit("acme/data", "dataset", "b" * 40) is None
    assert hub.cached_commit("acme/data", "model", "v1") is None  # another repo type


def test_the_cli_reports_it_in_one_line_without_retries(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": CLOSED,
           "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "framework", "+recipe=instructgpt",
         "model.name_or_path=acme/missing-model", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=env, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "'acme/missing-model' is not a local path and not in the local HF cache" in out
    assert "Retrying" not in out and "Traceback" not in out
    assert {p.name for p in run_dir.iterdir()} <= {"framework.log"}  # nothing trained or copied
