"""`python -m framework label RUN_DIR`: the labeling app of a run's human label stage.

    python -m framework label RUN_DIR                       # serve the app on 127.0.0.1:8765
    python -m framework label RUN_DIR --add-labeler alice   # an account; prints its secret link
    python -m framework label RUN_DIR --new-link alice      # a new link; the old one stops working
    python -m framework label RUN_DIR --admin-token         # a (new) token for the admin page
    python -m framework label RUN_DIR --release alice       # alice's open tasks go to others
    python -m framework label RUN_DIR --accept-partial      # the run goes on with what is labeled
    python -m framework label RUN_DIR --status              # progress and agreement, as JSON
    python -m framework label RUN_DIR --export DIR          # comparisons, demonstrations, ...

The store is STAGE/labels.sqlite, which the stage writes when it publishes its tasks; with
several human label stages in the run, --stage names one."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from framework.errors import ConfigError, FrameworkError
from framework.labeling.store import ADMIN, LABELER, STORE_FILE

log = logging.getLogger("framework")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m framework label",
                                description="Serve and manage a run's labeling app.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (hydra.run.dir)")
    p.add_argument("--stage", help="the label stage, when the run has several")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--add-labeler", action="append", default=[], metavar="NAME",
                   help="create a labeler account and print its secret link (repeatable)")
    p.add_argument("--new-link", action="append", default=[], metavar="NAME",
                   help="replace a labeler's token; prints the new link")
    p.add_argument("--admin-token", action="store_true",
                   help="print a new token for the admin page (the previous one stops working)")
    p.add_argument("--release", action="append", default=[], metavar="NAME",
                   help="take back a labeler's open (unsubmitted) tasks so others get them")
    p.add_argument("--accept-partial", action="store_true",
                   help="let the run's next attempt go on with the tasks labeled so far")
    p.add_argument("--status", action="store_true", help="print progress and agreement as JSON")
    p.add_argument("--export", metavar="DIR", help="write the labels' exports as JSONL into DIR")
    return p


def find_store(run_dir: Path, stage: str | None) -> Path:
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory; give the run's hydra.run.dir.")
    stores = sorted(p.parent.name for p in run_dir.glob(f"*/{STORE_FILE}"))
    if stage:
        if stage not in stores:
            raise ConfigError(f"--stage {stage}: {run_dir / stage / STORE_FILE} does not exist; "
                              f"label stages with a store here: {', '.join(stores) or 'none'}.")
        return run_dir / stage / STORE_FILE
    if not stores:
        raise ConfigError(f"{run_dir}: no label stage has published tasks here (no "
                          f"STAGE/{STORE_FILE}). Run the recipe first: a label stage with the "
                          f"human labeler publishes its tasks and stops, waiting for labels.")
    if len(stores) > 1:
        raise ConfigError(f"{run_dir}: several label stages have stores ({', '.join(stores)}); "
                          f"choose one with --stage.")
    return run_dir / stores[0] / STORE_FILE


def main(argv: Sequence[str]) -> int:
    from framework.labeling.links import login_link
    from framework.labeling.store import open_store

    args = build_parser().parse_args(list(argv))
    if not 0 < args.port < 65536:
        print(f"python -m framework label: --port: {args.port} is not a TCP port", file=sys.stderr)
        return 2
    try:
        path = find_store(Path(args.run_dir).expanduser(), args.stage)
        store = open_store(path)
        for name in args.add_labeler:
            print(f"{name}\t{login_link(args.host, args.port, store.add_account(name, LABELER))}")
        for name in args.new_link:
            if name not in {a.name for a in store.accounts() if a.role == LABELER}:
                raise ConfigError(f"--new-link {name}: no labeler of that name; create it with "
                                  f"--add-labeler {name}.")
            print(f"{name}\t{login_link(args.host, args.port, store.add_account(name, LABELER, replace=True))}")
        if args.admin_token:
            token = store.add_account("admin", ADMIN, replace=True)
            print(f"admin\t{login_link(args.host, args.port, token)}")
        for name in args.release:
            released = store.release(name)
            print(f"{name}: released {len(released)} open task(s)"
                  f"{': ' + ', '.join(released) if released else ''}")
        if args.accept_partial:
            store.update_settings({"accept_partial": True})
            progress = store.progress()
            print(f"{path.parent.name}: the run's next attempt goes on with the "
                  f"{progress.labeled_tasks} of {progress.tasks} tasks labeled by then.")
        if args.status:
            from framework.labeling.app.server import admin_figures

            figures = admin_figures(store)
            figures["agreement_pairs"] = {" & ".join(k): v
                                          for k, v in figures["agreement_pairs"].items()}
            print(json.dumps(figures, indent=2))
        if args.export:
            from framework.labeling.export import write_exports

            counts = write_exports(Path(args.export).expanduser(), store.tasks(), store.labels())
            print(json.dumps({"folder": str(args.export), "rows": counts}))
    except FrameworkError as exc:
        print(f"python -m framework label: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m framework label: {exc}", file=sys.stderr)
        return 2
    if (args.add_labeler or args.new_link or args.admin_token or args.release
            or args.accept_partial or args.status or args.export):
        return 0
    return serve(store, path, args.host, args.port)


def serve(store, path: Path, host: str, port: int) -> int:
    import uvicorn

    from framework.labeling.app import create_app

    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines; the app speaks plain HTTP, "
                    "so put it behind TLS", host)
    progress = store.progress()
    log.info("labeling app for %s on http://%s:%d/ (%d of %d tasks have all their labels); "
             "labelers sign in with their links (--add-labeler NAME)", path, host, port,
             progress.complete_tasks, progress.tasks)
    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
    return 0
