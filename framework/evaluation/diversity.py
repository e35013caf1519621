"""How varied a prompt's samples are. RLHF trades diversity for consistency (it is
mode-seeking), so the evaluate stage reports these next to the reward.

- distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams over a prompt's samples;
  1.0 when no n-gram repeats, towards 0 when the samples say the same thing.
- self-BLEU (Zhu et al. 2018): the mean over a prompt's samples of sacrebleu's sentence BLEU
  (0-100) of each sample against the others; 100 for identical samples.

Words are sacrebleu's 13a tokens (punctuation split off), lower-cased, so both measures count
the same units. Each is computed per prompt and averaged over prompts.
"""

from __future__ import annotations

from typing import Optional, Sequence

from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

_tokenize = Tokenizer13a()


def words(text: str) -> list[str]:
    return _tokenize(text.lower()).split()


def distinct_n(samples: Sequence[str], n: int) -> Optional[float]:
    """Distinct n-grams over all n-grams of `samples`; None when they have no n-gram at all."""
    grams = [tuple(w[i:i + n]) for w in map(words, samples) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def self_bleu(samples: Sequence[str]) -> Optional[float]:
    """Mean sentence BLEU of each sample against the others (None for fewer than 2 samples)."""
    if len(samples) < 2:
        return None
    bleu = BLEU(lowercase=True, effective_order=True)
    scores = [bleu.sentence_score(s, [o for j, o in enumerate(samples) if j != i]).score
              for i, s in enumerate(samples)]
    return sum(scores) / len(scores)


def per_prompt_mean(groups: Sequence[Sequence[str]], measure, *args) -> Optional[float]:
    """`measure(group, *args)` averaged over the groups where it is defined."""
    values = [v for v in (measure(g, *args) for g in groups) if v is not None]
    return sum(values) / len(values) if values else None
