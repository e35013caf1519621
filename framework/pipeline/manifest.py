"""Per-stage manifests and the run's summary.json.

A stage folder's `manifest.json` records its status, config hash, metrics, artifacts, the
fingerprints of its local inputs (data files' contents) and the checksums of its artifacts. A
stage is reused on a later run only if its manifest says done with the same hash (config,
inputs and the inputs' contents), its artifacts lie in the run directory and are unchanged
(framework.pipeline.fingerprints). The hash chains through the previous stage's hash, so a
change re-runs that stage and every stage after it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from framework.artifacts import MODEL, Artifact
from framework.common.files import read_json, write_json_atomic
from framework.common.redact import redact
from framework.pipeline.fingerprints import differences, fingerprint, local_path
from framework.pipeline.rounds import metric_table

MANIFEST = "manifest.json"
SUMMARY = "summary.json"


def config_hash(node: Mapping, inputs: Mapping[str, Any], previous: str, seed: int,
                contents: Optional[Mapping[str, str]] = None) -> str:
    """`contents`: input name -> the digest of its local files' contents."""
    payload = {"node": node, "inputs": inputs, "previous": previous, "seed": seed,
               "contents": dict(contents or {})}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _portable(location: str, run_dir: Path) -> str:
    """Locations inside the run directory are stored relative, so the run can move."""
    try:
        return str(Path(location).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return location


def write_manifest(stage_dir: Path, run_dir: Path, record: dict) -> None:
    record = dict(record)
    record["artifacts"] = {
        k: {**a.to_json(), "location": _portable(a.location, run_dir)}
        for k, a in record.get("artifacts", {}).items()
    }
    write_json_atomic(stage_dir / MANIFEST, redact(record))


def read_record(stage_dir: Path) -> dict:
    return read_json(stage_dir / MANIFEST) or {}


def input_fingerprints(inputs: Mapping[str, Artifact], external: set[str],
                       record: Mapping) -> dict[str, dict]:
    """Fingerprints of the `external` inputs (the model and data sources, not earlier stages'
    outputs) that are local files or folders; `record`'s earlier ones save rehashing."""
    earlier = record.get("input_fingerprints") or {}
    out = {}
    for name in sorted(external):
        artifact = inputs[name]
        path = local_path(artifact.location)
        if path is not None:
            out[name] = fingerprint(path, earlier.get(name))
        elif (hub := hub_fingerprint(artifact)) is not None:
            out[name] = hub
    return out


def hub_fingerprint(artifact: Artifact) -> Optional[dict]:
    """{"commit", "digest"} of a hub model or data set: the commit its revision names now (the
    hub when reachable, else the local cache); None when nothing knows it."""
    from framework.common.hub import REPO_ID, resolved_commit

    if not REPO_ID.match(artifact.location):
        return None
    repo_type = "model" if artifact.kind == MODEL else "dataset"
    commit = resolved_commit(artifact.location, repo_type, artifact.meta.get("revision"))
    return None if commit is None else {"commit": commit, "digest": commit}


def artifact_checksums(artifacts: Mapping[str, Artifact]) -> dict[str, dict]:
    return {name: fingerprint(Path(a.location)) for name, a in artifacts.items()
            if Path(a.location).exists()}


def reuse(record: dict, run_dir: Path, expected_hash: str,
          fingerprints: Mapping[str, dict]) -> tuple[Optional[dict], Optional[str]]:
    """`record`, a stage's manifest, if that finished stage can be reused: (record, None); else
    (None, why not; None when the stage never ran or did not finish)."""
    record = dict(record)
    if not record or record.get("status") != "done":
        return None, None
    if record.get("config_hash") != expected_hash:
        earlier = record.get("input_fingerprints") or {}
        changed = [f"{name} ({differences(earlier[name], fp)})" for name, fp in fingerprints.items()
                   if name in earlier and earlier[name]["digest"] != fp["digest"]]
        if changed:
            return None, f"the contents of its input {', '.join(changed)} changed since it ran"
        return None, "its config or inputs changed since it ran"
    artifacts = {}
    checksums = record.get("artifact_checksums") or {}
    for name, data in (record.get("artifacts") or {}).items():
        artifact = Artifact.from_json(data)
        if Path(artifact.location).is_absolute():
            return None, (f"its artifact {name!r} ({artifact.location}) lies outside the run "
                          f"directory")
        path = run_dir / artifact.location
        if not path.exists():
            return None, f"its artifact {name!r} ({path}) is missing"
        if name not in checksums:
            return None, f"its artifact {name!r} has no recorded checksum"
        now = fingerprint(path, checksums[name])
        if now["digest"] != checksums[name]["digest"]:
            return None, (f"its artifact {name!r} ({path}) was modified after it was written "
                          f"({differences(checksums[name], now)})")
        artifacts[name] = Artifact(artifact.kind, str(path), artifact.meta)
    record["artifacts"] = artifacts
    return record, None


def write_summary(run_dir: Path, summary: dict) -> None:
    out = {"recipe": summary["recipe"], "stages": {}}
    for name, entry in summary["stages"].items():
        out["stages"][name] = {
            **entry,
            "artifacts": {k: _portable(a.location, run_dir) for k, a in entry["artifacts"].items()},
        }
    if "round_metrics" in summary:  # an iterated recipe: its figures per round (rounds.py)
        out["rounds"] = metric_table(summary["round_metrics"], out["stages"])[0]
    write_json_atomic(run_dir / SUMMARY, redact(out))
