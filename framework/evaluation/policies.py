"""Loading a policy to sample from."""

from __future__ import annotations

from framework.artifacts import Artifact
from framework.hardware.config import device


def load_policy(artifact: Artifact, model_cfg, hardware, where: str):
    """Full weights in eval mode (an adapter policy, e.g. a LoRA SFT output, is merged into its
    base), on this process's device: the profile's CPU, else accelerate's choice (its GPU where
    there is one), as the PPO trainer places the policy. `where`: the input's config path."""
    from accelerate import PartialState

    from framework.models.adapter_models import CAUSAL_LM, load_merged

    model = load_merged(artifact, model_cfg, CAUSAL_LM, where)
    return model.to(device(hardware) or PartialState().device).eval()
