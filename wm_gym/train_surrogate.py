"""Train the local surrogate (encoder, latent dynamics, reward and success heads) on real data and global rollouts.

    wm-gym train-surrogate --data DIR --out DIR [--global-model DIR] [--resume] [--minutes M]

The loss, over windows of H steps (TD-MPC2-style, https://arxiv.org/abs/2310.16828, Sec. 3):

* latent consistency: the latent rolled by ``next`` from ``encode(obs_t)`` under the true actions must
  match the encoder's latents of the true next contexts, ``sg(encode(obs_{t+k}))``, k = 1..H, with weights
  ``rho^(k-1)``;
* reward: ``reward(z_k, a_{t+k})`` against both reward labels, on the rolled latents (k = 0 is the encoder's);
* success: ``success_logit(z_{k+1})`` against the success label of frame t+k+1 (BCE);
* anti-collapse guard: a *linear* read-out of the true state from every rolled latent (Push-T: agent xy,
  block xy, cos/sin of the block angle). Consistency alone is minimised by a constant latent; the state
  read-out makes that impossible, and because it is linear it also asks the latent to hold the physical
  state in near-linear coordinates, which is what makes the surrogate's Jacobians meaningful.
  A VICReg-style variance hinge (``--var-coef``) is available for tasks without true states.

With ``--global-model DIR`` a fraction of every batch comes from rollouts of the global diffusion model
(``GlobalModel.step``) started from dataset contexts under the dataset actions: the surrogate is
linearised at the states the global model visits, so it is trained on them too. These windows have no
true state; their rewards / success are the global model's. The rollouts fill a ring buffer that is
refreshed every ``--gm-refresh-every`` steps.

``--contact-fraction F`` draws that fraction of the real windows of each batch from windows in which the agent
touches the block (the rest uniformly): contact is where the surrogate's action derivatives are weakest
(``benchmarks/gradient_fidelity.py``, rows ``global-autograd, contact``).

With ``--gradient-coef C`` (and a global model) the surrogate's *derivatives* are also fitted to the global
model's (Sobolev training, Czarnecki et al. 2017, https://arxiv.org/abs/1706.04859): at contexts of the
global rollouts, central finite differences of one global step under common noise give ``d r / d a`` for
every reward label and ``d z' / d a`` of the encoder's latent of the next context; the surrogate's
``drda`` and ``dfda`` at the same (z, a) are pulled towards them (squared error relative to the targets'
mean square). FoG uses exactly these derivatives at the states the global model visits.

Outputs: ``OUT/surrogate/`` (``Surrogate.save_pretrained``), ``OUT/checkpoint.pt`` (training state for
``--resume``), ``OUT/metrics.json`` (last validation), ``OUT/tb/`` (TensorBoard), all written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .io import atomic_save_pretrained, atomic_torch_save, atomic_write_text
from .cliargs import add_dataclass_arguments, arg
from .data import load_split
from .models.surrogate import Surrogate
from .pusht import TaskSpec


@dataclasses.dataclass
class TrainSurrogateArgs:
    data: str = arg("", "dataset directory (wm-gym collect), or several joined by commas; required")
    out: str = arg("", "output directory; required")
    global_model: str = arg("", "global model directory (GlobalModel.from_pretrained) to mix in its rollouts")
    resume: bool = arg(False, "continue from OUT/checkpoint.pt")
    minutes: float = arg(18.0, "wall-clock budget of this invocation (minutes)")
    steps: int = arg(0, "stop at this total step count (0: only the time budget)")
    seed: int = arg(0, "seed of random, numpy and torch")
    threads: int = arg(2, "torch CPU threads")
    device: str = arg("cpu", "torch device (cpu, cuda, ...)")
    # optimisation
    batch_size: int = arg(32, "windows per step")
    contact_fraction: float = arg(0.0, "fraction of the real windows of each batch drawn from windows with "
                                  "agent-block contact (0: uniform over all windows)")
    horizon: int = arg(5, "steps H of the multi-step losses")
    rho: float = arg(0.5, "weight decay per step of the multi-step losses")
    lr: float = arg(1e-3, "AdamW learning rate")
    weight_decay: float = arg(1e-4, "AdamW weight decay")
    warmup_steps: int = arg(100, "linear learning-rate warm-up")
    grad_clip: float = arg(10.0, "gradient-norm clip")
    consistency_coef: float = arg(1.0, "weight of the latent consistency loss")
    reward_coef: float = arg(1.0, "weight of the reward loss")
    success_coef: float = arg(0.1, "weight of the success BCE")
    state_coef: float = arg(1.0, "weight of the true-state read-out loss (anti-collapse)")
    var_coef: float = arg(0.0, "weight of the variance hinge on the encoder latents (anti-collapse without states)")
    var_target: float = arg(0.5, "per-dimension std the variance hinge asks for")
    # model
    context: int = arg(4, "context frames K of the encoder")
    latent_dim: int = arg(64, "latent size d")
    latent_norm: str = arg("layernorm", "latent normalisation: layernorm or simnorm")
    encoder_channels: str = arg("16,32,64,128", "channels of the stride-2 encoder convolutions")
    keypoints: int = arg(16, "spatial soft-argmax keypoints of the encoder (0: none)")
    dynamics_hidden: int = arg(256, "width of the dynamics MLP")
    dynamics_layers: int = arg(1, "hidden layers of the dynamics MLP")
    reward_hidden: int = arg(256, "width of the reward MLP")
    # global-model rollouts
    gm_fraction: float = arg(0.25, "fraction of each batch taken from global-model rollouts")
    gm_horizon: int = arg(16, "length of each global-model rollout")
    gm_rollouts: int = arg(8, "rollouts generated per refresh")
    gm_refresh_every: int = arg(25, "steps between refreshes of the rollout buffer")
    gm_buffer: int = arg(512, "rollouts kept in the ring buffer")
    gm_sampler_steps: int = arg(0, "Euler steps of the global sampler (0: its default)")
    # derivative matching (Sobolev training) against the global model
    gradient_coef: float = arg(0.0, "weight of matching the global model's action derivatives (needs --global-model)")
    gradient_batch: int = arg(16, "contexts per step for the derivative matching")
    gradient_eps: float = arg(0.02, "central finite-difference step of the global derivatives (normalised actions)")
    init_from: str = arg("", "start from this Surrogate directory (fine-tuning; its architecture is kept)")
    # data, logging
    val_fraction: float = arg(0.1, "validation fraction of episodes")
    max_episodes: int = arg(0, "use at most N episodes per split (0: all)")
    eval_every: int = arg(250, "validate every N steps")
    eval_windows: int = arg(256, "validation windows")
    save_every_minutes: float = arg(3.0, "checkpoint period")
    log_every: int = arg(25, "TensorBoard scalar period (steps)")
    quiet: bool = arg(False, "no progress bar")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.encoder_channels.split(","))


# ---------------------------------------------------------------------------------------------------
# data: windows of K context frames + H steps, from dataset episodes or global-model rollouts
# ---------------------------------------------------------------------------------------------------
def state_features(states: np.ndarray, task: TaskSpec) -> np.ndarray:
    """True states -> regression targets of the state head.

    Push-T (agent xy, block xy, angle): positions scaled to [-1, 1] (they live in the action workspace)
    and ``cos``/``sin`` of the angle, so the target is continuous where the angle wraps.
    """
    s = np.asarray(states, np.float32)
    if task.name != "pusht":
        raise ValueError(f"state_features knows Push-T states only, got task {task.name!r}; pass state_coef=0")
    half = (task.action_high - task.action_low) / 2.0
    pos = (s[..., :4] - task.action_low) / half - 1.0
    return np.concatenate([pos, np.cos(s[..., 4:5]), np.sin(s[..., 4:5])], -1).astype(np.float32)


def state_from_features(features: np.ndarray, task: TaskSpec) -> np.ndarray:
    """The inverse of :func:`state_features`: read-out features (..., 6) -> Push-T states (..., 5) (agent xy,
    block xy in env units, block angle in radians), e.g. to act on a surrogate's state-head estimate."""
    f = np.asarray(features)
    if task.name != "pusht":
        raise ValueError(f"state_from_features knows Push-T states only, got task {task.name!r}")
    half = (task.action_high - task.action_low) / 2.0
    return np.concatenate([(f[..., :4] + 1.0) * half + task.action_low, np.arctan2(f[..., 5:6], f[..., 4:5])], -1)


STATE_DIM = 6


class WindowBank:
    """Fixed-shape tensors of sequences from which training windows are gathered.

    Item i holds ``frames`` (pad + L + 1, 3, H, W) uint8 (``pad`` context frames before step 0), ``act``
    (pad + L, m) normalised (``act[pad + t]`` is the action at step t), ``rew`` (L, R), ``succ`` (L,)
    (success of frame t+1), ``state`` (L + 1, F), ``contact`` (L,) agent-block contact at step t (real
    episodes) and ``length`` (valid steps). A window at step t covers contexts for steps t..t+H, actions,
    rewards and successes of steps t..t+H-1 and states t..t+H.
    """

    def __init__(self, capacity: int, steps: int, pad: int, image_size: int, num_rewards: int, action_dim: int):
        S = image_size
        self.pad, self.steps = pad, steps
        self.frames = torch.zeros(capacity, pad + steps + 1, 3, S, S, dtype=torch.uint8)
        self.act = torch.zeros(capacity, pad + steps, action_dim)
        self.rew = torch.zeros(capacity, steps, num_rewards)
        self.succ = torch.zeros(capacity, steps)
        self.state = torch.zeros(capacity, steps + 1, STATE_DIM)
        self.has_state = torch.zeros(capacity, dtype=torch.bool)
        self.contact = torch.zeros(capacity, steps, dtype=torch.bool)
        self.length = torch.zeros(capacity, dtype=torch.long)
        self.size, self.cursor = 0, 0

    @classmethod
    def from_episodes(cls, episodes: list[dict], task: TaskSpec, pad: int) -> "WindowBank":
        steps = max(len(ep["actions"]) for ep in episodes)
        bank = cls(len(episodes), steps, pad, episodes[0]["frames"].shape[1], len(task.reward_types), task.action_dim)
        for i, ep in enumerate(episodes):
            T = len(ep["actions"])
            frames = torch.from_numpy(ep["frames"]).movedim(-1, 1)
            bank.frames[i, :pad] = frames[0]
            bank.frames[i, pad:pad + T + 1] = frames
            bank.act[i, pad:pad + T] = torch.from_numpy(task.normalize_action(ep["actions"]).astype(np.float32))
            bank.rew[i, :T] = torch.from_numpy(np.stack([ep["reward_" + r] for r in task.reward_types], -1))
            bank.succ[i, :T] = torch.from_numpy((ep["coverage"][1:] > 0.95).astype(np.float32))
            bank.state[i, :T + 1] = torch.from_numpy(state_features(ep["states"], task))
            bank.has_state[i] = True
            if "contact" in ep:
                bank.contact[i, :T] = torch.from_numpy(np.asarray(ep["contact"][:T], bool))
            bank.length[i] = T
        bank.size = len(episodes)
        return bank

    def sample_starts(self, n: int, horizon: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (item, t) pairs with t + horizon <= length, uniform over all such windows."""
        counts = (self.length[: self.size] - horizon + 1).clamp(min=0).numpy().astype(np.float64)
        if counts.sum() == 0:
            raise ValueError(f"no sequence in the bank is {horizon} steps long (longest: {int(self.length.max())})")
        item = rng.choice(self.size, size=n, p=counts / counts.sum())
        t = np.floor(rng.random(n) * counts[item]).astype(np.int64)
        return torch.from_numpy(item), torch.from_numpy(t)

    def contact_starts(self, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (item, t) whose window of ``horizon`` steps has agent-block contact at some step."""
        c = self.contact[: self.size].float()
        if horizon > c.shape[1]:  # no window fits
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        any_contact = torch.nn.functional.max_pool1d(c[:, None], horizon, 1)[:, 0] > 0  # (n, L - H + 1)
        valid = torch.arange(any_contact.shape[1]) <= (self.length[: self.size, None] - horizon)
        item, t = torch.nonzero(any_contact & valid, as_tuple=True)
        return item, t

    def windows(self, item: torch.Tensor, t: torch.Tensor, context: int, horizon: int) -> dict[str, torch.Tensor]:
        """Gather windows: obs (n, H+1, K, 3, S, S) in [-1, 1], act (n, H, m), rew (n, H, R), succ (n, H),
        state (n, H+1, F), has_state (n,)."""
        K, H = context, horizon
        fi = t[:, None] + self.pad - (K - 1) + torch.arange(K + H)
        frames = self.frames[item[:, None], fi].float().div(127.5).sub(1.0)  # (n, K+H, 3, S, S)
        obs = frames.unfold(1, K, 1).permute(0, 1, 5, 2, 3, 4)  # (n, H+1, K, 3, S, S)
        si = t[:, None] + torch.arange(H)
        return {
            "obs": obs,
            "act": self.act[item[:, None], si + self.pad],
            "rew": self.rew[item[:, None], si],
            "succ": self.succ[item[:, None], si],
            "state": self.state[item[:, None], t[:, None] + torch.arange(H + 1)],
            "has_state": self.has_state[item],
        }

    def global_inputs(self, item: torch.Tensor, t: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global model's inputs at step t: frames (n, Kg, 3, S, S) in [-1, 1] and actions (n, Kg, m), the
        last one taken at t."""
        if context > self.pad + 1:
            raise ValueError(f"a context of {context} frames needs a bank padded by >= {context - 1} (got {self.pad})")
        back = torch.arange(-context + 1, 1)
        frames = self.frames[item[:, None], t[:, None] + self.pad + back].float().div(127.5).sub(1.0)
        return frames, self.act[item[:, None], t[:, None] + self.pad + back]

    def add(self, frames: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, succ: torch.Tensor) -> None:
        """Append sequences (ring buffer): frames (n, pad+L+1, 3, S, S) uint8, act (n, pad+L, m), rew, succ."""
        for j in range(frames.shape[0]):
            i = self.cursor
            self.frames[i], self.act[i], self.rew[i], self.succ[i] = frames[j], act[j], rew[j], succ[j]
            self.has_state[i], self.length[i] = False, self.steps
            self.cursor = (self.cursor + 1) % self.frames.shape[0]
            self.size = min(self.size + 1, self.frames.shape[0])


def cat_windows(a: dict, b: dict) -> dict:
    return {k: torch.cat([a[k], b[k]]) for k in a}


@torch.no_grad()
def global_rollouts(gm, bank: WindowBank, n: int, steps: int, rng: np.random.Generator,
                    generator: torch.Generator, sampler_steps: int | None):
    """Roll the global model ``steps`` steps from ``n`` dataset contexts under the dataset actions.

    Returns (frames uint8 (n, pad+steps+1, 3, S, S), act (n, pad+steps, m), rew (n, steps, R), succ (n, steps))
    in :meth:`WindowBank.add`'s layout, with the dataset's ``pad`` frames before the rollout start.
    """
    item, t = bank.sample_starts(n, steps, rng)
    Kg, pad, dev = gm.context, bank.pad, gm.device
    if Kg > pad + 1:
        raise ValueError(f"the global model's context ({Kg}) exceeds the bank's context padding + 1 ({pad + 1})")
    fi = t[:, None] + torch.arange(pad + 1)
    prefix = bank.frames[item[:, None], fi]  # (n, pad+1, 3, S, S) uint8
    acts = bank.act[item[:, None], t[:, None] + torch.arange(pad + steps)]  # (n, pad+steps, m)
    obs = prefix[:, -Kg:].float().div(127.5).sub(1.0).to(dev)
    new_frames, rews, succs = [], [], []
    for k in range(steps):
        act = acts[:, pad + k - Kg + 1: pad + k + 1].to(dev)
        out = gm.step(obs, act, generator=generator, num_steps=sampler_steps or None)
        new_frames.append(out.next_obs.cpu())
        rews.append(out.rew.float().cpu())
        succs.append(out.success_prob.float().cpu())
        obs = torch.cat([obs[:, 1:], out.next_obs[:, None]], 1)
    gen = torch.stack(new_frames, 1).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return torch.cat([prefix, gen], 1), acts, torch.stack(rews, 1), torch.stack(succs, 1)


@torch.no_grad()
def global_derivatives(gm, model: Surrogate, obs_g: torch.Tensor, act_g: torch.Tensor, eps: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Derivatives of one global step w.r.t. the action taken, by central differences under common noise.

    ``obs_g`` (n, P, 3, S, S), ``act_g`` (n, P, m): the last P >= max(Kg, K - 1) frames and actions (last
    action = the one taken); the global model sees the last Kg of them. Returns ``drda`` (n, m, R) of the
    global model's rewards and ``dzda`` (n, d, m) of ``model.encode`` of the next context (the last K-1
    frames of ``obs_g`` and the generated frame). Both are targets: no graph.
    """
    K, Kg = model.config.context, gm.context
    if obs_g.shape[1] < max(Kg, K - 1):
        raise ValueError(f"need >= {max(Kg, K - 1)} context frames (global model {Kg}, surrogate {K}), "
                         f"got {obs_g.shape[1]}")
    noise = torch.randn(obs_g[:, -1].shape, generator=generator, device=generator.device).to(obs_g.device, obs_g.dtype)
    dtype = model.dynamics.out.weight.dtype
    drda, dzda = [], []
    for j in range(act_g.shape[-1]):
        vals = []
        for sign in (1.0, -1.0):
            a = act_g.clone()
            a[:, -1, j] += sign * eps
            out = gm.step(obs_g[:, -Kg:], a[:, -Kg:], noise=noise)
            nxt = torch.cat([obs_g[:, obs_g.shape[1] - K + 1:], out.next_obs[:, None]], 1)
            vals.append((out.rew.to(model.device, dtype), model.encode(nxt.to(model.device, dtype))))
        drda.append((vals[0][0] - vals[1][0]) / (2 * eps))
        dzda.append((vals[0][1] - vals[1][1]) / (2 * eps))
    return torch.stack(drda, 1), torch.stack(dzda, -1)


def action_derivatives(model: Surrogate, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The surrogate's ``drda`` (n, m, R) (all reward labels) and ``dfda`` (n, d, m) at (encode(obs), act),
    differentiable w.r.t. its weights."""
    with torch.enable_grad():
        z = model.encode(obs)
        a = act.detach().requires_grad_(True)
        r = model.reward(z, a)
        drda = torch.stack([torch.autograd.grad(r[:, k].sum(), a, create_graph=True)[0] for k in range(r.shape[1])],
                           -1)
        return drda, model.jacobians(z, a).dfda  # closed form, differentiable w.r.t. the weights


def derivative_loss(model: Surrogate, obs: torch.Tensor, act: torch.Tensor, drda_ref: torch.Tensor,
                    dzda_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative squared errors of the surrogate's ``drda`` (all labels) and ``dfda`` at (encode(obs), act)
    against the global model's (:func:`global_derivatives`): ``(reward term, latent term)``."""
    return relative_errors(*action_derivatives(model, obs, act), drda_ref, dzda_ref)


def relative_errors(drda, dfda, drda_ref, dzda_ref) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared errors relative to the targets' mean square: reward (mean over labels), latent."""
    rel_r = (drda - drda_ref).pow(2).sum(1).mean(0) / drda_ref.pow(2).sum(1).mean(0).clamp_min(1e-8)  # per label
    rel_z = (dfda - dzda_ref).pow(2).sum((1, 2)).mean() / dzda_ref.pow(2).sum((1, 2)).mean().clamp_min(1e-8)
    return rel_r.mean(), rel_z


def validate_derivatives(model: Surrogate, gm, obs_g: torch.Tensor, act_g: torch.Tensor, eps: float, seed: int,
                         chunk: int = 64) -> dict[str, float]:
    """Held-out agreement of the surrogate's one-step action derivatives with the global model's (fixed
    noise): mean cosine of ``drda`` per reward label (``grad_cos_{label}``), relative errors."""
    model.eval()
    gen = torch.Generator(device=gm.device).manual_seed(seed)
    K, cos = model.config.context, []
    n_r = n_z = 0.0
    for i in range(0, obs_g.shape[0], chunk):
        o, a = obs_g[i:i + chunk].to(gm.device), act_g[i:i + chunk].to(gm.device)
        drda_ref, dzda_ref = global_derivatives(gm, model, o, a, eps, gen)
        drda, dfda = action_derivatives(model, o[:, -K:].to(model.device), a[:, -1].to(model.device))
        drda, dfda = drda.detach(), dfda.detach()
        g_r, g_z = relative_errors(drda, dfda, drda_ref, dzda_ref)
        cos.append(F.cosine_similarity(drda, drda_ref, dim=1))  # (n, R)
        m = o.shape[0]
        n_r, n_z = n_r + float(g_r) * m, n_z + float(g_z) * m
    cos = torch.cat(cos)
    model.train()
    logs = {f"grad_cos_{name}": float(cos[:, k].mean()) for k, name in enumerate(model.config.reward_types)}
    logs.update(grad_rel_err_reward=n_r / obs_g.shape[0], grad_rel_err_latent=n_z / obs_g.shape[0])
    return logs


# ---------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------
def surrogate_loss(model: Surrogate, batch: dict[str, torch.Tensor], args: TrainSurrogateArgs):
    """Multi-step consistency + reward + success + state read-out (+ variance hinge); returns (loss, logs)."""
    obs, act = batch["obs"], batch["act"]
    B, H = act.shape[:2]
    w = args.rho ** torch.arange(H + 1, dtype=obs.dtype, device=obs.device)
    # 1. latents: the encoder's at step 0 (with gradient), detached targets for steps 1..H
    z = model.encode(obs[:, 0])
    with torch.no_grad():
        target = model.encode(obs[:, 1:].flatten(0, 1)).unflatten(0, (B, H))
    # 2. roll the latent dynamics under the true actions
    zs, cons, rew, succ = [z], 0.0, 0.0, 0.0
    for k in range(H):
        rew = rew + w[k] * F.mse_loss(model.reward(z, act[:, k]), batch["rew"][:, k])
        z = model.next(z, act[:, k])
        zs.append(z)
        cons = cons + w[k] * F.mse_loss(z, target[:, k])
        succ = succ + w[k] * F.binary_cross_entropy_with_logits(model.success_logit(z), batch["succ"][:, k])
    wsum = w[:H].sum()
    cons, rew, succ = cons / wsum, rew / wsum, succ / wsum
    zs = torch.stack(zs, 1)  # (B, H+1, d)
    # 3. anti-collapse: linear read-out of the true state from every rolled latent (where states exist)
    state = zs.new_zeros(())
    mask = batch["has_state"]
    if args.state_coef > 0 and model.state_head is not None and mask.any():
        err = (model.state_head(zs[mask]) - batch["state"][mask]).pow(2).mean(-1)  # (n, H+1)
        state = (err * w).sum(1).mean() / w.sum()
    std = zs[:, 0].std(0)
    var = F.relu(args.var_target - std).mean()
    loss = (args.consistency_coef * cons + args.reward_coef * rew + args.success_coef * succ
            + args.state_coef * state + args.var_coef * var)
    logs = {k: float(v.detach()) for k, v in (("loss", loss), ("consistency", cons), ("reward", rew),
                                              ("success", succ), ("state", state), ("var", var))}
    logs["latent_std"] = float(std.detach().mean())
    return loss, logs


@torch.no_grad()
def validate(model: Surrogate, batch: dict[str, torch.Tensor], args: TrainSurrogateArgs, chunk: int = 64) -> dict:
    """Losses plus interpretable errors on fixed held-out windows.

    ``consistency_h{k}`` vs ``consistency_copy_h{k}`` (predicting z_t for z_{t+k}: the dynamics must beat it);
    ``reward_{label}`` MSE at the encoder latent; ``agent_px`` / ``block_px`` / ``angle_deg``: read-out
    errors at the encoder latent and after H rolled steps.
    """
    model.eval()
    n, H = batch["act"].shape[:2]
    acc: dict[str, float] = {}
    task = model.task
    half = (task.action_high - task.action_low) / 2.0
    for i in range(0, n, chunk):
        b = {k: v[i:i + chunk].to(model.device) for k, v in batch.items()}
        m = b["act"].shape[0]
        _, logs = surrogate_loss(model, b, args)
        z = model.encode(b["obs"][:, 0])
        target = model.encode(b["obs"][:, 1:].flatten(0, 1)).unflatten(0, (m, H))
        r0 = model.reward(z, b["act"][:, 0])
        for j, name in enumerate(model.config.reward_types):
            logs[f"reward_{name}"] = F.mse_loss(r0[:, j], b["rew"][:, 0, j]).item()
        zk, z0 = z, z
        for k in range(H):
            zk = model.next(zk, b["act"][:, k])
            if k + 1 in (1, H):
                logs[f"consistency_h{k + 1}"] = F.mse_loss(zk, target[:, k]).item()
                logs[f"consistency_copy_h{k + 1}"] = F.mse_loss(z0, target[:, k]).item()
        if model.state_head is not None:
            for tag, zz, s in (("", z0, b["state"][:, 0]), (f"_h{H}", zk, b["state"][:, H])):
                p = model.state(zz)
                logs[f"agent_px{tag}"] = ((p[:, :2] - s[:, :2]) * half).norm(dim=-1).mean().item()
                logs[f"block_px{tag}"] = ((p[:, 2:4] - s[:, 2:4]) * half).norm(dim=-1).mean().item()
                ang = torch.atan2(p[:, 5], p[:, 4]) - torch.atan2(s[:, 5], s[:, 4])
                logs[f"angle_deg{tag}"] = torch.rad2deg(torch.atan2(ang.sin(), ang.cos()).abs()).mean().item()
        for k, v in logs.items():
            acc[k] = acc.get(k, 0.0) + v * m / n
    model.train()
    return acc


# ---------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------
def export_surrogate(model: Surrogate, out: Path) -> None:
    """Write OUT/surrogate atomically (save into a temp dir, then swap directories)."""
    atomic_save_pretrained(model, out / "surrogate")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------
# training loop
# ---------------------------------------------------------------------------------------------------
def train(args: TrainSurrogateArgs, global_model=None) -> dict[str, float]:
    """Train (or resume) a surrogate into ``args.out``; returns the last validation logs.

    ``global_model`` (optional) is an object with ``GlobalModel``'s ``step``/``context``/``device``; it
    overrides ``args.global_model`` (tests pass a tiny one).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    for name in ("data", "out"):
        if not getattr(args, name):
            raise ValueError(f"{name} is required (--{name} DIR)")
    if args.horizon < 1 or args.batch_size < 1 or not 0 <= args.gm_fraction < 1 or not 0 <= args.contact_fraction <= 1:
        raise ValueError(f"need horizon >= 1, batch_size >= 1, 0 <= gm_fraction < 1, 0 <= contact_fraction <= 1 "
                         f"(got {args.horizon}, {args.batch_size}, {args.gm_fraction}, {args.contact_fraction})")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    # 1. data
    max_eps = args.max_episodes or None
    meta, train_eps = load_split(args.data, "train", args.val_fraction, args.seed, max_episodes=max_eps)
    _, val_eps = load_split(args.data, "val", args.val_fraction, args.seed, max_episodes=max_eps)
    task = TaskSpec.from_dict(meta["task"])
    if global_model is None and args.global_model:
        from .models.global_model import GlobalModel

        global_model = GlobalModel.from_pretrained(args.global_model, device=device)
    use_gm = global_model is not None and args.gm_fraction > 0
    if args.init_from:  # the windows must fit the checkpoint's encoder
        args = dataclasses.replace(args, context=int(Surrogate.load_config(args.init_from)["context"]))
    pad = max(args.context, global_model.context if use_gm else 1) - 1
    train_bank = WindowBank.from_episodes(train_eps, task, pad)
    val_bank = WindowBank.from_episodes(val_eps, task, pad)
    del train_eps, val_eps
    image_size = train_bank.frames.shape[-1]
    contact_item = contact_t = None
    if args.contact_fraction > 0:
        contact_item, contact_t = train_bank.contact_starts(args.horizon)
        if len(contact_item) == 0:
            raise ValueError(f"--contact-fraction {args.contact_fraction}: no training window of {args.horizon} steps "
                             f"has agent-block contact in {args.data} (collected without contact labels?); use 0")
    vi, vt = val_bank.sample_starts(args.eval_windows, args.horizon, np.random.default_rng(args.seed + 1))
    val_batch = val_bank.windows(vi, vt, args.context, args.horizon)
    gm_bank = gm_rng = gm_gen = None
    if use_gm:
        if global_model.image_size != image_size:
            raise ValueError(f"global model image_size {global_model.image_size} != dataset {image_size}")
        gm_bank = WindowBank(args.gm_buffer, args.gm_horizon, pad, image_size, len(task.reward_types), task.action_dim)
        gm_rng = np.random.default_rng(args.seed + 2)
        gm_gen = torch.Generator(device=global_model.device).manual_seed(args.seed + 2)

    # 2. model, optimiser, resume
    if args.init_from:
        model = Surrogate.from_pretrained(args.init_from).to(device)
        if model.config.image_size != image_size or tuple(model.config.reward_types) != tuple(task.reward_types):
            raise ValueError(f"--init-from {args.init_from}: its image_size {model.config.image_size} / reward_types "
                             f"{tuple(model.config.reward_types)} do not match the dataset's {image_size} / "
                             f"{tuple(task.reward_types)}")
    else:
        model = Surrogate(image_size=image_size, context=args.context, action_dim=task.action_dim,
                          latent_dim=args.latent_dim, latent_norm=args.latent_norm, encoder_channels=args.channels,
                          keypoints=args.keypoints, dynamics_hidden=args.dynamics_hidden,
                          dynamics_layers=args.dynamics_layers, reward_hidden=args.reward_hidden,
                          reward_types=tuple(task.reward_types), state_dim=STATE_DIM if args.state_coef > 0 else 0,
                          task=task.to_dict()).to(device)
    use_grad = args.gradient_coef > 0
    if use_grad and not use_gm:
        raise ValueError("--gradient-coef > 0 matches the global model's derivatives: give --global-model DIR "
                         "and --gm-fraction > 0")
    if use_grad:
        grad_gen = torch.Generator(device=global_model.device).manual_seed(args.seed + 3)
        vi_g, vt_g = val_bank.sample_starts(args.eval_windows // 2, 1, np.random.default_rng(args.seed + 4))
        grad_context = max(model.config.context, global_model.context)  # frames both models need
        val_grad = val_bank.global_inputs(vi_g, vt_g, grad_context)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    step, samples = 0, 0
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, samples = ck["step"], ck["samples"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
    elif args.resume:
        print(f"--resume: {ckpt_path} does not exist, starting from scratch")
    writer = SummaryWriter(str(out / "tb"))
    writer.add_text("args", json.dumps(dataclasses.asdict(args), indent=2))

    def save() -> None:
        atomic_torch_save({"step": step, "samples": samples, "args": dataclasses.asdict(args),
                           "model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                           "torch_rng": torch.get_rng_state()}, ckpt_path)
        export_surrogate(model, out)

    def evaluate() -> dict[str, float]:
        logs = validate(model, val_batch, args)
        if use_grad:
            logs.update(validate_derivatives(model, global_model, *val_grad, args.gradient_eps, args.seed + 5))
        for k, v in logs.items():
            writer.add_scalar(f"val/{k}", v, step)
        atomic_write_text(out / "metrics.json", json.dumps({"step": step, "samples": samples, **logs}, indent=2))
        return logs

    # 3. loop
    t0 = last_save = time.time()
    n_gm = int(round(args.batch_size * args.gm_fraction)) if use_gm else 0
    bar = tqdm(total=args.steps or None, initial=step, desc="train-surrogate", disable=args.quiet,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    val_logs: dict[str, float] = {}
    gm_seconds = 0.0
    while True:
        elapsed = time.time() - t0
        if elapsed > args.minutes * 60 or (args.steps and step >= args.steps):
            break
        if use_gm and step % args.gm_refresh_every == 0:
            tg = time.time()
            gm_bank.add(*global_rollouts(global_model, train_bank, args.gm_rollouts, args.gm_horizon, gm_rng,
                                         gm_gen, args.gm_sampler_steps))
            gm_seconds += time.time() - tg
        n_real = args.batch_size - (n_gm if use_gm and gm_bank.size else 0)
        n_contact = int(round(n_real * args.contact_fraction)) if contact_item is not None else 0
        item, t = train_bank.sample_starts(n_real - n_contact, args.horizon, rng)
        if n_contact:
            pick = torch.from_numpy(rng.integers(0, len(contact_item), n_contact))
            item, t = torch.cat([item, contact_item[pick]]), torch.cat([t, contact_t[pick]])
        batch = train_bank.windows(item, t, args.context, args.horizon)
        if n_real < args.batch_size:
            batch = cat_windows(batch, gm_bank.windows(*gm_bank.sample_starts(args.batch_size - n_real, args.horizon,
                                                                              rng), args.context, args.horizon))
        batch = {k: v.to(device) for k, v in batch.items()}
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / max(1, args.warmup_steps))
        loss, logs = surrogate_loss(model, batch, args)
        if use_grad:
            bank = gm_bank if gm_bank.size else train_bank
            obs_g, act_g = bank.global_inputs(*bank.sample_starts(args.gradient_batch, 1, rng), grad_context)
            obs_g, act_g = obs_g.to(global_model.device), act_g.to(global_model.device)
            tg = time.time()
            drda_ref, dzda_ref = global_derivatives(global_model, model, obs_g, act_g, args.gradient_eps, grad_gen)
            gm_seconds += time.time() - tg
            K = model.config.context
            g_r, g_z = derivative_loss(model, obs_g[:, -K:].to(device), act_g[:, -1].to(device), drda_ref, dzda_ref)
            loss = loss + args.gradient_coef * (g_r + g_z)
            logs.update(loss=float(loss.detach()), grad_reward=float(g_r.detach()), grad_latent=float(g_z.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip))
        opt.step()
        step += 1
        samples += args.batch_size
        bar.update(1)
        if step % args.log_every == 0:
            for k, v in logs.items():
                writer.add_scalar(f"losses/{k}", v, step)
            writer.add_scalar("charts/samples_per_s", samples / max(time.time() - t0, 1e-9), step)
            writer.add_scalar("charts/gm_rollout_seconds", gm_seconds, step)
            bar.set_postfix(refresh=False, loss=f"{logs['loss']:.4f}", cons=f"{logs['consistency']:.4f}",
                            rew=f"{logs['reward']:.4f}", state=f"{logs['state']:.4f}")
        if step % args.eval_every == 0:
            val_logs = evaluate()
        if time.time() - last_save > args.save_every_minutes * 60:
            save()
            last_save = time.time()
    bar.close()
    val_logs = evaluate()
    save()
    writer.close()
    return {"step": step, "samples": samples, "minutes": (time.time() - t0) / 60, **val_logs}


# ---------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------
def add_cli(subparsers) -> None:
    """Add ``train-surrogate`` to the ``wm-gym`` command line (arguments from :class:`TrainSurrogateArgs`)."""
    p = subparsers.add_parser("train-surrogate", help="train the local surrogate (encoder, latent dynamics, rewards)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_arguments(p, TrainSurrogateArgs)
    p.set_defaults(func=_cmd_train_surrogate, _parser=p)


def _cmd_train_surrogate(ns) -> int:
    for name in ("data", "out"):
        if not getattr(ns, name):
            ns._parser.error(f"--{name} is required")
    args = TrainSurrogateArgs(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainSurrogateArgs)})
    logs = train(args)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}))
    return 0


__all__ = ["TrainSurrogateArgs", "train", "surrogate_loss", "validate", "add_cli", "WindowBank", "state_features",
           "state_from_features"]
