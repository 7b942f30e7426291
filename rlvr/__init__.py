"""rlvr: reinforcement learning with verifiable rewards, PPO vs GRPO compared honestly."""

__version__ = "0.1.0"
