"""The report: a real (tiny) instructgpt run writes it at its end; every number it prints is
found in summary.json or samples.jsonl; its curves are the logged series; texts are escaped;
several runs and a sweep directory compare in one page; bad paths get clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pipeline_runs import TINY_INSTRUCTGPT

from framework.common import training_log
from framework.errors import FrameworkError
from framework.report import curves, plots, write_report
from framework.report.command import main as report_main
from framework.report.html import fmt
from framework.report.run_data import find_runs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, str]:
    """The instructgpt recipe end to end on the tiny model, through the command line."""
    root = tmp_path_factory.mktemp("report")
    run_dir = root / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "framework", "+recipe=instructgpt", f"hydra.run.dir={run_dir}",
         f"model.name_or_path={tiny_model_dir}", *TINY_INSTRUCTGPT, "seed=7"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"},
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return run_dir, proc.stdout + proc.stderr


class Numbers(HTMLParser):
    """Every element carrying data-value, with the text it shows; every img; every td.num."""

    def __init__(self):
        super().__init__()
        self.numbers, self.images, self.cells, self.tables = [], [], [], []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "table":
            self.tables.append(attrs.get("class"))
        if "data-value" in attrs or (tag == "td" and attrs.get("class") == "num"):
            self._open.append({"tag": tag, **attrs, "text": "", "own": ""})

    def handle_data(self, data):
        for item in self._open:
            item["text"] += data
        if self._open:  # text not inside a nested number
            self._open[-1]["own"] += data

    def handle_endtag(self, tag):
        if self._open and self._open[-1]["tag"] == tag:
            item = self._open.pop()
            (self.numbers if "data-value" in item else self.cells).append(item)


def parse(page: Path) -> Numbers:
    parser = Numbers()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def resolve(run_dirs: list[Path], item: dict):
    run_dir = run_dirs[int(item["data-run"])]
    path = json.loads(item["data-path"])
    if item["data-from"] == "summary":
        node = json.loads((run_dir / "summary.json").read_text())
    else:  # samples: [stage, row, ...] into the stage's samples.jsonl
        stage, row, *path = path
        lines = (run_dir / stage / "samples.jsonl").read_text().splitlines()
        node = json.loads(lines[row])
    for key in path:
        node = node[key]
    return node


def test_the_run_writes_its_report_and_names_it(tiny_run):
    run_dir, output = tiny_run
    page = run_dir / "report" / "report.html"
    assert f"report: {page}" in output
    for name in ("curves_sft", "curves_reward_model", "curves_rl", "evaluation_evaluate",
                 "calibration_evaluate"):
        assert (run_dir / "report" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_number_in_the_report_comes_from_the_run(tiny_run):
    run_dir, _ = tiny_run
    parsed = parse(run_dir / "report" / "report.html")
    assert len(parsed.numbers) > 80
    for item in parsed.numbers:
        value = resolve([run_dir], item)
        assert repr(value) == item["data-value"], item
        assert item["text"] == fmt(value), item
    # no number cell shows a digit of its own: its numbers are the sourced ones inside it
    assert not [c for c in parsed.cells if any(ch.isdigit() for ch in c["own"])]
    assert any(c["own"] == " [, ]" for c in parsed.cells)  # the win rate [interval] cell
    paths = {item["data-path"] for item in parsed.numbers}
    # what the issue asks to see: the labeler's gain, the KL, diversity, the win rate and its
    # interval, the reward model's accuracy and calibration, each stage's time and memory
    for path in (["stages", "evaluate", "metrics", "policies", "rl", "labeler"],
                 ["stages", "evaluate", "metrics", "policies", "sft", "labeler"],
                 ["stages", "evaluate", "metrics", "policies", "rl", "kl"],
                 ["stages", "evaluate", "metrics", "policies", "rl", "distinct_2"],
                 ["stages", "evaluate", "metrics", "policies", "rl", "self_bleu"],
                 ["stages", "evaluate", "metrics", "win_rate", "rl", "ci_low"],
                 ["stages", "evaluate", "metrics", "pairwise", "reward", "accuracy"],
                 ["stages", "evaluate", "metrics", "pairwise", "reward", "calibration", 0,
                  "observed"],
                 ["stages", "sft", "seconds"], ["stages", "rl", "peak_rss_mib"],
                 ["stages", "reward_model", "metrics", "eval_accuracy"]):
        assert json.dumps(path) in paths, path
    assert {t for t in parsed.tables} >= {"stages", "evaluation", "pairwise", "calibration",
                                          "samples"}
    # every plot is embedded, none fetched
    assert {i["data-figure"] for i in parsed.images} == {
        "curves_sft", "curves_reward_model", "curves_rl", "evaluation_evaluate",
        "calibration_evaluate"}
    assert all(i["src"].startswith("data:image/png;base64,") for i in parsed.images)
    text = (run_dir / "report" / "report.html").read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_the_curves_are_the_logged_series(tiny_run):
    run_dir, _ = tiny_run
    log = training_log.read(run_dir / "rl")
    assert [e["step"] for e in log] == [1, 2]
    series = curves.series(log)
    # the RLHF objective comes first; each panel's line is the log's numbers
    assert list(series)[:4] == ["rlhf_reward", "score", "non_score_reward", "score_with_penalty"]
    figure = plots.curves("rl", [("run", series)])
    for ax in figure.axes:
        key = ax.get_title()
        (line,) = ax.get_lines()
        assert list(line.get_xdata()) == [e["step"] for e in log if key in e]
        assert list(line.get_ydata()) == [e[key] for e in log if key in e]
    # TRL stages: the trainer's log history, bookkeeping and run totals left out
    sft = curves.series(training_log.read(run_dir / "sft"))
    assert "loss" in sft and "epoch" not in sft and "train_runtime" not in sft
    assert sft["loss"][0] == [1, 2]
    assert "accuracy" in curves.series(training_log.read(run_dir / "reward_model"))


def test_texts_are_escaped(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    samples = run / "evaluate" / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["response"] = "<script>alert(1)</script> & <b>bold</b>"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report([run]).read_text()
    assert "<script>" not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text


def _as_sweep_job(source: Path, target: Path, seed: int) -> None:
    """A copy of the run as job `target` of a `-m seed=...` sweep, with its own numbers."""
    shutil.copytree(source, target)
    (target / ".hydra" / "overrides.yaml").write_text(
        f"- +recipe=instructgpt\n- seed={seed}\n- hydra.run.dir=x\n")
    summary = json.loads((target / "summary.json").read_text())
    summary["stages"]["evaluate"]["metrics"]["policies"]["rl"]["labeler"] = float(seed)
    (target / "summary.json").write_text(json.dumps(summary))
    log = training_log.read(target / "rl")
    training_log.write(target / "rl", [{**e, "kl": e["kl"] + seed} for e in log])


def test_a_sweep_directory_compares_its_runs(tiny_run, tmp_path):
    sweep = tmp_path / "multirun"
    for job, seed in ((0, 1), (1, 2)):
        _as_sweep_job(tiny_run[0], sweep / str(job), seed)
    assert [r.label for r in find_runs([sweep])] == ["seed=1", "seed=2"]
    assert report_main([str(sweep)]) == 0
    page = sweep / "report" / "report.html"
    parsed = parse(page)
    runs = [sweep / "0", sweep / "1"]
    for item in parsed.numbers:
        assert repr(resolve(runs, item)) == item["data-value"], item
    labeler = json.dumps(["stages", "evaluate", "metrics", "policies", "rl", "labeler"])
    shown = {(i["data-run"], i["text"]) for i in parsed.numbers if i["data-path"] == labeler}
    assert shown == {("0", "1"), ("1", "2")}  # each run's own, wherever it is printed
    assert "comparison" in parsed.tables
    # the overlaid curves: one line per run in each of the rl stage's panels, from each log
    figure = plots.curves("rl", [(r.label, curves.series(r.stages["rl"].log))
                                 for r in find_runs([sweep])])
    (kl,) = [ax for ax in figure.axes if ax.get_title() == "kl"]
    base = [e["kl"] for e in training_log.read(tiny_run[0] / "rl")]
    assert [list(line.get_ydata()) for line in kl.get_lines()] == [
        [k + 1 for k in base], [k + 2 for k in base]]
    # several run directories need --out
    with pytest.raises(FrameworkError, match="say where the comparison goes with --out DIR"):
        write_report(runs)
    assert write_report(runs, tmp_path / "both").name == "report.html"


def test_bad_paths_are_named(tmp_path, capsys):
    assert report_main([str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "holds no summary.json, nor do its subfolders" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("[]")
    assert report_main([str(tmp_path / "broken")]) == 2
    assert "not a run's summary" in capsys.readouterr().err


def test_the_report_renders_in_a_real_browser(tiny_run, tmp_path):
    """Headless Chromium opens the page from disk: every plot decodes and has a size, the
    tables are laid out with their rows, and nothing is fetched."""
    from browser import full_page_screenshot, headless_chromium
    from selenium.webdriver.common.by import By

    run_dir, _ = tiny_run
    page = run_dir / "report" / "report.html"
    driver = headless_chromium()
    try:
        driver.get(page.as_uri())
        assert driver.title.startswith("RLHF report")
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) == 5
        for img in images:
            assert driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth", img) > 200
            assert img.size["width"] > 200 and img.size["height"] > 100
        rows = driver.find_elements(By.CSS_SELECTOR, "table.evaluation tr")
        assert [r.find_element(By.TAG_NAME, "td").text for r in rows[1:]] == ["sft", "rl"]
        assert rows[0].is_displayed() and rows[0].size["width"] > 500
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h2")]
        assert headings[0] == "At a glance: rl against sft"
        assert {"Stages", "Evaluation (evaluate)", "Reward model against held-out comparisons",
                "Training curves", "Samples (evaluate)"} <= set(headings)
        samples = driver.find_elements(By.CSS_SELECTOR, "table.samples tr.sample")
        assert len(samples) == 3  # the tiny run's 3 held-out prompts
        # only the page itself was loaded: the plots are inline
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert [u for u in loaded if not u.startswith("data:")] == []
        shot = full_page_screenshot(driver, tmp_path / "report.png")
        assert shot.stat().st_size > 50_000
    finally:
        driver.quit()


def test_a_failing_report_does_not_fail_the_finished_run(tmp_path, monkeypatch, caplog):
    import framework.report as report
    from framework.cli import write_run_report

    def broken(paths):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(report, "write_report", broken)
    with caplog.at_level("WARNING", logger="framework"):
        write_run_report(tmp_path)  # returns: the run's exit status is the stages'
    assert "the report was not written (RuntimeError: no fonts); the run finished" in caplog.text
    assert f"python -m framework report {tmp_path}" in caplog.text


def test_a_metric_a_policy_lacks_is_drawn_as_none_not_a_crash():
    from framework.report import plots

    row = {"labeler": 1.0, "kl": 0.0, "response_length": 5.0, "distinct_2": 0.5,
           "self_bleu": None, "entropy": 1.0}  # self-BLEU of one sample per prompt
    figure = plots.evaluation({"sft": row, "rl": {**row, "labeler": 2.0}}, ["labeler"],
                              {"rl": {"win_rate": 0.75, "ci_low": 0.5, "ci_high": 0.9}}, "sft")
    assert plots.png(figure).startswith(b"\x89PNG")
    [ax] = [a for a in figure.axes if a.get_title() == "self_bleu"]
    assert [t.get_text() for t in ax.texts] == ["n/a", "n/a"]
