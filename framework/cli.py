"""`python -m framework +recipe=NAME [overrides]` runs a recipe; `python -m framework list`
lists installed plugins, recipes and config-group options with where each comes from;
`python -m framework memory +recipe=NAME [overrides] [flags]` estimates each stage's peak device
memory without loading weights."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("framework")


COMMANDS = {"list": "installed plugins, artifact kinds, data formats, recipes and config options",
            "memory": "each stage's peak device memory, without loading weights "
                      "(python -m framework memory --help)",
            "report": "an HTML report with plots of run directories (python -m framework "
                      "report RUN_DIR [RUN_DIR ...])",
            "serve-reward": "serve a reward source over HTTP (python -m framework serve-reward "
                            "--help)",
            "label": "the labeling app of a run's label stage, its accounts and exports "
                     "(python -m framework label RUN_DIR --help)"}
USAGE = f"""usage: python -m framework +recipe=NAME [KEY=VALUE ...]   run a recipe (Hydra overrides)
       python -m framework COMMAND [...]

commands:
{chr(10).join(f"  {name:<12} {text}" for name, text in COMMANDS.items())}

Examples:
  python -m framework +recipe=instructgpt
  python -m framework +recipe=instructgpt stages.sft.params.args.num_train_epochs=3
  python -m framework +recipe=instructgpt --cfg job      # print the composed config
  python -m framework list
  python -m framework report outputs/2026-12-02/10-00-00
Hydra's own options follow (--cfg, --multirun/-m, --config-dir, ...).
"""


def main() -> None:
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    if first in ("-h", "--help"):
        print(USAGE)
    elif first and not first.startswith("-") and "=" not in first and first not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(first, list(COMMANDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"python -m framework: {first!r} is not a command.{hint} Commands: "
              f"{', '.join(COMMANDS)}; or run a recipe with +recipe=NAME "
              f"(python -m framework --help).", file=sys.stderr)
        sys.exit(2)
    if first == "list":
        from framework.listing import print_listing

        sys.exit(print_listing())
    if first == "memory":
        from framework.memory.command import main as memory_main

        sys.exit(memory_main(sys.argv[2:]))
    if first == "serve-reward":
        from framework.serving.command import main as serve_main

        sys.exit(serve_main(sys.argv[2:]))
    if first == "label":
        from framework.labeling.command import main as label_main

        sys.exit(label_main(sys.argv[2:]))
    if first == "report":
        from framework.report.command import main as report_main

        sys.exit(report_main(sys.argv[2:]))
    import yaml

    from framework.config_sources import primary_config_path, register_configs

    problem = _run_dir_problem(sys.argv[1:])
    if problem:  # Hydra creates the folder first, and would answer with a traceback
        print(f"python -m framework: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        register_configs()  # parses the YAML of installed recipes and config groups
        for folder in _config_dirs(sys.argv[1:]):  # and of the user's, which Hydra would
            for path in sorted(Path(folder).expanduser().rglob("*.yaml")):  # report by traceback
                with open(path, encoding="utf-8") as f:  # the error's mark names the file
                    yaml.safe_load(f)
        import hydra

        hydra.main(version_base="1.3", config_path=primary_config_path(),
                   config_name="config")(_run)()
    except yaml.YAMLError as exc:  # a recipe or config-group file that is not valid YAML
        print(f"python -m framework: {yaml_error_message(exc)}", file=sys.stderr)
        sys.exit(2)


def _run_dir_problem(args: list[str]) -> str | None:
    """An explicit hydra.run.dir that is a file, or cannot be created or written to."""
    import os

    given = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    if not given or "${" in given[-1]:
        return None
    folder = Path(given[-1]).expanduser()
    if folder.exists() and not folder.is_dir():
        return (f"hydra.run.dir: {folder} is a file, not a directory; choose another path or "
                f"move the file.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"hydra.run.dir: {os_error_message(exc)}"
    if not os.access(folder, os.W_OK):
        return (f"hydra.run.dir: {folder} is not writable (a read-only disk or no permission); "
                f"choose a writable directory.")
    return None


def _config_dirs(args: list[str]) -> list[str]:
    """The folders given with Hydra's --config-dir / -cd."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--config-dir="):
            found.append(arg.split("=", 1)[1])
    return found


def yaml_error_message(exc) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return (f"{where}not valid YAML ({context + ': ' if context else ''}{problem}). Fix that "
            f"line of the file; recipes and config-group options are YAML.")


def _run(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from framework.errors import FrameworkError, TrainingInterrupted, WaitingForLabels
    from framework.common.redact import install_log_redaction
    from framework.pipeline.runner import run_pipeline
    from framework.common.signals import signal_number

    hydra_cfg = HydraConfig.get()
    recipe = hydra_cfg.runtime.choices.get("recipe") or "custom"
    run_dir = Path(hydra_cfg.runtime.output_dir)
    install_log_redaction()  # secrets never reach the console or the run's log file
    try:
        summary = run_pipeline(cfg, run_dir, recipe,
                               on_start=lambda: write_hydra_copies(cfg, hydra_cfg, run_dir))
    except TrainingInterrupted as exc:
        log.error("%s\nInterrupted cleanly. To resume, run the same command again:\n  %s",
                  exc, resume_command(run_dir))
        sys.exit(128 + signal_number(exc.signal_name))
    except KeyboardInterrupt as exc:
        log.error("%s. Checkpoints saved before it are kept; to resume from the last one, run "
                  "the same command again:\n  %s", exc or "interrupted", resume_command(run_dir))
        sys.exit(130)
    except WaitingForLabels as exc:  # a clean stop: people label, then the run continues
        command = resume_command(run_dir)
        log.warning("%s\nOnce they have labeled, continue with the same command:\n  %s\nor go on "
                    "now with the tasks labeled so far:\n  %s\n  %s", exc, command,
                    exc.accept_command, command)
        sys.exit(exc.EXIT_STATUS)
    except FrameworkError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except OSError as exc:  # the machine, not the recipe: a full or read-only disk, a bad path
        log_file = traceback_to_log_file(exc)
        log.error("%s%s", os_error_message(exc),
                  f" (the traceback is in {log_file})" if log_file else "")
        sys.exit(2)
    except Exception as exc:  # a bug in the framework or a plugin: one line, the rest on file
        log_file = traceback_to_log_file(exc)
        log.error("unexpected %s: %s\nThis is a bug in the framework or a plugin, not in your "
                  "input%s. Finished stages and checkpoints are kept; once it is fixed, the same "
                  "command resumes:\n  %s", type(exc).__name__, str(exc).splitlines()[0]
                  if str(exc) else "(no message)",
                  f"; the traceback is in {log_file}" if log_file else "",
                  resume_command(run_dir))
        sys.exit(1)
    log.info("run directory: %s", run_dir)
    for name, entry in summary["stages"].items():
        log.info("  %-14s %-8s %7.1f s  %s", name, entry["status"], entry["seconds"], entry["metrics"])
    if cfg.get("report", True) and _leads(cfg):
        write_run_report(run_dir)


def _leads(cfg) -> bool:
    """Machine 0 of a run over several machines keeps the books, the report among them."""
    from framework.hardware import as_hardware

    hardware = as_hardware(cfg.get("hardware"))
    return hardware is None or hardware.machine_rank == 0


def write_run_report(run_dir: Path) -> None:
    """The run's report (framework/report/), named last on the console. The run is done: a
    report that fails is said, with the command that retries it, and does not fail the run."""
    from framework.report import write_report

    try:
        page = write_report([run_dir])
    except Exception as exc:  # noqa: BLE001 - the stages' results are safe on disk either way
        log.warning("the report was not written (%s: %s); the run finished. To retry:\n"
                    "  python -m framework report %s", type(exc).__name__, exc, run_dir)
        return
    log.info("report: %s", page)


def write_hydra_copies(cfg, hydra_cfg, run_dir: Path) -> None:
    """What Hydra writes into `.hydra/` (the config, Hydra's own, the overrides), secrets
    redacted; called by the runner once planning passed and it holds the run directory."""
    from omegaconf import OmegaConf

    from framework.common.redact import redact_yaml_file
    from framework.common.files import write_text_atomic

    folder = run_dir / ".hydra"
    files = {"config.yaml": OmegaConf.to_yaml(cfg),
             "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
             "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(list(hydra_cfg.overrides.task)))}
    for name, text in files.items():
        write_text_atomic(folder / name, text)
        redact_yaml_file(folder / name)


def traceback_to_log_file(exc: BaseException) -> str | None:
    """Write `exc`'s traceback to the run's log file only (the console keeps one line);
    returns that file, or None when no log file is open."""
    import traceback

    text = "".join(traceback.format_exception(exc)).rstrip()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(logging.LogRecord("framework", logging.ERROR, __file__, 0, text,
                                             None, None))
            return handler.baseFilename
    return None


def os_error_message(exc: OSError) -> str:
    """One line: what failed, on which file, and what to do."""
    import errno

    fixes = {errno.ENOSPC: "free space on that disk or set hydra.run.dir to another one; "
                           "finished stages and checkpoints are kept, so the same command resumes",
             errno.EROFS: "the disk is read-only: set hydra.run.dir to a writable directory",
             errno.EACCES: "no permission: fix the file's permissions or choose another path",
             errno.EPERM: "no permission: fix the file's permissions or choose another path",
             errno.ELOOP: "a symbolic link points back at itself: fix or remove the link",
             errno.ENOTDIR: "a path component is a file, not a directory: choose another path",
             errno.EEXIST: "something is in the way at that path: move it or choose another"}
    name = f" {exc.filename}" if exc.filename else ""
    fix = fixes.get(exc.errno, "check that path")
    what = exc.strerror or (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return f"{what}:{name}. Fix: {fix}."


def resume_command(run_dir: Path) -> str:
    """This command, pinned to this run directory (Hydra would otherwise pick a new one)."""
    import shlex

    from framework.common.redact import redact_text

    args = sys.argv[1:]
    multirun = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if not any(a.startswith(key + "=") for a in args):
        args = [*args, f"{key}={run_dir.parent if multirun else run_dir}"]
    return redact_text("python -m framework " + shlex.join(args))
