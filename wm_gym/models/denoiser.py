"""EDM denoiser of the global world model: predicts the next frame from K context frames and actions.

The network is a diffusers ``UNet2DModel`` with attention-free blocks, run on a space-to-depth view
of the frames (``pixel_unshuffle`` by ``patch``: 64x64x3 -> 16x16x48, cheap on CPUs). Around it sits
EDM's preconditioning (Karras et al. 2022, https://arxiv.org/abs/2206.00364, table 1)::

    D(x; sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma))

What is denoised is the *change* of the frame, ``delta = next_frame - last_context_frame``, not the
frame itself: most pixels of Push-T do not move in a step, so "no change" (delta = 0) is copying the
last frame, and the capacity goes to what moves. The loss up-weights the pixels that change
(``1 + change_weight`` where ``|delta| > change_threshold``), and the context frames are
noise-augmented in training so that autoregressive rollouts, which feed back generated frames, drift
less.

Conditioning: the K context frames are stacked on channels beside the noisy delta; the K actions
(normalised to [-1, 1]) go through a small MLP into the UNet's ``class_labels`` (added to the noise
embedding) and, with ``action_planes=True``, are also broadcast as constant planes beside a
coordinate grid, so a conv can compare "where the action points" with "where a pixel is".

For tasks whose action is a position in the frame (Push-T: the agent's target in workspace coordinates,
which the frame spans), ``action_target_planes=N`` also draws each of the N latest actions as a Gaussian
of ``action_target_sigma`` pixels at that position, at full frame resolution and space-to-depth like the
frames. The constant planes put the target in a 1x1 stem's weights; these put it in the pixels, with
sub-patch detail, next to the agent it pulls (study: benchmarks/results/global_action_target/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn


def space_to_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """``F.pixel_unshuffle(x, r)`` as a view + permute: (B, C, H, W) -> (B, C r^2, H/r, W/r), ~3x as fast on CPU."""
    B, C, H, W = x.shape
    return x.reshape(B, C, H // r, r, W // r, r).permute(0, 1, 3, 5, 2, 4).reshape(B, C * r * r, H // r, W // r)


def depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """``F.pixel_shuffle(x, r)``, the inverse of :func:`space_to_depth`."""
    B, C, H, W = x.shape
    c = C // (r * r)
    return x.reshape(B, c, r, r, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, c, H * r, W * r)


def changed_pixels(delta: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where a frame change ``delta`` (B, C, H, W) is a change: (B, 1, H, W) booleans, True where some
    channel moves by more than ``threshold``. The denoiser's loss up-weights these pixels
    (``change_threshold``) and the sampler keeps only these of its prediction (``EulerSampler.min_change``)."""
    return delta.abs().amax(dim=1, keepdim=True) > threshold


@dataclass
class Preconditioning:
    """EDM's scalings for a batch of noise levels, each (B, 1, 1, 1) (``c_noise`` is (B,))."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


@dataclass
class Conditioning:
    """The context of one step, encoded once: ``stem_context`` (B, C0, h, w) and ``act_emb`` (B, E)."""

    stem_context: torch.Tensor
    act_emb: torch.Tensor

    def repeat(self, n: int) -> "Conditioning":
        """The batch repeated ``n`` times along its first axis (``[c; c; ...]``, as ``torch.cat([x] * n)``)."""
        return Conditioning(self.stem_context.repeat(n, 1, 1, 1), self.act_emb.repeat(n, 1))


class Denoiser(ModelMixin, ConfigMixin):
    """Action-conditioned EDM denoiser over frame changes (see the module docstring).

    Args:
        image_size: square frame size H = W (must be divisible by ``patch`` and by 2**(levels-1)).
        image_channels: channels of a frame (3 for RGB).
        context: number K of context frames and actions.
        action_dim: size of one action (normalised to [-1, 1]).
        patch: space-to-depth factor (``pixel_unshuffle``); the UNet runs at ``image_size / patch``.
        block_out_channels: UNet widths, one per resolution level.
        layers_per_block: resnet layers per UNet block.
        norm_num_groups: GroupNorm groups in the UNet.
        action_planes: also feed the actions as constant planes beside an (x, y) coordinate grid.
        action_target_planes: draw the N latest actions as Gaussians at the frame position they name (0: off;
            for actions that are positions in the frame, normalised so that -1 / 1 are its edges).
        action_target_sigma: standard deviation of those Gaussians in frame pixels.
        sigma_data: EDM's data standard deviation.
        train_sigma_loc, train_sigma_scale: training noise levels are ``exp(N(loc, scale**2))``.
        train_sigma_min, train_sigma_max: the training noise levels are clipped to this range.
        context_noise_max: context frames get Gaussian noise of std ``U(0, context_noise_max)`` in training.
        change_weight: extra loss weight on pixels whose value changes between last and next frame.
        change_threshold: a pixel "changes" when some channel moves by more than this (frames in [-1, 1]).
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        image_channels: int = 3,
        context: int = 4,
        action_dim: int = 2,
        patch: int = 4,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        action_planes: bool = True,
        action_target_planes: int = 0,
        action_target_sigma: float = 1.5,
        sigma_data: float = 0.5,
        train_sigma_loc: float = -0.4,
        train_sigma_scale: float = 1.2,
        train_sigma_min: float = 2e-3,
        train_sigma_max: float = 20.0,
        context_noise_max: float = 0.05,
        change_weight: float = 10.0,
        change_threshold: float = 0.05,
    ):
        super().__init__()
        levels = len(block_out_channels)
        if image_size % (patch * 2 ** (levels - 1)) != 0:
            raise ValueError(
                f"image_size={image_size} must be divisible by patch * 2**(len(block_out_channels)-1) = "
                f"{patch * 2 ** (levels - 1)} (patch={patch}, block_out_channels={tuple(block_out_channels)})"
            )
        if any(c % norm_num_groups for c in block_out_channels):
            raise ValueError(f"every block_out_channels {tuple(block_out_channels)} must be divisible by "
                             f"norm_num_groups={norm_num_groups}")
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        if not 0 <= action_target_planes <= context or (action_target_planes and action_dim != 2):
            raise ValueError(f"action_target_planes must be in [0, context={context}] and needs 2-d actions "
                             f"(positions in the frame), got {action_target_planes} with action_dim={action_dim}")
        if action_target_planes and not action_target_sigma > 0:
            raise ValueError(f"action_target_sigma must be > 0 pixels, got {action_target_sigma}")
        emb_dim = 4 * block_out_channels[0]
        self.act_mlp = nn.Sequential(
            nn.Linear(context * action_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        # 1x1 patch-embedding stem: the space-to-depth input has (K+1)*C*patch^2 planes, and a 3x3 conv on
        # them would cost as much as the rest of the UNet; the action planes and the coordinate grid are
        # added at the UNet's resolution (they need no sub-patch detail)
        side = image_size // patch
        # input planes, noisy delta first: [delta, context frames] space-to-depth, then action planes + coords
        stem_in = image_channels * (context + 1) * patch**2 + (context * action_dim + 2 if action_planes else 0)
        stem_in += action_target_planes * patch**2
        self.stem = nn.Conv2d(stem_in, block_out_channels[0], kernel_size=1)
        self.unet = UNet2DModel(
            sample_size=side,
            in_channels=block_out_channels[0],
            out_channels=image_channels * patch**2,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            add_attention=False,
            resnet_time_scale_shift="scale_shift",
            class_embed_type="identity",
        )
        # zero-initialised output layer: training starts from F = 0
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)
        if action_planes:
            lin = torch.linspace(-1.0, 1.0, side)
            yy, xx = torch.meshgrid(lin, lin, indexing="ij")
            self.register_buffer("coords", torch.stack([xx, yy])[None], persistent=False)
        else:
            self.coords = None
        # pixel-centre positions of the frame in normalised units: pixel i covers [i, i+1) of [0, image_size)
        centres = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size * 2.0 - 1.0
        self.register_buffer("pixel_centres", centres, persistent=False)

    # -- EDM -----------------------------------------------------------------------------------
    def precondition(self, sigma: torch.Tensor) -> Preconditioning:
        """EDM table 1 scalings for noise levels ``sigma`` (B,)."""
        sd = self.config.sigma_data
        s = sigma.reshape(-1, 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4.0
        return Preconditioning(c_skip, c_out, c_in, c_noise)

    def condition(self, obs: torch.Tensor, act: torch.Tensor) -> Conditioning:
        """Encode the context once; the sampler reuses it for every denoiser call of a step."""
        self._check(obs, act)
        B, K, C, H, W = obs.shape
        p = self.config.patch
        c_noisy = C * p * p
        w, bias = self.stem.weight, self.stem.bias
        # the stem is linear: split it into the part that sees the context and the part that sees the noisy delta
        planes = [space_to_depth(obs.reshape(B, K * C, H, W), p)]
        if self.coords is not None:
            planes.append(act.reshape(B, -1, 1, 1).expand(-1, -1, H // p, W // p))
            planes.append(self.coords.expand(B, -1, -1, -1).to(obs.dtype))
        if self.config.action_target_planes:
            planes.append(space_to_depth(self.action_targets(act), p))
        ctx = F.conv2d(torch.cat(planes, dim=1), w[:, c_noisy:], bias)
        return Conditioning(stem_context=ctx, act_emb=self.act_mlp(act.reshape(B, -1)))

    def action_targets(self, act: torch.Tensor) -> torch.Tensor:
        """The latest ``action_target_planes`` actions (B, K, 2) drawn as Gaussians in the frame: (B, N, H, W).

        Action (x, y) in [-1, 1] is the frame's (column, row) position, -1 / 1 being its outer edges."""
        n, cfg = self.config.action_target_planes, self.config
        a = act[:, -n:].to(self.pixel_centres.dtype)
        c = self.pixel_centres
        inv = (cfg.image_size / 2.0 / cfg.action_target_sigma) ** 2 / 2.0  # 1 / (2 sigma^2) in normalised units
        gx = torch.exp(-inv * (c.view(1, 1, -1) - a[..., 0:1]) ** 2)  # (B, N, W)
        gy = torch.exp(-inv * (c.view(1, 1, -1) - a[..., 1:2]) ** 2)  # (B, N, H)
        return (gy.unsqueeze(-1) * gx.unsqueeze(-2)).to(act.dtype)

    def inner(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The raw network F: scaled noisy delta (B, C, H, W) -> (B, C, H, W)."""
        p = self.config.patch
        c_noisy = x_in.shape[1] * p * p
        x = F.conv2d(space_to_depth(x_in, p), self.stem.weight[:, :c_noisy]) + cond.stem_context
        # the noise level enters as a float tensor (a Python float would be cast to long by diffusers);
        # 250 * log(sigma) spans about [-1500, 400], the range of DDPM-style positional embeddings
        t = (1000.0 * c_noise).to(x.dtype)
        out = self.unet(x, t, class_labels=cond.act_emb, return_dict=False)[0]
        return depth_to_space(out, p)

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, obs: torch.Tensor | None = None,
                act: torch.Tensor | None = None, cond: Conditioning | None = None) -> torch.Tensor:
        """Denoised delta ``D(noisy; sigma)`` given the context ``obs`` (B,K,C,H,W) and ``act`` (B,K,A)
        (or their precomputed ``cond = self.condition(obs, act)``)."""
        if cond is None:
            cond = self.condition(obs, act)
        sigma = torch.as_tensor(sigma, dtype=noisy.dtype, device=noisy.device).expand(noisy.shape[0])
        p = self.precondition(sigma)
        return p.c_skip * noisy + p.c_out * self.inner(p.c_in * noisy, p.c_noise, cond)

    # -- frames <-> deltas ---------------------------------------------------------------------
    @staticmethod
    def delta_of(obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """What the model denoises: ``next_obs - obs[:, -1]``."""
        return next_obs - obs[:, -1]

    @staticmethod
    def frame_of(obs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The next frame for a (denoised) delta, clamped to [-1, 1]."""
        return (obs[:, -1] + delta).clamp(-1.0, 1.0)

    # -- training ------------------------------------------------------------------------------
    def sample_training_sigma(self, n: int, device=None) -> torch.Tensor:
        """``n`` training noise levels ``exp(N(train_sigma_loc, train_sigma_scale**2))``, clipped."""
        cfg = self.config
        log_sigma = torch.randn(n, device=device) * cfg.train_sigma_scale + cfg.train_sigma_loc
        return log_sigma.exp().clamp(cfg.train_sigma_min, cfg.train_sigma_max)

    def loss(self, batch: dict[str, torch.Tensor], sigma: torch.Tensor | None = None,
             frame_loss=None, huber_c: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM loss on a batch with ``obs`` (B,K,C,H,W), ``act`` (B,K,A), ``next_obs`` (B,C,H,W).

        ``sigma`` (B,) gives the noise levels; by default they are drawn log-normal (``train_sigma_*``).
        A few-step sampler only ever calls the denoiser at its schedule's levels, and a 1-step sampler
        only at ``sigma_max``, a level the log-normal draws rarely reach: the trainer puts part of each
        batch there (``wm-gym train-global --sampler-sigma-frac``).

        ``frame_loss(frame, sigma) -> (loss, logs)``, if given, is added: a loss on the predicted next
        frames (B,C,H,W) (the denoised change on the clean last context frame, clamped to [-1, 1]; differentiable)
        at their noise levels, e.g. a frozen state probe's error on them (``wm-gym train-global --probe-loss``).

        ``huber_c > 0`` replaces the squared error of every pixel by the pseudo-Huber error
        ``sqrt(e^2 + c^2) - c`` (quadratic below ``c``, linear above): the squared error's optimum is the
        conditional *mean* of the change, which draws a blurred mean of the poses a pushed block may take; a
        per-pixel absolute error's optimum is the per-pixel *median*, which commits to one
        (``wm-gym train-global --pixel-loss-c``).

        Returns ``(loss, logs)``; the loss is EDM's weighted denoising error (the error of F against
        its effective target, which equals ``lambda(sigma) * |D - delta|^2``) times the change weights.
        """
        if huber_c < 0:
            raise ValueError(f"huber_c must be >= 0 (0: squared error), got {huber_c}")
        cfg = self.config
        obs, act, next_obs = batch["obs"], batch["act"], batch["next_obs"]
        self._check(obs, act)
        B = obs.shape[0]
        delta = self.delta_of(obs, next_obs)
        changed = changed_pixels(delta, cfg.change_threshold)
        weight = 1.0 + cfg.change_weight * changed.float()

        if cfg.context_noise_max > 0:
            ctx_sigma = torch.rand(B, 1, 1, 1, 1, device=obs.device) * cfg.context_noise_max
            obs = obs + ctx_sigma * torch.randn_like(obs)

        if sigma is None:
            sigma = self.sample_training_sigma(B, obs.device)
        elif sigma.shape != (B,):
            raise ValueError(f"sigma must have shape ({B},), got {tuple(sigma.shape)}")
        p = self.precondition(sigma)
        noisy = delta + sigma.reshape(-1, 1, 1, 1) * torch.randn_like(delta)
        model_out = self.inner(p.c_in * noisy, p.c_noise, self.condition(obs, act))
        target = (delta - p.c_skip * noisy) / p.c_out
        err = (model_out - target).pow(2)
        if huber_c > 0:
            err = err / ((err + huber_c ** 2).sqrt() + huber_c)  # = sqrt(e^2 + c^2) - c, without cancellation
        loss = (weight * err).mean()
        denoised = p.c_skip * noisy + p.c_out * model_out
        with torch.no_grad():
            d_err = (denoised - delta).pow(2).mean(dim=1, keepdim=True)
            logs = {
                "loss_denoising": loss.item(),
                "mse_delta": d_err.mean().item(),
                "mse_delta_changed": (d_err * changed).sum().item() / max(1.0, changed.sum().item()),
                "frac_changed": changed.float().mean().item(),
            }
        if frame_loss is not None:
            extra, extra_logs = frame_loss(self.frame_of(batch["obs"], denoised), sigma)
            loss = loss + extra
            logs.update(extra_logs)
        return loss, logs

    def _check(self, obs: torch.Tensor, act: torch.Tensor) -> None:
        cfg = self.config
        want = (cfg.context, cfg.image_channels, cfg.image_size, cfg.image_size)
        if obs.dim() != 5 or tuple(obs.shape[1:]) != want:
            raise ValueError(
                f"Denoiser expects obs of shape (B, {', '.join(map(str, want))}) (context frames in [-1, 1]), "
                f"got {tuple(obs.shape)}; resize frames to {cfg.image_size}x{cfg.image_size} and stack "
                f"{cfg.context} of them, or use a model trained for your resolution/context"
            )
        if act.shape != (obs.shape[0], cfg.context, cfg.action_dim):
            raise ValueError(
                f"Denoiser expects act of shape ({obs.shape[0]}, {cfg.context}, {cfg.action_dim}) "
                f"(normalised actions), got {tuple(act.shape)}"
            )


__all__ = ["Conditioning", "Denoiser", "Preconditioning"]
