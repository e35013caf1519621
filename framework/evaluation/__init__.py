"""Measuring policies on held-out prompts: sampling with KL and entropy, diversity, win rates.
Used by the `evaluate` stage and the RL stage's before/after evaluation."""
