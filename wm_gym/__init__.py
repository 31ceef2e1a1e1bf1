"""wm-gym: train policies inside a learned world model.

``import wm_gym`` registers ``WM-PushT-v0`` with Gymnasium (single env and native vector env)::

    import gymnasium as gym, wm_gym
    env = gym.make("WM-PushT-v0")                      # one env, pixels, gym-pusht's reward
    venv = gym.make_vec("WM-PushT-v0", num_envs=64)    # one batched denoiser call per step
"""

from gymnasium.envs.registration import register, registry

from .pusht import PUSHT, TaskSpec

__version__ = "0.1.0"

if "WM-PushT-v0" not in registry:
    register(
        id="WM-PushT-v0",
        entry_point="wm_gym.envs.wm_pusht:WMPushTEnv",
        vector_entry_point="wm_gym.envs.vector:WMPushTVectorEnv",
        max_episode_steps=300,
    )

__all__ = ["PUSHT", "TaskSpec", "__version__"]
