"""freeze_layers: the embeddings and the lowest N layers stop training; the rest still learns."""

from __future__ import annotations

import pytest

from framework.errors import ConfigError
from framework.models.freezing import freeze_lower_layers


def test_freezes_embeddings_and_the_lowest_layers_of_a_reward_model(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    layers = model.model.layers
    expected = model.model.embed_tokens.weight.numel() + sum(p.numel() for p in layers[0].parameters())
    assert freeze_lower_layers(model, 1, "stages.rm.params.freeze_layers") == expected
    assert not model.model.embed_tokens.weight.requires_grad
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert model.score.weight.requires_grad


def test_a_tied_output_head_stays_trainable(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    freeze_lower_layers(model, 1, "x")
    assert model.lm_head.weight.requires_grad  # shared with the embeddings


def test_freezing_every_layer_is_refused(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ConfigError, match=r"stages.sft.params.freeze_layers: freeze_layers=2 would freeze all 2 layers; use at most 1"):
        freeze_lower_layers(model, 2, "stages.sft.params.freeze_layers")
    assert freeze_lower_layers(model, 0, "x") == 0
