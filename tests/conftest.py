"""Shared fixtures. Tests run offline on CPU; models are tiny random Llamas with the real
SmolLM2 tokenizer (taken from the embedded model's converted cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def root_logging_restored():
    """A run in this process (framework.cli.main) has Hydra add a file handler for the run's
    log to the root logger; it must not outlive the test, whose folder is removed when it passes
    (tmp_path_retention_policy), or every later log record fails to reopen that file."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def build_tiny_model(path: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Save a tiny random Llama causal LM with the SmolLM2 tokenizer at `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from framework.models import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny causal LM checkpoint directory (random weights, real tokenizer and chat template)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


# Hub ids that tests plan with but never load (fake stages, planning errors, recipes' hub data).
FAKE_HUB_MODELS = ("some/model", "some/hub-model")
FAKE_HUB_DATASETS = ("Anthropic/hh-rlhf",)


def fill_hub_cache(cache: Path, repo_id: str, repo_type: str = "model",
                   commit: str = "0" * 40, revision: str = "main") -> None:
    """What the HF cache holds after a download, as far as `framework.common.hub` looks: the
    ref naming a commit, and that commit's snapshot folder."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny reward model: the tiny Llama with a random one-logit score head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with torch.no_grad():
        model.score.weight.mul_(50)  # scores of order 1, so that differences show
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def hub_cache(tmp_path_factory, monkeypatch) -> Path:
    """An HF cache of its own for the test, holding the refs of the hub ids above (as after a
    download), so planning finds them without a network."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("hf-cache")
    for repo_id in FAKE_HUB_MODELS:
        fill_hub_cache(cache, repo_id)
    for repo_id in FAKE_HUB_DATASETS:
        fill_hub_cache(cache, repo_id, "dataset")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine they lose a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
