"""The simulated labeler behind the built-in data set: it prefers concise, complete, on-topic answers.

InstructGPT's human labelers ranked K sampled responses per prompt. Here this deterministic
function plays the labeler, so the preference the reward model learns is written down and can be
measured independently of any learned model (the RL stage reports it before and after RL, as
`reward: {function: framework.data.builtin.labeler:score}`).

    score(prompt, response) = completeness + length - repetition + 0.5 * on_topic

with `n` the number of whitespace-separated words of the response:

completeness  1.0 if the stripped response ends with `.`, `!` or `?` (optionally followed by a
              closing quote or bracket), i.e. it was not cut off mid-sentence; else 0.0.
length        n / 8 for n < 8; 1.0 for 8 <= n <= 30; (60 - n) / 30 for 30 < n < 60; 0.0 from 60
              words on. Short answers are preferred; rambling ones lose up to the whole term.
repetition    the fraction of the response's word 3-grams (lower-cased, punctuation stripped)
              that repeat an earlier 3-gram: 0.0 for no repeats, close to 1.0 for a loop.
on_topic      the fraction of the prompt's content words (alphabetic, 3+ letters, not in
              STOPWORDS, a trailing "s" removed) that also occur in the response.

The score lies in [-1, 2.5]; a complete 8-30 word answer that repeats no phrase and uses every
content word of the prompt gets 2.5. `rank` orders responses by score, breaking exact ties (to
1e-9) deterministically: fewer words first (the concise answer), then the earlier response.
"""

from __future__ import annotations

import re
from typing import Sequence

TERMINAL = re.compile(r"[.!?][\"')\]]*$")
WORD = re.compile(r"[a-z0-9']+")

# Function words and the instruction words of the prompt templates: they say nothing about the
# topic, so they do not count towards `on_topic`.
STOPWORDS = frozenset(
    """
    a about after all also an and any are as at be because been but by can could did do does
    for from get give had has have how i if in into is it its just know make me more most my name
    not of on one or our out people should so some than that the their them then there these they
    this those to too use used very was way we were what when where which who why will with would
    you your
    explain describe purpose main tip tips beginner started start common mistake mistakes few
    words word short
    """.split()
)


def _norm(word: str) -> str:
    word = word.strip("'")
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def content_words(text: str) -> set[str]:
    """Lower-cased topic words of `text` (alphabetic, 3+ letters, not stopwords, plural s cut)."""
    return {
        _norm(w)
        for w in WORD.findall(text.lower())
        if w.isalpha() and len(w) >= 3 and w not in STOPWORDS
    }


def completeness(response: str) -> float:
    return 1.0 if TERMINAL.search(response.strip()) else 0.0


def length_term(n_words: int) -> float:
    if n_words < 8:
        return n_words / 8
    if n_words <= 30:
        return 1.0
    return max(0.0, (60 - n_words) / 30)


def repetition(response: str) -> float:
    words = WORD.findall(response.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def on_topic(prompt: str, response: str) -> float:
    wanted = content_words(prompt)
    if not wanted:
        return 0.0
    return len(wanted & content_words(response)) / len(wanted)


def score(prompt: str, response: str) -> float:
    """The labeler's score of `response` to `prompt` (higher is better; see the module doc)."""
    return (
        completeness(response)
        + length_term(len(response.split()))
        - repetition(response)
        + 0.5 * on_topic(prompt, response)
    )


def rank(prompt: str, responses: Sequence[str]) -> list[int]:
    """Rank of each response, 1 = best; exact ties go to the shorter, then the earlier one."""
    scores = [round(score(prompt, r), 9) for r in responses]
    order = sorted(range(len(responses)), key=lambda i: (-scores[i], len(responses[i].split()), i))
    ranks = [0] * len(responses)
    for position, i in enumerate(order, start=1):
        ranks[i] = position
    return ranks
