"""Artifacts: what stages consume and produce, passed only through declared inputs/outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# Kinds of artifacts. A stage input declares which kinds it accepts.
MODEL = "model"  # a causal language model checkpoint (full weights or an adapter on a base)
REWARD_MODEL = "reward_model"  # a sequence-classification checkpoint scoring (prompt, response)
DEMONSTRATIONS = "demonstrations"  # prompt -> demonstrated response (SFT data)
COMPARISONS = "comparisons"  # pairs (prompt, chosen, rejected) or rankings of K responses
PROMPTS = "prompts"  # prompts for rollouts
TEXT = "text"  # plain text for language modelling (the PPO-ptx pretraining set)

KINDS = (MODEL, REWARD_MODEL, DEMONSTRATIONS, COMPARISONS, PROMPTS, TEXT)


@dataclass(frozen=True)
class Artifact:
    """A reference to a model checkpoint or a data set.

    `location` is a local path, a hub id or an `embedded:` name; `meta` holds what is needed to
    load it (data-source settings, the base of an adapter, ...). Both are JSON-serializable so
    they go into manifests and config hashes.
    """

    kind: str
    location: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": self.kind, "location": self.location, "meta": dict(self.meta)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Artifact":
        return cls(data["kind"], data["location"], dict(data.get("meta") or {}))


@dataclass(frozen=True)
class Port:
    """A declared stage input: the artifact kinds it accepts and whether it must be wired."""

    kinds: tuple[str, ...]
    required: bool = True
    doc: str = ""

    def __post_init__(self):
        if isinstance(self.kinds, str):
            object.__setattr__(self, "kinds", (self.kinds,))
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"Unknown artifact kind(s) {unknown}; known: {KINDS}")
