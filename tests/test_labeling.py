"""Collecting a policy's samples and labeling them: the export rule by hand (majority of
labelers per pair, ties left out, corrections as demonstrations), label checks, the simulated
and scorer labelers, and collect -> label -> reward model on exactly those labels."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from framework.data.builtin import labeler as builtin
from framework.errors import ConfigError, DataError
from framework.labeling.export import comparison_rows, demonstration_rows
from framework.labeling.tasks import Label, Task, check_label, read_tasks
from framework.pipeline.plan import build_plan
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig
from framework_plugins.labelers.scorer import ScorerLabeler
from framework_plugins.labelers.simulated import SimulatedLabeler

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = Task("t1", [{"role": "user", "content": "Name a fruit."}], ["Apple.", "Pear.", "Rock."])


def test_pairs_follow_the_majority_of_labelers_and_ties_are_left_out():
    labels = [Label("t1", "ann", ranks=[1, 2, 3]), Label("t1", "bob", ranks=[2, 1, 3]),
              Label("t1", "cat", ranks=[1, 3, 2]),
              Label("t1", "dan", skipped="off topic")]  # a skip casts no vote
    rows = comparison_rows([TASK], labels)
    # apple-pear: 2 votes to 1 for apple; apple-rock 3-0; pear-rock 2-1 for pear
    assert [(r["chosen"], r["rejected"], r["votes"]) for r in rows] == [
        ("Apple.", "Pear.", [2, 1]), ("Apple.", "Rock.", [3, 0]), ("Pear.", "Rock.", [2, 1])]
    assert all(r["labelers"] == ["ann", "bob", "cat"] and r["task_id"] == "t1" for r in rows)
    tied = comparison_rows([TASK], [Label("t1", "ann", ranks=[1, 1, 2]),
                                    Label("t1", "bob", ranks=[1, 2, 3]),
                                    Label("t1", "cat", ranks=[2, 1, 3])])
    # apple-pear: ann ties (no vote), bob apple, cat pear: 1-1, left out
    assert [(r["chosen"], r["rejected"]) for r in tied] == [("Apple.", "Rock."), ("Pear.", "Rock.")]


def test_corrections_become_demonstrations():
    labels = [Label("t1", "ann", ranks=[1, 2, 3], correction={"response": 0, "text": "An apple."},
                    critiques=["too short", "", ""])]
    assert demonstration_rows([TASK], labels) == [
        {"prompt": TASK.prompt, "completion": "An apple.", "task_id": "t1", "labeler": "ann"}]


@pytest.mark.parametrize("label, message", [
    (Label("t1", "a", ranks=[1, 2]), "must give each of the 3 responses a rank from 1"),
    (Label("t1", "a", ranks=[1, 1, 4]), "must give each of the 3 responses a rank"),
    (Label("t1", "a", ranks=[1, 2, 3], scores=[1, 8, 3]), "one integer 1-7 per response"),
    (Label("t1", "a", ranks=[1, 2, 3], flags=[["rude"], [], []]), "must be one list per response"),
    (Label("t1", "a", ranks=[1, 2, 3], correction={"response": 5, "text": "x"}), "a correction is"),
])
def test_bad_labels_are_named(label, message):
    with pytest.raises(DataError, match="stages.label: label of task t1 by a") as err:
        check_label(label, TASK, "stages.label", allow_ties=True)
    assert message in str(err.value)
    with pytest.raises(DataError, match="tie responses"):
        check_label(Label("t1", "a", ranks=[1, 1, 2]), TASK, "w", allow_ties=False)


def test_the_simulated_labeler_ranks_as_the_builtin_labeler():
    [label] = SimulatedLabeler(SimulatedLabeler.Config()).label([TASK])
    assert label.ranks == builtin.rank("Name a fruit.", TASK.responses)
    # 1-7 by the score's place on [-1, 2.5]
    assert label.scores == [max(1, min(7, round(1 + 6 * (builtin.score("Name a fruit.", r) + 1)
                                                 / 3.5))) for r in TASK.responses]


def test_the_scorer_labeler_ranks_by_any_reward_source_with_ties():
    source = {"name": "function", "params": {"function": "tests.test_rl_stage:words"}}
    labeler = ScorerLabeler(ScorerLabeler.parse_config({"source": source}, "p"))
    labeler.setup({})
    task = Task("t2", "Say it.", ["one two", "one", "uno dos", "a b c"])
    [label] = labeler.label([task])
    assert label.ranks == [2, 4, 2, 1] and label.labeler == "scorer:function"
    with pytest.raises(ConfigError, match=r"p.source.name: empty"):
        ScorerLabeler.parse_config({}, "p")


def loop_config(tmp_path, model_dir, labeler=None):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Describe colour number {i}."}) + "\n"
                               for i in range(10)))
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "model": {"name_or_path": str(model_dir)},
        "data": {"prompts": {"kind": "prompts", "path": str(prompts), "eval_fraction": 0.2}},
        "stages": {
            "collect": {"plugin": "collect", "inputs": {"policy": "model", "prompts": "data.prompts"},
                        "params": {"responses_per_prompt": 3, "num_prompts": 6,
                                   "max_new_tokens": 6, "batch_size": 9, "round": 2}},
            "label": {"plugin": "label", "inputs": {"samples": "collect.samples"},
                      "params": {"labeler": labeler or {"name": "simulated"},
                                 "eval_fraction": 0.34}},
            "reward_model": {"plugin": "reward_model",
                             "inputs": {"model": "model", "data": "label.comparisons"},
                             "params": {"args": {"max_steps": 2, "per_device_train_batch_size": 3,
                                                 "per_device_eval_batch_size": 3,
                                                 "max_length": 64}}}}})


def test_collect_then_label_then_the_reward_model_trains_on_exactly_those_labels(
        tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    stages = run_pipeline(loop_config(tmp_path, tiny_model_dir), run_dir, "t")["stages"]
    collected, labeled = stages["collect"]["metrics"], stages["label"]["metrics"]
    tasks = read_tasks(run_dir / "collect" / "tasks.jsonl")
    assert len(tasks) == collected["tasks"] == 6 - collected["dropped_prompts"]
    assert all(len(set(t.responses)) == len(t.responses) >= 2 for t in tasks)  # no duplicates
    assert {t.provenance["round"] for t in tasks} == {2}
    assert tasks[0].provenance["settings"]["responses_per_prompt"] == 3
    assert len({t.task_id for t in tasks}) == len(tasks)
    labels = [json.loads(line) for line in (run_dir / "label" / "labels.jsonl").open()]
    assert [label["task_id"] for label in labels] == [t.task_id for t in tasks]
    # each task's K(K-1)/2 pairs (the simulated labeler breaks ties)
    pairs = sum(len(t.responses) * (len(t.responses) - 1) // 2 for t in tasks)
    assert labeled["comparison_pairs"] == pairs
    rm = stages["reward_model"]["metrics"]
    assert rm["train_pairs"] + rm["eval_pairs"] == pairs and rm["eval_pairs"] > 0
    rows = [json.loads(line) for line in (run_dir / "label" / "comparisons.jsonl").open()]
    for row in rows:  # every pair is the simulated labeler's preference
        task = next(t for t in tasks if t.task_id == row["task_id"])
        ranks = builtin.rank(task.prompt[-1]["content"], task.responses)
        assert ranks[task.responses.index(row["chosen"])] < ranks[task.responses.index(row["rejected"])]


def test_bad_labeling_settings_are_named(tmp_path):
    cfg = loop_config(tmp_path, "some/model", labeler={"name": "nobody"})
    with pytest.raises(ConfigError, match=r"stages.label.params.labeler.name"):
        build_plan(cfg)
    cfg = loop_config(tmp_path, "some/model")
    cfg.stages.collect.params.responses_per_prompt = 1
    with pytest.raises(ConfigError, match=r"stages.collect.params.responses_per_prompt: must be >= 2"):
        build_plan(cfg)


def test_the_label_stage_runs_in_the_pipelines_process_under_any_hardware_profile(
        tmp_path, tiny_model_dir, monkeypatch):
    from framework.artifacts import SAMPLES, Artifact
    from framework.labeling.tasks import write_tasks
    from framework.pipeline import launch, runner

    def launched(*args, **kwargs):
        raise AssertionError("the label stage was launched in other processes")

    monkeypatch.setattr(runner, "launches", lambda hardware: True)  # as under multi_gpu
    monkeypatch.setattr(launch, "launch_stage", launched)
    cfg = loop_config(tmp_path, tiny_model_dir)
    planned = next(p for p in build_plan(cfg) if p.name == "label")
    write_tasks(tmp_path / "tasks.jsonl", [TASK])
    ctx = runner.stage_context(planned, tmp_path / "run", cfg)
    ctx.output_dir.mkdir(parents=True)
    result = runner._run_stage(planned, {"samples": Artifact(SAMPLES, str(tmp_path / "tasks.jsonl"))},
                               ctx, cfg)
    assert result.metrics["labeled"] == 1


class RockPaperScissors:
    """A judge whose preferences go round in a circle for three of four responses."""

    beats = {("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")}

    @classmethod
    def verdict(cls, a: str, b: str) -> float:
        if a == "well":  # beats everything
            return 1.0
        if b == "well":
            return 0.0
        return 1.0 if (a, b) in cls.beats else 0.0 if (b, a) in cls.beats else 0.5


def test_the_judge_labeler_ranks_by_wins_over_every_other_response(monkeypatch):
    from framework.reward_source import RewardSource
    from framework_plugins.labelers.judge import JudgeLabeler

    source = {"name": "function", "params": {"function": "tests.test_rl_stage:words"}}
    labeler = JudgeLabeler(JudgeLabeler.parse_config({"source": source}, "p"))
    labeler.setup({})
    task = Task("t2", "Say it.", ["one two", "one", "uno dos", "a b c"])
    [label] = labeler.label([task])  # compares by scores: wins 1.5, 0, 1.5, 3
    assert label.ranks == [2, 4, 2, 1] and label.labeler == "judge:function"

    calls = []

    def compare(self, prompts, first, second):
        calls.append(len(first))
        return [RockPaperScissors.verdict(a, b) for a, b in zip(first, second)]

    monkeypatch.setattr(RewardSource, "compare", compare)
    [label] = labeler.label([Task("t3", "Play.", ["rock", "paper", "scissors", "well"])])
    # wins: rock 1 (scissors), paper 1, scissors 1, well 3: one round of K(K-1)/2 = 6 questions
    assert label.ranks == [2, 2, 2, 1] and calls == [6]
    with pytest.raises(ConfigError, match=r"p.source"):
        JudgeLabeler(JudgeLabeler.parse_config({"source": {"name": "nope"}}, "p"))


def test_the_human_labeler_waits_then_accept_partial_goes_on_with_what_is_labeled(
        tmp_path, tiny_model_dir):
    from framework.errors import WaitingForLabels
    from framework.labeling.store import open_store

    human = {"name": "human", "params": {"labelers": ["ann"]}}
    cfg = loop_config(tmp_path, tiny_model_dir, labeler=human)
    del cfg.stages["reward_model"]
    run_dir = tmp_path / "run"
    with pytest.raises(WaitingForLabels, match=r"waiting for labels. 0 of \d+ tasks") as waiting:
        run_pipeline(cfg, run_dir, "t")
    assert waiting.value.accept_command == \
        f"python -m framework label {run_dir} --stage label --accept-partial"
    store = open_store(run_dir / "label" / "labels.sqlite")
    task_id = store.next_task("ann")
    store.submit(Label(task_id, "ann", ranks=[1, 2, 3], scores=[7, 4, 1]))
    with pytest.raises(WaitingForLabels, match=r"1 labels of"):
        run_pipeline(cfg, run_dir, "t")
    from framework.labeling.command import main

    assert main([str(run_dir), "--accept-partial"]) == 0  # the config stays as it was
    stages = run_pipeline(cfg, run_dir, "t")["stages"]
    assert stages["collect"]["status"] == "skipped"
    assert stages["label"]["metrics"]["labeled"] == 1
    assert stages["label"]["metrics"]["comparison_pairs"] == 3
    assert [json.loads(l)["task_id"] for l in (run_dir / "label" / "scores.jsonl").open()] == \
        [task_id] * 3


@pytest.mark.parametrize("params, message", [
    ({"target": 0}, "target: a share of the tasks in (0, 1]"),
    ({"overlap": 1.5}, "overlap: a share of the tasks in [0, 1]"),
    ({"overlap": 0.2, "overlap_labelers": 1}, "overlap_labelers: at least 2"),
    ({"labelers": ["ok", "not ok"]}, "labelers[1]: labeler name 'not ok'"),
])
def test_bad_human_labeler_settings_are_named(tmp_path, params, message):
    cfg = loop_config(tmp_path, "some/model", labeler={"name": "human", "params": params})
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    assert f"stages.label.params.labeler.params.{message}" in str(err.value)
