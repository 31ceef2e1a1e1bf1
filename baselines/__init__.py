"""Baselines: Stable-Baselines3 PPO on the world-model env (through an SB3 VecEnv adapter), and on the real
gym-pusht for reference."""

from .ground_truth import PPOTruthPolicy, PushTTruthEnv
from .ppo import PPOArgs, PPOFramePolicy, train_ppo
from .vec_env import SB3VecEnvAdapter

__all__ = ["PPOArgs", "PPOFramePolicy", "PPOTruthPolicy", "PushTTruthEnv", "SB3VecEnvAdapter", "train_ppo"]
