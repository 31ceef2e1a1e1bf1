"""wm-gym: train policies inside a learned world model.

``import wm_gym`` registers ``WM-PushT-v0`` with Gymnasium (single env and native vector env)::

    import gymnasium as gym, wm_gym
    env = gym.make("WM-PushT-v0")                      # one env, pixels, gym-pusht's reward
    venv = gym.make_vec("WM-PushT-v0", num_envs=64)    # one batched denoiser call per step
"""

import os

# OpenMP's wait policy, the safe default (benchmarks/omp_wait.py, benchmarks/results/omp_wait.md): with
# GNU OpenMP's default busy-waiting, 2 torch threads beside another job on a 2-core machine stepped the env
# ~10-30x slower (and a training step once 90x); passive waiting never collapses, but on a *free* machine
# it costs ~1.4x at 16-64 envs and 3x on the surrogate's Jacobians (each parallel region wakes the threads).
# On a machine you have to yourself, export OMP_WAIT_POLICY=ACTIVE (or use 1 torch thread for small
# batches). Only effective when wm_gym is imported before torch; export the variable yourself otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gymnasium.envs.registration import register, registry  # noqa: E402

from .pusht import PUSHT, TaskSpec  # noqa: E402

__version__ = "0.1.0"

if "WM-PushT-v0" not in registry:
    register(
        id="WM-PushT-v0",
        entry_point="wm_gym.envs.wm_pusht:WMPushTEnv",
        vector_entry_point="wm_gym.envs.vector:WMPushTVectorEnv",
        max_episode_steps=300,
    )

__all__ = ["PUSHT", "TaskSpec", "__version__"]
