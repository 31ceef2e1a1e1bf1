"""FoG hyper-parameters: one dataclass, one line of documentation per field (shown by ``fog-train --help``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wm_gym.cliargs import arg
from wm_gym.models.global_model import PRECISIONS


@dataclass
class FoGConfig:
    """Decoupled first-order gradient actor-critic (SHAC / DMO style), defaults for Push-T in a world model."""

    # -- environment ------------------------------------------------------------------------------
    env_id: str = arg("WM-PushT-v0", "env id, made with gym.make_vec when the trainer is given an id")
    # 64 for wall time (a batch of 64 steps ~2.3x as fast per env step as 8); per env step fewer learn sooner: with
    # 8 instead of 16 FoG reached PPO's best 1.7x-3x sooner, depending on seeds and PPO runs (README, sample
    # efficiency; benchmarks/results/fog_envs_per_update/README.md)
    num_envs: int = arg(64, "parallel envs N (one update sees N x horizon env steps; fewer envs = more updates per "
                        "env step)")
    reward_type: str = arg("dense", "reward the env is made with when given an id ('dense', 'push' or 'coverage')")
    checkpoint: str = arg("", "world-model checkpoint directory when made from an id ('' = the shipped model)")
    precision: str = arg("float32", "the global model's arithmetic when made from an id: float32, bfloat16 "
                         "(autocast; ~1.5x as fast on CPUs with AMX) or auto (bfloat16 where the hardware has it)")
    # -- FoG objective ------------------------------------------------------------------------------
    horizon: int = arg(16, "H: env steps per update, the length of the differentiated return")
    gamma: float = arg(0.99, "discount factor")
    lam: float = arg(0.95, "TD(lambda) parameter of the critic targets")
    alpha: float = arg(0.01, "entropy bonus weight (per step, in the env's reward units)")
    critic_weight: float = arg(1.0, "weight of the bootstrap gamma^H V(z_H) in the actor loss (0 drops it)")
    reward_norm: bool = arg(True, "divide rewards by the running std of the discounted return (this rollout's included)")
    value_norm: bool = arg(True, "critic predicts normalised values (PopArt-preserving running target stats)")
    obs_norm: bool = arg(True, "normalise the latent with running mean/std before actor and critic")
    # -- networks and optimisation ----------------------------------------------------------------
    actor_hidden: tuple[int, ...] = arg((256, 256), "actor MLP widths")
    critic_hidden: tuple[int, ...] = arg((256, 256), "critic MLP widths")
    init_log_std: float = arg(-0.5, "initial log std of the pre-tanh Gaussian")
    # absolute targets let the policy jump ~190 px per step where the world model never saw data (its h16 agent
    # error on such episodes: 48 px vs 9 px on the behaviour data); anchored targets stay where it was trained
    action_offset: float = arg(48.0, "0: absolute targets anywhere in the action box; > 0: target = the surrogate's "
                               "agent-position read-out + an offset of at most this (env units per coordinate), "
                               "which keeps actions where the world model was trained")
    # DMO / SHAC use ~2e-3; on WM-PushT-v0 (seed 0, 150k steps) 2e-3 made the return fall after the first
    # updates (-390 -> -425) and 3e-4 made it rise (-462 -> -412): benchmarks/results/fog_lr_study.md
    actor_lr: float = arg(3e-4, "actor Adam learning rate")
    critic_lr: float = arg(3e-4, "critic Adam learning rate")
    betas: tuple[float, float] = arg((0.7, 0.95), "Adam betas of both optimisers (SHAC / DMO)")
    anneal_lr: bool = arg(False, "decay both learning rates linearly to 0 over the run")
    max_grad_norm: float = arg(1.0, "actor gradient norm clip")
    critic_grad_norm: float = arg(10.0, "critic gradient norm clip")
    critic_iters: int = arg(16, "passes over the rollout per critic update")
    critic_minibatches: int = arg(4, "minibatches per critic pass")
    tau: float = arg(0.8, "target critic update: target <- (1 - tau) target + tau critic")
    # -- bookkeeping ----------------------------------------------------------------------------------
    seed: int = arg(0, "one seed for random, numpy, torch and the env reset")
    device: str = arg("cpu", "torch device of the networks (and of the env when made from an id)")
    torch_threads: int = arg(0, "torch CPU threads (0 leaves torch's default)")
    run_dir: str = arg("", "run directory (TensorBoard, checkpoints); '' = runs/fog__ENV__SEED__TIME")
    tensorboard: bool = arg(True, "write TensorBoard scalars to run_dir")
    checkpoint_every: int = arg(50, "updates between checkpoints (0: only at the end)")
    max_time_s: float = arg(0.0, "stop learn() after this many seconds (0: no limit)")
    progress_bar: bool = arg(True, "show a tqdm progress bar")
    grad_split: bool = arg(False, "also log the reward- and critic-term actor gradient norms apart (2 extra backwards)")

    def __post_init__(self):
        positive = ("num_envs", "horizon", "critic_iters", "critic_minibatches")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"FoGConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gamma", "lam", "tau"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FoGConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"FoGConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.action_offset < 0:
            raise ValueError(f"FoGConfig.action_offset must be >= 0 (0: absolute actions), got {self.action_offset}")
        if self.max_grad_norm <= 0 or self.critic_grad_norm <= 0:
            raise ValueError(f"gradient clips must be > 0, got max_grad_norm={self.max_grad_norm}, "
                             f"critic_grad_norm={self.critic_grad_norm}")
        self.actor_hidden = tuple(int(h) for h in self.actor_hidden)
        self.critic_hidden = tuple(int(h) for h in self.critic_hidden)
        self.betas = tuple(float(b) for b in self.betas)

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.horizon

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
