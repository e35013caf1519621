"""`python -m framework report RUN_DIR [RUN_DIR ...]`: what a run did, as one self-contained HTML
file plus PNGs. run_data.py reads a run directory, curves.py picks the logged series, plots.py
draws them (matplotlib), html.py writes the page, command.py is the command line."""

from framework.report.command import write_report

__all__ = ["write_report"]
