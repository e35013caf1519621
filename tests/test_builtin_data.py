"""The built-in data set and its simulated labeler (no model is loaded).

The data checks recompute the labeler on the shipped responses, so the files and the documented
labeler cannot drift apart, and compare the prompts with the deterministic prompt generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.data.builtin import labeler
from framework.data.builtin.prompts_source import (
    N_DEMONSTRATIONS,
    N_PROMPTS,
    N_RANKINGS,
    all_prompts,
    pretraining_paragraphs,
    split_prompts,
)

BUILTIN = Path(labeler.__file__).parent
FIELDS = {
    "demonstrations": {"prompt", "completion"},
    "rankings": {"prompt", "responses", "ranks"},
    "prompts": {"prompt"},
    "pretraining": {"text"},
}

BIKE = "Explain what a bicycle is."
COMPLETE = "A bicycle is a vehicle with two wheels that you move by pushing pedals."  # 14 words
CUT_OFF = "A bicycle is a vehicle with two"  # 7 words
LOOP = "the cat sat the cat sat the cat sat."  # 9 words, 3 distinct of 7 word 3-grams
RAMBLING = " ".join(f"w{i}" for i in range(44)) + " bicycles."  # 45 words


# --- the labeler, against hand computation --------------------------------------------------


def test_content_words_drop_template_and_stop_words():
    assert labeler.content_words(BIKE) == {"bicycle"}
    assert labeler.content_words("Give me one tip for riding bicycles in the city.") == {
        "riding", "bicycle", "city"
    }


@pytest.mark.parametrize(
    "n, expected",
    [(0, 0.0), (4, 0.5), (7, 0.875), (8, 1.0), (30, 1.0), (45, 0.5), (59, 1 / 30), (60, 0.0), (90, 0.0)],
)
def test_length_term(n, expected):
    assert labeler.length_term(n) == pytest.approx(expected)


def test_completeness():
    assert labeler.completeness("Done.") == 1.0
    assert labeler.completeness("Really?  \n") == 1.0
    assert labeler.completeness('He said "yes."') == 1.0
    assert labeler.completeness("(It works!)") == 1.0
    assert labeler.completeness("and then the") == 0.0
    assert labeler.completeness("") == 0.0


def test_repetition():
    assert labeler.repetition(COMPLETE) == 0.0
    assert labeler.repetition(LOOP) == pytest.approx(4 / 7)
    assert labeler.repetition("too short") == 0.0


@pytest.mark.parametrize(
    "response, expected",
    [
        (COMPLETE, 1.0 + 1.0 - 0.0 + 0.5 * 1.0),  # 2.5: the maximum
        (CUT_OFF, 0.0 + 7 / 8 - 0.0 + 0.5 * 1.0),  # 1.375
        (LOOP, 1.0 + 1.0 - 4 / 7 + 0.0),  # 1.4286: off topic and repetitive
        (RAMBLING, 1.0 + 0.5 - 0.0 + 0.5 * 1.0),  # 2.0
        ("", 0.0),
    ],
)
def test_score_matches_hand_computation(response, expected):
    assert labeler.score(BIKE, response) == pytest.approx(expected)


def test_rank_orders_by_score():
    assert labeler.rank(BIKE, [CUT_OFF, COMPLETE, LOOP, RAMBLING]) == [4, 1, 3, 2]


def test_rank_breaks_ties_by_fewer_words_then_position():
    ten = "I like my bicycle very much and ride it daily."
    thirteen = "My bicycle is red and I ride it to work every single day."
    assert labeler.score(BIKE, ten) == labeler.score(BIKE, thirteen) == 2.5
    assert labeler.rank(BIKE, [thirteen, ten]) == [2, 1]
    same_a, same_b = "My old bicycle is red and very fast.", "My new bicycle is blue and very slow."
    assert labeler.rank(BIKE, [same_a, same_b]) == [1, 2]
    assert labeler.rank(BIKE, [same_b, same_a]) == [1, 2]


# --- the shipped files ----------------------------------------------------------------------


def read(name: str) -> list[dict]:
    path = BUILTIN / f"{name}.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_file_parses_with_documented_fields_and_is_small(name):
    path = BUILTIN / f"{name}.jsonl"
    assert path.stat().st_size < 1_000_000
    rows = read(name)
    assert rows
    for i, row in enumerate(rows):
        assert set(row) == FIELDS[name], (name, i)
        for key, value in row.items():
            if key == "responses":
                assert all(isinstance(r, str) and r.strip() for r in value), (name, i)
            elif key != "ranks":
                assert isinstance(value, str) and value.strip(), (name, i, key)


def test_row_counts():
    assert len(read("rankings")) == N_RANKINGS
    assert len(read("demonstrations")) == N_DEMONSTRATIONS
    assert len(read("prompts")) == N_PROMPTS
    assert len(read("pretraining")) == 200


def test_rankings_have_four_distinct_responses_and_a_rank_permutation():
    for row in read("rankings"):
        assert len(row["responses"]) == 4
        assert len(set(row["responses"])) == 4
        assert sorted(row["ranks"]) == [1, 2, 3, 4]


def test_ranks_agree_with_the_labeler():
    for row in read("rankings"):
        assert row["ranks"] == labeler.rank(row["prompt"], row["responses"]), row["prompt"]


def test_prompt_sets_are_disjoint_and_come_from_the_generator():
    sets = {
        "rankings": [r["prompt"] for r in read("rankings")],
        "demonstrations": [r["prompt"] for r in read("demonstrations")],
        "prompts": [r["prompt"] for r in read("prompts")],
    }
    assert sets == split_prompts()
    for name, prompts in sets.items():
        assert len(set(prompts)) == len(prompts), name
    names = sorted(sets)
    for a in names:
        for b in names:
            if a < b:
                assert not set(sets[a]) & set(sets[b]), (a, b)
    assert set().union(*map(set, sets.values())) <= set(all_prompts())


def test_pretraining_is_the_templated_paragraphs():
    assert [r["text"] for r in read("pretraining")] == pretraining_paragraphs()


def test_demonstrations_are_complete_but_not_the_labelers_picks():
    """Trimmed to whole sentences, but sampled under uneven settings and not selected: their
    labeler score sits well below the best-ranked responses, which leaves RL room to gain."""
    rows = read("demonstrations")
    complete = sum(labeler.completeness(r["completion"]) for r in rows) / len(rows)
    demo_score = sum(labeler.score(r["prompt"], r["completion"]) for r in rows) / len(rows)
    best = [(row["prompt"], row["responses"][row["ranks"].index(1)]) for row in read("rankings")]
    best_score = sum(labeler.score(p, r) for p, r in best) / len(best)
    assert complete >= 0.9
    assert demo_score < best_score - 0.25, (demo_score, best_score)


def test_rankings_load_through_the_framework_as_six_pairs_per_prompt():
    from framework.data import DataSourceConfig, load_comparisons

    source = DataSourceConfig(kind="comparisons", path="builtin:rankings")
    pairs, held_out = load_comparisons(source, "data.comparisons")
    assert held_out is None
    assert len(pairs) == 6 * N_RANKINGS
