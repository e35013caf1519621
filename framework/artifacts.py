"""Artifacts: what stages consume and produce, passed only through declared inputs/outputs.

Every artifact has a kind. The framework's own kinds are below; a plugin package adds its own
(samples to label, labels, an evaluation report, ...) through the entry-point group
`framework.artifact_kinds`, each entry naming an `ArtifactKind`::

    [project.entry-points."framework.artifact_kinds"]
    word_counts = "example_rlhf_plugin.kinds:WORD_COUNTS"

Planning then checks wiring against every installed kind, as for the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from framework.errors import PluginError
from framework.registry import Registry


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of artifact. `data`: rows a `data.NAME` source can provide (it has row formats,
    see framework.data.formats); other kinds are only produced by stages."""

    name: str
    doc: str = ""
    data: bool = False


def _check_kind(name: str, obj: Any, source: str) -> None:
    if not isinstance(obj, ArtifactKind):
        raise PluginError(f"The artifact kind {name!r} from {source} is {obj!r}, not a "
                          f"framework.artifacts.ArtifactKind.")
    if obj.name != name:
        raise PluginError(f"The artifact kind registered as {name!r} by {source} is named "
                          f"{obj.name!r}; the entry-point name and ArtifactKind.name must agree.")


kinds: Registry[ArtifactKind] = Registry("artifact kind", "framework.artifact_kinds",
                                         check=_check_kind)


def register_kind(kind: ArtifactKind, source: str = "registered") -> ArtifactKind:
    """Add a kind (plugins installed as packages use the entry-point group instead)."""
    kinds.register(kind.name, kind, source=source)
    return kind


def _builtin(kind: ArtifactKind) -> str:
    return register_kind(kind, source="rlhf-framework").name


# The framework's own kinds. A stage input declares which kinds it accepts.
MODEL = _builtin(ArtifactKind(
    "model", "a causal language model checkpoint (full weights or an adapter on a base)"))
REWARD_MODEL = _builtin(ArtifactKind(
    "reward_model", "a sequence-classification checkpoint scoring (prompt, response)"))
DEMONSTRATIONS = _builtin(ArtifactKind(
    "demonstrations", "prompt -> demonstrated response (SFT data)", data=True))
COMPARISONS = _builtin(ArtifactKind(
    "comparisons", "pairs (prompt, chosen, rejected) or rankings of K responses", data=True))
PROMPTS = _builtin(ArtifactKind("prompts", "prompts for rollouts", data=True))
FEEDBACK = _builtin(ArtifactKind(
    "feedback", "single responses labelled desirable or not, or scored 1-7 (KTO data)",
    data=True))
SAMPLES = _builtin(ArtifactKind(
    "samples", "tasks to label: K responses a policy sampled per prompt, with provenance"))
TEXT = _builtin(ArtifactKind(
    "text", "plain text for language modelling (the PPO-ptx pretraining set)", data=True))


def kind_problems(names, what: str) -> list[str]:
    """`what` declares kinds `names`; one message per name that no installed package defines."""
    known = kinds.names()
    return [f"{what}: unknown artifact kind {name!r}. Known kinds: {', '.join(known)}. A plugin "
            f"package adds one through the entry-point group {kinds.group!r}."
            for name in names if name not in known]


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
    """A declared input: the artifact kinds it accepts and whether it must be wired. Kinds are
    checked against the installed ones when the declaring plugin loads (framework.plugin)."""

    kinds: tuple[str, ...]
    required: bool = True
    doc: str = ""

    def __post_init__(self):
        if isinstance(self.kinds, str):
            object.__setattr__(self, "kinds", (self.kinds,))
