"""The human path end to end on the tiny model, through the CLI: the run collects samples,
publishes them and stops waiting for labels (exit 3, with the app's command and the command that
continues); people label through the app over HTTP; the same command stops again while labels
are missing, and then continues, and the reward model trains on exactly those labels."""

from __future__ import annotations

import json
import re
from itertools import combinations

import httpx

from labeling_apps import start_label_app
from pipeline_runs import run, summary
from reward_servers import free_port, stop

RECIPE = """# @package _global_
stages:
  collect:
    plugin: collect
    inputs: {policy: model, prompts: data.prompts}
    params: {responses_per_prompt: 3, num_prompts: 6, max_new_tokens: 6, batch_size: 9}
  label:
    plugin: label
    inputs: {samples: collect.samples}
    params:
      labeler: {name: human, params: {labelers: [ann, bob], overlap: 0.5}}
      eval_fraction: 0.34
  reward_model:
    plugin: reward_model
    inputs: {model: model, data: label.comparisons}
    params:
      args: {max_steps: 2, per_device_train_batch_size: 3, per_device_eval_batch_size: 3,
             max_length: 64}
"""


def _label(url: str, labeler: str, token: str, limit: int) -> list[dict]:
    """Label up to `limit` tasks: the shown responses ranked by length, longest first, equal
    lengths by the text (not by where they are shown, which differs per labeler)."""
    sent = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        while len(sent) < limit:
            task = client.get("/api/next").json()["task"]
            if task is None:
                break
            shown = task["responses"]
            order = sorted(range(len(shown)), key=lambda d: (-len(shown[d]), shown[d]))
            reply = client.post(f"/api/tasks/{task['task_id']}/label", json={"order": order})
            assert reply.status_code == 200, reply.text
            sent.append({"task_id": task["task_id"], "labeler": labeler,
                         "best_first": [shown[d] for d in order]})
    return sent


def test_run_waits_for_labels_people_label_over_http_and_the_run_continues(
        tmp_path, tiny_model_dir):
    (tmp_path / "conf" / "recipe").mkdir(parents=True)
    (tmp_path / "conf" / "recipe" / "human_loop.yaml").write_text(RECIPE)
    run_dir = tmp_path / "run"
    command = ["--config-dir", str(tmp_path / "conf"), "+recipe=human_loop",
               f"model.name_or_path={tiny_model_dir}", "report=false",
               f"hydra.run.dir={run_dir}"]
    first = run(command)
    out = first.stdout + first.stderr
    assert first.returncode == 3, out[-3000:]
    assert "stage label: waiting for labels. 0 of" in out
    assert f"python -m framework label {run_dir} --stage label --host 127.0.0.1 --port 8765" in out
    assert f"their links are in {run_dir / 'label' / 'labeler_links.txt'}" in out
    assert "continue with the same command:\n  python -m framework --config-dir" in out
    assert ("or go on now with the tasks labeled so far:\n  python -m framework label "
            f"{run_dir} --stage label --accept-partial\n  python -m framework --config-dir") in out
    assert "Traceback" not in out
    stages = summary(run_dir)["stages"]
    assert stages["collect"]["status"] == "done"
    assert stages["label"]["status"] == "waiting_for_labels" and "reward_model" not in stages

    links = dict(line.split("\t") for line in
                 (run_dir / "label" / "labeler_links.txt").read_text().splitlines())
    assert sorted(links) == ["ann", "bob"]
    assert (run_dir / "label" / "labeler_links.txt").stat().st_mode & 0o077 == 0
    tokens = {name: re.search(r"token=([^&\s]+)", link).group(1) for name, link in links.items()}
    tasks = [json.loads(line) for line in (run_dir / "collect" / "tasks.jsonl").open()]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_label_app(run_dir, port)
    try:
        sent = _label(url, "ann", tokens["ann"], limit=2)
        again = run(command)  # not enough labels yet: it stops again, collect is reused
        assert again.returncode == 3 and "stage collect: already done" in again.stdout + again.stderr
        sent += _label(url, "ann", tokens["ann"], limit=100) + _label(url, "bob", tokens["bob"], limit=100)
    finally:
        stop(server)
    shared = round(0.5 * len(tasks))
    assert len(sent) == len(tasks) + shared  # every task once, the overlap share twice

    done = run(command)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    stages = summary(run_dir)["stages"]
    assert stages["collect"]["status"] == "skipped" and stages["label"]["status"] == "done"
    labels = [json.loads(line) for line in (run_dir / "label" / "labels.jsonl").open()]
    assert len(labels) == len(sent)
    assert sorted((l["task_id"], l["labeler"]) for l in labels) == sorted(
        (s["task_id"], s["labeler"]) for s in sent)
    by_id = {t["task_id"]: t for t in tasks}
    # each task's pairs, by the majority of its labelers: both rank alike, so they agree
    pairs = set()
    for task_id in {s["task_id"] for s in sent}:
        best_first = next(s["best_first"] for s in sent if s["task_id"] == task_id)
        assert sorted(best_first) == sorted(by_id[task_id]["responses"])
        pairs |= {(task_id, a, b) for a, b in combinations(best_first, 2)}
    rows = [json.loads(line) for line in (run_dir / "label" / "comparisons.jsonl").open()]
    assert {(r["task_id"], r["chosen"], r["rejected"]) for r in rows} == pairs
    rm = stages["reward_model"]["metrics"]
    assert rm["train_pairs"] + rm["eval_pairs"] == len(pairs) == 3 * len(tasks)
