"""Ground-truth Push-T: a thin adapter over gym-pusht, the task description and its reward labels.

Everything Push-T specific lives here (the task is kept in one place so the rest of the library stays
task-agnostic): the action space and its normalisation, the image size, the reward labels, the success
test and the true-state reader. gym-pusht is imported lazily: the world-model env never needs it.

Reward labels (both computed from the true state):

* ``coverage`` -- gym-pusht's own reward, ``clip(coverage / 0.95, 0, 1)`` where coverage is the
  fraction of the goal T's area covered by the block.
* ``dense`` -- a shaped reward for learning from scratch, in about [-2.5, 0]::

      dense = -( |p_T - p_goal| / 256            # block position error (px / 256)
               + |wrap(theta_T - theta_goal)| / pi  # block angle error (fraction of half a turn)
               + 0.5 * max(0, |p_agent - p_T| - 60) / 256 )  # agent far from the block

* ``push`` -- ``dense`` with a reach term that asks for the agent *behind* the block, on the side away
  from the goal, where pushing moves the block towards the goal (``dense`` pays for standing next to the
  block on any side, so a policy that chases the block also pushes it away)::

      push = -( |p_T - p_goal| / 256 + |wrap(theta_T - theta_goal)| / pi
               + 0.5 * max(0, |p_agent - p_push| - 30) / 256 )
      p_push = p_T + 60 * (p_T - p_goal) / sqrt(|p_T - p_goal|^2 + 20^2)   # -> p_T at the goal

``dense`` and ``push`` are functions of the true state alone (:data:`STATE_REWARDS`): a collection
recorded before a label existed gets it from its recorded states (:func:`wm_gym.data.load_split`).

Success is ``coverage > 0.95`` exactly as gym-pusht.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

WORKSPACE = 512.0
GOAL_POSE = np.array([256.0, 256.0, math.pi / 4])
SUCCESS_THRESHOLD = 0.95
AGENT_RADIUS = 15.0
REWARD_TYPES = ("coverage", "dense", "push")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a world model needs to know about a task (stored in datasets and checkpoints).

    Args:
        name: task name.
        image_size: square frame size of the world model (pixels).
        action_low, action_high: bounds of every action coordinate in env units.
        action_dim: number of action coordinates.
        max_episode_steps: truncation limit.
        render_fps: control rate (env steps per second).
        reward_types: names of the reward labels, in the order models predict them.
    """

    name: str = "pusht"
    image_size: int = 64
    action_low: float = 0.0
    action_high: float = WORKSPACE
    action_dim: int = 2
    max_episode_steps: int = 300
    render_fps: int = 10
    reward_types: tuple[str, ...] = REWARD_TYPES

    def normalize_action(self, action):
        """Env units -> [-1, 1] (works on numpy arrays and torch tensors)."""
        half = (self.action_high - self.action_low) / 2.0
        return (action - self.action_low) / half - 1.0

    def unnormalize_action(self, action):
        """[-1, 1] -> env units."""
        half = (self.action_high - self.action_low) / 2.0
        return (action + 1.0) * half + self.action_low

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reward_types"] = list(self.reward_types)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        d = dict(d)
        d["reward_types"] = tuple(d.get("reward_types", REWARD_TYPES))
        return cls(**d)


PUSHT = TaskSpec()


def _is_tensor(x) -> bool:
    """A torch tensor (without importing torch: the ground-truth side of wm-gym does not need it)."""
    return type(x).__module__.startswith("torch")


def _array(x):
    """``x`` as a float64 numpy array, or unchanged if it is a torch tensor: the reward formulas below are written
    once, for both (numpy for labels and evaluation, torch where a world model differentiates them)."""
    return x if _is_tensor(x) else np.asarray(x, dtype=np.float64)


def _goal(s, index):
    """``GOAL_POSE[index]`` in the array type of ``s``."""
    goal = GOAL_POSE[index]
    return s.new_tensor(goal) if _is_tensor(s) else goal


def _norm(v):
    return (v ** 2).sum(-1) ** 0.5


def wrap_angle(a):
    """Wrap an angle (radians) to [-pi, pi) (numpy, or torch for a tensor)."""
    return (_array(a) + np.pi) % (2 * np.pi) - np.pi


def coverage_reward(coverage):
    """gym-pusht's reward: ``clip(coverage / 0.95, 0, 1)``."""
    return np.clip(np.asarray(coverage, dtype=np.float64) / SUCCESS_THRESHOLD, 0.0, 1.0)


def _block_pose_error(s):
    """Position error (px / 256) plus angle error (fraction of half a turn) of the block, the part of the
    shaped rewards that only pushing changes."""
    pos_err = _norm(s[..., 2:4] - _goal(s, slice(0, 2))) / 256.0
    return pos_err + abs(wrap_angle(s[..., 4] - GOAL_POSE[2])) / np.pi


def _reach_penalty(agent, target, deadzone: float):
    """``0.5 * max(0, |agent - target| - deadzone) / 256``: the agent far from where it should be."""
    return 0.5 * (_norm(_array(agent) - target) - deadzone).clip(min=0.0) / 256.0


def dense_reward(state):
    """The shaped reward of the module docstring, for one state (5,) or a batch (..., 5); numpy in, numpy out,
    a torch tensor in, a (differentiable) tensor out."""
    s = _array(state)
    return -(_block_pose_error(s) + _reach_penalty(s[..., 0:2], s[..., 2:4], 60.0))


PUSH_OFFSET, PUSH_SOFTNESS, PUSH_DEADZONE = 60.0, 20.0, 30.0


def push_point(state):
    """Where the agent pushes the block towards the goal from: ``PUSH_OFFSET`` px behind its centre."""
    s = _array(state)
    away = s[..., 2:4] - _goal(s, slice(0, 2))
    scale = PUSH_OFFSET / ((away ** 2).sum(-1, keepdims=True) + PUSH_SOFTNESS ** 2) ** 0.5
    return s[..., 2:4] + away * scale


def push_reward(state):
    """The ``push`` reward of the module docstring, for one state (5,) or a batch (..., 5) (numpy or torch)."""
    s = _array(state)
    return -(_block_pose_error(s) + _reach_penalty(s[..., 0:2], push_point(s), PUSH_DEADZONE))


# reward labels that are functions of the state reached (the others, like coverage, need the simulator)
STATE_REWARDS = {"dense": dense_reward, "push": push_reward}


def reward_labels(state, coverage: float) -> dict[str, float]:
    """Every reward label of :data:`REWARD_TYPES` for one true state and its coverage."""
    return {"coverage": float(coverage_reward(coverage)), **{k: float(fn(state)) for k, fn in STATE_REWARDS.items()}}


def is_success(coverage) -> np.ndarray:
    return np.asarray(coverage) > SUCCESS_THRESHOLD


class PushTGroundTruth:
    """The real Push-T physics (gym-pusht) at the world-model resolution.

    ``reset`` / ``step`` return ``(frame, info)`` / ``(frame, reward, terminated, truncated, info)`` like
    gym-pusht with ``obs_type="pixels"``; ``info`` additionally holds the true ``state`` (agent xy, block
    xy, block angle), ``coverage``, ``is_success``, both reward labels and ``contact`` (agent touching
    the block; computed geometrically because gym-pusht's ``n_contacts`` is divided by 1000 instead of 10).

    With ``obs_type="state"`` the observation returned in place of the frame is gym-pusht's state vector
    (agent xy, block xy, block angle) and no frame is rendered per step (~6x as fast).
    """

    def __init__(self, image_size: int = 64, max_episode_steps: int = 300, obs_type: str = "pixels"):
        try:
            import gym_pusht.envs  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "The ground-truth Push-T needs gym-pusht: `pip install gym-pusht`. "
                "(The world-model env WM-PushT-v0 does not.)"
            ) from e
        from gym_pusht.envs.pusht import PushTEnv

        if obs_type not in ("pixels", "state"):
            raise ValueError(f"obs_type must be 'pixels' or 'state', got {obs_type!r}")
        self.env = PushTEnv(obs_type=obs_type, observation_width=image_size, observation_height=image_size)
        self.image_size = image_size
        self.max_episode_steps = max_episode_steps
        self.t = 0

    # -- true state ---------------------------------------------------------------------------
    @property
    def state(self) -> np.ndarray:
        e = self.env
        return np.array(
            [*e.agent.position, *e.block.position, e.block.angle % (2 * np.pi)], dtype=np.float64
        )

    def coverage(self) -> float:
        return float(self.env._get_coverage())

    def block_geometry(self):
        from gym_pusht.envs.pusht import pymunk_to_shapely

        return pymunk_to_shapely(self.env.block, self.env.block.shapes)

    def in_contact(self, tol: float = 1.0) -> bool:
        """Whether the agent disc touches the block (within ``tol`` px)."""
        import shapely.geometry as sg

        return self.block_geometry().distance(sg.Point(*self.env.agent.position)) <= AGENT_RADIUS + tol

    def _info(self) -> dict[str, Any]:
        state = self.state
        cov = self.coverage()
        return {
            "state": state,
            "coverage": cov,
            "is_success": bool(cov > SUCCESS_THRESHOLD),
            **{f"reward_{name}": r for name, r in reward_labels(state, cov).items()},
            "contact": self.in_contact(),
        }

    # -- gym-like API ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, state=None):
        """Reset to a random start (gym-pusht's distribution) or to ``state`` = (agent xy, block xy, angle)."""
        frame, _ = self.env.reset(seed=seed)
        if state is not None:
            self.set_state(state)
            frame = self.env.get_obs()
        self.t = 0
        return frame, self._info()

    def set_state(self, state) -> None:
        """Put the sim in ``state``, setting the block's angle *before* its position.

        gym-pusht's ``reset_to_state`` sets the position first, so the block then rotates about its
        centre of gravity and ends up elsewhere; this sets the pose that was asked for.
        """
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (5,) or not np.all(np.isfinite(state)):
            raise ValueError(f"state must be 5 finite numbers (agent xy, block xy, angle), got {state!r}")
        e = self.env
        e.agent.position = tuple(state[:2])
        e.agent.velocity = (0.0, 0.0)
        e.block.velocity = (0.0, 0.0)
        e.block.angular_velocity = 0.0
        e.block.angle = float(state[4])
        e.block.position = tuple(state[2:4])
        e.space.step(e.dt)

    def step(self, action):
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be 2 finite numbers in [0, 512], got {action!r}")
        frame, _, terminated, _, _ = self.env.step(np.clip(action, 0.0, WORKSPACE))
        self.t += 1
        info = self._info()
        truncated = (not terminated) and self.t >= self.max_episode_steps
        return frame, info["reward_coverage"], bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray:
        return self.env.render()

    def close(self) -> None:
        self.env.close()
