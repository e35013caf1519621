"""Stage plugins: one folder per pipeline step (sft, reward_model, rl)."""
