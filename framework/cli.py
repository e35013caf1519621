"""`python -m framework +recipe=NAME [overrides]` runs a recipe; `python -m framework list`
lists installed plugins, recipes and config-group options with where each comes from;
`python -m framework memory +recipe=NAME [overrides] [flags]` estimates each stage's peak device
memory without loading weights."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("framework")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "list":
        from framework.listing import print_listing

        sys.exit(print_listing())
    if len(sys.argv) > 1 and sys.argv[1] == "memory":
        from framework.memory.command import main as memory_main

        sys.exit(memory_main(sys.argv[2:]))
    from framework.config_sources import primary_config_path, register_configs

    register_configs()
    import hydra

    hydra.main(version_base="1.3", config_path=primary_config_path(), config_name="config")(_run)()


def _run(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from framework.errors import FrameworkError
    from framework.pipeline.runner import run_pipeline

    hydra_cfg = HydraConfig.get()
    recipe = hydra_cfg.runtime.choices.get("recipe") or "custom"
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        summary = run_pipeline(cfg, run_dir, recipe)
    except FrameworkError as exc:
        log.error("%s", exc)
        sys.exit(2)
    log.info("run directory: %s", run_dir)
    for name, entry in summary["stages"].items():
        log.info("  %-14s %-8s %7.1f s  %s", name, entry["status"], entry["seconds"], entry["metrics"])
