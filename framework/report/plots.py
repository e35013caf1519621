"""The report's figures, drawn with matplotlib's object API (no pyplot: no global state, no
display needed). Each function returns a Figure; `png` renders one."""

from __future__ import annotations

import io
import math
from typing import Sequence

from matplotlib.figure import Figure

# one colour per run or policy, in order (matplotlib's tab10, readable on screen and in print)
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.titleweight": "bold",
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "axes.axisbelow": True,
         "grid.color": "#e6e6e6", "grid.linewidth": 0.8, "axes.edgecolor": "#888888",
         "legend.frameon": False, "legend.fontsize": 8}
COLUMNS = 4


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def _figure(panels: int, height: float = 2.3) -> tuple[Figure, list]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        columns = min(COLUMNS, max(1, panels))
        rows = math.ceil(panels / columns)
        figure = Figure(figsize=(3.2 * columns, height * rows), layout="constrained")
        axes = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
    return figure, axes


def curves(title: str, runs: Sequence[tuple[str, dict]]) -> Figure:
    """One panel per logged key (curves.series), each run a line in its colour."""
    import matplotlib

    keys: list[str] = []
    for _, series in runs:
        keys += [k for k in series if k not in keys]
    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(keys))
        for ax, key in zip(axes, keys):
            for i, (label, series) in enumerate(runs):
                if key in series:
                    steps, values = series[key]
                    ax.plot(steps, values, color=COLOURS[i % len(COLOURS)], label=label,
                            linewidth=1.6, marker="o" if len(steps) <= 12 else None,
                            markersize=3)
            ax.set_title(key)
            ax.set_xlabel("step")
        if len(runs) > 1 and axes:
            axes[0].legend(loc="best")
        figure.suptitle(title, fontweight="bold")
    return figure


def evaluation(table: dict, scorers: Sequence[str], win_rates: dict, baseline: str) -> Figure:
    """The evaluate stage's table as bars per policy: each scorer's mean, the win rate against
    the baseline (with its interval), the KL to it, length and diversity."""
    import matplotlib

    policies = list(table)
    keys = [*scorers, "win_rate", "kl", "response_length", "distinct_2", "self_bleu", "entropy"]
    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(keys), height=2.2)
        colours = [COLOURS[i % len(COLOURS)] for i in range(len(policies))]
        for ax, key in zip(axes, keys):
            if key == "win_rate":
                names = [p for p in policies if p in win_rates]
                rates = [win_rates[p]["win_rate"] for p in names]
                low = [r - win_rates[p]["ci_low"] for p, r in zip(names, rates)]
                high = [win_rates[p]["ci_high"] - r for p, r in zip(names, rates)]
                ax.bar(names, rates, color=[colours[policies.index(p)] for p in names],
                       yerr=[low, high], capsize=4)
                ax.axhline(0.5, color="#444444", linewidth=1, linestyle="--")
                ax.set_ylim(0, 1)
                ax.set_title(f"win rate vs {baseline}")
            else:  # a metric a policy lacks (self-BLEU of one sample per prompt) is no bar
                values = [table[p].get(key) for p in policies]
                ax.bar(policies, [0.0 if v is None else v for v in values], color=colours)
                for i, v in enumerate(values):
                    if v is None:
                        ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=8)
                ax.set_title(key)
        figure.suptitle("evaluation on held-out prompts", fontweight="bold")
    return figure


def calibration(pairwise: dict) -> Figure:
    """Reliability diagram per scorer: predicted P(preferred) from the score margin against the
    share observed preferred, one point per bin (area by count), the diagonal for reference."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(pairwise), height=3.0)
        for ax, (name, result) in zip(axes, pairwise.items()):
            rows = result["calibration"]
            ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1)
            ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows],
                    color=COLOURS[0], linewidth=1.2)
            ax.scatter([r["predicted"] for r in rows], [r["observed"] for r in rows],
                       s=[12 + 4 * r["count"] for r in rows], color=COLOURS[0], zorder=3)
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.set_xlabel("predicted P(preferred)")
            ax.set_ylabel("observed")
            ax.set_title(f"{name}: accuracy {result['accuracy']:.3f}, ECE {result['ece']:.3f}")
    return figure
