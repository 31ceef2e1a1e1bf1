"""Baselines on the world-model env: Stable-Baselines3 PPO through an SB3 VecEnv adapter."""

from .ppo import PPOArgs, PPOFramePolicy, train_ppo
from .vec_env import SB3VecEnvAdapter

__all__ = ["PPOArgs", "PPOFramePolicy", "SB3VecEnvAdapter", "train_ppo"]
