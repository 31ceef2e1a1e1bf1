"""The batched world-model simulator shared by the single and the vector env.

``WorldModel`` is a loaded checkpoint (global model + surrogate + start-frame bank + task).
``WorldModelSimulator`` keeps N envs' K-frame contexts on the device and steps them all with one
batched global-model call; it is the torch fast path behind ``WMPushTVectorEnv.step_tensor``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import frames_to_tensor
from ..models.global_model import CheckpointError
from ..pusht import SUCCESS_THRESHOLD, TaskSpec

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "pusht"


def checkpoint_dir(checkpoint: str | Path | None = None) -> Path:
    """The directory of world-model checkpoint ``checkpoint`` (``None``: the shipped Push-T model)."""
    return Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT


@contextlib.contextmanager
def quiet_diffusers():
    """Silence diffusers' loading chatter (accelerate hints, dtype-cast notes) for our own small models."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


@dataclasses.dataclass
class WorldModel:
    """A world-model checkpoint loaded on a device (see docs/CONTRACTS.md for the layout)."""

    global_model: "torch.nn.Module"
    surrogate: "torch.nn.Module"
    start_frames: np.ndarray  # uint8 (S, H, W, 3)
    task: TaskSpec
    path: Path
    device: torch.device

    @property
    def context(self) -> int:
        return int(self.global_model.context)

    @property
    def latent_dim(self) -> int:
        return int(self.surrogate.config.latent_dim)

    @property
    def latent_bounds(self) -> tuple[float, float]:
        """Bounds of every latent coordinate: LayerNorm without affine gives |z_i| <= sqrt(d - 1); SimNorm [0, 1]."""
        if self.surrogate.config.latent_norm == "layernorm":
            b = float(np.sqrt(self.latent_dim))
            return -b, b
        return 0.0, 1.0

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> "WorldModel":
        """Load ``checkpoint`` (default: the shipped Push-T model), cached per (path, device)."""
        path = checkpoint_dir(checkpoint)
        key = (str(path.resolve()), str(torch.device(device)))
        if key not in _CACHE:
            _CACHE[key] = cls._load(path, torch.device(device))
        return _CACHE[key]

    @classmethod
    def _load(cls, path: Path, device: torch.device) -> "WorldModel":
        from ..models.global_model import GlobalModel
        from ..models.surrogate import Surrogate

        hint = (
            "A world-model checkpoint is a directory with global_model/, surrogate/ and start_frames.npz "
            "(see docs/CONTRACTS.md); pass checkpoint=None for the shipped Push-T model, or re-create it "
            "with the commands in wm_gym/assets/pusht/README.md."
        )
        if not path.is_dir():
            raise CheckpointError(f"world-model checkpoint {path} does not exist or is not a directory. {hint}")
        for part in ("global_model", "surrogate", "start_frames.npz"):
            if not (path / part).exists():
                raise CheckpointError(f"world-model checkpoint {path} lacks {part}. {hint}")
        try:
            with quiet_diffusers():
                global_model = GlobalModel.from_pretrained(path / "global_model", device=device).float()
                surrogate = Surrogate.from_pretrained(path / "surrogate").to(device=device, dtype=torch.float32).eval()
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"could not load the models of {path}: {type(e).__name__}: {e}. {hint}") from e
        try:
            with np.load(path / "start_frames.npz") as z:
                start_frames = z["frames"]
        except Exception as e:
            raise CheckpointError(f"{path / 'start_frames.npz'} is unreadable ({e}). {hint}") from e
        task = global_model.task
        size = task.image_size
        if start_frames.ndim != 4 or start_frames.shape[1:] != (size, size, 3) or start_frames.dtype != np.uint8:
            raise CheckpointError(
                f"{path / 'start_frames.npz'} holds {start_frames.shape} {start_frames.dtype}, expected uint8 "
                f"(N, {size}, {size}, 3) to match the global model's resolution. {hint}"
            )
        if int(surrogate.config.image_size) != size or int(surrogate.config.context) != global_model.context:
            raise CheckpointError(
                f"surrogate (image_size={surrogate.config.image_size}, context={surrogate.config.context}) does "
                f"not match the global model (image_size={size}, context={global_model.context}) in {path}. {hint}"
            )
        if tuple(surrogate.config.reward_types) != tuple(task.reward_types):
            raise CheckpointError(
                f"the surrogate's reward labels {list(surrogate.config.reward_types)} differ from the global "
                f"model's {list(task.reward_types)} in {path}: train both on the same collection. {hint}"
            )
        return cls(global_model, surrogate, start_frames, task, path, device)


_CACHE: dict[tuple[str, str], WorldModel] = {}


@dataclasses.dataclass
class TensorStep:
    """What ``step_tensor`` returns (all tensors on the env's device, batch first)."""

    obs: torch.Tensor  # uint8 (N, H, W, 3) frames or float32 (N, d) latents, after autoreset
    latent: torch.Tensor  # (N, d) z_{t+1}, or the reset state's latent where an episode ended
    reward: torch.Tensor  # (N,) the global model's reward for the env's reward_type
    terminated: torch.Tensor  # (N,) bool, predicted success
    truncated: torch.Tensor  # (N,) bool, time limit
    final_latent: torch.Tensor  # (N, d) z_{t+1} before any reset
    final_frame: torch.Tensor  # (N, 3, H, W) generated frame t+1 in [-1, 1] before any reset
    coverage: torch.Tensor  # (N,) predicted coverage reward label, clip(coverage / 0.95, 0, 1)
    success_prob: torch.Tensor  # (N,)
    lin: object | None  # surrogate Linearization at (z_t, a_t), derivatives w.r.t. env-unit actions

    def info(self) -> dict[str, np.ndarray]:
        """The Gymnasium ``info`` of the step, batched: gym-pusht's keys ``coverage`` (from the predicted
        reward label, exact below success) and ``is_success``, plus ``success_prob``."""
        return {
            "coverage": self.coverage.cpu().numpy() * SUCCESS_THRESHOLD,
            "is_success": self.terminated.cpu().numpy().copy(),
            "success_prob": self.success_prob.cpu().numpy(),
        }


class WorldModelSimulator:
    """N world-model envs stepped together on one device.

    Args:
        world_model: a loaded :class:`WorldModel`.
        num_envs: batch size N.
        reward_type: one of ``world_model.task.reward_types``.
        num_sampling_steps: Euler steps of the diffusion sampler (None: the checkpoint's default).
        max_episode_steps: truncation limit.
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"`` (``wm_gym.models.global_model.resolve_precision``):
            bfloat16 runs the global model under autocast and the surrogate Jacobians' big product in bfloat16
            (``Surrogate.jacobians(precision=)``); the surrogate's encoder and values stay float32.
    """

    def __init__(self, world_model: WorldModel, num_envs: int, reward_type: str = "coverage",
                 num_sampling_steps: int | None = None, max_episode_steps: int = 300, precision: str = "float32"):
        from ..models.global_model import resolve_precision

        task = world_model.task
        if reward_type not in task.reward_types:
            raise ValueError(f"reward_type must be one of {list(task.reward_types)}, got {reward_type!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.wm, self.task, self.num_envs = world_model, task, num_envs
        self.device = world_model.device
        self.reward_index = task.reward_types.index(reward_type)
        self.num_sampling_steps = num_sampling_steps
        self.max_episode_steps = max_episode_steps
        self.precision = resolve_precision(precision, self.device)
        K, H = world_model.context, task.image_size
        self.K, self.H = K, H
        self.obs_ctx = torch.zeros(num_envs, K, 3, H, H, device=self.device)
        self.past_act = torch.zeros(num_envs, K - 1, task.action_dim, device=self.device)
        self._latent = torch.zeros(num_envs, world_model.latent_dim, device=self.device)
        self._latent_valid = False  # the latent is encoded lazily: pixel-only users never pay for it
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.last_action = np.full((num_envs, task.action_dim), np.nan, dtype=np.float32)
        self.generators = [torch.Generator(device=self.device) for _ in range(num_envs)]
        self.np_random = [np.random.default_rng() for _ in range(num_envs)]
        # d a_norm / d a_env, to express the surrogate's action derivatives in env units
        self.action_scale = 2.0 / (task.action_high - task.action_low)

    # -- seeding / reset ---------------------------------------------------------------------------
    def seed(self, seeds: Sequence[int | None], idx: Sequence[int] | None = None) -> None:
        idx = range(self.num_envs) if idx is None else idx
        for i, s in zip(idx, seeds):
            self.np_random[i] = np.random.default_rng(s)
            g_seed = int(self.np_random[i].integers(2**62)) if s is not None else int(torch.seed())
            self.generators[i].manual_seed(g_seed)

    def _context_from_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) or (k, H, W, 3) with k <= K -> (K, 3, H, W), padding with the first frame."""
        f = np.asarray(frames)
        if f.ndim == 3:
            f = f[None]
        H = self.H
        if f.ndim != 4 or f.shape[1:] != (H, H, 3) or f.dtype != np.uint8 or not 1 <= len(f) <= self.K:
            raise ValueError(
                f"start_frames must be uint8 (H, W, 3) or (k, H, W, 3) with H = W = {H} and 1 <= k <= {self.K}; "
                f"got {f.dtype} {f.shape}"
            )
        f = np.concatenate([np.repeat(f[:1], self.K - len(f), axis=0), f])
        return frames_to_tensor(f).to(self.device)

    @torch.no_grad()
    def reset_envs(self, idx: Sequence[int], start_frames: Sequence[np.ndarray] | None = None) -> None:
        """Reset envs ``idx`` to a start frame from the bank (drawn with each env's rng) or to given frames."""
        idx = list(idx)
        if not idx:
            return
        for j, i in enumerate(idx):
            if start_frames is None:
                bank = self.wm.start_frames
                frames = bank[int(self.np_random[i].integers(len(bank)))]
            else:
                frames = start_frames[j]
            self.obs_ctx[i] = self._context_from_frames(frames)
        self.past_act[idx] = 0.0
        self.t[idx] = 0
        self.last_action[idx] = np.nan
        self._latent_valid = False

    # -- step ------------------------------------------------------------------------------------
    def check_action(self, action) -> torch.Tensor:
        """Validate an env-unit action batch (N, m); clip it to the action bounds."""
        a = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        shape = (self.num_envs, self.task.action_dim)
        if a.shape != shape:
            raise ValueError(f"action must have shape {shape} (num_envs, action_dim), got {tuple(a.shape)}")
        if not torch.isfinite(a).all():
            raise ValueError("action contains NaN or inf; actions must be finite target positions in env units")
        return a.clamp(self.task.action_low, self.task.action_high)

    def draw_noise(self) -> torch.Tensor:
        """The sampler's initial noise, one draw per env from its own generator (batch-size independent)."""
        shape = (3, self.H, self.H)
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in self.generators])

    @torch.no_grad()
    def _forward(self, a_norm: torch.Tensor):
        act = torch.cat([self.past_act, a_norm[:, None]], dim=1)
        return self.wm.global_model.step(self.obs_ctx, act, noise=self.draw_noise(),
                                         num_steps=self.num_sampling_steps, precision=self.precision)

    @property
    def latent(self) -> torch.Tensor:
        """Surrogate latents z_t (N, d) of the current contexts (encoded on first use after a change)."""
        if not self._latent_valid:
            with torch.no_grad():
                self._latent = self.wm.surrogate.encode(self.obs_ctx)
            self._latent_valid = True
        return self._latent

    def step(self, action, with_jacobians: bool = False, need_latent: bool = True) -> TensorStep:
        """Advance all envs by one step with env-unit ``action`` (N, m); finished envs reset in place.

        With ``need_latent=False`` the latents are not encoded (``latent`` / ``final_latent`` are None).
        """
        a = self.check_action(action)
        a_norm = self.task.normalize_action(a)
        self.last_action = a.cpu().numpy()
        lin = None
        if with_jacobians:
            lin = self.wm.surrogate.jacobians(self.latent, a_norm, reward_index=self.reward_index,
                                              precision=self.precision)
            lin = dataclasses.replace(lin, a=a, dfda=lin.dfda * self.action_scale, drda=lin.drda * self.action_scale)
        out = self._forward(a_norm)
        with torch.no_grad():
            self.obs_ctx = torch.cat([self.obs_ctx[:, 1:], out.next_obs[:, None]], dim=1)
            self.past_act = torch.cat([self.past_act[:, 1:], a_norm[:, None]], dim=1)
            self._latent_valid = False
        self.t += 1
        terminated = out.success.bool()
        truncated = (self.t >= self.max_episode_steps) & ~terminated
        final_latent = self.latent.clone() if need_latent else None
        done = torch.nonzero(terminated | truncated).flatten().tolist()
        self.reset_envs(done)
        rew = out.rew[:, self.reward_index]
        cov_index = self.task.reward_types.index("coverage") if "coverage" in self.task.reward_types else 0
        return TensorStep(
            obs=None, latent=self.latent if need_latent else None, reward=rew, terminated=terminated, truncated=truncated,
            final_latent=final_latent, final_frame=out.next_obs, coverage=out.rew[:, cov_index],
            success_prob=out.success_prob, lin=lin,
        )

    def frames(self) -> torch.Tensor:
        """Current frames (N, 3, H, W) in [-1, 1]."""
        return self.obs_ctx[:, -1]


def load_metrics(checkpoint: str | Path | None = None) -> dict:
    path = checkpoint_dir(checkpoint)
    p = path / "metrics.json"
    return json.loads(p.read_text()) if p.exists() else {}
