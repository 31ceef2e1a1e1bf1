"""``gym.make_vec("WM-PushT-v0", num_envs=N)``: N world-model envs in one batched denoiser call per step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..data import tensor_to_frames
from .core import TensorStep, WorldModel, WorldModelSimulator
from .wm_pusht import _HumanWindow, make_spaces, render_frame


class WMPushTVectorEnv(VectorEnv):
    """A natively batched ``WM-PushT-v0`` (see :class:`~wm_gym.envs.wm_pusht.WMPushTEnv` for the task).

    All N envs are stepped by one batched global-model call. Autoreset is **same-step**
    (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): when env i terminates or truncates,
    ``step`` returns the first observation of its next episode, and the last observation of the
    finished one is in ``info["final_obs"][i]`` (with ``info["_final_obs"][i]`` True) and its info in
    ``info["final_info"]``, like Gymnasium's ``SyncVectorEnv(autoreset_mode=SAME_STEP)``.
    ``reset(seed=s)`` seeds env i with ``s + i``, so env i behaves exactly as a single env reset with
    ``seed=s + i`` under the same actions.

    Torch fast path (for learners that want tensors and derivatives): :meth:`reset_tensor` and
    :meth:`step_tensor` keep everything on ``device`` and ``step_tensor`` returns the surrogate
    linearisation of the step, evaluated at the latent state the global model produced (docs/CONTRACTS.md).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, obs_type: str = "pixels", reward_type: str = "coverage",
                 checkpoint=None, device: str | torch.device = "cpu", num_sampling_steps: int | None = None,
                 max_episode_steps: int = 300, render_mode: str | None = None, precision: str = "float32"):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.wm = WorldModel.load(checkpoint, device)
        self.num_envs, self.obs_type, self.reward_type, self.render_mode = num_envs, obs_type, reward_type, render_mode
        self.single_observation_space, self.single_action_space = make_spaces(self.wm, obs_type)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.sim = WorldModelSimulator(self.wm, num_envs, reward_type, num_sampling_steps, max_episode_steps, precision)
        self.metadata = {**self.metadata, "render_fps": self.wm.task.render_fps}
        self._sim_seeded = False
        self._window = None

    # -- properties the fast-path users need ------------------------------------------------------
    @property
    def surrogate(self):
        return self.wm.surrogate

    @property
    def latent(self) -> torch.Tensor:
        """Current latent states z_t (N, d)."""
        return self.sim.latent

    @property
    def latent_dim(self) -> int:
        return self.wm.latent_dim

    @property
    def device(self) -> torch.device:
        return self.sim.device

    # -- seeding / reset ---------------------------------------------------------------------------
    def _seed(self, seed: int | None) -> None:
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            seeds = [int(np.random.default_rng(seed + i).integers(2**62)) for i in range(self.num_envs)]
        elif not self._sim_seeded:
            seeds = [int(s) for s in np.random.SeedSequence().generate_state(self.num_envs, np.uint64) >> 2]
        else:
            return
        self.sim.seed(seeds)
        self._sim_seeded = True

    def reset_tensor(self, seed: int | None = None, start_frames=None) -> torch.Tensor:
        """Reset all envs; return the latents (N, d) on the env's device."""
        self._seed(seed)
        if start_frames is not None and len(start_frames) != self.num_envs:
            raise ValueError(f"start_frames must hold one entry per env ({self.num_envs}), got {len(start_frames)}")
        self.sim.reset_envs(range(self.num_envs), start_frames)
        return self.sim.latent

    def _obs(self, frames: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
        if self.obs_type == "pixels":
            return tensor_to_frames(frames)
        return latents.cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset all envs. ``options={"start_frames": [frames_0, ..., frames_{N-1}]}`` sets the start frames."""
        if isinstance(seed, (list, tuple)):
            raise ValueError("pass one int seed (env i gets seed + i), not a list")
        start = (options or {}).get("start_frames")
        self.reset_tensor(seed, start)
        return self._obs(self.sim.frames(), self.sim.latent if self.obs_type == "latent" else None), {}

    # -- step --------------------------------------------------------------------------------------
    def step_tensor(self, action: torch.Tensor) -> TensorStep:
        """Step with an env-unit action tensor (N, m); returns tensors and the surrogate linearisation.

        ``lin`` is evaluated at (z_t, a_t), the latent the global model produced and the action taken;
        its ``dfda`` / ``drda`` are derivatives w.r.t. the env-unit action. ``obs`` follows ``obs_type``.
        """
        out = self.sim.step(action, with_jacobians=True)
        out.obs = out.latent if self.obs_type == "latent" else self.sim.frames()
        return out

    def step(self, actions):
        a = np.asarray(actions)
        if a.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape} (num_envs, 2), got {a.shape}")
        need_latent = self.obs_type == "latent"
        out = self.sim.step(a, need_latent=need_latent)
        obs = self._obs(self.sim.frames(), self.sim.latent if need_latent else None)
        term = out.terminated.cpu().numpy()
        trunc = out.truncated.cpu().numpy()
        info: dict[str, Any] = out.info()
        done = term | trunc
        if done.any():
            final = self._obs(out.final_frame, out.final_latent)
            final_obs = np.empty(self.num_envs, dtype=object)
            final_info = {k: v.copy() for k, v in info.items()}
            for i in np.flatnonzero(done):
                final_obs[i] = final[i]
            info["final_obs"], info["_final_obs"] = final_obs, done
            info["final_info"], info["_final_info"] = final_info, done
        if self.render_mode == "human":
            self.render()
        return obs, out.reward.cpu().numpy().astype(np.float64), term, trunc, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to make_vec")
            return None
        frames = tensor_to_frames(self.sim.frames())
        imgs = [render_frame(f, a, self.wm.task) for f, a in zip(frames, self.sim.last_action)]
        if self.render_mode == "rgb_array":
            return imgs
        if self._window is None:
            self._window = _HumanWindow(self.metadata["render_fps"])
        self._window.show(imgs[0])
        return None

    def close_extras(self, **kwargs):
        if self._window is not None:
            self._window.close()
            self._window = None
