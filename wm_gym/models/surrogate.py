"""The local surrogate: encoder -> latent z, latent dynamics f(z, a), reward head r(z, a), and their Jacobians.

The surrogate is the "local" half of the coupled world model (paper: *Efficient First-Order RL via Coupled
Local and Global World Models*): the global diffusion model supplies the forward values, the surrogate
supplies cheap derivatives ``df/dz``, ``df/da``, ``dr/dz``, ``dr/da`` at the states the global model visited.
Its value is how good those derivatives are, so every part is a smooth MLP whose Jacobians are computed
in closed form: with the default one-hidden-layer dynamics the Jacobians of a whole batch are a single
(B, w) x (w, d*(d+m)) matrix product plus rank-one corrections (deeper MLPs use a forward-mode pass
through ``Linear -> LayerNorm -> SiLU``), about 5x faster than ``torch.func.vmap(jacrev)``
(``benchmarks/jacobian_speed.py``).

Parts (named as in TD-MPC2):

* ``encode(obs)``: K context frames (B, K, 3, H, W) in [-1, 1] -> z (B, d), a strided CNN, then a linear
  layer and the latent normalisation (``LayerNorm`` without affine, or TD-MPC2's ``SimNorm``).
* ``next(z, a)``: ``z' = norm(z + g([z, a]))`` with ``g`` a residual MLP (``Linear -> LayerNorm -> SiLU``).
* ``reward(z, a)``: all reward labels (B, R) of the transition taken from z with action a.
* ``success_logit(z)``: logit that the state z is a success (Push-T terminates on success).
* ``state(z)``: linear read-out of the task's true-state features (the anti-collapse auxiliary head).

Actions are normalised to [-1, 1] (``TaskSpec.normalize_action``) everywhere in this module.

Example::

    >>> import torch
    >>> from wm_gym.models.surrogate import Surrogate
    >>> model = Surrogate(image_size=32, context=2, latent_dim=16, encoder_channels=(8, 8),
    ...                   dynamics_hidden=32, reward_hidden=32)
    >>> lin = model.linearize(torch.zeros(5, 2, 3, 32, 32), torch.zeros(5, 2))
    >>> tuple(lin.dfdz.shape), tuple(lin.dfda.shape), tuple(lin.drdz.shape), tuple(lin.drda.shape)
    ((5, 16, 16), (5, 16, 2), (5, 16), (5, 2))
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..pusht import REWARD_TYPES, TaskSpec

JACOBIAN_METHODS = ("analytic", "analytic-generic", "vmap-jacfwd", "vmap-jacrev")


@dataclasses.dataclass
class Linearization:
    """The surrogate linearised at (z, a): values and Jacobians of one latent step.

    Attributes:
        z: (B, d) latent; a: (B, m) normalised action.
        next_z: (B, d) ``f(z, a)``; reward: (B,) ``r(z, a)[reward_index]``.
        dfdz: (B, d, d); dfda: (B, d, m); drdz: (B, d); drda: (B, m).
    """

    z: torch.Tensor
    a: torch.Tensor
    next_z: torch.Tensor
    reward: torch.Tensor
    dfdz: torch.Tensor
    dfda: torch.Tensor
    drdz: torch.Tensor
    drda: torch.Tensor


def _layer_norm_silu(h: torch.Tensor, ln: nn.LayerNorm):
    """``SiLU(ln(h))`` with what the closed-form derivatives need: ``(out, hhat, rstd, c)``, where hhat is the
    normalised h, rstd = 1/sigma and ``c = SiLU'(u) * gamma / sigma`` (u = ln(h)); few fused ops, because at the
    surrogate's sizes the elementwise kernels, not the matrix products, take the time."""
    hhat, _, rstd = torch.native_layer_norm(h, [h.shape[-1]], None, None, ln.eps)
    u = torch.addcmul(ln.bias, hhat, ln.weight)
    s = torch.sigmoid(u)
    out = u * s
    c = (s + out * (1 - s)) * ln.weight * rstd  # SiLU'(u) = s (1 + u (1 - s)) = s + SiLU(u) (1 - s)
    return out, hhat, rstd, c


class MLP(nn.Module):
    """``(Linear -> LayerNorm -> SiLU) x layers -> Linear`` with closed-form Jacobians.

    ``jacobian`` runs forward mode (the tangent starts at the first weight matrix, so a one-hidden-layer
    MLP needs a single batched matrix product); ``vjp_row`` runs reverse mode for one output (a few
    matrix-vector products).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int, eps: float = 1e-5):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.linears = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(layers))
        self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, ln in zip(self.linears, self.norms):
            x = F.silu(ln(lin(x)))
        return self.out(x)

    def forward_cached(self, x: torch.Tensor):
        """Forward pass that also returns, per hidden layer, ``(h_hat, 1/sigma, SiLU'(u) * gamma / sigma)``."""
        cache = []
        for lin, ln in zip(self.linears, self.norms):
            x, hhat, rstd, c = _layer_norm_silu(lin(x), ln)
            cache.append((hhat, rstd, c))
        return self.out(x), cache

    def jacobian(self, cache) -> torch.Tensor:
        """d out / d in, (B, out_dim, in_dim), from ``forward_cached``'s cache (forward mode).

        The tangent is kept transposed, (B, in_dim, width), so every layer is one (B * in_dim, width) matrix
        product rather than B small ones.
        """
        tangent = None  # (B, in_dim, width); None stands for the identity before the first layer
        for lin, (hhat, _, c) in zip(self.linears, cache):
            n = hhat.shape[-1]
            if tangent is None:
                w = lin.weight
                centred = (w - w.mean(0, keepdim=True)).t().expand(hhat.shape[0], -1, -1)
                v = hhat @ w  # (B, in): hhat^T W (hhat has zero mean, so centring W first changes nothing)
            else:
                p = tangent @ lin.weight.t()
                centred = p - p.mean(-1, keepdim=True)
                v = torch.einsum("bw,biw->bi", hhat, p)
            # LayerNorm Jacobian (1/sigma)(I - 11^T/n - hhat hhat^T/n), then SiLU' and gamma: c absorbs all scales
            tangent = c.unsqueeze(1) * torch.baddbmm(centred, v.unsqueeze(-1), hhat.unsqueeze(1), alpha=-1.0 / n)
        return (tangent @ self.out.weight.t()).transpose(1, 2)

    def vjp_row(self, cache, index: int) -> torch.Tensor:
        """d out[:, index] / d in, (B, in_dim), from ``forward_cached``'s cache (reverse mode)."""
        delta = self.out.weight[index]
        for lin, (hhat, _, c) in zip(reversed(self.linears), reversed(cache)):
            g = c * delta
            g = g - g.mean(-1, keepdim=True) - hhat * (g * hhat).mean(-1, keepdim=True)
            delta = g @ lin.weight
        return delta


class Encoder(nn.Module):
    """K stacked frames (B, 3K, H, W) -> features: stride-2 convs (GroupNorm, SiLU), flattened, plus keypoints.

    The keypoint branch (a spatial soft-argmax, Levine et al. 2016, https://arxiv.org/abs/1504.00702)
    turns ``keypoints`` heatmaps of the second conv stage into expected (x, y) image coordinates: small
    objects (the Push-T agent is ~4 px at 64x64) get sub-pixel positions that are smooth, near-linear
    functions of where they are, which is what a latent with meaningful Jacobians needs.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], image_size: int, out_dim: int, keypoints: int):
        super().__init__()
        self.stages, c_in = nn.ModuleList(), in_channels
        for c in channels:
            self.stages.append(nn.Sequential(nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(min(8, c), c),
                                             nn.SiLU()))
            c_in = c
        self.kp_stage = min(1, len(channels) - 1)
        self.keypoints = nn.Conv2d(channels[self.kp_stage], keypoints, 1) if keypoints > 0 else None
        flat = c_in * (image_size // 2 ** len(channels)) ** 2
        self.proj = nn.Linear(flat + 2 * keypoints, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == self.kp_stage and self.keypoints is not None:
                heat = self.keypoints(x).flatten(2).softmax(-1)  # (B, n, h*w)
                h, w = x.shape[-2:]
                ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device)
                xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device)
                grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(h * w, 2)
                feats.append((heat @ grid).flatten(1))  # (B, 2n) expected (x, y)
        return self.proj(torch.cat([x.flatten(1)] + feats, 1))


class Surrogate(ModelMixin, ConfigMixin):
    """Local latent world model with fast batched Jacobians (see the module docstring).

    Args:
        image_size: square frame size H = W (must be divisible by ``2 ** len(encoder_channels)``).
        context: number K of context frames the encoder sees.
        action_dim: number m of action coordinates (normalised to [-1, 1]).
        latent_dim: latent size d.
        latent_norm: ``"layernorm"`` (zero-mean unit-variance latent, no affine) or ``"simnorm"``
            (TD-MPC2: softmax over groups of ``simnorm_dim``).
        simnorm_dim: group size of SimNorm (must divide ``latent_dim``).
        encoder_channels: channels of the stride-2 convolutions of the encoder.
        keypoints: spatial soft-argmax keypoints read from the second conv stage (0: none).
        dynamics_hidden, dynamics_layers: width and depth of the residual dynamics MLP.
        reward_hidden, reward_layers: width and depth of the reward MLP.
        success_hidden: width of the success MLP (one hidden layer).
        reward_types: names of the reward labels, in the order ``reward`` returns them.
        state_dim: size of the true-state features the auxiliary head reads out (0: no head).
        task: the ``TaskSpec`` as a dict (stored so a checkpoint knows its action bounds); default Push-T.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        context: int = 4,
        action_dim: int = 2,
        latent_dim: int = 64,
        latent_norm: str = "layernorm",
        simnorm_dim: int = 8,
        encoder_channels: tuple[int, ...] = (16, 32, 64, 128),
        keypoints: int = 16,
        dynamics_hidden: int = 256,
        dynamics_layers: int = 1,
        reward_hidden: int = 256,
        reward_layers: int = 2,
        success_hidden: int = 128,
        reward_types: tuple[str, ...] = REWARD_TYPES,
        state_dim: int = 6,
        task: dict | None = None,
    ):
        super().__init__()
        n_down = len(encoder_channels)
        if n_down < 1 or image_size % (2**n_down) != 0:
            raise ValueError(
                f"image_size ({image_size}) must be divisible by 2 ** len(encoder_channels) = {2 ** n_down} "
                f"(encoder_channels={tuple(encoder_channels)}); drop a channel entry or change image_size"
            )
        if latent_norm not in ("layernorm", "simnorm"):
            raise ValueError(f"latent_norm must be 'layernorm' or 'simnorm', got {latent_norm!r}")
        if latent_norm == "simnorm" and latent_dim % simnorm_dim != 0:
            raise ValueError(f"latent_dim ({latent_dim}) must be divisible by simnorm_dim ({simnorm_dim})")
        for name, v in (("context", context), ("action_dim", action_dim), ("latent_dim", latent_dim),
                        ("dynamics_layers", dynamics_layers), ("reward_layers", reward_layers)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if len(reward_types) < 1:
            raise ValueError("reward_types must name at least one reward label")

        # 1. encoder: (B, K*3, H, W) -> strided convs (+ keypoints) -> linear -> latent norm
        self.encoder = Encoder(3 * context, tuple(encoder_channels), image_size, latent_dim, keypoints)
        # 2. residual latent dynamics, reward, success and state heads
        self.dynamics = MLP(latent_dim + action_dim, dynamics_hidden, dynamics_layers, latent_dim)
        self.reward_head = MLP(latent_dim + action_dim, reward_hidden, reward_layers, len(reward_types))
        self.success_head = MLP(latent_dim, success_hidden, 1, 1)
        self.state_head = nn.Linear(latent_dim, state_dim) if state_dim > 0 else None
        nn.init.zeros_(self.dynamics.out.weight)  # start at f(z, a) = z: a residual step begins as the identity
        nn.init.zeros_(self.dynamics.out.bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "Surrogate":
        """``ModelMixin.from_pretrained`` that refuses weights that do not fit (diffusers only warns and leaves
        the missing parameters uninitialised, which gives silent garbage Jacobians)."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            raise ValueError(
                f"the weights in {pretrained_model_name_or_path} do not fit the Surrogate its config.json describes "
                f"({', '.join(f'{k}: {list(v)[:4]}' for k, v in bad.items())}); it was probably saved by an older "
                "wm-gym. Retrain it with `wm-gym train-surrogate`."
            )
        return (model, info) if want_info else model

    # ------------------------------------------------------------------------------------------------
    # properties
    # ------------------------------------------------------------------------------------------------
    @property
    def task(self) -> TaskSpec:
        return TaskSpec.from_dict(self.config.task) if self.config.task else TaskSpec()

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def num_rewards(self) -> int:
        return len(self.config.reward_types)

    # ------------------------------------------------------------------------------------------------
    # argument checks (errors name the argument, the expected and the received shape)
    # ------------------------------------------------------------------------------------------------
    def _param(self) -> torch.Tensor:
        return self.dynamics.out.weight

    def _check(self, name: str, x, expected: tuple) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape {_fmt(expected)}, got {type(x).__name__}")
        ok = x.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
        if not ok:
            raise ValueError(f"{name} must have shape {_fmt(expected)}, got {tuple(x.shape)}")
        p = self._param()
        if x.dtype != p.dtype or x.device != p.device:
            raise ValueError(
                f"{name} is {x.dtype} on {x.device} but the surrogate's parameters are {p.dtype} on {p.device}; "
                f"convert one of them (e.g. surrogate.to({x.device!s}, {x.dtype}) or x.to(...))"
            )

    def _check_za(self, z, a) -> None:
        self._check("z", z, (None, self.latent_dim))
        self._check("a", a, (z.shape[0], self.action_dim))

    # ------------------------------------------------------------------------------------------------
    # the model
    # ------------------------------------------------------------------------------------------------
    def _norm(self, y: torch.Tensor) -> torch.Tensor:
        if self.config.latent_norm == "layernorm":
            return F.layer_norm(y, y.shape[-1:])
        g = y.unflatten(-1, (-1, self.config.simnorm_dim))
        return g.softmax(-1).flatten(-2)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """K context frames (B, K, 3, H, W) in [-1, 1] -> normalised latent z (B, d)."""
        c, s = self.config, self.config.image_size
        self._check("obs", obs, (None, c.context, 3, s, s))
        return self._norm(self.encoder(obs.flatten(1, 2)))

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Latent dynamics ``z' = norm(z + g([z, a]))`` (B, d)."""
        self._check_za(z, a)
        return self._norm(z + self.dynamics(torch.cat([z, a], -1)))

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Rewards of the transition (z, a), all labels of ``config.reward_types`` (B, R)."""
        self._check_za(z, a)
        return self.reward_head(torch.cat([z, a], -1))

    def success_logit(self, z: torch.Tensor) -> torch.Tensor:
        """Logit (B,) that the state with latent z is a success (which ends a Push-T episode)."""
        self._check("z", z, (None, self.latent_dim))
        return self.success_head(z).squeeze(-1)

    def state(self, z: torch.Tensor) -> torch.Tensor:
        """Linear read-out (B, state_dim) of the true-state features (auxiliary head)."""
        if self.state_head is None:
            raise ValueError("this surrogate was built with state_dim=0 and has no state head")
        self._check("z", z, (None, self.latent_dim))
        return self.state_head(z)

    # ------------------------------------------------------------------------------------------------
    # Jacobians
    # ------------------------------------------------------------------------------------------------
    def jacobians(self, z: torch.Tensor, a: torch.Tensor, reward_index: int = 0, *,
                  method: str = "analytic", precision: str = "float32") -> Linearization:
        """Values and Jacobians of the dynamics and of one reward label at (z, a), batched.

        Args:
            z: (B, d) latents; a: (B, m) normalised actions.
            reward_index: which reward label (index into ``config.reward_types``) ``reward``/``drdz``/``drda``
                refer to.
            method: ``"analytic"`` (closed form, the fastest: one matrix product for the whole batch when
                the dynamics MLP has one hidden layer), ``"analytic-generic"`` (closed-form forward mode
                layer by layer, any depth), ``"vmap-jacfwd"`` or ``"vmap-jacrev"`` (``torch.func``; kept as
                references for tests and benchmarks).
            precision: ``"bfloat16"`` runs the one big matrix product of the one-hidden-layer closed form in
                bfloat16 (float32 accumulation and output; entries off by ~0.4 % relative), ~4x as fast on a CPU
                with AMX; the other paths and dtypes ignore it. ``"float32"`` (default): exact products.
        """
        self._check_za(z, a)
        if not 0 <= reward_index < self.num_rewards:
            raise ValueError(
                f"reward_index must be in [0, {self.num_rewards}) for reward_types {tuple(self.config.reward_types)}, "
                f"got {reward_index}"
            )
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
        if method in ("analytic", "analytic-generic"):
            return self._jacobians_analytic(z, a, reward_index, generic=method == "analytic-generic",
                                            low_precision=precision == "bfloat16" and z.dtype == torch.float32)
        if method in ("vmap-jacfwd", "vmap-jacrev"):
            return self._jacobians_func(z, a, reward_index, method)
        raise ValueError(f"method must be one of {JACOBIAN_METHODS}, got {method!r}")

    def _jacobians_analytic(self, z, a, k, generic: bool = False, low_precision: bool = False) -> Linearization:
        d = self.latent_dim
        x = torch.cat([z, a], -1)
        if len(self.dynamics.linears) == 1 and not generic:
            next_z, jac = self._dynamics_jacobian_outer(z, x, low_precision)
        else:
            next_z, jac = self._dynamics_jacobian_forward(z, x)
        # reward row k, reverse mode
        r, rcache = self.reward_head.forward_cached(x)
        drdx = self.reward_head.vjp_row(rcache, k)
        return Linearization(z=z, a=a, next_z=next_z, reward=r[:, k], dfdz=jac[:, :, :d], dfda=jac[:, :, d:],
                             drdz=drdx[:, :d], drda=drdx[:, d:])

    def _norm_jacobian(self, y: torch.Tensor, jy: torch.Tensor):
        """Latent normalisation of y (B, d) and its Jacobian applied to dy/dx (B, d, in)."""
        d = y.shape[-1]
        if self.config.latent_norm == "layernorm":
            mu = y.mean(-1, keepdim=True)
            rstd = torch.rsqrt((y - mu).pow(2).mean(-1, keepdim=True) + 1e-5)
            yhat = (y - mu) * rstd
            centred = jy - jy.mean(1, keepdim=True)
            v = torch.einsum("bd,bdi->bi", yhat, jy)
            return yhat, rstd.unsqueeze(-1) * torch.baddbmm(centred, yhat.unsqueeze(-1), v.unsqueeze(1), alpha=-1.0 / d)
        V = self.config.simnorm_dim
        p = y.unflatten(-1, (-1, V)).softmax(-1)  # (B, G, V)
        jg = jy.unflatten(1, (-1, V))  # (B, G, V, in)
        return p.flatten(-2), (p.unsqueeze(-1) * (jg - (p.unsqueeze(-1) * jg).sum(2, keepdim=True))).flatten(1, 2)

    def _dynamics_jacobian_forward(self, z, x):
        """Any depth: forward mode through the residual MLP, then the latent normalisation."""
        g, cache = self.dynamics.forward_cached(x)
        jy = self.dynamics.jacobian(cache)
        jy[:, :, : z.shape[1]].diagonal(dim1=-2, dim2=-1).add_(1.0)  # y = z + g
        return self._norm_jacobian(z + g, jy)

    def _outer_products(self, low_precision: bool = False) -> torch.Tensor:
        """(w, d * in): row k is W_out[:, k] (x) W1c[k, :] (W1c = W_in with its column means removed); in
        bfloat16 with ``low_precision``.

        Cached while the weights are unchanged (in-place optimiser steps bump ``_version``; ``.to`` moves
        ``data_ptr``), the bfloat16 copy made on first use; rebuilt with a graph when gradients w.r.t. the
        weights are wanted.
        """
        w_in, w_out = self.dynamics.linears[0].weight, self.dynamics.out.weight
        graph = torch.is_grad_enabled() and (w_in.requires_grad or w_out.requires_grad)
        key = (w_in._version, w_out._version, w_in.data_ptr(), w_out.data_ptr(), w_in.dtype, w_in.device)
        cache = self.__dict__.get("_outer_cache")
        if graph or cache is None or cache["key"] != key:
            outer = (w_out.t().unsqueeze(-1) * (w_in - w_in.mean(0, keepdim=True)).unsqueeze(1)).flatten(1)
            if graph:
                return outer.to(torch.bfloat16) if low_precision else outer
            cache = self.__dict__["_outer_cache"] = {"key": key, "weights_dtype": outer.detach()}
        if not low_precision:
            return cache["weights_dtype"]
        if "bfloat16" not in cache:
            cache["bfloat16"] = cache["weights_dtype"].to(torch.bfloat16)
        return cache["bfloat16"]

    def _times_outer(self, c: torch.Tensor, low_precision: bool) -> torch.Tensor:
        """``c @ _outer_products()`` (B, d * in), the closed form's one big product; bfloat16 operands if asked."""
        if not low_precision:
            return c @ self._outer_products()
        return (c.to(torch.bfloat16) @ self._outer_products(low_precision=True)).to(c.dtype)

    def _dynamics_jacobian_outer(self, z, x, low_precision: bool = False):
        """One hidden layer: dg/dx = W_out diag(c) W1c - (W_out (c * hhat)) (x) (hhat W_in) / n, so the whole
        batch of Jacobians is one (B, w) x (w, d * in) matrix product plus rank-one corrections."""
        lin, ln, out = self.dynamics.linears[0], self.dynamics.norms[0], self.dynamics.out
        B, d, n = x.shape[0], z.shape[1], lin.out_features
        # 1. forward, keeping hhat and c = SiLU'(u) * gamma / sigma
        act, hhat, _, c = _layer_norm_silu(lin(x), ln)
        y = z + out(act)
        uvec = (c * hhat) @ out.weight.t()  # (B, d)
        v = hhat @ lin.weight  # (B, in)
        if self.config.latent_norm != "layernorm":
            jy = self._times_outer(c, low_precision).view(B, d, -1)
            jy.baddbmm_(uvec.unsqueeze(-1), v.unsqueeze(1), alpha=-1.0 / n)
            jy[:, :, :d].diagonal(dim1=-2, dim2=-1).add_(1.0)
            return self._norm_jacobian(y, jy)
        # 2. LayerNorm of y folded in: jac = rstd (Jy - 1 (x) mean_rows(Jy) - yhat (x) (yhat^T Jy) / d)
        yhat, _, rstd = torch.native_layer_norm(y, [d], None, None, 1e-5)
        w1c = lin.weight - lin.weight.mean(0, keepdim=True)
        mean_rows = (c * out.weight.mean(0)) @ w1c - uvec.mean(-1, keepdim=True) * v / n
        mean_rows[:, :d] += 1.0 / d
        proj = ((yhat @ out.weight) * c) @ w1c - (yhat * uvec).sum(-1, keepdim=True) * v / n
        proj[:, :d] += yhat
        left = torch.stack([uvec / n, torch.ones_like(uvec), yhat / d], -1).mul_(-rstd.unsqueeze(-1))  # (B, d, 3)
        right = torch.stack([v, mean_rows, proj], 1)  # (B, 3, in)
        jac = self._times_outer(c * rstd, low_precision).view(B, d, -1).baddbmm_(left, right)
        jac[:, :, :d].diagonal(dim1=-2, dim2=-1).add_(rstd)
        return yhat, jac

    def _jacobians_func(self, z, a, k, method) -> Linearization:
        from torch.func import jacfwd, jacrev, vmap

        jac = jacfwd if method == "vmap-jacfwd" else jacrev

        def f(zz, aa):
            return self._norm(zz + self.dynamics(torch.cat([zz, aa], -1)))

        def r(zz, aa):
            return self.reward_head(torch.cat([zz, aa], -1))[k]

        dfdz, dfda = vmap(jac(f, argnums=(0, 1)))(z, a)
        drdz, drda = vmap(jac(r, argnums=(0, 1)))(z, a)
        x = torch.cat([z, a], -1)
        return Linearization(z=z, a=a, next_z=self._norm(z + self.dynamics(x)), reward=self.reward_head(x)[:, k],
                             dfdz=dfdz, dfda=dfda, drdz=drdz, drda=drda)

    def linearize(self, obs: torch.Tensor, a: torch.Tensor, reward_index: int = 0) -> Linearization:
        """``jacobians(encode(obs), a, reward_index)``: linearise at the latent of K context frames."""
        self._check("obs", obs, (None, self.config.context, 3, self.config.image_size, self.config.image_size))
        self._check("a", a, (obs.shape[0], self.action_dim))
        return self.jacobians(self.encode(obs), a, reward_index)


def agent_position_readout(surrogate, low, high) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (m, d), bias (m,)): the surrogate's linear state read-out of the agent position, in action
    units -- the anchor of agent-anchored actions (``FoGConfig.action_offset``, ``PPOArgs.action_offset``). Needs a state head whose first m
    features are the action coordinates scaled to [-1, 1] (Push-T's ``state_features``: agent xy first)."""
    head = getattr(surrogate, "state_head", None)
    low = torch.as_tensor(np.asarray(low, dtype=np.float32)).reshape(-1)
    high = torch.as_tensor(np.asarray(high, dtype=np.float32)).reshape(-1)
    if head is None or head.out_features < low.numel():
        raise ValueError("action_offset > 0 anchors actions at the surrogate's agent-position read-out, but the env's "
                         "surrogate has no state head (state_dim=0); use action_offset=0 (absolute actions)")
    half = (high - low) / 2
    weight = head.weight.detach()[: low.numel()].float().cpu() * half[:, None]
    bias = low + (head.bias.detach()[: low.numel()].float().cpu() + 1.0) * half
    return weight, bias


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join("B" if i == 0 and s is None else ("*" if s is None else str(s))
                           for i, s in enumerate(shape)) + ")"
