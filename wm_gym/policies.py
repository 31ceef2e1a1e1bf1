"""Behaviour policies that collect contact-rich Push-T data (they read the true state: data collection only).

Random actions almost never touch the T, so a world model trained on them never sees the block move.
``Pusher`` walks around the T to a random side and pushes it in a random direction (toward the goal in
a fraction of pushes); ``RandomWalk`` moves a smooth random target; ``Mixture`` picks one per episode.
All policies map a true state (agent xy, block xy, angle) to an action (target xy in [0, 512]).
"""

from __future__ import annotations

import math

import numpy as np

from .pusht import GOAL_POSE, WORKSPACE

# The T's two rectangles in the block frame (gym-pusht's add_tee with scale 30, length 4).
_T_LOCAL = np.array(
    [[-60, 0], [60, 0], [60, 30], [15, 30], [15, 120], [-15, 120], [-15, 30], [-60, 30]], dtype=np.float64
)
_T_COG_LOCAL = np.array([0.0, 45.0])


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def block_outline(state) -> np.ndarray:
    """World coordinates (8, 2) of the T outline for a state."""
    return _T_LOCAL @ _rot(state[4]).T + np.asarray(state[2:4])


def block_center(state) -> np.ndarray:
    return _rot(state[4]) @ _T_COG_LOCAL + np.asarray(state[2:4])


class BehaviourPolicy:
    """Interface: ``reset(rng)`` at episode start, ``__call__(state) -> action (2,) float32``."""

    name = "base"

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, state: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class RandomWalk(BehaviourPolicy):
    """A target that drifts with a smoothly changing velocity (an Ornstein-Uhlenbeck-like walk)."""

    name = "random_walk"

    def __init__(self, speed: float = 12.0, smoothing: float = 0.85, margin: float = 20.0):
        self.speed, self.smoothing, self.margin = speed, smoothing, margin

    def reset(self, rng):
        super().reset(rng)
        self.target = None
        self.vel = rng.normal(size=2) * self.speed

    def __call__(self, state):
        if self.target is None:
            self.target = np.asarray(state[:2], dtype=np.float64).copy()
        self.vel = self.smoothing * self.vel + (1 - self.smoothing) * self.rng.normal(size=2) * self.speed * 3
        self.target = self.target + self.vel
        lo, hi = self.margin, WORKSPACE - self.margin
        bounced = (self.target < lo) | (self.target > hi)
        self.vel[bounced] *= -1
        self.target = np.clip(self.target, lo, hi)
        return self.target.astype(np.float32)


class Pusher(BehaviourPolicy):
    """Scripted pusher: go around the T to a random side, then push through it.

    Each push picks a direction (toward the goal with probability ``p_goal``, else uniform), walks to a
    point on a circle of radius ~130 px around the block on the far side (so it rarely sweeps through the
    T on the way), closes in to the block's edge with a random lateral offset (pushing off-centre
    rotates the T), then pushes for a random number of steps. Gaussian noise on every action.
    """

    name = "pusher"

    def __init__(self, p_goal: float = 0.4, noise: float = 4.0, push_steps=(12, 40), step_len: float = 28.0):
        self.p_goal, self.noise, self.push_steps, self.step_len = p_goal, noise, push_steps, step_len

    def reset(self, rng):
        super().reset(rng)
        self.phase, self.k = "plan", 0

    def _plan(self, state):
        c = block_center(state)
        if self.rng.random() < self.p_goal:
            d = GOAL_POSE[:2] - c
            d = d / (np.linalg.norm(d) + 1e-6)
            d = _rot(self.rng.normal(scale=0.3)) @ d
        else:
            a = self.rng.uniform(-math.pi, math.pi)
            d = np.array([math.cos(a), math.sin(a)])
        self.dir = d
        self.lateral = self.rng.uniform(-45, 45)
        self.n_push = int(self.rng.integers(*self.push_steps))
        self.phase, self.k = "around", 0

    def _standoff(self, state, radius):
        c = block_center(state)
        perp = np.array([-self.dir[1], self.dir[0]])
        return c - self.dir * radius + perp * self.lateral

    def __call__(self, state):
        state = np.asarray(state, dtype=np.float64)
        agent = state[:2]
        if self.phase == "plan":
            self._plan(state)
        if self.phase == "around":
            goal = self._standoff(state, 130.0)
            self.k += 1
            if np.linalg.norm(goal - agent) < 15 or self.k > 40:
                self.phase, self.k = "approach", 0
            target = agent + np.clip(goal - agent, -45, 45)
        elif self.phase == "approach":
            c = block_center(state)
            extent = np.max((block_outline(state) - c) @ (-self.dir))
            goal = self._standoff(state, extent + 22.0)
            self.k += 1
            if np.linalg.norm(goal - agent) < 8 or self.k > 15:
                self.phase, self.k = "push", 0
            target = agent + np.clip(goal - agent, -30, 30)
        else:  # push
            target = agent + self.dir * self.step_len
            self.k += 1
            if self.k >= self.n_push:
                self.phase = "plan"
        target = target + self.rng.normal(scale=self.noise, size=2)
        return np.clip(target, 10, WORKSPACE - 10).astype(np.float32)


class Mixture(BehaviourPolicy):
    """Pick one of ``policies`` per episode with probabilities ``weights``."""

    name = "mixture"

    def __init__(self, policies: dict[str, BehaviourPolicy], weights: dict[str, float]):
        if set(policies) != set(weights):
            raise ValueError(f"weights keys {sorted(weights)} must match policies {sorted(policies)}")
        self.policies = policies
        total = sum(weights.values())
        self.names = sorted(policies)
        self.probs = np.array([weights[n] / total for n in self.names])

    def reset(self, rng):
        super().reset(rng)
        self.current = self.names[int(rng.choice(len(self.names), p=self.probs))]
        self.policies[self.current].reset(rng)

    def __call__(self, state):
        return self.policies[self.current](state)


DEFAULT_MIX = {"pusher": 0.8, "random_walk": 0.2}


def make_behaviour_policy(mix: dict[str, float] | None = None) -> Mixture:
    """The default data-collection mixture (``DEFAULT_MIX``) or a custom one by policy name."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    known = {"pusher": Pusher, "random_walk": RandomWalk}
    unknown = set(mix) - set(known)
    if unknown:
        raise ValueError(f"unknown behaviour policies {sorted(unknown)}; choose from {sorted(known)}")
    return Mixture({n: known[n]() for n in mix}, mix)
