"""An SB3 ``VecEnv`` over a natively batched Gymnasium vector env (SB3 does not accept gymnasium vector envs).

The batched env keeps its one-denoiser-call-per-step speed: ``step_wait`` is one ``step`` of the
underlying vector env. Its same-step autoreset maps onto SB3's convention (``info["terminal_observation"]``
and ``info["TimeLimit.truncated"]``). With ``normalize_actions=True`` (default) the policy acts in
[-1, 1] and actions are rescaled to the env's Box, as SB3 recommends for continuous control; with
``action_offset > 0`` (latent observations) an action in [-1, 1] is instead an offset of at most
``action_offset`` env units from the surrogate's estimate of the agent position, the parameterisation
``FoGConfig.action_offset`` gives FoG's actor.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class AnchoredActions:
    """Map policy actions in [-1, 1] to targets at most ``offset`` env units from the surrogate's estimate of
    the agent position (read from the latent), clipped to the Box: FoG's anchored actor
    (``FoGConfig.action_offset``) in numpy, for SB3 policies in training (the adapter) and evaluation."""

    def __init__(self, surrogate, low, high, offset: float):
        from wm_gym.models.surrogate import agent_position_readout

        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        weight, bias = agent_position_readout(surrogate, self.low, self.high)
        self.weight, self.bias, self.offset = weight.numpy(), bias.numpy(), float(offset)

    def __call__(self, latent: np.ndarray, action: np.ndarray) -> np.ndarray:
        anchor = latent @ self.weight.T + self.bias
        return np.clip(anchor + self.offset * np.clip(action, -1.0, 1.0), self.low, self.high)


class SB3VecEnvAdapter(VecEnv):
    """Expose a gymnasium ``VectorEnv`` with same-step autoreset as an SB3 ``VecEnv``.

    Args:
        venv: e.g. ``gym.make_vec("WM-PushT-v0", num_envs=64)``.
        normalize_actions: present a Box(-1, 1) action space and rescale to the env's bounds.
        action_offset: > 0: anchored actions (target = agent estimate + action * action_offset, clipped to
            the Box); needs ``obs_type="latent"`` (the anchor is read from the latent observation).
    """

    def __init__(self, venv: gym.vector.VectorEnv, normalize_actions: bool = True, action_offset: float = 0.0):
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnvAdapter needs a vector env with same-step autoreset (like SB3's own VecEnvs); got "
                f"autoreset_mode={mode!r}. Create it with vector_kwargs={{'autoreset_mode': AutoresetMode.SAME_STEP}}."
            )
        space = venv.single_action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"only Box action spaces are supported, got {space}")
        self.venv, self.normalize_actions = venv, normalize_actions
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32) if normalize_actions else space
        super().__init__(venv.num_envs, venv.single_observation_space, action_space)
        self.render_mode = getattr(venv, "render_mode", None)
        self._actions: np.ndarray | None = None
        self.action_offset, self._obs = float(action_offset), None
        if self.action_offset > 0:
            base = getattr(venv, "unwrapped", venv)
            if not normalize_actions or getattr(base, "obs_type", None) != "latent":
                raise ValueError("action_offset > 0 anchors actions at the agent position read from the latent "
                                 "observation: use normalize_actions=True and obs_type='latent' (or action_offset=0)")
            self._anchored = AnchoredActions(base.surrogate, self._low, self._high, self.action_offset)

    # -- core API ------------------------------------------------------------------------------------
    def reset(self):
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        options = self._options[0] if self._options else None
        obs, _ = self.venv.reset(seed=seed, options=options or None)
        self._reset_seeds()
        self._reset_options()
        self._obs = obs
        return obs

    def _to_env(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, *self.action_space.shape)
        if self.action_offset > 0:
            if self._obs is None:
                raise RuntimeError("reset() the env before stepping it")
            a = self._anchored(self._obs, a)
        elif self.normalize_actions:
            a = self._low + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (self._high - self._low)
        return a.astype(np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = self._to_env(actions)

    def step_wait(self):
        obs, rew, term, trunc, info = self.venv.step(self._actions)
        dones = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for k, v in info.items():
            if k.startswith("_") or k in ("final_obs", "final_info"):
                continue
            for i in range(self.num_envs):
                infos[i][k] = v[i]
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = info["final_obs"][i]
                infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        self._obs = obs
        return obs, rew.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        imgs = self.venv.render() if self.render_mode == "rgb_array" else None
        return list(imgs) if imgs is not None else [None] * self.num_envs

    # -- attribute plumbing (all envs share one batched object) --------------------------------------
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        out = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [out for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
