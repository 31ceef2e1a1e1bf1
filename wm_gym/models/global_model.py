"""The global world model: denoiser + sampler + reward model behind one ``step``.

On disk (diffusers format for each part)::

    path/global_model.json   format version, task spec, context, image size, sampler settings
    path/denoiser/           Denoiser.save_pretrained (config.json + diffusion_pytorch_model.safetensors)
    path/reward_model/       RewardModel.save_pretrained
    path/state_reader/       StateProbe.save_pretrained (optional, see ``state_reader`` below)

Example::

    model = GlobalModel.from_pretrained("runs/global/global_model", device="cpu")
    out = model.step(obs, act, generator=torch.Generator().manual_seed(0))
    out.next_obs, out.rew, out.success

``precision="bfloat16"`` runs the denoiser and reward model under ``torch.autocast`` (bfloat16 matrix
products, float32 in and out). On a CPU with AMX (Intel Sapphire Rapids and later) a batched step is ~1.5x
as fast and the open-loop error is unchanged (``benchmarks/env_speed.py``, ``wm-gym eval-fidelity
--precision``); without native bfloat16 hardware it can be slower (not measured here), so ``"auto"`` picks it
only where the hardware has it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write_text
from ..pusht import STATE_REWARDS, TaskSpec
from .denoiser import Denoiser
from .reward_model import RewardModel, RewardOutput
from .sampler import EulerSampler
from .state_probe import StateProbe

FORMAT_VERSION = 1
CONFIG_NAME = "global_model.json"
PRECISIONS = ("float32", "bfloat16", "auto")


def cpu_bf16_hardware(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of its bfloat16 flags (``amx_bf16``, ``avx512_bf16``) it has, from
    ``cpuinfo`` (Linux; elsewhere ``platform.processor()`` and no flags). ``precision="auto"`` picks bfloat16
    where there is one; ``benchmarks/machine.py`` names both beside the README's numbers."""
    model, flags = "", []
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), tuple(f for f in ("amx_bf16", "avx512_bf16")
                                                                          if f in flags)


@functools.lru_cache(maxsize=None)
def _cpu_has_native_bf16() -> bool:
    return bool(cpu_bf16_hardware()[1])


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"float32"`` or ``"bfloat16"`` for ``precision`` in :data:`PRECISIONS` on ``device``.

    ``"auto"`` is bfloat16 on a CUDA device that supports it and on a CPU with AMX / AVX512-BF16, else float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and _cpu_has_native_bf16() else "float32"


def precision_context(precision: str, device: torch.device | str):
    """The context a global-model forward pass runs in: nothing for float32, ``torch.autocast`` for bfloat16."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded (the message names the path and what to do)."""


@dataclass
class GlobalStep:
    """One world-model step for a batch of B envs.

    Attributes:
        next_obs: (B, C, H, W) float in [-1, 1], the predicted frame x_{t+1}.
        rew: (B, R) rewards, in the order of ``task.reward_types``.
        success_prob: (B,) probability that x_{t+1} is a success (the episode terminates).
        success: (B,) bool, ``success_prob > 0.5``.
    """

    next_obs: torch.Tensor
    rew: torch.Tensor
    success_prob: torch.Tensor
    success: torch.Tensor


class GlobalModel(nn.Module):
    """Action-conditioned diffusion world model with a reward/success head.

    Args:
        denoiser: the EDM denoiser over frame changes.
        reward_model: frame -> rewards + success logit.
        task: the task the model was trained on (action normalisation, reward names, image size).
        sampler: the few-step Euler sampler (default: 3 steps on sigma in [2e-3, 5]).
        state_reader: optional :class:`~wm_gym.models.state_probe.StateProbe` (frame -> true-state layout). With
            it the reward labels that are formulas of the state (``pusht.STATE_REWARDS``: ``dense``, ``push``)
            are that formula applied to the state it reads from the predicted frame, instead of the reward
            model's direct regression; the other labels and success still come from ``reward_model``. On the
            shipped model the values are more accurate and the gradient w.r.t. the action closer to the
            simulator's, where the reward CNN's pixel gradient is partly spurious; FoG did not gain from it
            (``benchmarks/results/global_state_reader/README.md``), so the shipped model has no reader.
    """

    def __init__(self, denoiser: Denoiser, reward_model: RewardModel, task: TaskSpec,
                 sampler: EulerSampler | None = None, state_reader: StateProbe | None = None):
        super().__init__()
        dc, rc = denoiser.config, reward_model.config
        if dc.image_size != rc.image_size or dc.image_size != task.image_size:
            raise ValueError(
                f"image sizes disagree: denoiser {dc.image_size}, reward_model {rc.image_size}, task {task.image_size}"
            )
        if rc.num_rewards != len(task.reward_types) or dc.action_dim != task.action_dim:
            raise ValueError(
                f"reward_model predicts {rc.num_rewards} rewards and denoiser takes {dc.action_dim}-d actions, "
                f"but the task has reward_types={task.reward_types} and action_dim={task.action_dim}"
            )
        self.denoiser = denoiser.eval()
        self.reward_model = reward_model.eval()
        self.task = task
        self.sampler = sampler or EulerSampler()
        if state_reader is not None:
            src = state_reader.config
            if src.image_size != dc.image_size or (src.num_keypoints, src.num_angles) != (2, 1):
                raise ValueError(
                    f"state_reader reads {src.image_size}x{src.image_size} frames into {src.num_keypoints} keypoints "
                    f"and {src.num_angles} angles; the model needs {dc.image_size}x{dc.image_size} frames and the "
                    f"reward formulas' state (agent xy, block xy, block angle: 2 keypoints, 1 angle)"
                )
            state_reader = state_reader.eval()
        self.state_reader = state_reader

    @property
    def context(self) -> int:
        return self.denoiser.config.context

    @property
    def image_size(self) -> int:
        return self.denoiser.config.image_size

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None,
             num_steps: int | None = None, noise: torch.Tensor | None = None,
             precision: str = "float32") -> GlobalStep:
        """Predict x_{t+1}, its rewards and success from ``obs`` (B, K, C, H, W) in [-1, 1] and ``act`` (B, K, A).

        ``act`` is **normalised** to [-1, 1] (``task.normalize_action``); ``act[:, -1]`` is the action
        taken at t. ``generator`` draws the diffusion noise (seed it for determinism); ``num_steps``
        overrides the sampler's default number of denoiser calls; ``noise`` (B, C, H, W) replaces the
        generator's draw of the sampler's initial standard-normal noise. ``precision`` (one of
        :data:`PRECISIONS`) sets the arithmetic of the networks; the outputs are float32 either way.
        """
        K, S = self.context, self.image_size
        C = self.denoiser.config.image_channels
        if obs.dim() != 5 or tuple(obs.shape[1:]) != (K, C, S, S):
            raise ValueError(
                f"GlobalModel.step: obs must be (B, {K}, {C}, {S}, {S}) (K={K} context frames at the model's "
                f"{S}x{S} resolution, floats in [-1, 1]), got {tuple(obs.shape)}. Render/resize frames to {S}x{S} "
                f"(wm_gym.data.frames_to_tensor) or load a model trained for your resolution."
            )
        if tuple(act.shape) != (obs.shape[0], K, self.task.action_dim):
            raise ValueError(
                f"GlobalModel.step: act must be ({obs.shape[0]}, {K}, {self.task.action_dim}) normalised actions, "
                f"got {tuple(act.shape)}"
            )
        obs = obs.to(self.device, torch.float32)
        act = act.to(self.device, torch.float32)
        with precision_context(precision, self.device):
            next_obs = self.sampler.sample(self.denoiser, obs, act, generator=generator, num_steps=num_steps,
                                           noise=noise).float()
            out = self.rewards(next_obs)
        rew, prob = out.rew.float(), torch.sigmoid(out.success_logit.float())
        return GlobalStep(next_obs=next_obs, rew=rew, success_prob=prob, success=prob > 0.5)

    def rewards(self, next_obs: torch.Tensor) -> RewardOutput:
        """Rewards (B, R) and success logit (B,) of predicted frames (B, C, H, W) in [-1, 1], differentiable.

        The reward model's predictions, with the state-formula labels replaced by the formula of the state that
        ``state_reader`` reads (if the model has one; the reader runs in float32 even under a bfloat16 autocast:
        a workspace coordinate in bfloat16 is off by up to a pixel).
        """
        out = self.reward_model(next_obs)
        if self.state_reader is None:
            return out
        with torch.autocast(next_obs.device.type, enabled=False):
            state = self.state_reader(next_obs.float()).state
        cols = [STATE_REWARDS[name](state).to(out.rew.dtype) if name in STATE_REWARDS else out.rew[:, i]
                for i, name in enumerate(self.task.reward_types)]
        return RewardOutput(rew=torch.stack(cols, 1), success_logit=out.success_logit)

    # -- persistence ---------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "task": self.task.to_dict(),
            "context": self.context,
            "image_size": self.image_size,
            "sampler": self.sampler.config(),
            "state_reader": self.state_reader is not None,
        }

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``global_model.json``, ``denoiser/`` and ``reward_model/`` under ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.denoiser.save_pretrained(path / "denoiser")
        self.reward_model.save_pretrained(path / "reward_model")
        if self.state_reader is not None:
            self.state_reader.save_pretrained(path / "state_reader")
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.config_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str | None = None) -> "GlobalModel":
        """Load a model saved by :meth:`save_pretrained`; raise :class:`CheckpointError` saying what is wrong."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(
                f"global model directory {path} does not exist. Train one with `wm-gym train-global --data DIR "
                f"--out OUT` (it writes OUT/global_model) or pass the right path."
            )
        cfg_path = path / CONFIG_NAME
        missing = [str(p) for p in (cfg_path, path / "denoiser", path / "reward_model") if not p.exists()]
        if missing:
            raise CheckpointError(
                f"{path} is not a complete global model: missing {missing}. Expected {CONFIG_NAME}, denoiser/ and "
                f"reward_model/ (written by GlobalModel.save_pretrained); re-export the model or re-train."
            )
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_path} is not valid JSON ({e}); re-export the model") from e
        if cfg.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_path} has format_version {cfg.get('format_version')}, this wm-gym reads {FORMAT_VERSION}"
            )
        classes = [("denoiser", Denoiser), ("reward_model", RewardModel)]
        if cfg.get("state_reader", False):
            if not (path / "state_reader").exists():
                raise CheckpointError(f"{cfg_path} says the model has a state_reader/, but {path / 'state_reader'} is "
                                      f"missing; re-export the model")
            classes.append(("state_reader", StateProbe))
        parts = {}
        for name, klass in classes:
            try:
                parts[name] = klass.from_pretrained(path / name, low_cpu_mem_usage=False)
            except (OSError, ValueError, RuntimeError, EnvironmentError) as e:
                raise CheckpointError(
                    f"could not load {klass.__name__} from {path / name}: the weights or config are missing or "
                    f"corrupt ({type(e).__name__}: {str(e)[:300]}). Re-export the model (save_pretrained) or re-train."
                ) from e
        task = TaskSpec.from_dict(cfg["task"])
        for name, got in (("denoiser", parts["denoiser"].config.image_size),
                          ("reward_model", parts["reward_model"].config.image_size)):
            if got != cfg["image_size"]:
                raise CheckpointError(
                    f"{path / name} was built for {got}x{got} frames but {cfg_path} says image_size="
                    f"{cfg['image_size']}; the parts come from different models, re-export them together"
                )
        if parts["denoiser"].config.context != cfg["context"]:
            raise CheckpointError(
                f"{path / 'denoiser'} uses context={parts['denoiser'].config.context} but {cfg_path} says "
                f"context={cfg['context']}; re-export the model"
            )
        model = cls(parts["denoiser"], parts["reward_model"], task, EulerSampler(**cfg.get("sampler", {})),
                    state_reader=parts.get("state_reader"))
        return model.to(device) if device is not None else model


__all__ = ["GlobalModel", "GlobalStep", "CheckpointError", "PRECISIONS", "precision_context", "resolve_precision"]
