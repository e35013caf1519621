"""The whole PPO state on disk, written atomically, so a stopped run resumes where it stopped.

`output_dir/checkpoints/step-000050/`:
  policy/            the policy (save_pretrained: safetensors + config)
  value.safetensors  the value model's weights
  optimizers.pt      both optimizers' state
  rng.pt             python, numpy and torch RNG states
  state.json         step, data position, KL controller
A checkpoint is written into a temporary directory and renamed into place (os.replace), so a
directory named `step-*` is always complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

PREFIX = "step-"


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(root: Path, step: int, *, policy, value_model, optimizers: dict, state: dict,
         keep: int = 1) -> Path:
    """Write checkpoint `step` under `root` and keep only the `keep` newest ones."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{PREFIX}{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        policy.save_pretrained(tmp / "policy", safe_serialization=True)
        save_model(value_model, str(tmp / "value.safetensors"))
        torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp / "optimizers.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2))
        if target.exists():  # the same step saved twice (a resumed run at its end)
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in sorted(root.glob(PREFIX + "*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = sorted(root.glob(PREFIX + "*")) if root.is_dir() else []
    return found[-1] if found else None


def load(path: Path, *, value_model, optimizers: dict) -> dict:
    """Restore the value weights, the optimizers and the RNG states; return state.json.

    The policy weights are loaded by the caller with `from_pretrained(path / "policy")`.
    """
    load_model(value_model, str(path / "value.safetensors"))
    saved = torch.load(path / "optimizers.pt", weights_only=True)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(saved[key])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))  # our own file
    return json.loads((path / "state.json").read_text())
