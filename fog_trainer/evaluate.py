"""Evaluate any policy in the real Push-T (gym-pusht), with two reference baselines.

A policy is one of:

* an object with ``reset()`` and ``act(frame) -> action`` (``FoGPolicy``, SB3 wrappers): it sees only
  frames uint8 (H, W, 3) and keeps its own context;
* a :class:`GroundTruthPolicy` (``reset(seed)``, ``act(frame, info)``): it is also handed the
  ground-truth ``info`` (true ``state`` included), so mark such a policy ``privileged``;
* a callable ``policy(frames) -> action`` on the frame history so far (a list, oldest first).

Actions are absolute targets in env units (Push-T: xy in [0, 512]).

>>> res = evaluate_in_ground_truth(RandomPolicy(), seeds=[0], image_size=32, max_steps=3)
>>> sorted(k for k in res if not isinstance(res[k], list))
['mean_final_coverage', 'mean_max_coverage', 'mean_return_coverage', 'mean_return_dense', 'success_rate']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from wm_gym.pusht import REWARD_TYPES, WORKSPACE, PushTGroundTruth


class GroundTruthPolicy:
    """A policy the evaluator seeds at every episode and hands the ground-truth info to."""

    privileged = False  # True if act() reads info (the true state): not a frames-only policy

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, frame: np.ndarray, info: dict[str, Any]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class RandomPolicy(GroundTruthPolicy):
    """Uniform random targets in the workspace (seeded per episode)."""

    def reset(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def act(self, frame, info):
        return self.rng.uniform(0.0, WORKSPACE, size=2).astype(np.float32)


class ScriptedPusher(GroundTruthPolicy):
    """Privileged reference: ``wm_gym.policies.Pusher`` with ``p_goal=1`` reading the TRUE state.

    It is an upper-ish reference for what pushing towards the goal achieves, not a fair baseline for a
    policy that sees frames only.
    """

    privileged = True

    def __init__(self, noise: float = 4.0):
        from wm_gym.policies import Pusher

        self.pusher = Pusher(p_goal=1.0, noise=noise)

    def reset(self, seed=None):
        self.pusher.reset(np.random.default_rng(seed))

    def act(self, frame, info):
        return self.pusher(info["state"])


class SampledPolicy(GroundTruthPolicy):
    """A :class:`~fog_trainer.FoGPolicy` acting with sampled actions (the stochastic policy it was trained as),
    its noise seeded per episode so an evaluation is reproducible.

    FoG optimises the return of the stochastic policy; the tanh of the mean (``act``'s default) is a
    different policy, and on Push-T the two can rank differently.
    """

    def __init__(self, policy):
        if not hasattr(policy, "act") or not hasattr(policy, "reset"):
            raise TypeError(f"SampledPolicy wraps a FoGPolicy-like object with reset()/act(frame, deterministic, "
                            f"generator), got {type(policy).__name__}")
        self.policy = policy

    def reset(self, seed=None):
        import torch

        self.policy.reset()
        self.generator = torch.Generator(device=self.policy.device)
        self.generator.manual_seed(0 if seed is None else int(seed))

    def act(self, frame, info):
        return self.policy.act(frame, deterministic=False, generator=self.generator)


def _adapt(policy) -> tuple[Callable[[int], None], Callable[[list, dict], np.ndarray]]:
    """(reset(seed), act(history, info)) for any supported policy kind."""
    if isinstance(policy, GroundTruthPolicy):
        return policy.reset, lambda history, info: policy.act(history[-1], info)
    if hasattr(policy, "reset") and hasattr(policy, "act"):
        return lambda seed: policy.reset(), lambda history, info: policy.act(history[-1])
    if callable(policy):
        return lambda seed: None, lambda history, info: policy(history)
    raise TypeError(f"policy must have reset()/act(frame) or be callable on the frame history, got {type(policy).__name__}")


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 10, scale: int = 4) -> Path:
    """Write uint8 (H, W, 3) RGB frames to an .mp4 (cv2, mp4v) or a .gif (Pillow), upscaled ``scale`` x."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    big = [cv2.resize(np.asarray(f), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for f in frames]
    if path.suffix.lower() == ".gif":
        from PIL import Image

        imgs = [Image.fromarray(f) for f in big]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        return path
    h, w = big[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2 could not open a video writer for {path}; try a .gif path instead")
    for f in big:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def evaluate_in_ground_truth(policy, seeds: Iterable[int] = range(50), image_size: int = 64, max_steps: int = 300,
                             video_path: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run ``policy`` for one episode per seed in gym-pusht; coverage is gym-pusht's (success = > 0.95).

    Args:
        policy: see the module docstring.
        seeds: reset seeds, one episode each.
        image_size: frame size the policy sees (the world model's resolution).
        max_steps: truncation limit (gym-pusht: 300).
        video_path: if given, the first seed's episode is written there (.mp4 or .gif).
        progress: show a tqdm bar over seeds.

    Returns:
        ``mean_max_coverage``, ``mean_final_coverage``, ``success_rate``, ``mean_return_<label>`` (the
        undiscounted episode return of each reward label, e.g. ``dense``: the objective a world-model
        policy was trained on, measured in the truth) and per-seed lists ``seeds``, ``max_coverage``,
        ``final_coverage``, ``success``, ``length``, ``return_<label>``.
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one episode")
    reset, act = _adapt(policy)
    env = PushTGroundTruth(image_size=image_size, max_episode_steps=max_steps)
    out: dict[str, list] = {"seeds": seeds, "max_coverage": [], "final_coverage": [], "success": [], "length": [],
                            **{"return_" + r: [] for r in REWARD_TYPES}}
    try:
        for k, seed in enumerate(tqdm(seeds, desc="gym-pusht eval", disable=not progress)):
            frame, info = env.reset(seed=int(seed))
            reset(int(seed))
            history, coverages, success = [frame], [info["coverage"]], False
            returns = dict.fromkeys(REWARD_TYPES, 0.0)
            for _ in range(max_steps):
                action = np.asarray(act(history, info), dtype=np.float64).reshape(-1)
                frame, _, terminated, truncated, info = env.step(action)
                history.append(frame)
                for r in REWARD_TYPES:
                    returns[r] += info["reward_" + r]
                coverages.append(info["coverage"])
                success = success or info["is_success"]
                if terminated or truncated:
                    break
            out["max_coverage"].append(float(max(coverages)))
            out["final_coverage"].append(float(coverages[-1]))
            out["success"].append(bool(success))
            out["length"].append(len(history) - 1)
            for r in REWARD_TYPES:
                out["return_" + r].append(float(returns[r]))
            if video_path is not None and k == 0:
                write_video(history, video_path)
    finally:
        env.close()
    return {
        "mean_max_coverage": float(np.mean(out["max_coverage"])),
        "mean_final_coverage": float(np.mean(out["final_coverage"])),
        "success_rate": float(np.mean(out["success"])),
        **{"mean_return_" + r: float(np.mean(out["return_" + r])) for r in REWARD_TYPES},
        **out,
    }


class WorldModelEvaluator:
    """Score any latent policy in the world model the same way: ``num_envs`` envs reset from fixed seeded
    start states, one full episode each, the same diffusion noise at every call (the env is re-seeded), so
    two calls differ only by the policy. The world-model counterpart of SB3's ``EvalCallback`` /
    ``evaluate_policy``, shared by FoG and PPO (``benchmarks/sample_efficiency.py``).

    ``act(obs) -> actions (N, m)`` in env units (Push-T: targets in [0, 512]), where ``obs`` is the batch of
    ``obs_type`` observations: latents (N, d) float32 (``FoGPolicy.act_latent``,
    ``baselines.PPOFramePolicy.act_obs``) or uint8 frames (N, H, W, 3) (``PPOFramePolicy.act_obs`` of a pixel
    policy). The observation type does not change the world model's steps: a policy scores the same return
    whichever it acts on. Evaluation steps are not training steps and are not counted as such.

    >>> ev = WorldModelEvaluator(num_envs=2, max_steps=3)  # doctest: +SKIP
    >>> ev(lambda z: np.full((len(z), 2), 256.0))["mean_return"]  # doctest: +SKIP
    """

    def __init__(self, num_envs: int = 32, seed: int = 10_000, reward_type: str = "dense", checkpoint=None,
                 device: str = "cpu", max_steps: int = 300, env_id: str = "WM-PushT-v0", obs_type: str = "latent",
                 precision: str = "float32"):
        import gymnasium as gym

        import wm_gym  # noqa: F401  (registers the env)

        if num_envs < 1 or max_steps < 1:
            raise ValueError(f"num_envs and max_steps must be >= 1, got {num_envs} and {max_steps}")
        self.venv = gym.make_vec(env_id, num_envs=num_envs, obs_type=obs_type, reward_type=reward_type,
                                 checkpoint=checkpoint, device=device, max_episode_steps=max_steps,
                                 precision=precision)
        self.num_envs, self.seed, self.max_steps = int(num_envs), int(seed), int(max_steps)

    def __call__(self, act: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        """One episode per env; returns ``mean_return``, ``std_return``, ``success_rate``, ``mean_length``
        and the per-env ``returns``."""
        obs, _ = self.venv.reset(seed=self.seed)
        n = self.num_envs
        ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
        success, finished = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for _ in range(self.max_steps):
            action = np.asarray(act(obs), dtype=np.float32)
            if action.shape != self.venv.action_space.shape:
                raise ValueError(f"act must return actions of shape {self.venv.action_space.shape} for observations "
                                 f"{obs.shape}, got {action.shape}")
            obs, rew, term, trunc, _ = self.venv.step(action)
            live = ~finished
            ret[live] += rew[live]
            length[live] += 1
            success[live] |= term[live]
            finished |= term | trunc
            if finished.all():
                break
        return {"mean_return": float(ret.mean()), "std_return": float(ret.std()),
                "success_rate": float(success.mean()), "mean_length": float(length.mean()), "returns": ret.tolist()}

    def close(self) -> None:
        self.venv.close()
