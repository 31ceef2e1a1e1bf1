"""Reward / success model of the global world model: a small CNN from one frame to its labels.

Rewards in the datasets are functions of the state reached, so they are read off the *next* frame:
``(B, C, H, W)`` in [-1, 1] -> ``rew`` (B, R) in the order of ``task.reward_types`` and a success
logit (B,). Success is rare in behaviour data, hence the positive weight in :meth:`RewardModel.loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from ..pusht import REWARD_TYPES


@dataclass
class RewardOutput:
    """``rew`` (B, R) reward predictions and ``success_logit`` (B,)."""

    rew: torch.Tensor
    success_logit: torch.Tensor


class RewardModel(ModelMixin, ConfigMixin):
    """Strided CNN + MLP head; keeps a small spatial map (no global pooling) so positions matter.

    Args:
        image_size: square frame size.
        image_channels: channels of a frame.
        num_rewards: number R of reward labels (``len(task.reward_types)``).
        channels: conv widths, each layer halves the resolution.
        hidden: width of the MLP head.
        success_pos_weight: weight of positive examples in the success BCE (successes are rare).
        input_noise: std of the Gaussian noise added to frames in training (robust to generated frames).
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        image_channels: int = 3,
        num_rewards: int = len(REWARD_TYPES),
        channels: tuple[int, ...] = (32, 64, 64, 128),
        hidden: int = 256,
        success_pos_weight: float = 10.0,
        input_noise: float = 0.02,
    ):
        super().__init__()
        if image_size % 2 ** len(channels) != 0:
            raise ValueError(f"image_size={image_size} must be divisible by 2**len(channels)={2 ** len(channels)}")
        layers, c_in = [], image_channels + 2
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.SiLU(), nn.Linear(hidden, num_rewards + 1)
        )
        lin = torch.linspace(-1.0, 1.0, image_size)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)

    def forward(self, frame: torch.Tensor) -> RewardOutput:
        cfg = self.config
        if frame.dim() != 4 or tuple(frame.shape[1:]) != (cfg.image_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"RewardModel expects frames (B, {cfg.image_channels}, {cfg.image_size}, {cfg.image_size}) in "
                f"[-1, 1], got {tuple(frame.shape)}"
            )
        x = torch.cat([frame, self.coords.expand(frame.shape[0], -1, -1, -1).to(frame.dtype)], dim=1)
        out = self.head(self.convs(x))
        return RewardOutput(rew=out[:, :-1], success_logit=out[:, -1])

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE on the rewards + positively weighted BCE on success, for ``next_obs``, ``rew``, ``success``."""
        frame = batch["next_obs"]
        if self.config.input_noise > 0:
            frame = frame + self.config.input_noise * torch.rand(frame.shape[0], 1, 1, 1, device=frame.device) \
                * torch.randn_like(frame)
        out = self(frame)
        rew_loss = F.mse_loss(out.rew, batch["rew"])
        pos_weight = torch.tensor(self.config.success_pos_weight, device=frame.device)
        succ_loss = F.binary_cross_entropy_with_logits(out.success_logit, batch["success"], pos_weight=pos_weight)
        loss = rew_loss + 0.1 * succ_loss
        with torch.no_grad():
            mae = (out.rew - batch["rew"]).abs().mean(0)
        logs = {"loss_reward": rew_loss.item(), "loss_success": succ_loss.item()}
        logs.update({f"mae_reward_{i}": m.item() for i, m in enumerate(mae)})
        return loss, logs


__all__ = ["RewardModel", "RewardOutput"]
