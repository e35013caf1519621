"""`python -m framework serve-reward`: serve a reward source over HTTP (protocol.py).

    python -m framework serve-reward --reward-model RUN_DIR          # the run's reward model
    python -m framework serve-reward --reward-model path/to/checkpoint --port 8001
    python -m framework serve-reward --function framework.data.builtin.labeler:score
    python -m framework serve-reward --source NAME --params '{"k": 1}' --input PORT=PATH
    RM_TOKEN=... python -m framework serve-reward --reward-model RUN_DIR --token-env RM_TOKEN

It listens on 127.0.0.1 unless --host says otherwise; everything is checked before weights load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from framework.artifacts import Artifact
from framework.errors import ConfigError, FrameworkError

log = logging.getLogger("framework")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m framework serve-reward",
                                description="Serve a reward source over HTTP.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--reward-model", metavar="PATH",
                      help="a reward-model checkpoint, hub id, or a run directory (its "
                           "reward-model stage's output)")
    what.add_argument("--function", metavar="SPEC", help="a reward function, package.module:name")
    what.add_argument("--source", metavar="NAME", help="any installed reward source")
    p.add_argument("--params", default="{}", help="the source's params as JSON")
    p.add_argument("--input", action="append", default=[], metavar="PORT=PATH",
                   help="an input of the source (repeatable), e.g. reward_model=path")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-env", metavar="NAME",
                   help="require 'Authorization: Bearer $NAME' on scoring requests")
    p.add_argument("--max-batch-pairs", type=int, default=64,
                   help="pairs scored together from concurrent requests (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="how long a batch waits for more requests (default 2)")
    p.add_argument("--max-request-pairs", type=int, default=4096)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    return p


def build_source(args) -> tuple:
    """(source, name), checked and set up. Raises ConfigError naming the flag."""
    from framework import plugins
    from framework.plugin_spec import parse_spec

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params: not JSON ({exc}); e.g. --params '{{\"batch_size\": 8}}'") from None
    if not isinstance(params, dict):
        raise ConfigError("--params: expected a JSON object")
    inputs = {}
    for item in args.input:
        port, sep, path = item.partition("=")
        if not sep or not port or not path:
            raise ConfigError(f"--input {item!r}: expected PORT=PATH, e.g. reward_model=runs/a/reward_model/model")
        inputs[port] = path
    if args.reward_model:
        name, inputs["reward_model"] = "reward_model", args.reward_model
    elif args.function:
        name, params = "function", {**params, "function": args.function}
    else:
        name = args.source
    nested = parse_spec(plugins.reward_sources, {"name": name, "params": params}, "serve-reward")
    ports = getattr(nested.cls, "inputs", {})
    unknown = sorted(set(inputs) - set(ports))
    if unknown:
        raise ConfigError(f"--input {unknown[0]}: the {name} source has no such input; its "
                          f"inputs are: {', '.join(ports) or 'none'}")
    missing = [p for p, port in ports.items() if port.required and p not in inputs]
    if missing:
        raise ConfigError(f"the {name} source needs --input {missing[0]}=PATH")
    source = nested.instance
    source.check("serve-reward.params")
    artifacts = {port: _artifact(ports[port].kinds[0], path) for port, path in inputs.items()}
    if source.needs_calibration:
        raise ConfigError(f"the {name} source normalizes its scores, which needs calibration on "
                          f"a policy's samples; serve raw scores (normalize: false) and "
                          f"normalize on the client side (the ensemble source does).")
    source.setup(artifacts, device=args.device)
    return source, name


def _artifact(kind: str, path: str) -> Artifact:
    """A path as an artifact; a run directory stands for its last stage output of `kind`."""
    folder = Path(path).expanduser()
    if (folder / "summary.json").is_file():
        from framework.pipeline.manifest import read_record

        summary = json.loads((folder / "summary.json").read_text())
        for stage in reversed(list(summary.get("stages", {}))):
            for data in (read_record(folder / stage).get("artifacts") or {}).values():
                artifact = Artifact.from_json(data)
                if artifact.kind == kind:
                    location = Path(artifact.location)
                    return Artifact(kind, str(location if location.is_absolute() else folder / location),
                                    artifact.meta)
        raise ConfigError(f"{folder}: this run directory has no finished stage output of kind "
                          f"{kind!r}; name the checkpoint folder itself.")
    if folder.exists():
        return Artifact(kind, str(folder))
    parts = path.split("/")
    if len(parts) == 2 and all(parts) and not path.startswith((".", "~")):
        return Artifact(kind, path)  # a hub id, loaded as every other model is
    raise ConfigError(f"{path}: no such file or directory; name a checkpoint folder, a run "
                      f"directory or a hub id (org/name).")


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    problems = [f"--{k.replace('_', '-')}: must be >= 1" for k in
                ("max_batch_pairs", "max_request_pairs") if getattr(args, k) < 1]
    if not 0 < args.port < 65536:
        problems.append(f"--port: {args.port} is not a TCP port")
    if args.max_wait_ms < 0:
        problems.append("--max-wait-ms: must be >= 0")
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            problems.append(f"--token-env {args.token_env}: that environment variable is not set "
                            f"or empty; export it first")
    if problems:
        print("python -m framework serve-reward: " + "; ".join(problems), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        source, name = build_source(args)
    except FrameworkError as exc:
        print(f"python -m framework serve-reward: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from framework.serving.app import create_app

    app = create_app(source, name, token=token, max_batch_pairs=args.max_batch_pairs,
                     max_wait_s=args.max_wait_ms / 1000, max_request_pairs=args.max_request_pairs)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines%s", args.host,
                    "" if token else " with no token (--token-env)")
    log.info("serving the %s reward source on http://%s:%d (POST /score, GET /health)", name,
             args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
