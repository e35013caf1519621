"""One process of a launched stage: `python -m framework.pipeline.worker REQUEST` (started by
framework/pipeline/launch.py through `accelerate launch`, never by hand).

Joins the process group, rebuilds the plan from the run's resolved config, and runs the one
stage with the inputs the parent resolved. Rank 0 writes the artifacts (the stages and TRL's
trainers write on the main process only); every machine's first process hands rank 0's result
back to its parent. A failing rank reports its error for the parent to re-raise.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import traceback
from pathlib import Path

from framework.common import distributed
from framework.pipeline.launch import ERROR, RESULT

log = logging.getLogger("framework")


def main(argv: list[str]) -> int:
    request_path = Path(argv[0])
    folder = request_path.parent
    request = json.loads(request_path.read_text(encoding="utf-8"))
    _single_process_group_env()
    cfg, hw = _config(request["config"])
    _join_process_group(hw)
    rank, size = distributed.rank(), distributed.world_size()
    _setup_logging(rank, size)
    writes: list[str] = []
    if distributed.recording():
        _audit_writes(request["run_dir"], writes)
    try:
        result = _run_stage(request, cfg)
        distributed.record("metrics", result["metrics"])
    except BaseException as exc:
        _report_error(folder, exc, rank, size)
        raise
    finally:
        _write_records(request, rank, writes)
    result = distributed.broadcast(result)  # rank 0's: the artifacts it wrote
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        (folder / RESULT).write_text(json.dumps(result, default=str), encoding="utf-8")
    distributed.barrier()
    _leave_process_group()
    return 0


def _config(container: dict):
    from omegaconf import OmegaConf

    from framework.hardware.config import as_hardware
    from framework.pipeline.schema import RootConfig

    cfg = OmegaConf.merge(OmegaConf.structured(RootConfig), container)
    return cfg, as_hardware(cfg.hardware)


def _single_process_group_env() -> None:
    """`accelerate launch` with one process (DeepSpeed or FSDP on one GPU) starts the script
    without torchrun's variables; give it a process group of one."""
    if "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _join_process_group(hw) -> None:
    """accelerate's PartialState starts the process group (gloo on CPU, NCCL on GPU) and puts
    this process on its GPU; later Accelerators and TRL trainers share it."""
    from accelerate import PartialState

    PartialState(cpu=hw.use_cpu)


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _run_stage(request: dict, cfg) -> dict:
    from framework.artifacts import Artifact
    from framework.common import signals
    from framework.pipeline.plan import build_plan
    from framework.pipeline.runner import stage_context

    planned = {p.name: p for p in build_plan(cfg, rows=False)}[request["stage"]]  # rows: checked
    inputs = {k: Artifact.from_json(a) for k, a in request["inputs"].items()}
    ctx = stage_context(planned, Path(request["run_dir"]), cfg)
    with signals.stop_on_signals():  # SIGINT/SIGTERM: checkpoint, then stop, as in-process
        result = planned.stage.run(inputs, ctx)
    return {"metrics": result.metrics,
            "artifacts": {k: a.to_json() for k, a in result.artifacts.items()}}


def _setup_logging(rank: int, size: int) -> None:
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s][rank {rank}/{size}][%(name)s][%(levelname)s] - %(message)s")


def _report_error(folder: Path, exc: BaseException, rank: int, size: int) -> None:
    report = {"rank": rank, "world_size": size, "type": type(exc).__name__,
              "message": str(exc), "problems": getattr(exc, "problems", None),
              "signal_name": getattr(exc, "signal_name", None),
              "traceback": traceback.format_exc()}
    try:
        (folder / ERROR.format(rank=rank)).write_text(json.dumps(report, default=str),
                                                       encoding="utf-8")
    except OSError:
        pass  # the parent is gone and its folder with it; the traceback is in the log


def _audit_writes(run_dir: str, sink: list[str]) -> None:
    """Diagnostics: note every file this process opens for writing, or renames into place,
    inside the run directory (Python-level writes: JSON, torch.save, configs, tokenizers)."""
    root = os.path.abspath(run_dir) + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def note(path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(path))
            if path.startswith(root):
                sink.append(path[len(root):])

    def hook(event: str, args: tuple) -> None:
        if event == "open" and len(args) == 3 and isinstance(args[2], int) and args[2] & write_flags:
            note(args[0])
        elif event == "os.rename":
            note(args[1])

    sys.addaudithook(hook)


def _write_records(request: dict, rank: int, writes: list[str]) -> None:
    directory = os.environ.get(distributed.RECORDS_ENV)
    if not directory:
        return
    record = {"rank": rank, "world_size": distributed.world_size(), **distributed.records(),
              "writes": sorted(set(writes))}
    path = Path(directory) / f"{request['stage']}.rank{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
