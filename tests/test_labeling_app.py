"""The labeling app and its store: submissions mapped through the shuffled display by hand,
assignment with overlap, agreement by hand, security (forged forms, tampered tokens, another
labeler's task, oversize and malformed bodies, escaping), the durability of a stored label under
kill -9 of the server, and a bounded loopback load test of concurrent labelers."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from itertools import combinations

import httpx
import pytest
from fastapi.testclient import TestClient

from framework.labeling.agreement import pairwise_agreement
from framework.labeling.app import create_app
from framework.labeling.app.submission import (
    Submission, SubmissionError, display_order, from_form, to_label)
from framework.labeling.export import write_exports
from framework.labeling.store import ADMIN, StoreError
from framework.labeling.tasks import Label, Task
from labeling_apps import make_store, make_tasks, start_label_app
from reward_servers import app_in_thread, free_port, stop

BASE = "http://127.0.0.1:8765"


def signed_in(store, token) -> TestClient:
    client = TestClient(create_app(store), base_url=BASE)
    assert client.get(f"/login?token={token}", follow_redirects=False).status_code == 303
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def message_of(response) -> str:
    if response.headers["content-type"].startswith("application/json"):
        return response.json()["error"]
    return re.search(r'id="message">([^<]*)<', response.text).group(1).replace("&#39;", "'")


# --- submissions, by hand

TASK = Task("t1", "Say hi.", ["r0", "r1", "r2", "r3"])


def test_a_submission_in_display_positions_becomes_ranks_of_the_responses():
    order = [2, 0, 3, 1]  # position 0 shows response 2, ...
    sub = Submission(order=[3, 1, 0, 2], tied={0},  # best: position 3 (response 1)
                     scores={0: 5, 1: 6, 2: 2, 3: 7}, flags={2: ["harmful"]},
                     edits={0: "r2", 3: "R1 fixed."}, critiques={1: "too short"})
    label = to_label(sub, TASK, order, "ann", allow_ties=True)
    # ranking by position: 3 (resp 1) #1, 1 (resp 0) #2, 0 (resp 2) tied with it: #2, 2 (resp 3) #4
    assert label.ranks == [2, 1, 2, 4]
    assert label.scores == [6, 7, 5, 2]  # per response: resp 0 at position 1, ...
    assert label.flags == [[], [], [], ["harmful"]]
    assert label.correction == {"response": 1, "text": "R1 fixed."}  # position 0 was unchanged
    assert label.critiques == ["too short", "", "", ""]


@pytest.mark.parametrize("sub, allow_ties, message", [
    (Submission(order=[0, 1, 2]), True, "must place each of the 4 responses once"),
    (Submission(order=[0, 1, 2, 3], tied={1}), False, "does not allow ties"),
    (Submission(order=[0, 1, 2, 3], tied={0}), True, "nothing above it to tie with"),
    (Submission(order=[0, 1, 2, 3], scores={0: 3}), True, "score every response 1-7, or none"),
    (Submission(order=[0, 1, 2, 3], scores=dict.fromkeys(range(4), 9)), True, "from 1 (terrible)"),
    (Submission(order=[0, 1, 2, 3], flags={1: ["rude"]}), True, "unknown flags ['rude']"),
    (Submission(order=[0, 1, 2, 3], edits={0: "a", 1: "b"}), True, "2 responses were edited"),
    (Submission(order=[0, 1, 2, 3], edits={0: "  "}), True, "the edit of response 1 is empty"),
    (Submission(order=[0, 1, 2, 3], critiques={0: "x" * 20001}), True, "more than the 20000"),
])
def test_bad_submissions_are_named(sub, allow_ties, message):
    with pytest.raises(SubmissionError, match=re.escape(message)):
        to_label(sub, TASK, [0, 1, 2, 3], "ann", allow_ties)


def test_a_form_is_read_and_crlf_edits_of_unchanged_text_are_no_correction():
    form = {"order": ["1,0,2,3"], "action": ["submit"], "edit_0": ["r0"], "edit_1": ["r1\r\n"],
            "score_0": ["4"], "score_1": ["4"], "score_2": ["1"], "score_3": ["2"]}
    label = to_label(from_form(form, 4), TASK, [0, 1, 2, 3], "ann", True)
    assert label.ranks == [2, 1, 3, 4] and label.correction == {"response": 1, "text": "r1\n"}
    skip = from_form({"action": ["skip"], "skip_reason": [" not English "]}, 4)
    assert to_label(skip, TASK, [0, 1, 2, 3], "ann", True).skipped == "not English"
    with pytest.raises(SubmissionError, match="sent 2 times"):
        from_form({"order": ["0,1,2,3", "3,2,1,0"]}, 4)


def test_the_display_order_is_a_stable_shuffle_per_labeler():
    task = Task("x", "p", [str(i) for i in range(6)])
    orders = {name: display_order(task, name, "s") for name in ("ann", "bob", "cat", "dan")}
    assert all(sorted(o) == list(range(6)) for o in orders.values())
    assert display_order(task, "ann", "s") == orders["ann"]
    assert len({tuple(o) for o in orders.values()}) > 1


# --- agreement, by hand

def test_agreement_is_the_share_of_response_pairs_ordered_alike():
    labels = [Label("a", "ann", ranks=[1, 2, 3]), Label("a", "bob", ranks=[1, 3, 2]),
              Label("a", "cat", ranks=[1, 1, 3]), Label("b", "ann", ranks=[2, 1]),
              Label("b", "bob", ranks=[2, 1]), Label("b", "cat", skipped="unclear"),
              Label("c", "ann", ranks=[1, 2])]  # one labeler only: not compared
    overall, pairs = pairwise_agreement(labels)
    # task a: ann/bob agree on (0,1), (0,2), not (1,2): 2 of 3; ann/cat: (0,2), (1,2): 2 of 3
    # (ann 0>1, cat tie); bob/cat: (0,2) only: 1 of 3. task b: ann/bob 1 of 1.
    assert (pairs[("ann", "bob")].agreed, pairs[("ann", "bob")].compared) == (3, 4)
    assert (pairs[("ann", "cat")].agreed, pairs[("ann", "cat")].compared) == (2, 3)
    assert (pairs[("bob", "cat")].agreed, pairs[("bob", "cat")].compared) == (1, 3)
    assert (overall.agreed, overall.compared) == (6, 10) and overall.rate == 0.6


# --- the store

def test_tokens_are_stored_hashed_and_tasks_are_published_once(tmp_path):
    tasks = make_tasks(3)
    store, tokens = make_store(tmp_path, tasks, labelers=["ann"])
    store.publish(tasks, {t.task_id: 1 for t in tasks}, {"stage": "label"})  # again: no change
    assert [t.task_id for t in store.tasks()] == [t.task_id for t in tasks]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("labels.sqlite*"))
    assert tokens["ann"].encode() not in raw
    assert store.account_for_token(tokens["ann"]).name == "ann"
    assert store.account_for_token(tokens["ann"][:-1] + "x") is None
    changed = [Task(tasks[0].task_id, tasks[0].prompt, ["other", "texts"])]
    with pytest.raises(StoreError, match="stored with other responses .* move .* away"):
        store.publish(changed, {changed[0].task_id: 1}, {})
    with pytest.raises(StoreError, match="account 'ann' exists"):
        store.add_account("ann", "labeler")
    new = store.add_account("ann", "labeler", replace=True)
    assert store.account_for_token(tokens["ann"]) is None and store.account_for_token(new)


def test_overlap_tasks_go_to_two_labelers_and_the_rest_to_one(tmp_path):
    tasks = make_tasks(4)
    store, _ = make_store(tmp_path, tasks, wanted={"t0000": 2, "t0001": 1, "t0002": 2,
                                                   "t0003": 1}, labelers=["ann", "bob"])
    assert store.next_task("ann") == "t0000"
    assert store.next_task("ann") == "t0000"  # the open assignment, again
    assert store.next_task("bob") == "t0000"  # the second labeler of an overlap task
    store.submit(Label("t0000", "ann", ranks=[1, 2, 3, 4]))
    assert store.next_task("ann") == "t0001"
    store.submit(Label("t0000", "bob", ranks=[1, 2, 3, 4]))
    assert store.next_task("bob") == "t0002"  # t0001 wants one labeler and has ann
    store.submit(Label("t0001", "ann", ranks=[1, 2, 3, 4]))
    assert store.next_task("ann") == "t0002"
    assert store.assigned("bob") == ["t0000", "t0002"]
    assert store.release("bob") == ["t0002"]  # open, so it goes to the next who asks
    assert store.assigned("bob") == ["t0000"] and store.assigned("ann") == ["t0000", "t0001",
                                                                             "t0002"]
    assert store.next_task("bob") == "t0002"
    with pytest.raises(StoreError, match="t0003 is not assigned to bob"):
        store.submit(Label("t0003", "bob", ranks=[1, 2, 3, 4]))
    progress = store.progress()
    assert (progress.tasks, progress.wanted_labels, progress.labels, progress.complete_tasks) == \
        (4, 6, 3, 2)


# --- the app over HTTP

def test_a_labeler_signs_in_labels_and_cannot_touch_another_labelers_task(tmp_path):
    store, tokens = make_store(tmp_path, make_tasks(3), labelers=["ann", "bob"])
    ann, bob = signed_in(store, tokens["ann"]), signed_in(store, tokens["bob"])
    first = ann.get("/next", follow_redirects=False).headers["location"]
    assert first == "/task/t0000"
    page = ann.get(first)
    assert page.status_code == 200 and "Question 0?" in page.text
    assert bob.get(first).status_code == 403
    assert "is not assigned to bob" in message_of(bob.get(first))
    sent = bob.post(first, data={"csrf": csrf_of(bob.get("/").text), "order": "0,1,2,3",
                                 "action": "submit"})
    assert sent.status_code == 403 and "not assigned to bob" in message_of(sent)
    done = ann.post(first, data={"csrf": csrf_of(page.text), "order": "3,2,1,0",
                                 "action": "submit"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/next"
    [label] = store.labels()
    order = display_order(store.task("t0000"), "ann", store.settings()["secret"])
    assert label.ranks == [4 - order.index(i) for i in range(4)]
    again = ann.post(first, data={"csrf": csrf_of(page.text), "order": "0,1,2,3",
                                  "action": "submit"})
    assert again.status_code == 409 and "already labeled by ann" in message_of(again)
    assert len(store.labels()) == 1


def test_forged_forms_tampered_tokens_and_bad_bodies_are_refused(tmp_path):
    store, tokens = make_store(tmp_path, make_tasks(2), labelers=["ann"])
    ann = signed_in(store, tokens["ann"])
    ann.get("/next")
    form = {"order": "0,1,2,3", "action": "submit"}
    assert "anti-forgery token" in message_of(ann.post("/task/t0000", data=form))
    forged = ann.post("/task/t0000", data={**form, "csrf": csrf_of(ann.get("/").text)},
                      headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403 and "posted from http://evil.example" in message_of(forged)
    tampered = TestClient(create_app(store), base_url=BASE)
    tampered.cookies.set("labeling_token", tokens["ann"][:-2] + "zz")
    assert tampered.get("/task/t0000").status_code == 401
    bad_link = tampered.get("/login?token=nope")
    assert bad_link.status_code == 401 and "not valid" in message_of(bad_link)
    api = {"Authorization": f"Bearer {tokens['ann']}"}
    assert ann.post("/api/tasks/t0000/label", content=b"{", headers=api).status_code == 400
    huge = ann.post("/api/tasks/t0000/label", content=b"x" * 300_000, headers=api)
    assert huge.status_code == 413 and "more than the 262144 allowed" in message_of(huge)
    wrong = ann.post("/api/tasks/t0000/label", json={"order": [0, 1, 2, 3], "rank": 1},
                     headers=api)
    assert wrong.status_code == 400 and "unknown fields ['rank']" in message_of(wrong)
    long_text = ann.post("/api/tasks/t0000/label", headers=api,
                         json={"order": [0, 1, 2, 3], "critiques": ["x" * 20001, "", "", ""]})
    assert long_text.status_code == 400 and "more than the 20000" in message_of(long_text)
    assert store.labels() == []  # nothing refused was stored


def test_every_text_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    task = Task("e1", [{"role": "user", "content": f"Prompt {evil}"}], [f"A {evil}", "B", "C"])
    store, tokens = make_store(tmp_path, [task], labelers=["ann"])
    ann = signed_in(store, tokens["ann"])
    page = ann.get(ann.get("/next", follow_redirects=False).headers["location"]).text
    assert evil not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert page.count("<script") == 1  # the app's own label.js
    refused = ann.get("/task/%3Cscript%3E")
    assert "<script>" not in refused.text and "&lt;script&gt;" in refused.text


def test_the_admin_page_shows_progress_throughput_and_agreement(tmp_path):
    tasks = make_tasks(3, k=3)
    store, tokens = make_store(tmp_path, tasks, wanted={t.task_id: 2 for t in tasks},
                               labelers=["ann", "bob"])
    for name, ranks in (("ann", [1, 2, 3]), ("bob", [1, 3, 2])):
        api = TestClient(create_app(store), base_url=BASE,
                         headers={"Authorization": f"Bearer {tokens[name]}"})
        for _ in range(2):
            task = api.get("/api/next").json()["task"]
            order = display_order(store.task(task["task_id"]), name, store.settings()["secret"])
            positions = sorted(range(3), key=lambda d: ranks[order[d]])  # best first
            assert api.post(f"/api/tasks/{task['task_id']}/label",
                            json={"order": positions}).status_code == 200
    admin = signed_in(store, store.add_account("admin", ADMIN))
    page = admin.get("/", follow_redirects=True)
    assert "Labeling progress" in page.text
    # two shared tasks, 3 pairs each; ann and bob agree on (0,1) and (0,2), not (1,2)
    assert re.search(r'id="agreement"><strong>66.7%</strong>\s*\(4 of 6 pairs\)', page.text)
    figures = TestClient(create_app(store), base_url=BASE).get(
        "/api/progress", headers={"Authorization": f"Bearer {store.add_account('admin', ADMIN, replace=True)}"}).json()
    assert figures["progress"]["complete_tasks"] == 2 and figures["progress"]["labels"] == 4
    assert [(l["name"], l["labels"]) for l in figures["labelers"]] == [("ann", 2), ("bob", 2)]
    ann = signed_in(store, tokens["ann"])
    assert ann.get("/admin").status_code == 403


# --- durability and load, on loopback

def test_a_kill_9_of_the_server_loses_no_submitted_label(tmp_path):
    run_dir = tmp_path / "run"
    store, tokens = make_store(run_dir / "label", make_tasks(8), labelers=["ann"])
    api = {"Authorization": f"Bearer {tokens['ann']}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_label_app(run_dir, port)
    try:
        sent = []
        for _ in range(5):
            task = httpx.get(f"{url}/api/next", headers=api).json()["task"]
            reply = httpx.post(f"{url}/api/tasks/{task['task_id']}/label", headers=api,
                               json={"order": [3, 2, 1, 0], "critiques": ["c", "", "", ""]})
            assert reply.status_code == 200
            sent.append(reply.json()["saved"])
        opened = httpx.get(f"{url}/api/next", headers=api).json()["task"]["task_id"]
    finally:
        stop(proc)  # SIGKILL
    assert proc.returncode == -9
    assert [label.to_json() for label in store.labels()] == sent
    proc = start_label_app(run_dir, port)  # a restart resumes where it was
    try:
        assert httpx.get(f"{url}/api/next", headers=api).json()["task"]["task_id"] == opened
    finally:
        stop(proc)
    with sqlite3.connect(run_dir / "label" / "labels.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _ranking(labeler: str, responses: list[str]) -> list[int]:
    """Labeler-specific and deterministic: everyone prefers longer answers, except that bob
    reverses the two shortest and cat ties the two longest."""
    ranks = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    ranks = {i: place + 1 for place, i in enumerate(ranks)}
    if labeler == "bob":
        short = sorted(range(len(responses)), key=lambda i: len(responses[i]))[:2]
        ranks[short[0]], ranks[short[1]] = ranks[short[1]], ranks[short[0]]
    if labeler == "cat":
        longest = sorted(range(len(responses)), key=lambda i: -len(responses[i]))[:2]
        ranks[longest[1]] = ranks[longest[0]]
    return [ranks[i] for i in range(len(responses))]


def test_concurrent_labelers_on_loopback_lose_and_duplicate_nothing(tmp_path):
    tasks = make_tasks(240, k=4)
    wanted = {t.task_id: (2 if i % 4 == 0 else 1) for i, t in enumerate(tasks)}  # 60 shared
    names = ["ann", "bob", "cat", "dan"]
    store, tokens = make_store(tmp_path, tasks, wanted=wanted, labelers=names)
    by_id = {t.task_id: t for t in tasks}
    sent: dict[str, list] = {name: [] for name in names}
    errors = []
    deadline = time.monotonic() + 240  # bounded: the test stops by itself

    def label_all(name: str, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {tokens[name]}"}) as client:
            while time.monotonic() < deadline:
                task = client.get("/api/next").json()["task"]
                if task is None:
                    return
                ranks = _ranking(name, task["responses"])  # of the shown order
                positions = sorted(range(len(ranks)), key=lambda d: (ranks[d], d))
                tied = [d for prev, d in zip(positions, positions[1:]) if ranks[d] == ranks[prev]]
                reply = client.post(f"/api/tasks/{task['task_id']}/label",
                                    json={"order": positions, "tied": tied})
                if reply.status_code != 200:
                    errors.append((name, reply.status_code, reply.text))
                    return
                sent[name].append(task["task_id"])

    with app_in_thread(create_app(store)) as url:
        threads = [threading.Thread(target=label_all, args=(n, url)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert not errors and time.monotonic() < deadline
    records = store.records()
    keys = [(r.label.task_id, r.label.labeler) for r in records]
    assert len(keys) == len(set(keys)) == sum(wanted.values()) == 300
    assert sorted(keys) == sorted((t, n) for n, ids in sent.items() for t in ids)
    assert all(len({n for t, n in keys if t == task}) == wanted[task] for task in wanted)
    assert sum(len(ids) > 0 for ids in sent.values()) >= 2  # they really worked concurrently
    # every stored label is the labeler's ranking of the true responses
    for r in records:
        assert r.label.ranks == _ranking(r.label.labeler, by_id[r.label.task_id].responses)
    # agreement, by hand from what the clients sent
    who = {}
    for name, ids in sent.items():
        for task_id in ids:
            who.setdefault(task_id, []).append(name)
    agreed = compared = 0
    for task_id, pair in who.items():
        if len(pair) < 2:
            continue
        a, b = (_ranking(n, by_id[task_id].responses) for n in sorted(pair))
        for i, j in combinations(range(4), 2):
            compared += 1
            agreed += (a[i] < a[j]) == (b[i] < b[j]) and (a[i] == a[j]) == (b[i] == b[j])
    overall, _ = pairwise_agreement(store.labels())
    assert compared == 60 * 6 and (overall.agreed, overall.compared) == (agreed, compared)
    counts = write_exports(tmp_path / "export", tasks, store.labels())
    exported = [json.loads(line) for line in (tmp_path / "export" / "labels.jsonl").open()]
    assert counts["labels.jsonl"] == len(exported) == 300


def test_the_label_command_manages_accounts_and_exports(tmp_path, capsys):
    from framework.labeling.command import main

    run_dir = tmp_path / "run"
    assert main([str(run_dir)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    run_dir.mkdir()
    assert main([str(run_dir)]) == 2
    assert "no label stage has published tasks here" in capsys.readouterr().err
    store, _ = make_store(run_dir / "label_1", make_tasks(2))
    assert main([str(run_dir), "--add-labeler", "ann", "--port", "9000"]) == 0
    name, link = capsys.readouterr().out.strip().split("\t")
    assert name == "ann" and link.startswith("http://127.0.0.1:9000/login?token=")
    token = link.split("token=")[1]
    assert store.account_for_token(token).name == "ann"
    assert main([str(run_dir), "--add-labeler", "ann"]) == 2
    assert "account 'ann' exists" in capsys.readouterr().err
    assert main([str(run_dir), "--new-link", "ann"]) == 0
    assert store.account_for_token(token) is None  # the old link stops working
    assert main([str(run_dir), "--new-link", "bob"]) == 2
    assert "no labeler of that name" in capsys.readouterr().err
    assert main([str(run_dir), "--add-labeler", "bad name!"]) == 2
    assert "use 1-64 letters" in capsys.readouterr().err
    store.next_task("ann")
    store.submit(Label("t0000", "ann", ranks=[2, 1, 3, 4], critiques=["", "ok", "", ""]))
    assert store.next_task("ann") == "t0001"
    capsys.readouterr()
    assert main([str(run_dir), "--release", "ann"]) == 0
    assert capsys.readouterr().out == "ann: released 1 open task(s): t0001\n"
    assert store.assigned("ann") == ["t0000"]
    assert main([str(run_dir), "--status", "--export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[: out.rindex("}\n{") + 1])
    assert status["progress"]["labels"] == 1 and status["labelers"][0]["name"] == "ann"
    assert json.loads(out.splitlines()[-1])["rows"] == {
        "labels.jsonl": 1, "comparisons.jsonl": 6, "demonstrations.jsonl": 0,
        "critiques.jsonl": 1, "scores.jsonl": 0}
    make_store(run_dir / "label_2", make_tasks(1))
    assert main([str(run_dir), "--status"]) == 2
    assert "several label stages have stores (label_1, label_2); choose one with --stage" in \
        capsys.readouterr().err
    assert main([str(run_dir), "--stage", "label_3"]) == 2
    assert "label stages with a store here: label_1, label_2" in capsys.readouterr().err


def test_an_abandoned_task_goes_to_the_next_labeler_after_its_lease(tmp_path, monkeypatch):
    from framework.labeling import sqlite_store

    class Clock:
        now = 1000.0

        @classmethod
        def time(cls):
            return cls.now

    monkeypatch.setattr(sqlite_store, "time", Clock)
    store, _ = make_store(tmp_path, make_tasks(2), labelers=["ann", "bob", "cat"])
    store.update_settings({"lease_seconds": 60})
    assert store.next_task("ann") == "t0000"
    Clock.now += 59
    assert store.next_task("bob") == "t0001"  # ann's place on t0000 still holds
    Clock.now += 2
    assert store.next_task("cat") == "t0000"  # ann's lease ran out
    store.submit(Label("t0000", "cat", ranks=[1, 2, 3, 4]))
    store.submit(Label("t0000", "ann", ranks=[2, 1, 3, 4]))  # late, and still kept
    assert [(r.label.labeler, r.seconds) for r in store.records()] == [("cat", 0.0), ("ann", 61.0)]
    assert store.progress().complete_tasks == 1
