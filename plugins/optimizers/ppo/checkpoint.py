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
    """The RNG states as tensors and plain numbers only, so that loading them needs no pickle
    beyond what torch.load(weights_only=True) allows."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(words), gauss],
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
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
    saved = _load_tensors(path / "optimizers.pt")
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(saved[key])
    _set_rng_state(_load_tensors(path / "rng.pt"))
    return json.loads((path / "state.json").read_text())


def _load_tensors(path: Path):
    """torch.load restricted to tensors and plain containers: a checkpoint file someone swapped
    cannot run code when the run resumes."""
    import pickle

    from framework.errors import FrameworkError

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise FrameworkError(
            f"{path} holds objects other than tensors and plain values, so it is not loaded "
            f"({str(exc).splitlines()[0]}). It was not written by this version of the framework; "
            f"delete {path.parent} to resume from an earlier checkpoint, or its whole "
            f"checkpoints folder to start over.") from None
