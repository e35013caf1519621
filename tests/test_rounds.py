"""Iterated rounds: the expansion of `rounds` into stages by hand (keys, refs, placeholders,
overrides, errors by message), the label stage's carried comparisons and their held-out split,
the RL stage's `reference`, and a 2-round run of instructgpt_iterated on the tiny model that
checks the wiring each stage actually used."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from framework.artifacts import COMPARISONS, Artifact
from framework.config_sources import register_configs
from framework.data import load_comparisons, source_from_artifact
from framework.errors import ConfigError
from framework.labeling.export import comparison_rows
from framework.labeling.tasks import Label, Task
from framework.pipeline.plan import build_plan
from framework.pipeline.rounds import expand_rounds, metric_paths, metric_table
from framework.pipeline.runner import run_pipeline
from framework.pipeline.schema import RootConfig
from framework_plugins.stages.label.carry import carry

register_configs()


def compose_with(*overrides):
    with initialize_config_module(config_module="framework_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def rounds_config(**rounds):
    """Two fixed stages around a two-stage round; no plugin is looked up by the expansion."""
    template = {
        "rm": {"plugin": "reward_model", "inputs": {"model": "sft.model",
                                                    "data": "data.comparisons"}},
        "rl": {"plugin": "rl",
               "inputs": {"policy": {"first": "sft.model", "later": "rl_{previous}.model"},
                          "reward_model": "rm_{round}.model"},
               "params": {"round": "{round}", "tag": "r{round}-of-{count} {{literal}}"}}}
    return OmegaConf.merge(OmegaConf.structured(RootConfig), {
        "data": {"comparisons": {"kind": "comparisons", "path": "c.jsonl"}},
        "stages": {
            "sft": {"plugin": "sft", "inputs": {"model": "model"}},
            "evaluate": {"plugin": "evaluate",
                         "inputs": {"sft": "sft.model", "rl_{round}": "rl_{round}.model",
                                    "reward_model": "rm_{count}.model"},
                         "params": {"policies": ["sft", "rl_{round}"]}}},
        "rounds": {"count": 2, "after": "sft", "stages": template,
                   "summary": {"start": {"score": "evaluate.policies.sft.labeler"},
                               "each": {"accuracy": "rm_{round}.eval_accuracy",
                                        "score": "evaluate.policies.rl_{round}.labeler"}},
                   **rounds}})


def test_rounds_expand_into_ordinary_stages():
    stages = expand_rounds(rounds_config()).stages
    assert list(stages) == ["sft", "rm_1", "rl_1", "rm_2", "rl_2", "evaluate"]
    assert dict(stages.rl_1.inputs) == {"policy": "sft.model", "reward_model": "rm_1.model"}
    assert dict(stages.rl_2.inputs) == {"policy": "rl_1.model", "reward_model": "rm_2.model"}
    assert stages.rl_2.params == {"round": 2, "tag": "r2-of-2 {literal}"}  # a number, braces
    assert dict(stages.evaluate.inputs) == {"sft": "sft.model", "rl_1": "rl_1.model",
                                            "rl_2": "rl_2.model", "reward_model": "rm_2.model"}
    assert list(stages.evaluate.params.policies) == ["sft", "rl_1", "rl_2"]
    assert dict(stages.rm_2.inputs) == {"model": "sft.model", "data": "data.comparisons"}


def test_an_override_changes_one_round_only():
    stages = expand_rounds(rounds_config(overrides={"rl_2": {"params": {"tag": "mine"}}})).stages
    assert stages.rl_1.params.tag == "r1-of-2 {literal}" and stages.rl_2.params.tag == "mine"
    assert stages.rl_2.params.round == 2


def test_count_after_and_the_summary_table():
    cfg = rounds_config(count=3, after=None)
    assert list(expand_rounds(cfg).stages) == ["rm_1", "rl_1", "rm_2", "rl_2", "rm_3", "rl_3",
                                               "sft", "evaluate"]
    paths = metric_paths(rounds_config().rounds)
    assert paths == [{"round": 0, "score": "evaluate.policies.sft.labeler"},
                     {"round": 1, "accuracy": "rm_1.eval_accuracy",
                      "score": "evaluate.policies.rl_1.labeler"},
                     {"round": 2, "accuracy": "rm_2.eval_accuracy",
                      "score": "evaluate.policies.rl_2.labeler"}]
    stages = {"rm_1": {"status": "done", "metrics": {"eval_accuracy": 0.75}},
              "rm_2": {"status": "done", "metrics": {"eval_accurcy": 0.8}},  # a metric missing
              "evaluate": {"status": "running", "metrics": {}}}
    rows, problems = metric_table(paths, stages)
    assert rows == [{"round": 0, "score": None}, {"round": 1, "accuracy": 0.75, "score": None},
                    {"round": 2, "accuracy": None, "score": None}]
    assert problems == ["rounds.summary: 'rm_2.eval_accuracy' is not among the metrics of stage "
                        "'rm_2'; it reports: eval_accurcy."]


def test_expanding_twice_changes_nothing():
    once = expand_rounds(rounds_config())
    assert expand_rounds(once) is once and not once.rounds.stages


@pytest.mark.parametrize("change, message", [
    ({"rounds": {"count": 0}}, "rounds.count: must be >= 1, got 0"),
    ({"rounds": {"stages": {"rm": {"inputs": {"data": "rm_{rond}.x"}}}}},
     "rounds.stages.rm.inputs.data: 'rm_{rond}.x': unknown placeholder {rond}; the placeholders "
     "here are {round}, {count}. Write {{rond}} for a literal {rond}."),
    ({"rounds": {"stages": {"rm": {"inputs": {"model": "rl_{previous}.model"}}}}},
     "rounds.stages.rm.inputs.model: 'rl_{previous}.model': {previous} is round 0 in round 1"),
    ({"rounds": {"stages": {"rm": {"inputs": {"model": "critic_{round}.model"}}}}},
     "rounds.stages.rm.inputs.model: 'critic_1.model' (round 1) names no stage"),
    ({"rounds": {"stages": {"rm": {"inputs": {"data": "data.comparison"}}}}},
     "rounds.stages.rm.inputs.data: 'data.comparison' (round 1) names no data source (did you "
     "mean 'comparisons'?)"),
    ({"rounds": {"stages": {"rl": {"inputs": {"policy": {"first": "sft.model", "then": "x"}}}}}},
     "rounds.stages.rl.inputs.policy: a mapping here takes exactly first: REF (round 1) and "
     "later: REF (rounds 2 and on); got keys ['first', 'later', 'then']"),
    ({"rounds": {"after": "stf"}}, "rounds.after: 'stf' is not a stage of `stages` (did you mean "
     "'sft'?)"),
    ({"rounds": {"summary": {"each": {"accuracy": "reward_{round}.eval_accuracy"}}}},
     "rounds.summary.each.accuracy: 'reward_1.eval_accuracy' names no stage"),
    ({"stages": {"evaluate": {"inputs": {"rl": "rl_{round}.model"}}}},
     "stages.evaluate.inputs.rl: 'rl_{round}.model': {round} outside the rounds names no round"),
    ({"stages": {"rm_2": {"plugin": "sft"}}}, "stages.rm_2: the rounds make a stage of this name"),
    ({"rounds": {"overrides": {"rl_3": {"params": {"tag": "x"}}}}},
     "rounds.overrides.rl_3: the rounds make no stage 'rl_3' (did you mean 'rl_2'?); they make "
     "rm_1, rl_1, rm_2, rl_2."),
    ({"rounds": {"stages": {"rl": {"params": {"tag": "{round"}}}}},
     "rounds.stages.rl.params.tag: '{round': expected '}' before end of string; write {{ and }} "
     "for literal braces."),
])
def test_bad_rounds_are_named(change, message):
    cfg = OmegaConf.merge(rounds_config(), change)
    with pytest.raises(ConfigError) as err:
        expand_rounds(cfg)
    assert any(message in p for p in err.value.problems), err.value.problems


def test_the_recipe_takes_a_count_and_template_overrides():
    plan = {p.name: p for p in build_plan(compose_with(
        "+recipe=instructgpt_iterated", "rounds.count=3",
        "rounds.stages.rl.params.optimizer.params.steps=4"))}
    assert list(plan) == ["sft"] + [f"{s}_{r}" for r in (1, 2, 3)
                                    for s in ("collect", "label", "reward_model", "rl")] + ["evaluate"]
    assert [plan[f"rl_{r}"].stage.optimizer.config.steps for r in (1, 2, 3)] == [4, 4, 4]
    assert [plan[f"collect_{r}"].stage.config.round for r in (1, 2, 3)] == [1, 2, 3]
    rl_3, label_1 = plan["rl_3"].inputs, plan["label_1"].inputs
    assert (rl_3["policy"].stage, rl_3["reference"].stage, rl_3["reward_model"].stage) == (
        "rl_2", "sft", "reward_model_3")
    assert label_1["earlier"].location == "builtin:rankings"
    assert plan["label_3"].inputs["earlier"].stage == "label_2"
    assert plan["evaluate"].stage.config.policies == ["sft", "rl_1", "rl_2", "rl_3"]
    assert plan["evaluate"].inputs["comparisons"].stage == "label_3"


def test_a_separate_reference_is_refused_where_ppo_shares_an_adapter_base():
    with pytest.raises(ConfigError) as err:
        build_plan(compose_with("+recipe=instructgpt_iterated", "adapter=lora",
                                "rounds.stages.rl.params.optimizer.params.value_init=policy"))
    # round 1's reference is its start (both sft.model): only round 2 keeps another
    assert err.value.problems == [
        "stages.rl_2.inputs.reference: with adapter kind 'lora' PPO's reference is its starting "
        "policy (the shared base with the adapters off), so it cannot keep another reference; "
        "set stages.rl_2.adapter.kind=none to train the RL stage's full weights, or remove "
        "stages.rl_2.inputs.reference to keep the starting policy as reference."]
    build_plan(compose_with("+recipe=instructgpt_iterated", "adapter=lora",
                            "rounds.stages.rl.adapter.kind=none"))  # full-weight PPO: fine


def test_an_optimizer_without_a_reference_input_says_so():
    cfg = compose_with("+recipe=instructgpt", "+stages.rl.inputs.reference=sft.model",
                       "stages.rl.params.optimizer.name=grpo",
                       "~stages.rl.params.optimizer.params", "~stages.rl.inputs.pretraining",
                       "~stages.rl.inputs.reward_model", "~stages.rl.params.reward.params",
                       "stages.rl.params.reward.name=function",
                       "+stages.rl.params.reward.params.function=framework.data.builtin.labeler:score",
                       "~stages.evaluate")
    with pytest.raises(ConfigError) as err:
        build_plan(cfg)
    assert err.value.problems == [
        "stages.rl.inputs.reference: wired, but unused with this stage's params (optimizer "
        "'grpo' keeps its starting policy as the KL reference). Remove the input or change the "
        "params."]


def test_the_memory_command_sizes_every_round(capsys):
    from framework.memory.command import main

    assert main(["+recipe=instructgpt_iterated", "rounds.count=3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in report["stages"]] == [
        "sft", *(f"{s}_{r}" for r in (1, 2, 3) for s in ("reward_model", "rl")), "evaluate"]
    assert [s["stage"] for s in report["not_estimated"]] == [
        f"{s}_{r}" for r in (1, 2, 3) for s in ("collect", "label")]  # they train nothing


# --------------------------------------------------------------------- carried comparisons
def _pairs_file(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p, "chosen": f"Yes about {p}", "rejected": "No"})
                            + "\n" for p in prompts))
    return Artifact(COMPARISONS, str(path), {"format": "pairs", "eval_fraction": 0.5})


def _task(task_id, prompt):  # K = 3: 3 pairs, ranked in order
    return (Task(task_id, [{"role": "user", "content": prompt}], ["A.", "B.", "C."]),
            Label(task_id, "sim", ranks=[1, 2, 3]))


def test_carried_comparisons_keep_every_prompt_on_one_side(tmp_path):
    earlier = _pairs_file(tmp_path / "earlier.jsonl", ["p0", "p1", "p2", "p3"])
    at = "stages.label_2.inputs.earlier"
    old_train, old_eval = load_comparisons(source_from_artifact(earlier, at), at)
    held, trained = old_eval["prompt"][0][0]["content"], old_train["prompt"][0][0]["content"]
    assert len(old_eval) == 2 and len(old_train) == 2  # half of the 4 prompts held out
    # this round: one prompt already held out, one already trained on, four new ones
    tasks, labels = zip(*[_task(f"t{i}", p) for i, p in
                          enumerate([held, trained, "n0", "n1", "n2", "n3"])])
    artifact, metrics = carry(earlier, tasks, labels, 0.5, tmp_path / "so_far", "stages.label_2")
    train, test = load_comparisons(source_from_artifact(artifact, "x"), "x")
    side = lambda rows: {r[0]["content"] for r in rows["prompt"]}  # noqa: E731
    assert side(train) & side(test) == set()
    assert held in side(test) and trained in side(train)
    # new prompts go as the reward model would split this round's pairs alone
    alone = tmp_path / "alone.jsonl"
    alone.write_text("".join(json.dumps(r) + "\n" for r in comparison_rows(tasks, labels)))
    _, own_test = load_comparisons(source_from_artifact(Artifact(COMPARISONS, str(alone), {
        "format": "pairs", "eval_fraction": 0.5}), "x"), "x")
    new = {"n0", "n1", "n2", "n3"}
    assert side(test) & new == side(own_test) & new
    # 4 earlier pairs + 6 prompts x 3 pairs, each exactly once
    assert len(train) == metrics["train_pairs"] == 2 + 3 * len(side(train) & (new | {trained}))
    assert len(test) == metrics["eval_pairs"] == 2 + 3 * len(side(test) & (new | {held}))
    assert metrics["earlier_pairs"] == 4 and len(train) + len(test) == 4 + 18
    assert artifact.meta == {"format": "pairs", "eval_split": "test"}


# ---------------------------------------------------------------------- a 2-round run
def tiny_data(folder):
    folder.mkdir(parents=True, exist_ok=True)
    files = {"demos": [{"prompt": f"Name a colour ({i}).", "completion": f"Colour {i}."}
                       for i in range(8)],
             "rankings": [{"prompt": f"Pick a fruit ({i}).", "responses": [f"Apple {i}.", "Pear.",
                                                                            "No."]}
                          for i in range(8)],
             "prompts": [{"prompt": f"Tell me about topic {i}."} for i in range(16)],
             "text": [{"text": f"Plain text number {i}."} for i in range(4)]}
    for name, rows in files.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def tiny_iterated(model_dir, data):
    rm, ppo = "rounds.stages.reward_model.params", "rounds.stages.rl.params"
    return [
        "+recipe=instructgpt_iterated", f"model.name_or_path={model_dir}", "report=false",
        f"data.demonstrations.path={data}/demos.jsonl", "data.demonstrations.eval_fraction=0",
        f"data.comparisons.path={data}/rankings.jsonl", "data.comparisons.eval_fraction=0.25",
        f"data.prompts.path={data}/prompts.jsonl", "data.prompts.eval_fraction=0.25",
        f"data.pretraining.path={data}/text.jsonl",
        "stages.sft.params.freeze_layers=0", "+stages.sft.params.args.max_steps=2",
        "stages.sft.params.args.per_device_train_batch_size=2", "stages.sft.params.args.max_length=64",
        "rounds.stages.collect.params.num_prompts=4", "rounds.stages.collect.params.responses_per_prompt=3",
        "rounds.stages.collect.params.max_new_tokens=6", "+rounds.stages.collect.params.batch_size=12",
        "rounds.stages.label.params.eval_fraction=0.25",
        f"{rm}.freeze_layers=0", f"{rm}.args.max_steps=2", f"{rm}.args.per_device_train_batch_size=3",
        f"{rm}.args.per_device_eval_batch_size=3", f"{rm}.args.max_length=64",
        f"{ppo}.optimizer.params.steps=1", f"{ppo}.optimizer.params.batch_size=2",
        f"{ppo}.optimizer.params.num_minibatches=1", f"{ppo}.optimizer.params.max_new_tokens=4",
        f"{ppo}.optimizer.params.learning_rate=1e-3", f"{ppo}.optimizer.params.ptx_max_length=16",
        f"{ppo}.optimizer.params.sample_every=0", f"{ppo}.optimizer.params.save_every=0",
        f"{ppo}.reward.params.calibration_size=2",
        "stages.evaluate.params.num_prompts=2", "stages.evaluate.params.samples_per_prompt=2",
        "stages.evaluate.params.max_new_tokens=4", "++stages.evaluate.params.batch_size=2",
    ]


def _rows(path):
    return [json.loads(line) for line in path.open()]


@pytest.mark.usefixtures("one_thread")
def test_two_rounds_on_the_tiny_model_use_the_wiring_they_declare(tmp_path, tiny_model_dir):
    from framework.common import training_log
    from framework.report.command import write_report

    run_dir = tmp_path / "run"
    cfg = compose_with(*tiny_iterated(tiny_model_dir, tiny_data(tmp_path / "data")))
    summary = run_pipeline(cfg, run_dir, "instructgpt_iterated")
    stages = summary["stages"]
    assert list(stages) == ["sft", "collect_1", "label_1", "reward_model_1", "rl_1", "collect_2",
                            "label_2", "reward_model_2", "rl_2", "evaluate"]
    assert all(s["status"] == "done" for s in stages.values())

    manifest = lambda s: json.loads((run_dir / s / "manifest.json").read_text())  # noqa: E731
    sft, rl_1 = stages["sft"]["artifacts"]["model"].location, stages["rl_1"]["artifacts"]["model"].location
    # round 2 samples and starts PPO from rl_1's policy, and keeps SFT as the KL reference
    assert manifest("collect_2")["inputs"]["policy"]["location"] == rl_1
    assert manifest("rl_2")["inputs"]["policy"]["location"] == rl_1
    assert manifest("rl_2")["inputs"]["reference"]["location"] == sft
    assert manifest("rl_1")["inputs"]["policy"]["location"] == sft
    # PPO measured its KL against that reference: 0 at round 1's first step (start = reference),
    # clearly not at round 2's (rl_1 moved away from SFT at learning rate 1e-3)
    assert training_log.read(run_dir / "rl_1")[0]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert abs(training_log.read(run_dir / "rl_2")[0]["kl"]) > 1e-3
    # round 2 collected other prompts than round 1 (training prompts 4-7, not 0-3)
    prompts = lambda s: {json.loads(l)["prompt"][-1]["content"]  # noqa: E731
                         for l in (run_dir / s / "tasks.jsonl").open()}
    assert prompts("collect_1").isdisjoint(prompts("collect_2"))

    # reward_model_2 trained on the rankings' pairs and both rounds' labels, each exactly once
    rankings = 8 * 3  # 8 prompts x 3 pairs
    new = [len(_rows(run_dir / f"label_{r}" / "comparisons.jsonl")) for r in (1, 2)]
    assert new == [stages[f"label_{r}"]["metrics"]["comparison_pairs"] for r in (1, 2)]
    assert new[0] == 3 * stages["collect_1"]["metrics"]["tasks"] > 0
    rm_1, rm_2 = stages["reward_model_1"]["metrics"], stages["reward_model_2"]["metrics"]
    assert rm_1["train_pairs"] + rm_1["eval_pairs"] == rankings + new[0]
    assert rm_2["train_pairs"] + rm_2["eval_pairs"] == rankings + new[0] + new[1]
    so_far = run_dir / "label_2" / "comparisons_so_far"
    assert rm_2["train_pairs"] == len(_rows(so_far / "train.jsonl"))
    # what round 1 held out stays held out in round 2
    key = lambda r: (json.dumps(r["prompt"]), r["chosen"], r["rejected"])  # noqa: E731
    round_1 = run_dir / "label_1" / "comparisons_so_far"
    assert {key(r) for r in _rows(round_1 / "test.jsonl")} <= {key(r) for r in _rows(so_far / "test.jsonl")}
    assert {key(r) for r in _rows(round_1 / "train.jsonl")} <= {key(r) for r in _rows(so_far / "train.jsonl")}

    # summary.json's rounds table, from the stages' metrics
    written = json.loads((run_dir / "summary.json").read_text())
    table = stages["evaluate"]["metrics"]["policies"]
    assert written["rounds"] == [
        {"round": 0, "labeler_score": table["sft"]["labeler"]},
        *({"round": r, "reward_model_accuracy": stages[f"reward_model_{r}"]["metrics"]["eval_accuracy"],
           "reward_model_eval_pairs": stages[f"reward_model_{r}"]["metrics"]["eval_pairs"],
           "labeler_score": table[f"rl_{r}"]["labeler"], "win_rate_vs_sft": table[f"rl_{r}"]["win_rate"]}
          for r in (1, 2))]
    # the report shows that table, every figure read from summary.json
    from test_report import parse, resolve

    numbers = [n for n in parse(write_report([run_dir])).numbers
               if json.loads(n["data-path"])[0] == "rounds"]
    assert {tuple(json.loads(n["data-path"])) for n in numbers} == {
        ("rounds", r, k) for r, row in enumerate(written["rounds"]) for k in row if k != "round"}
    assert all(n["data-value"] == repr(resolve([run_dir], n)) for n in numbers)
