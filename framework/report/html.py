"""The report as one HTML page: plots embedded as base64 PNGs, no scripts, nothing fetched.

Every text from a run (prompts, responses, names) is escaped. Every number printed carries where
it came from, `data-run` (the run's index), `data-from` ("summary" or "samples") and `data-path` (a
JSON list of keys into summary.json, or [stage, row index, ...] into the evaluate stage's
samples.jsonl) with `data-value`, the exact value: tests/test_report.py resolves each one."""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any, Sequence

from framework.report.run_data import Evaluation, RunData

PER_POLICY = ("kl", "response_length", "distinct_1", "distinct_2", "self_bleu", "entropy")
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 margin:0 auto;max-width:1180px;padding:20px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:18px;margin:34px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px}h3{font-size:15px;margin:22px 0 6px}.meta{color:#666;font-size:13px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e4e4e4;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:180px;background:#fafafa}
.card .k{color:#666;font-size:12px}.card .v{font-size:20px;font-weight:600}
.sample td{max-width:360px;white-space:pre-wrap}.metrics{columns:2;column-gap:28px;min-width:420px}.note{color:#666;font-size:12px}
"""


def fmt(value: Any) -> str:
    """How a number prints: integers whole, large floats to one decimal, others to 4 digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"


class Page:
    """Accumulates the page's parts; `number` is the only way a figure gets printed."""

    def __init__(self, runs: Sequence[RunData]):
        self.runs = list(runs)
        self.parts: list[str] = []

    def add(self, html: str) -> None:
        self.parts.append(html)

    def number(self, run: int, path: Sequence, value: Any, tag: str = "td",
               source: str = "summary") -> str:
        cls = ' class="num"' if tag == "td" else ""
        if value is None:
            return f"<{tag}{cls}>&ndash;</{tag}>"
        return (f"<{tag}{cls} data-run=\"{run}\" data-from=\"{source}\" "
                f"data-path=\"{escape(json.dumps(list(path)))}\" "
                f"data-value=\"{escape(repr(value))}\">{escape(fmt(value))}</{tag}>")

    def html(self, title: str) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")


def scorer_names(evaluation: dict) -> list[str]:
    """The evaluate table's scorer columns: every key of a policy's row but the fixed ones."""
    row = next(iter(evaluation["policies"].values()))
    return [k for k in row if k not in PER_POLICY and k != "win_rate"]


def image(name: str, data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f"<img data-figure=\"{escape(name)}\" alt=\"{escape(alt)}\" "
            f"src=\"data:image/png;base64,{encoded}\">")


def render(runs: Sequence[RunData], figures: dict[str, bytes], samples: int) -> str:
    page = Page(runs)
    names = ", ".join(r.label for r in runs)
    page.add(f"<h1>RLHF report</h1><div class=\"meta\">{len(runs)} run{'s' * (len(runs) > 1)}: "
             + "; ".join(f"<code>{escape(str(r.path))}</code> (recipe {escape(r.recipe)})"
                         for r in runs) + "</div>")
    if len(runs) > 1:
        _comparison(page, figures)
    for i, run in enumerate(runs):
        if len(runs) > 1:
            page.add(f"<h2 id=\"run-{i}\">Run {escape(run.label)}</h2>")
        for evaluation in run.evaluations:
            _glance(page, i, evaluation)
        _rounds(page, i, run)
        _stages(page, i, run)
        for evaluation in run.evaluations:
            _evaluation(page, i, evaluation, figures)
            _pairwise(page, i, evaluation, figures)
        if len(runs) == 1:
            _curves(page, run, figures)
        for evaluation in run.evaluations:
            _samples(page, i, evaluation, samples)
    return page.html(f"RLHF report: {names}")


# ------------------------------------------------------------------------------- sections
def _glance(page: Page, i: int, ev: Evaluation) -> None:
    """What RLHF did, per policy against the baseline: the judge's score, KL, diversity, wins."""
    m, base = ev.metrics, ev.metrics["baseline"]
    table, judge = m["policies"], m["judge"]
    root = ["stages", ev.stage, "metrics"]
    for name in table:
        if name == base:
            continue
        cards = []
        pairs = [(judge, f"{judge} score"), ("distinct_2", "distinct-2"),
                 ("self_bleu", "self-BLEU")]
        for key, what in pairs:
            cards.append(
                f"<div class=\"card\"><div class=\"k\">{escape(what)}: {escape(base)} &rarr; "
                f"{escape(name)}</div><div class=\"v\">"
                + page.number(i, [*root, "policies", base, key], table[base][key], "span")
                + " &rarr; "
                + page.number(i, [*root, "policies", name, key], table[name][key], "span")
                + "</div></div>")
        cards.append("<div class=\"card\"><div class=\"k\">KL to " + escape(base)
                     + "</div><div class=\"v\">"
                     + page.number(i, [*root, "policies", name, "kl"], table[name]["kl"], "span")
                     + "</div></div>")
        won = m["win_rate"].get(name)
        if won:
            w = [*root, "win_rate", name]
            cards.append(
                f"<div class=\"card\"><div class=\"k\">win rate vs {escape(base)} (judge "
                f"{escape(judge)}, interval at confidence "
                + page.number(i, [*w, "confidence"], won["confidence"], "span")
                + ")</div><div class=\"v\">"
                + page.number(i, [*w, "win_rate"], won["win_rate"], "span") + " ["
                + page.number(i, [*w, "ci_low"], won["ci_low"], "span") + ", "
                + page.number(i, [*w, "ci_high"], won["ci_high"], "span") + "]</div></div>")
        page.add(f"<h2>At a glance: {escape(name)} against {escape(base)}</h2>"
                 f"<div class=\"cards\">{''.join(cards)}</div>"
                 "<div class=\"note\">" + page.number(i, [*root, "prompts"], m["prompts"], "span")
                 + " held-out prompts &times; "
                 + page.number(i, [*root, "samples_per_prompt"], m["samples_per_prompt"], "span")
                 + f" samples each, stage <code>{escape(ev.stage)}</code>.</div>")


def _rounds(page: Page, i: int, run: RunData) -> None:
    """An iterated recipe's summary.json `rounds` table (framework/pipeline/rounds.py): round 0
    is the policy round 1 starts from."""
    rows = run.summary.get("rounds") or []
    if not rows:
        return
    keys = list(dict.fromkeys(k for row in rows for k in row if k != "round"))
    body = "".join(
        f"<tr><td>{escape(str(row['round']))}</td>"
        + "".join(page.number(i, ["rounds", r, k], row.get(k)) for k in keys) + "</tr>"
        for r, row in enumerate(rows))
    page.add("<h2>Rounds</h2><table class=\"rounds\"><tr><th>round</th>"
             + "".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr>" + body + "</table>")


def _stages(page: Page, i: int, run: RunData) -> None:
    rows = []
    for name, stage in run.stages.items():
        path = ["stages", name]
        seconds = (page.number(i, [*path, "when_run", "seconds"], stage.seconds) if stage.reused
                   else page.number(i, [*path, "seconds"], stage.seconds))
        peak_key = [*path, "when_run", "peak_rss_mib"] if stage.reused else [*path, "peak_rss_mib"]
        scalars = [(k, v) for k, v in stage.metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        metric_html = "".join(
            f"<div>{escape(k)} " + page.number(i, [*path, "metrics", k], v, "span") + "</div>"
            for k, v in scalars)
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(stage.plugin)}</td>"
                    f"<td>{escape('reused' if stage.reused else stage.status)}</td>{seconds}"
                    + page.number(i, peak_key, stage.peak_rss_mib)
                    + f"<td><div class=\"metrics\">{metric_html}</div></td></tr>")
    page.add("<h2>Stages</h2><table class=\"stages\"><tr><th>stage</th><th>plugin</th>"
             "<th>status</th><th>seconds</th><th>peak RSS (MiB)</th><th>metrics</th></tr>"
             + "".join(rows) + "</table>")


def _evaluation(page: Page, i: int, ev: Evaluation, figures: dict[str, bytes]) -> None:
    m = ev.metrics
    table, root = m["policies"], ["stages", ev.stage, "metrics"]
    scorers = scorer_names(m)
    columns = [*scorers, *PER_POLICY]
    head = "".join(f"<th>{escape(c)}</th>" for c in ["policy", *columns, "win rate [CI]"])
    rows = []
    for name, row in table.items():
        cells = "".join(page.number(i, [*root, "policies", name, c], row.get(c)) for c in columns)
        won = m["win_rate"].get(name)
        if won:
            w = [*root, "win_rate", name]
            win = ("<td class=\"num\">" + page.number(i, [*w, "win_rate"], won["win_rate"], "span")
                   + " [" + page.number(i, [*w, "ci_low"], won["ci_low"], "span") + ", "
                   + page.number(i, [*w, "ci_high"], won["ci_high"], "span") + "]</td>")
        else:
            win = "<td class=\"num\">baseline</td>"
        rows.append(f"<tr><td>{escape(name)}</td>{cells}{win}</tr>")
    page.add(f"<h2>Evaluation ({escape(ev.stage)})</h2>"
             f"<table class=\"evaluation\"><tr>{head}</tr>{''.join(rows)}</table>"
             f"<div class=\"note\">KL to {escape(m['baseline'])} on each policy's own samples; "
             f"distinct-n and self-BLEU within a prompt's samples; win rate by "
             f"{escape(m['judge'])}, ties counted half.</div>")
    key = f"evaluation_{ev.stage}"
    if key in figures:
        page.add(image(key, figures[key], f"evaluation of stage {ev.stage}"))


def _pairwise(page: Page, i: int, ev: Evaluation, figures: dict[str, bytes]) -> None:
    pairwise = ev.metrics.get("pairwise")
    if not pairwise:
        return
    root = ["stages", ev.stage, "metrics", "pairwise"]
    page.add("<h2>Reward model against held-out comparisons</h2>")
    for name, result in pairwise.items():
        p = [*root, name]
        page.add(f"<h3>{escape(name)}</h3><table class=\"pairwise\"><tr><th>pairs</th>"
                 "<th>accuracy</th><th>mean margin</th><th>ECE</th></tr><tr>"
                 + page.number(i, [*p, "pairs"], result["pairs"])
                 + page.number(i, [*p, "accuracy"], result["accuracy"])
                 + page.number(i, [*p, "mean_margin"], result["mean_margin"])
                 + page.number(i, [*p, "ece"], result["ece"]) + "</tr></table>")
        rows = "".join(
            "<tr>" + "".join(page.number(i, [*p, "calibration", j, c], row[c])
                             for c in ("low", "high", "count", "predicted", "observed")) + "</tr>"
            for j, row in enumerate(result["calibration"]))
        page.add("<table class=\"calibration\"><tr><th>bin from</th><th>to</th><th>readings</th>"
                 "<th>predicted</th><th>observed</th></tr>" + rows + "</table>")
    key = f"calibration_{ev.stage}"
    if key in figures:
        page.add(image(key, figures[key], f"calibration of stage {ev.stage}'s scorers")
                 + "<div class=\"note\">Each pair read in both orders: predicted "
                 "sigmoid(score margin), observed the share the labelers preferred.</div>")


def _curves(page: Page, run: RunData, figures: dict[str, bytes]) -> None:
    shown = [name for name in run.stages if f"curves_{name}" in figures]
    if not shown:
        return
    page.add("<h2>Training curves</h2>")
    for name in shown:
        page.add(f"<h3>{escape(name)} ({escape(run.stages[name].plugin)})</h3>"
                 + image(f"curves_{name}", figures[f"curves_{name}"], f"training curves of {name}"))


def _samples(page: Page, i: int, ev: Evaluation, limit: int) -> None:
    """Sample 0 of the first `limit` prompts, every policy side by side, with their scores."""
    if not ev.samples or limit <= 0:
        return
    policies = list(ev.metrics["policies"])
    first: dict[tuple[str, int], int] = {}  # (policy, prompt) -> its first row in samples.jsonl
    for n, row in enumerate(ev.samples):
        first.setdefault((row["policy"], row["prompt_index"]), n)
    prompts = sorted({index for _, index in first})[:limit]
    head = "".join(f"<th>{escape(p)}</th>" for p in policies)
    rows = []
    for index in prompts:
        any_row = next(ev.samples[first[(p, index)]] for p in policies if (p, index) in first)
        cells = []
        for p in policies:
            if (p, index) not in first:
                cells.append("<td></td>")
                continue
            n = first[(p, index)]
            row = ev.samples[n]
            scores = ", ".join(
                f"{escape(k)} " + page.number(i, [ev.stage, n, "scores", k], v, "span", "samples")
                for k, v in row["scores"].items())
            cells.append(f"<td>{escape(row['response'])}<div class=\"note\">{scores}</div></td>")
        rows.append(f"<tr class=\"sample\"><td>{escape(_prompt(any_row['prompt']))}</td>"
                    + "".join(cells) + "</tr>")
    page.add(f"<h2>Samples ({escape(ev.stage)})</h2><div class=\"note\">The first sample of "
             f"{len(prompts)} held-out prompts; all are in <code>{escape(ev.stage)}/samples.jsonl"
             f"</code>.</div><table class=\"samples\"><tr><th>prompt</th>{head}</tr>"
             + "".join(rows) + "</table>")


def _comparison(page: Page, figures: dict[str, bytes]) -> None:
    """One row per run: wall time, and each evaluation's headline per policy."""
    runs = page.runs
    columns: list[tuple[str, str, str]] = []  # (evaluation stage, policy, key)
    for run in runs:
        for ev in run.evaluations:
            for policy in ev.metrics["policies"]:
                for key in (ev.metrics["judge"], "kl", "distinct_2", "win_rate"):
                    if (ev.stage, policy, key) not in columns and key in ev.metrics["policies"][policy]:
                        columns.append((ev.stage, policy, key))
    head = "".join(f"<th>{escape(p)} {escape(k)}</th>" for _, p, k in columns)
    rows = []
    for i, run in enumerate(runs):
        cells = []
        for stage, policy, key in columns:
            ev = next((e for e in run.evaluations if e.stage == stage), None)
            value = ev.metrics["policies"].get(policy, {}).get(key) if ev else None
            cells.append(page.number(i, ["stages", stage, "metrics", "policies", policy, key], value))
        rows.append(f"<tr><td><a href=\"#run-{i}\">{escape(run.label)}</a></td>"
                    + "".join(cells) + "</tr>")
    page.add("<h2>Runs compared</h2><table class=\"comparison\"><tr><th>run</th>"
             + head + "</tr>" + "".join(rows) + "</table>")
    shown = [k for k in figures if k.startswith("curves_")]
    if shown:
        page.add("<h2>Training curves, overlaid</h2>")
        for key in shown:
            page.add(f"<h3>{escape(key[len('curves_'):])}</h3>" + image(key, figures[key], key))


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


