"""Comparison data: ranking expansion, the pair formats, row validation, the grouped split."""

from __future__ import annotations

import json

import datasets
import pytest

from framework.data import DataSourceConfig, expand_ranking, load_comparisons, to_pairs
from framework.errors import DataError

WHERE = "data.comparisons"


def pairs_of(rows: list[dict], fmt: str = "auto") -> list[tuple[str, str, int]]:
    ds = to_pairs(datasets.Dataset.from_list(rows), fmt, WHERE)
    return [(c[0]["content"], r[0]["content"], g) for c, r, g in zip(ds["chosen"], ds["rejected"], ds["group"])]


def test_expand_ranking_gives_all_pairs_best_first():
    assert expand_ranking(["a", "b", "c", "d"]) == [
        ("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d"),
    ]
    assert expand_ranking(["a", "b"]) == [("a", "b")]


def test_ranking_without_ranks_is_best_first():
    ds = to_pairs(datasets.Dataset.from_list([{"prompt": "Q", "responses": ["a", "b", "c", "d"]}]), "auto", WHERE)
    assert ds.column_names == ["prompt", "chosen", "rejected", "group"]
    assert len(ds) == 6  # 4 * 3 / 2
    assert ds[0]["prompt"] == [{"role": "user", "content": "Q"}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "a"}]
    assert pairs_of([{"prompt": "Q", "responses": ["a", "b", "c", "d"]}]) == [
        ("a", "b", 0), ("a", "c", 0), ("a", "d", 0), ("b", "c", 0), ("b", "d", 0), ("c", "d", 0),
    ]


def test_ranks_reorder_the_responses():
    # ranks: w is 3rd, x 1st, y 4th, z 2nd -> best first x, z, w, y
    rows = [{"prompt": "Q", "responses": ["w", "x", "y", "z"], "ranks": [3, 1, 4, 2]}]
    assert [(c, r) for c, r, _ in pairs_of(rows, "ranking")] == [
        ("x", "z"), ("x", "w"), ("x", "y"), ("z", "w"), ("z", "y"), ("w", "y"),
    ]


def test_groups_follow_the_prompt_across_rows():
    rows = [
        {"prompt": "P", "responses": ["a", "b", "c"]},
        {"prompt": "Q", "responses": ["d", "e"]},
        {"prompt": "P", "responses": ["f", "g"]},  # same prompt as row 0 -> same group
    ]
    assert [g for *_, g in pairs_of(rows)] == [0, 0, 0, 1, 0]


def test_pairs_as_strings_messages_and_implicit_prompt():
    assert pairs_of([{"prompt": "Q", "chosen": "good", "rejected": "bad"}]) == [("good", "bad", 0)]
    ds = to_pairs(datasets.Dataset.from_list([{
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }]), "pairs", WHERE)
    assert ds[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert ds[0]["rejected"] == [{"role": "assistant", "content": "bad"}]
    implicit = to_pairs(datasets.Dataset.from_list([{
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
    }]), "auto", WHERE)
    assert implicit[0]["prompt"] == [{"role": "user", "content": "Q"}]
    assert implicit[0]["chosen"] == [{"role": "assistant", "content": "good"}]
    assert implicit[0]["rejected"] == [{"role": "assistant", "content": "bad"}]


GOOD = {"prompt": "Q", "responses": ["a", "b", "c"], "ranks": [1, 2, 3]}


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        ({"ranks": [1, 1, 3]}, "ranks", "[1, 1, 3] is not a permutation of 1..3"),
        ({"ranks": [1, 2]}, "ranks", "[1, 2] is not a permutation of 1..3"),
        ({"ranks": [0, 1, 2]}, "ranks", "not a permutation of 1..3"),
        ({"responses": ["a"], "ranks": [1]}, "responses", "at least 2 responses"),
        ({"prompt": "   "}, "prompt", "is empty"),
        ({"prompt": None}, "prompt", "is missing"),
        ({"responses": ["a", "", "c"]}, "responses[1]", "is empty"),
        ({"responses": ["a", "b", "a"]}, "responses", "'a' appears twice"),
    ],
)
def test_bad_ranking_rows_name_row_field_and_fix(bad, field, problem):
    rows = [GOOD, {**GOOD, **bad}]
    with pytest.raises(DataError) as err:
        to_pairs(datasets.Dataset.from_list(rows), "auto", WHERE)
    message = str(err.value)
    assert message.startswith(f"{WHERE}: row 1 (0-based), field {field!r}: ")
    assert problem in message
    assert "Fix: " in message


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        ({"chosen": "same", "rejected": "same"}, "rejected", "identical to chosen"),
        ({"rejected": None}, "rejected", "is missing"),
        ({"prompt": ""}, "prompt", "is empty"),
    ],
)
def test_bad_pair_rows_name_row_field_and_fix(bad, field, problem):
    good = {"prompt": "Q", "chosen": "good", "rejected": "bad"}
    with pytest.raises(DataError) as err:
        to_pairs(datasets.Dataset.from_list([good, {**good, **bad}]), "auto", WHERE)
    assert str(err.value).startswith(f"{WHERE}: row 1 (0-based), field {field!r}: ")
    assert problem in str(err.value)


def test_wrong_type_is_named():
    # A column holds one type, so the whole column is wrong here.
    with pytest.raises(DataError, match=r"row 0 \(0-based\), field 'chosen': expected a string, got int 3"):
        to_pairs(datasets.Dataset.from_list([{"prompt": "Q", "chosen": 3, "rejected": "b"}]), "auto", WHERE)


def test_response_messages_must_be_one_assistant_turn():
    row = {"prompt": "Q", "chosen": [{"role": "user", "content": "x"}],
           "rejected": [{"role": "assistant", "content": "y"}]}
    with pytest.raises(DataError, match=r"field 'chosen': expected one assistant message, got roles \['user'\]"):
        to_pairs(datasets.Dataset.from_list([row]), "auto", WHERE)


def test_implicit_prompts_must_match():
    row = {
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "bad"}],
    }
    with pytest.raises(DataError, match=r"row 0 \(0-based\), field 'rejected': its messages before"):
        to_pairs(datasets.Dataset.from_list([row]), "auto", WHERE)


def test_unknown_columns_list_the_expected_sets():
    with pytest.raises(DataError) as err:
        to_pairs(datasets.Dataset.from_list([{"question": "Q", "answer": "A"}]), "auto", WHERE)
    assert "cannot tell the comparisons format" in str(err.value)
    assert "pairs: prompt, chosen, rejected" in str(err.value)


def test_hh_text_is_detected_and_parsed():  # the details are in test_hh.py
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go"}
    assert pairs_of([row]) == [("hello", "go", 0)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_held_out_split_keeps_each_prompts_pairs_together(tmp_path):
    rows = [{"prompt": f"Q{i}", "responses": [f"a{i}", f"b{i}", f"c{i}", f"d{i}"]} for i in range(20)]
    path = write_jsonl(tmp_path / "rankings.jsonl", rows)
    source = DataSourceConfig(kind="comparisons", path=str(path), eval_fraction=0.25, seed=3)
    train, evaluation = load_comparisons(source, WHERE)
    train_groups, eval_groups = set(train["group"]), set(evaluation["group"])
    assert len(eval_groups) == 5 and len(train_groups) == 15  # 25% of 20 prompts
    assert not train_groups & eval_groups
    assert len(train) == 15 * 6 and len(evaluation) == 5 * 6  # every group complete
    # The same seed gives the same split.
    assert load_comparisons(source, WHERE)[1]["group"] == evaluation["group"]


def test_bad_row_in_a_file_names_the_file(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "Q", "chosen": "a", "rejected": "b"},
        {"prompt": "Q", "chosen": "a", "rejected": "a"},
    ])
    source = DataSourceConfig(kind="comparisons", path=str(path))
    with pytest.raises(DataError) as err:
        load_comparisons(source, WHERE)
    assert str(path) in str(err.value)
    assert "row 1 (0-based), field 'rejected': identical to chosen" in str(err.value)
