"""Per-stage manifests and the run's summary.json.

A stage folder's `manifest.json` records its status, config hash, metrics and artifacts. A
stage is reused on a later run only if its manifest says done with the same hash and its
artifacts still exist. The hash chains through the previous stage's hash, so a change re-runs
that stage and every stage after it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from framework.artifacts import Artifact
from framework.common.files import read_json, write_json_atomic
from framework.common.redact import redact

MANIFEST = "manifest.json"
SUMMARY = "summary.json"


def config_hash(node: Mapping, inputs: Mapping[str, Any], previous: str, seed: int) -> str:
    payload = {"node": node, "inputs": inputs, "previous": previous, "seed": seed}
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


def recorded_hash(stage_dir: Path) -> Optional[str]:
    """The config hash of the stage's last attempt (done, failed, interrupted), if any."""
    record = read_json(stage_dir / MANIFEST)
    return record.get("config_hash") if record else None


def read_reusable(stage_dir: Path, run_dir: Path, expected_hash: str) -> Optional[dict]:
    """The manifest of a finished stage with this hash whose artifacts exist, else None."""
    record = read_json(stage_dir / MANIFEST)
    if not record or record.get("status") != "done" or record.get("config_hash") != expected_hash:
        return None
    artifacts = {}
    for name, data in (record.get("artifacts") or {}).items():
        artifact = Artifact.from_json(data)
        path = run_dir / artifact.location
        if not Path(artifact.location).is_absolute() and path.exists():
            artifact = Artifact(artifact.kind, str(path), artifact.meta)
        elif not Path(artifact.location).exists():
            return None
        artifacts[name] = artifact
    record["artifacts"] = artifacts
    return record


def write_summary(run_dir: Path, summary: dict) -> None:
    out = {"recipe": summary["recipe"], "stages": {}}
    for name, entry in summary["stages"].items():
        out["stages"][name] = {
            **entry,
            "artifacts": {k: _portable(a.location, run_dir) for k, a in entry["artifacts"].items()},
        }
    write_json_atomic(run_dir / SUMMARY, redact(out))
