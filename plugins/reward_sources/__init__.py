"""Reward-source plugins: what scores a (prompt, response) pair (reward_model, function)."""
