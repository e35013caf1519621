"""GRPO and RLOO for the RL stage: TRL's maintained trainers, wrapped. The framework adds what
it adds to every stage (typed settings checked at planning, its reward sources, safe model
loading, adapters, resume and guards); the algorithms are TRL's."""

from framework_plugins.optimizers.trl_online.optimizer import GRPOOptimizer, RLOOOptimizer

__all__ = ["GRPOOptimizer", "RLOOOptimizer"]
