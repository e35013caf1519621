"""What a stage verifiably ran on and produced: content digests of local files.

A fingerprint of a file or folder lists each file's size, modification time and SHA-256, and a
digest over all of them. Checking one again rehashes only the files whose size or modification
time changed since (any write changes them), so re-checking a finished run's checkpoints costs
a few stat calls, and a byte changed in place is still found.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(location: Path, previous: Optional[dict] = None) -> dict:
    """{"files": {relative path: {size, mtime_ns, sha256}}, "digest": ...} of a file or a
    folder (hidden files and folders left out: temporary files, locks). `previous`: an earlier
    fingerprint whose hashes are reused for files whose size and mtime are unchanged."""
    location = Path(location)
    known = (previous or {}).get("files", {})
    if location.is_file():
        paths = {".": location}
    else:
        paths = {p.relative_to(location).as_posix(): p for p in sorted(location.rglob("*"))
                 if p.is_file() and not any(part.startswith(".")
                                            for part in p.relative_to(location).parts)}
    files = {}
    for name, path in paths.items():
        stat = path.stat()
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        old = known.get(name)
        if old and old.get("size") == entry["size"] and old.get("mtime_ns") == entry["mtime_ns"]:
            entry["sha256"] = old["sha256"]
        else:
            entry["sha256"] = _sha256(path)
        files[name] = entry
    overall = hashlib.sha256()
    for name, entry in files.items():
        overall.update(f"{name}\0{entry['sha256']}\n".encode())
    return {"files": files, "digest": overall.hexdigest()}


def differences(old: dict, new: dict, limit: int = 3) -> str:
    """What changed between two fingerprints, in words (for the log)."""
    if "commit" in old or "commit" in new:
        return f"hub commit {old.get('commit', '?')[:12]} -> {new.get('commit', '?')[:12]}"
    old_files, new_files = old.get("files", {}), new.get("files", {})
    changed = [n for n in new_files if n in old_files
               and new_files[n]["sha256"] != old_files[n]["sha256"]]
    added = [n for n in new_files if n not in old_files]
    removed = [n for n in old_files if n not in new_files]
    parts = []
    for label, names in (("changed", changed), ("new", added), ("missing", removed)):
        if names:
            shown = ", ".join("the file" if n == "." else n for n in names[:limit])
            parts.append(f"{label}: {shown}{' ...' if len(names) > limit else ''}")
    return "; ".join(parts) or "its contents differ"


def local_path(location: str) -> Optional[Path]:
    """The local file or folder an artifact location names (builtin data resolved), or None
    for a hub id or an embedded model."""
    if location.startswith("builtin:"):
        from framework.data.sources import builtin_path

        path = builtin_path(location[len("builtin:"):])
        return path if path.exists() else None
    path = Path(location).expanduser()
    return path if path.exists() else None
