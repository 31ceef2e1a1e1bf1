"""The real Push-T (gym-pusht) as a Gymnasium env for reference PPO runs, and a policy that evaluates them.

PPO trained on the simulator itself answers the question the world model is for: how many *real* env steps
does model-free RL need to do what FoG does with world-model steps alone. The env has the world model's
task: the same reward labels (``dense`` by default, :mod:`wm_gym.pusht`), 300-step episodes that end on
success, actions in [-1, 1] mapped to the 512 x 512 workspace (as :class:`~baselines.vec_env.SB3VecEnvAdapter`
maps them) or, with ``action_offset > 0``, to targets at most that far from the agent (FoG's anchored actions,
``FoGConfig.action_offset``, anchored here on the true agent position). Observations are the true state
(``obs_type="state"``: agent xy and block xy scaled to [-1, 1], cos and sin of the block angle; a privileged
observation no world-model policy has) or the 64 x 64 frames the world model draws (``obs_type="pixels"``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fog_trainer.evaluate import GroundTruthPolicy
from wm_gym.pusht import REWARD_TYPES, WORKSPACE, PushTGroundTruth, TaskSpec

OBS_TYPES = ("state", "pixels")


def state_observation(state: np.ndarray) -> np.ndarray:
    """(..., 5) true state (agent xy, block xy, block angle) -> (..., 6) float32 in [-1, 1]."""
    state = np.asarray(state, dtype=np.float64)
    xy = state[..., :4] / (WORKSPACE / 2.0) - 1.0
    angle = state[..., 4:5]
    return np.concatenate([xy, np.cos(angle), np.sin(angle)], -1).astype(np.float32)


def truth_action(action: np.ndarray, state: np.ndarray, task: TaskSpec, action_offset: float = 0.0) -> np.ndarray:
    """A policy action in [-1, 1] -> the env-unit target: over the whole workspace, or with ``action_offset > 0``
    at most that far from the agent (true ``state[:2]``), clipped to the workspace."""
    action = np.clip(action, -1.0, 1.0)
    if action_offset > 0:
        return np.clip(np.asarray(state, np.float64)[:2] + action_offset * action, task.action_low, task.action_high)
    return task.unnormalize_action(action)


class PushTTruthEnv(gym.Env):
    """gym-pusht with a world-model reward label, normalised actions and a state or frame observation.

    Args:
        obs_type: ``"state"`` (6 floats, see :func:`state_observation`) or ``"pixels"`` (uint8 (64, 64, 3)).
        reward_type: one of :data:`wm_gym.pusht.REWARD_TYPES` (``info`` carries all of them).
        max_episode_steps: truncation limit (gym-pusht's 300).
        image_size: frame size for ``obs_type="pixels"``.
        action_offset: 0: absolute targets; > 0: anchored targets (:func:`truth_action`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": TaskSpec().render_fps}

    def __init__(self, obs_type: str = "state", reward_type: str = "dense", max_episode_steps: int = 300,
                 image_size: int = 64, render_mode: str | None = None, action_offset: float = 0.0):
        if action_offset < 0:
            raise ValueError(f"action_offset must be >= 0 (0: absolute targets), got {action_offset}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        self.obs_type, self.reward_type, self.render_mode = obs_type, reward_type, render_mode
        self.action_offset = float(action_offset)
        self.task = TaskSpec(image_size=image_size, max_episode_steps=max_episode_steps)
        self.truth = PushTGroundTruth(image_size=image_size, max_episode_steps=max_episode_steps,
                                      obs_type="pixels" if obs_type == "pixels" else "state")
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.task.action_dim,), np.float32)
        if obs_type == "state":
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
        else:
            self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)

    def _obs(self, obs, info) -> np.ndarray:
        return state_observation(info["state"]) if self.obs_type == "state" else np.asarray(obs, np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # gym-pusht draws its start from its own generator: seed it from ours, so an unseeded reset after a
        # seeded one continues a reproducible sequence
        obs, info = self.truth.reset(seed=int(self.np_random.integers(2**31)))
        self._state = info["state"]
        return self._obs(obs, info), info

    def step(self, action):
        if not hasattr(self, "_state"):
            raise RuntimeError("PushTTruthEnv.step() before reset(): call env.reset(seed=...) first")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.task.action_dim,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be {self.task.action_dim} finite numbers in [-1, 1], got {action!r}")
        obs, _, terminated, truncated, info = self.truth.step(truth_action(action, self._state, self.task,
                                                                          self.action_offset))
        self._state = info["state"]
        return self._obs(obs, info), float(info["reward_" + self.reward_type]), terminated, truncated, info

    def render(self):
        return self.truth.render()

    def close(self) -> None:
        self.truth.close()


class PPOTruthPolicy(GroundTruthPolicy):
    """A PPO model trained in :class:`PushTTruthEnv`, for :func:`fog_trainer.evaluate.evaluate_in_ground_truth`.

    With ``obs_type="state"`` (or ``action_offset > 0``, whose anchor is the true agent position) it reads the true
    state from the evaluator's ``info`` (privileged).
    """

    privileged = True

    def __init__(self, model, obs_type: str, deterministic: bool = True, action_offset: float = 0.0):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        self.model, self.obs_type, self.deterministic = model, obs_type, deterministic
        self.task, self.action_offset = TaskSpec(), float(action_offset)

    def act(self, frame: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        obs = state_observation(info["state"]) if self.obs_type == "state" else frame
        a, _ = self.model.predict(obs, deterministic=self.deterministic)
        return truth_action(a, info["state"], self.task, self.action_offset)
