"""Optimizer plugins for the RL stage: policy-optimization algorithms (ppo)."""
