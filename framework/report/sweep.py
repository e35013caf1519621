"""A Hydra callback: when a `-m` sweep ends, one report compares its runs
(SWEEP_DIR/report/report.html). conf/config.yaml registers it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("framework")


class SweepReport(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from framework.report import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        if not config.get("report", True) or not sweep_dir.is_dir():
            return
        try:
            page = write_report([sweep_dir], sweep_dir / "report")
        except Exception as exc:  # noqa: BLE001 - the runs are done; the report only reads them
            log.warning("the sweep's report was not written (%s: %s). To retry:\n"
                        "  python -m framework report %s", type(exc).__name__, exc, sweep_dir)
            return
        log.info("sweep report: %s", page)
