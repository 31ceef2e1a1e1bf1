"""FoG actor-critic: the training loop, in one file (read top to bottom).

One update, for N envs and a horizon H (SHAC, Xu et al. ICLR 2022; DMO, CoRL 2025):

1. rollout: the actor acts on the current latents, the env's global model steps (no grad), and
   :func:`fog_step` ties each step into a graph whose values are global and whose derivatives are
   the surrogate's Jacobians;
2. actor: minimise ``-(1/NH) sum_segments [sum_t gamma^t (r_t - alpha log pi_t) / sigma
   + critic_weight gamma^k V'(z_end)]`` with sigma the running std of the discounted return, this
   rollout's included (``reward_norm``), and V' the target critic; per episode segment: bootstrap zeroed on termination,
   kept on truncation via ``final_latent``, gradient cut at every episode end. Gradient norm
   clipped, non-finite gradients skipped and counted;
3. critic: TD(lambda) targets from the same rollout, ``critic_iters`` passes of minibatches;
   then the target critic moves toward the critic (polyak ``tau``).
"""

from __future__ import annotations

import collections
import copy
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from wm_gym.io import atomic_torch_save
from wm_gym.models.surrogate import agent_position_readout

from .agent import Actor, Critic, FoGPolicy, RunningMeanStd
from .config import FoGConfig
from .fog import LinearizationLike, fog_step


class TensorStepLike(Protocol):
    """What ``step_tensor`` returns (``wm_gym.envs.vector.TensorStep``)."""

    obs: Any
    latent: torch.Tensor  # (N, d) z_{t+1}, or the reset latent where an episode ended
    reward: torch.Tensor  # (N,) global reward
    terminated: torch.Tensor  # (N,) bool
    truncated: torch.Tensor  # (N,) bool
    final_latent: torch.Tensor  # (N, d) z_{t+1} before any reset
    lin: LinearizationLike  # surrogate linearisation at (z_t, a_t), action derivatives in env units


class TensorVecEnv(Protocol):
    """The env's torch fast path (docs/CONTRACTS.md); ``surrogate`` is needed only to save a policy."""

    latent: torch.Tensor

    def reset_tensor(self, seed: int | None = None) -> torch.Tensor: ...

    def step_tensor(self, action: torch.Tensor) -> TensorStepLike: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def td_lambda_targets(rew: torch.Tensor, next_value: torch.Tensor, done: torch.Tensor, gamma: float,
                      lam: float) -> torch.Tensor:
    """TD(lambda) returns of a rollout, all tensors (H, N).

    ``next_value[t]`` is V(z_{t+1}) of the pre-reset latent, already 0 where the step terminated;
    ``done[t]`` marks an episode end (terminated or truncated) at step t. The recursion is
    ``G_t = r_t + gamma ((1 - lam c_t) next_value_t + lam c_t G_{t+1})`` with ``c_t = 1 - done_t`` and
    ``G_H = next_value_{H-1}``: lambda-mixing never crosses an episode end or the horizon.
    """
    cont = 1.0 - done.float()
    targets = torch.empty_like(rew)
    g_next = next_value[-1]
    for t in reversed(range(rew.shape[0])):
        g_next = rew[t] + gamma * ((1.0 - lam * cont[t]) * next_value[t] + lam * cont[t] * g_next)
        targets[t] = g_next
    return targets


def _fast_path(env) -> TensorVecEnv:
    for candidate in (env, getattr(env, "unwrapped", None)):
        if candidate is not None and hasattr(candidate, "reset_tensor") and hasattr(candidate, "step_tensor"):
            return candidate
    raise TypeError(
        f"FoGTrainer needs an env with the torch fast path reset_tensor()/step_tensor() (docs/CONTRACTS.md), "
        f"got {type(env).__name__}; make it with gym.make_vec('WM-PushT-v0', num_envs=N, obs_type='latent')"
    )


def _context_of(env) -> int:
    for obj in (env, getattr(env, "global_model", None)):
        if obj is not None and isinstance(getattr(obj, "context", None), int):
            return obj.context
    surrogate_config = getattr(getattr(env, "surrogate", None), "config", None) or {}
    if "context" in surrogate_config:
        return int(surrogate_config["context"])
    warnings.warn("the env exposes no frame context length; a saved policy will use K=4 (CONTRACTS default)")
    return 4


class FoGTrainer:
    """Train a policy in a differentiable world-model env with decoupled first-order gradients.

    >>> trainer = FoGTrainer("WM-PushT-v0", FoGConfig(num_envs=64))  # doctest: +SKIP
    >>> trainer.learn(200_000).save("fog_pusht")                     # doctest: +SKIP
    >>> policy = FoGPolicy.load("fog_pusht"); policy.reset(); action = policy.act(frame)  # doctest: +SKIP

    Args:
        env: a vector env with the torch fast path (its ``unwrapped`` is searched too), or an env id
            made with ``gym.make_vec(id, num_envs, obs_type="latent", reward_type, device, checkpoint, precision)``.
        config: hyper-parameters; ``config.num_envs`` is only used when ``env`` is an id.
    """

    def __init__(self, env: Any, config: FoGConfig | None = None):
        self.config = cfg = config if config is not None else FoGConfig()
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        if isinstance(env, str):
            import gymnasium as gym
            import wm_gym  # noqa: F401  (registers the WM envs)

            env = gym.make_vec(env, num_envs=cfg.num_envs, obs_type="latent", reward_type=cfg.reward_type,
                               device=cfg.device, checkpoint=cfg.checkpoint or None, precision=cfg.precision)
        self.vec_env, self.env = env, _fast_path(env)
        self.device = torch.device(cfg.device)
        self.z = self.env.reset_tensor(seed=cfg.seed).to(self.device)
        self.num_envs, latent_dim = self.z.shape
        if self.num_envs != cfg.num_envs:
            warnings.warn(f"the env has {self.num_envs} envs, config.num_envs={cfg.num_envs}; using {self.num_envs}")
        space = getattr(env, "single_action_space", None) or getattr(self.env, "single_action_space")

        self.actor = Actor(latent_dim, space.low, space.high, cfg.actor_hidden, cfg.init_log_std,
                           cfg.action_offset).to(self.device)
        if cfg.action_offset > 0:
            self.actor.set_anchor(*agent_position_readout(getattr(self.env, "surrogate", None), space.low, space.high))
        self.critic = Critic(latent_dim, cfg.critic_hidden).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.obs_rms = RunningMeanStd((latent_dim,)).to(self.device)
        self.ret_rms = RunningMeanStd(()).to(self.device)
        self.value_rms = RunningMeanStd(()).to(self.device)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, betas=cfg.betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, betas=cfg.betas)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)

        self.num_timesteps = self.num_updates = self.skipped_updates = self.skipped_critic_steps = 0
        self.ep_info: collections.deque = collections.deque(maxlen=100)  # (return, length) of finished episodes
        self._ep_ret = torch.zeros(self.num_envs, device=self.device)
        self._ep_len = torch.zeros(self.num_envs, device=self.device)
        self._disc_ret = torch.zeros(self.num_envs, device=self.device)  # for the reward scale
        self.history: list[dict[str, float]] = []  # one log dict per update
        self.timings = collections.Counter()  # cumulative seconds per phase
        name = getattr(getattr(env, "spec", None), "id", None) or cfg.env_id
        self.run_dir = Path(cfg.run_dir or f"runs/fog__{name}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}")
        self._writer = None

    # -- helpers -------------------------------------------------------------------------------------
    def _norm(self, z: torch.Tensor) -> torch.Tensor:
        return self.obs_rms.normalize(z) if self.config.obs_norm else z

    def _reward_scale(self) -> torch.Tensor:
        # floored: before any return varies (a sparse reward, the first updates) the std is ~0
        return self.ret_rms.std.clamp_min(1e-2) if self.config.reward_norm else torch.ones((), device=self.device)

    def _track(self, raw_rew: torch.Tensor, done: torch.Tensor) -> None:
        self._ep_ret += raw_rew
        self._ep_len += 1
        self._disc_ret = self._disc_ret * self.config.gamma + raw_rew
        self.ret_rms.update(self._disc_ret)
        for i in torch.nonzero(done).flatten().tolist():
            self.ep_info.append((float(self._ep_ret[i]), int(self._ep_len[i])))
        self._ep_ret[done], self._ep_len[done], self._disc_ret[done] = 0.0, 0.0, 0.0

    # -- 1. rollout: global forward values, surrogate derivatives ---------------------------------------
    def _rollout(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        cfg, N, H = self.config, self.num_envs, self.config.horizon
        z = self.z
        ret = torch.zeros(N, device=self.device)  # discounted (reward + entropy bonus) per segment, env units
        disc = torch.ones(N, device=self.device)  # gamma^k since the segment start
        reward_loss = critic_loss = torch.zeros((), device=self.device)
        buf = collections.defaultdict(list)
        env_s = 0.0
        for t in range(H):
            action, log_prob = self.actor(self._norm(z), generator=self.generator, raw_z=z)
            t0 = time.perf_counter()
            step = self.env.step_tensor(action.detach())
            env_s += time.perf_counter() - t0
            next_z, rew = fog_step(z, action, step.final_latent.to(self.device), step.reward.to(self.device), step.lin)
            term = step.terminated.to(self.device).bool()
            done = term | step.truncated.to(self.device).bool()
            self._track(step.reward.detach().to(self.device), done)

            r = rew - cfg.alpha * log_prob  # entropy bonus in reward units
            ret = ret + disc * r
            disc = disc * cfg.gamma
            end = done if t < H - 1 else torch.ones_like(done)
            if end.any():
                value = self.target_critic(self._norm(next_z)) * (~term)  # in normalised reward units
                reward_loss = reward_loss - torch.where(end, ret, 0.0).sum()
                critic_loss = critic_loss - torch.where(end, disc * value, 0.0).sum()
                ret = torch.where(done, 0.0, ret)
                disc = torch.where(done, 1.0, disc)

            buf["z"].append(z.detach())
            buf["rew"].append(r.detach())
            buf["next_z"].append(step.final_latent.detach().to(self.device))
            buf["term"].append(term)
            buf["done"].append(done)
            buf["entropy"].append(-log_prob.detach())
            z = torch.where(done[:, None], step.latent.to(self.device), next_z)  # gradient cut at episode ends
        self.z = z.detach()
        # one positive rescale of the rewards, from the return statistics *including this rollout's*; with the
        # statistics from before it, the first update divides by their initial std of 1 (the return's is ~8 after
        # 16 steps on WM-PushT-v0, ~50 later): ~8x too large rewards and first value targets, an actor gradient far
        # above any later one that Adam's second moment keeps for tens of updates, and training that depends on the
        # reward's units (benchmarks/results/sample_efficiency_reward_scale/README.md)
        scale = self._reward_scale().detach()
        buf = {k: torch.stack(v) for k, v in buf.items()}
        buf["rew"] = buf["rew"] / scale
        stats = {"env_s": env_s, "reward_scale": float(scale)}
        return reward_loss / (scale * N * H), critic_loss / (N * H), buf, stats

    # -- 2. actor -------------------------------------------------------------------------------------
    def _actor_step(self, reward_loss: torch.Tensor, critic_loss: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        loss = reward_loss + cfg.critic_weight * critic_loss
        logs = {}
        if cfg.grad_split:
            params = [p for p in self.actor.parameters()]
            for name, part in (("reward", reward_loss), ("critic", critic_loss)):
                grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
                norms = [g.norm() for g in grads if g is not None]
                logs[f"grad_norm_{name}_term"] = float(torch.stack(norms).norm()) if norms else 0.0
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
        if torch.isfinite(loss) and torch.isfinite(grad_norm):
            self.actor_opt.step()
        else:
            self.actor_opt.zero_grad(set_to_none=True)
            self.skipped_updates += 1
        return {"actor_loss": float(loss.detach()), "grad_norm": float(grad_norm), **logs}

    # -- 3. critic ------------------------------------------------------------------------------------
    def _critic_step(self, buf: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        H, N, d = buf["z"].shape
        with torch.no_grad():
            next_value = self.target_critic(self._norm(buf["next_z"])) * (~buf["term"])
            targets = td_lambda_targets(buf["rew"], next_value, buf["done"], cfg.gamma, cfg.lam)
            if cfg.value_norm:
                self.value_rms.update(targets)
                for critic in (self.critic, self.target_critic):
                    critic.set_stats(self.value_rms.mean, self.value_rms.std.clamp_min(1e-2))
        z, y = self._norm(buf["z"]).reshape(H * N, d), targets.reshape(H * N)
        losses = []
        for _ in range(cfg.critic_iters):
            perm = torch.randperm(H * N, generator=self.generator, device=self.device)
            for idx in perm.chunk(cfg.critic_minibatches):
                # loss on the normalised scale (= the value scale when value_norm is off: stats stay 0 / 1)
                pred = self.critic.normalized(z[idx])
                loss = (pred - (y[idx] - self.critic.v_mean) / self.critic.v_std).square().mean()
                self.critic_opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.critic_grad_norm)
                if torch.isfinite(loss) and torch.isfinite(norm):
                    self.critic_opt.step()
                    losses.append(float(loss.detach()))
                else:
                    self.skipped_critic_steps += 1
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target_critic.parameters()):
                tp.lerp_(p, cfg.tau)
            explained_variance = 1.0 - (y - self.critic(z)).var() / y.var().clamp_min(1e-12)
        return {"critic_loss": float(np.mean(losses)) if losses else float("nan"),
                "explained_variance": float(explained_variance),
                "value_mean": float(targets.mean()), "value_std": float(targets.std())}

    def update(self) -> dict[str, float]:
        """One FoG update (N x H env steps); returns detached scalars, timings included."""
        t0 = time.perf_counter()
        reward_loss, critic_loss, buf, stats = self._rollout()
        t1 = time.perf_counter()
        logs = self._actor_step(reward_loss, critic_loss)
        t2 = time.perf_counter()
        self.obs_rms.update(buf["z"])
        logs.update(self._critic_step(buf))
        t3 = time.perf_counter()
        self.num_updates += 1
        self.num_timesteps += self.num_envs * self.config.horizon
        timing = {"rollout_s": t1 - t0, "env_s": stats["env_s"], "gradient_s": t2 - t1, "critic_s": t3 - t2}
        self.timings.update(timing)
        logs.update(timing, reward_scale=stats["reward_scale"], entropy=float(buf["entropy"].mean()),
                    reward_term=float(reward_loss.detach()), critic_term=float(critic_loss.detach()),
                    skipped_updates=self.skipped_updates, skipped_critic_steps=self.skipped_critic_steps)
        return logs

    # -- the loop ---------------------------------------------------------------------------------------
    def learn(self, total_env_steps: int, resume: bool = False,
              callback: Callable[["FoGTrainer", dict], bool | None] | None = None) -> "FoGTrainer":
        """Train for ``total_env_steps`` more global-model steps (each env of each update step counts).

        With ``resume=True`` the run's checkpoint (``run_dir/checkpoint.pt``), if any, is loaded first and
        ``total_env_steps`` is the run's total: an interrupted ``learn(T)`` continues with ``learn(T, resume=True)``.
        Episodes restart on resume (the env's state is not checkpointed). ``callback(trainer, logs)``
        runs after every update; returning False stops. Returns self.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        if resume and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path)
        target = int(total_env_steps) if resume else self.num_timesteps + int(total_env_steps)
        start_steps, start_time = self.num_timesteps, time.time()
        bar = tqdm(total=target, initial=self.num_timesteps, unit="step", disable=not cfg.progress_bar,
                   desc="FoG", dynamic_ncols=True)
        try:
            while self.num_timesteps < target:
                if cfg.anneal_lr:
                    frac = max(0.0, 1.0 - self.num_timesteps / max(target, 1))
                    self.actor_opt.param_groups[0]["lr"] = frac * cfg.actor_lr
                    self.critic_opt.param_groups[0]["lr"] = frac * cfg.critic_lr
                logs = self.update()
                elapsed = time.time() - start_time
                logs["fps"] = (self.num_timesteps - start_steps) / max(elapsed, 1e-9)
                if self.ep_info:
                    logs["ep_rew_mean"] = float(np.mean([r for r, _ in self.ep_info]))
                    logs["ep_len_mean"] = float(np.mean([n for _, n in self.ep_info]))
                    logs["ep_count"] = len(self.ep_info)  # episodes in the means (at most 100)
                logs["num_timesteps"] = self.num_timesteps
                self.history.append(logs)
                self._log(logs)
                bar.update(self.num_timesteps - bar.n)
                bar.set_postfix(ep_rew=f"{logs.get('ep_rew_mean', float('nan')):.2f}",
                                grad=f"{logs['grad_norm']:.2g}", refresh=False)
                if cfg.checkpoint_every and self.num_updates % cfg.checkpoint_every == 0:
                    self.save_checkpoint(self.checkpoint_path)
                if callback is not None and callback(self, logs) is False:
                    break
                if cfg.max_time_s and elapsed > cfg.max_time_s:
                    break
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.flush()
        if cfg.checkpoint_every:
            self.save_checkpoint(self.checkpoint_path)
        return self

    def _log(self, logs: dict[str, float]) -> None:
        if not self.config.tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir))
        tags = {"ep_rew_mean": "rollout/ep_rew_mean", "ep_len_mean": "rollout/ep_len_mean", "fps": "time/fps",
                "rollout_s": "time/rollout_s", "env_s": "time/env_s", "gradient_s": "time/gradient_s",
                "critic_s": "time/critic_s"}
        for key, value in logs.items():
            if key != "num_timesteps":
                self._writer.add_scalar(tags.get(key, f"train/{key}"), value, self.num_timesteps)

    # -- evaluation in the world model --------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_world_model(self, steps: int = 300, deterministic: bool = True, seed: int | None = None
                             ) -> dict[str, float]:
        """Run the actor for ``steps`` steps in the world model from a fresh (seeded) reset.

        Returns the mean per-step reward and the mean return of the episodes that finished (all envs
        are reset first, and again afterwards so that training restarts from fresh episodes).
        """
        seed = self.config.seed + 10_000 if seed is None else seed
        z = self.env.reset_tensor(seed=seed).to(self.device)
        ep_ret = torch.zeros(self.num_envs, device=self.device)
        returns, rewards = [], []
        for _ in range(steps):
            action, _ = self.actor(self._norm(z), deterministic=deterministic, generator=self.generator, raw_z=z)
            step = self.env.step_tensor(action)
            rew = step.reward.to(self.device).float()
            done = (step.terminated | step.truncated).to(self.device).bool()
            ep_ret += rew
            rewards.append(float(rew.mean()))
            returns += ep_ret[done].tolist()
            ep_ret[done] = 0.0
            z = step.latent.to(self.device)
        self.z = self.env.reset_tensor(seed=seed + 1).to(self.device)
        return {"mean_reward": float(np.mean(rewards)), "episodes": len(returns),
                "mean_return": float(np.mean(returns)) if returns else float("nan"),
                "mean_partial_return": float(ep_ret.mean())}

    # -- persistence ------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(), "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(), "value_rms": self.value_rms.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "generator": self.generator.get_state(),
            "counters": {k: getattr(self, k) for k in
                         ("num_timesteps", "num_updates", "skipped_updates", "skipped_critic_steps")},
            "ep_info": list(self.ep_info), "history": self.history, "timings": dict(self.timings),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write the full training state atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self._state(), path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> "FoGTrainer":
        """Restore a :meth:`save_checkpoint` state; the envs are reset with a seed derived from the update count."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        for name in ("actor", "critic", "target_critic", "obs_rms", "ret_rms", "value_rms", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"].cpu())
        for k, v in state["counters"].items():
            setattr(self, k, v)
        self.ep_info.extend(state["ep_info"])
        self.history, self.timings = state["history"], collections.Counter(state["timings"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.z = self.env.reset_tensor(seed=self.config.seed + self.num_updates).to(self.device)
        self._ep_ret.zero_(), self._ep_len.zero_(), self._disc_ret.zero_()
        return self

    @property
    def policy(self) -> FoGPolicy:
        """The frame-acting policy (the env's surrogate encoder + the actor), sharing the actor's weights."""
        surrogate = getattr(self.env, "surrogate", None)
        if surrogate is None:
            raise AttributeError("the env exposes no `surrogate`; a frame-acting policy needs its encoder")
        return FoGPolicy(surrogate, self.actor, self.obs_rms, _context_of(self.env), self.config.obs_norm)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the frame-acting policy (load it with ``FoGPolicy.load(path)``)."""
        return self.policy.save(path)
