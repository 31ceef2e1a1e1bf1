"""Actor, critic, running normalisers and the frame-acting policy that FoG trains and ships.

* :class:`Actor` -- a Gaussian on the latent, tanh-squashed into the action Box (env units),
  reparameterised, with the log-probability of the squashed action (SAC's change of variables).
* :class:`Critic` -- V(z) that predicts a *normalised* value; its running target statistics are
  folded back into the last layer when they change (PopArt, van Hasselt et al. 2016), so V(z) in
  return units is unchanged by a statistics update.
* :class:`RunningMeanStd` -- parallel-Welford mean / variance (as SB3's ``VecNormalize``), used for the
  latent, the discounted return (reward scale) and the value targets.
* :class:`FoGPolicy` -- surrogate encoder + latent normaliser + actor: acts on frames, keeps its own
  K-frame context, runs in the real gym-pusht, ``save`` / classmethod ``load``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wm_gym.data import FrameHistory, frames_to_tensor
from wm_gym.io import atomic_dir

POLICY_FORMAT = 1


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> ELU blocks, then a linear head (SHAC's actor / critic body)."""
    layers, d = [], in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.ELU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches of shape (..., *shape); stored as buffers."""

    def __init__(self, shape: Sequence[int] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(epsilon))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, *self.mean.shape).to(self.mean)
        x = x[torch.isfinite(x).reshape(len(x), -1).all(-1)]
        if len(x) == 0:
            return
        b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta.square() * self.count * b_count / total
        self.mean.add_(delta * b_count / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return (self.var + 1e-8).sqrt()

    def normalize(self, x: torch.Tensor, clip: float = 10.0) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-clip, clip)


class Actor(nn.Module):
    """pi(a | z): a Gaussian ``u ~ N(mu(z), exp(log_std))`` squashed by tanh into the action Box (env units).

    Two parameterisations of the action:

    * absolute (``max_offset=0``): ``a = low + (tanh(u) + 1) / 2 * (high - low)``, anywhere in the Box;
    * anchored (``max_offset > 0``): ``a = clip(anchor(z_raw) + max_offset * tanh(u), low, high)`` where
      ``anchor`` is a fixed affine read-out of the un-normalised latent in action units (Push-T: the
      surrogate's estimate of the agent position, :meth:`set_anchor`). A target a bounded step from the
      agent is what the world model's training data holds; absolute targets let a policy jump hundreds
      of pixels per step, where the world model has never been trained (``benchmarks/results``).

    ``log_prob`` is of the squashed action in [-1, 1]^m (independent of the env's units, so the entropy
    bonus does not depend on the workspace size).
    """

    def __init__(self, latent_dim: int, action_low, action_high, hidden: Sequence[int] = (256, 256),
                 init_log_std: float = -0.5, max_offset: float = 0.0):
        super().__init__()
        low = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        if low.shape != high.shape or not bool(torch.all(high > low)):
            raise ValueError(f"action bounds need low < high of one shape, got low={low}, high={high}")
        if not max_offset >= 0.0:
            raise ValueError(f"max_offset must be >= 0 (0: absolute actions), got {max_offset}")
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        self.max_offset = float(max_offset)
        if self.max_offset > 0:  # set by set_anchor; buffers so that save / load carry them
            self.register_buffer("anchor_weight", torch.zeros(low.numel(), latent_dim))
            self.register_buffer("anchor_bias", (low + high) / 2)
        self.net = mlp(latent_dim, hidden, low.numel())
        nn.init.uniform_(self.net[-1].weight, -1e-3, 1e-3)
        nn.init.zeros_(self.net[-1].bias)
        self.log_std = nn.Parameter(torch.full((low.numel(),), float(init_log_std)))

    @property
    def hidden(self) -> list[int]:
        """Widths of the hidden layers (the ``hidden`` argument it was built with)."""
        return [m.out_features for m in self.net[:-1] if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def set_anchor(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The anchor ``weight @ z_raw + bias`` (action units) of an anchored actor: weight (m, d), bias (m,)."""
        if self.max_offset <= 0:
            raise ValueError("set_anchor needs an anchored actor (max_offset > 0)")
        self.anchor_weight.copy_(torch.as_tensor(weight).reshape(self.anchor_weight.shape))
        self.anchor_bias.copy_(torch.as_tensor(bias).reshape(self.anchor_bias.shape))

    def to_env_units(self, squashed: torch.Tensor, raw_z: torch.Tensor | None = None) -> torch.Tensor:
        if self.max_offset <= 0:
            return self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)
        if raw_z is None:
            raise ValueError("an anchored actor (max_offset > 0) needs the un-normalised latent raw_z")
        anchor = raw_z @ self.anchor_weight.T + self.anchor_bias
        return torch.minimum(torch.maximum(anchor + self.max_offset * squashed, self.low), self.high)

    def forward(self, z: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None,
                raw_z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(action in env units (B, m), log_prob (B,))``, differentiable w.r.t. ``z``, ``raw_z`` and
        the weights; ``z`` is the (normalised) actor input, ``raw_z`` the latent the anchor reads."""
        mu = self.net(z)
        std = self.log_std.clamp(-5.0, 2.0).exp().expand_as(mu)
        eps = torch.zeros_like(mu) if deterministic else torch.randn(
            mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + std * eps
        log_prob = (-0.5 * eps.square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log |d tanh(u) / du| = 2 (log 2 - u - softplus(-2u)), stable for large |u| (SAC, Haarnoja et al. 2018)
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return self.to_env_units(torch.tanh(u), raw_z), log_prob


class Critic(nn.Module):
    """V(z) in return units; the network predicts ``(V - mean) / std`` of the running value targets."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(latent_dim, hidden, 1)
        self.register_buffer("v_mean", torch.zeros(()))
        self.register_buffer("v_std", torch.ones(()))

    def normalized(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.normalized(z) * self.v_std + self.v_mean

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Change the target statistics and rescale the head so that ``forward`` is unchanged (PopArt)."""
        head = self.net[-1]
        head.weight.mul_(self.v_std / std)
        head.bias.copy_((self.v_std * head.bias + self.v_mean - mean) / std)
        self.v_mean.copy_(mean)
        self.v_std.copy_(std)


# ---------------------------------------------------------------------------------------------------
# the policy users keep: frames -> action
# ---------------------------------------------------------------------------------------------------
def _class_path(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str):
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class FoGPolicy(nn.Module):
    """A trained FoG policy that acts on frames: ``z = surrogate.encode(context)``, ``a = actor(norm(z))``.

    Two ways to act:

    * ``predict(frames)`` -- stateless, ``frames`` uint8 (K, H, W, 3) or (B, K, H, W, 3), oldest first;
    * ``reset()`` then ``act(frame)`` per step -- keeps its own K-frame context: at the start the first
      frame is repeated K times, as in the world model's reset (docs/CONTRACTS.md; the surrogate's
      ``encode`` reads frames only, so the zero action padding of the contract is not needed here).

    Actions are in env units (Push-T: target xy in [0, 512]); deterministic (the tanh of the mean)
    unless ``deterministic=False``.
    """

    def __init__(self, surrogate: nn.Module, actor: Actor, obs_rms: RunningMeanStd | None, context: int,
                 obs_norm: bool = True):
        super().__init__()
        if not hasattr(surrogate, "encode"):
            raise TypeError(f"surrogate must have encode(obs (B, K, 3, H, W)) -> z, got {type(surrogate).__name__}")
        self.surrogate, self.actor, self.context, self.obs_norm = surrogate, actor, int(context), obs_norm
        self.obs_rms = obs_rms if obs_rms is not None else RunningMeanStd((actor.net[0].in_features,))
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.actor.low.device

    def latent_action(self, z: torch.Tensor, deterministic: bool = True,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.obs_rms.normalize(z) if self.obs_norm else z
        return self.actor(x, deterministic=deterministic, generator=generator, raw_z=z)[0]

    @torch.no_grad()
    def predict(self, frames, deterministic: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        """Action(s) for K context frames uint8 (K, H, W, 3) -> (m,), or a batch (B, K, H, W, 3) -> (B, m).

        With ``deterministic=False`` the action is sampled (noise from ``generator``, else torch's global RNG)."""
        obs = torch.as_tensor(np.asarray(frames), device=self.device)
        single = obs.ndim == 4
        obs = obs[None] if single else obs
        if obs.dtype != torch.uint8 or obs.ndim != 5 or obs.shape[1] != self.context or obs.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 ({self.context}, H, W, 3) or (B, {self.context}, H, W, 3), "
                             f"got {obs.dtype} {tuple(obs.shape)}")
        z = self.surrogate.encode(frames_to_tensor(obs))
        action = self.latent_action(z, deterministic, generator).cpu().numpy()
        return action[0] if single else action

    @torch.no_grad()
    def act_latent(self, latents: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions (B, m) in env units for latents (B, d) (e.g. ``obs_type="latent"`` observations of the
        world-model env, or ``WorldModelEvaluator``)."""
        z = torch.as_tensor(np.asarray(latents, dtype=np.float32), device=self.device)
        return self.latent_action(z, deterministic).cpu().numpy()

    def reset(self) -> None:
        """Forget the context (call at every episode start)."""
        self._history = FrameHistory(self.context)

    def act(self, frame: np.ndarray, deterministic: bool = True, generator: torch.Generator | None = None
            ) -> np.ndarray:
        """Action (m,) for the newest frame uint8 (H, W, 3); the first frame of an episode is repeated K times."""
        return self.predict(self._history.push(frame), deterministic, generator)

    def untrained(self, seed: int = 0) -> "FoGPolicy":
        """The same policy before training: this encoder with a freshly initialised actor (seeded) and no
        observation statistics. A baseline that tells what learning changed; its deterministic action is
        about the middle of the action box (the actor's last layer starts near zero), or, for an anchored
        actor, about the anchor (the agent stays where it is)."""
        a = self.actor
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's global RNG
            torch.manual_seed(seed)
            actor = Actor(a.net[0].in_features, a.low.cpu(), a.high.cpu(), a.hidden, max_offset=a.max_offset)
        if a.max_offset > 0:
            actor.set_anchor(a.anchor_weight.cpu(), a.anchor_bias.cpu())
        return FoGPolicy(self.surrogate, actor, None, self.context, self.obs_norm).to(self.device).eval()

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path/`` = policy.json + actor.safetensors + surrogate/ (save_pretrained), atomically."""
        from safetensors.torch import save_file

        if not hasattr(self.surrogate, "save_pretrained"):
            raise TypeError(
                f"cannot save a policy whose surrogate {type(self.surrogate).__name__} has no save_pretrained(); "
                "use a diffusers ModelMixin + ConfigMixin model like wm_gym's Surrogate"
            )
        path = Path(path)
        with atomic_dir(path) as tmp:
            self.surrogate.save_pretrained(tmp / "surrogate")
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                     if not k.startswith("surrogate.")}
            save_file(state, str(tmp / "actor.safetensors"))
            meta = {
                "format": POLICY_FORMAT,
                "surrogate_class": _class_path(self.surrogate),
                "context": self.context,
                "obs_norm": self.obs_norm,
                "latent_dim": self.actor.net[0].in_features,
                "actor_hidden": self.actor.hidden,
                "action_low": self.actor.low.tolist(),
                "action_high": self.actor.high.tolist(),
                "max_offset": self.actor.max_offset,
            }
            (tmp / "policy.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "FoGPolicy":
        """Rebuild a policy written by :meth:`save` (imports the surrogate class named in policy.json)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "policy.json").exists():
            raise FileNotFoundError(f"{path} is not a saved FoG policy (no policy.json); save one with FoGPolicy.save")
        meta = json.loads((path / "policy.json").read_text())
        if meta.get("format") != POLICY_FORMAT:
            raise ValueError(f"{path}: policy format {meta.get('format')} is not the supported {POLICY_FORMAT}")
        from wm_gym.envs.core import quiet_diffusers

        with quiet_diffusers():
            surrogate = _import_class(meta["surrogate_class"]).from_pretrained(path / "surrogate")
        actor = Actor(meta["latent_dim"], meta["action_low"], meta["action_high"], hidden=meta["actor_hidden"],
                      max_offset=meta.get("max_offset", 0.0))
        policy = cls(surrogate, actor, RunningMeanStd((meta["latent_dim"],)), meta["context"], meta["obs_norm"])
        missing, unexpected = policy.load_state_dict(load_file(str(path / "actor.safetensors")), strict=False)
        missing = [k for k in missing if not k.startswith("surrogate.")]
        if missing or unexpected:
            raise ValueError(f"{path}/actor.safetensors does not match the policy: missing {missing}, "
                             f"unexpected {unexpected}")
        return policy.to(device).eval()
