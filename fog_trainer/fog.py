"""Decoupled first-order gradients (FoG): global forward values, surrogate backward derivatives.

One env step of a world model gives the *global* next latent and reward (accurate, expensive, no
gradient) and the *surrogate* linearisation at the same (z_t, a_t) (cheap Jacobians). FoG builds a
graph whose forward values are the global ones and whose backward pass uses the surrogate's
Jacobians, as DMO does for a simulator (Amigo et al., "Decoupled forward-backward model-based policy
optimisation", CoRL 2025). Two equivalent ways are given:

* :func:`fog_step` -- an ``autograd.Function`` fed with the explicit Jacobians of a
  :class:`LinearizationLike` (what the env's torch fast path returns);
* :func:`swap` -- DMO's "gradient swap" ``pred + (target - pred).detach()``, applied to a surrogate
  model's own predictions ``f(z, a)``, ``r(z, a)`` (autograd computes the same Jacobian products).

With ``d`` the latent size and ``m`` the action size, for an incoming gradient ``g`` on the next
latent and ``h`` on the reward::

    dL/dz = dfdz^T g + drdz h        dL/da = dfda^T g + drda h
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch


class LinearizationLike(Protocol):
    """The surrogate's first-order model at (z, a) (``wm_gym.models.surrogate.Linearization``)."""

    z: torch.Tensor  # (B, d)
    a: torch.Tensor  # (B, m)
    next_z: torch.Tensor  # (B, d) = f(z, a)
    reward: torch.Tensor  # (B,) = r(z, a)
    dfdz: torch.Tensor  # (B, d, d)
    dfda: torch.Tensor  # (B, d, m)
    drdz: torch.Tensor  # (B, d)
    drda: torch.Tensor  # (B, m)


class FoGStep(torch.autograd.Function):
    """Forward: the global ``(next_z, reward)``. Backward: surrogate vector-Jacobian products."""

    @staticmethod
    def forward(ctx, z, a, next_z, reward, dfdz, dfda, drdz, drda):
        ctx.save_for_backward(dfdz, dfda, drdz, drda)
        return next_z.detach().clone(), reward.detach().clone()

    @staticmethod
    def backward(ctx, g_next, g_rew):
        dfdz, dfda, drdz, drda = ctx.saved_tensors
        # g^T J for a batch: (B, 1, d) @ (B, d, k) -> (B, k)
        grad_z = torch.bmm(g_next.unsqueeze(1), dfdz).squeeze(1) + drdz * g_rew.unsqueeze(-1)
        grad_a = torch.bmm(g_next.unsqueeze(1), dfda).squeeze(1) + drda * g_rew.unsqueeze(-1)
        return grad_z, grad_a, None, None, None, None, None, None


def fog_step(z: torch.Tensor, a: torch.Tensor, next_z: torch.Tensor, reward: torch.Tensor,
             lin: LinearizationLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable env step with global values and the surrogate Jacobians of ``lin``.

    Args:
        z: (B, d) latent at t, possibly carrying a graph from earlier steps.
        a: (B, m) action at t (in the units ``lin``'s ``dfda``/``drda`` are taken in).
        next_z: (B, d) global next latent (no grad needed).
        reward: (B,) global reward.
        lin: surrogate linearisation at (z, a); its Jacobians are treated as constants.

    Returns:
        ``(next_z, reward)`` equal to the global values, differentiable w.r.t. ``z`` and ``a``.
    """
    if lin.dfdz.shape[-2:] != (z.shape[-1], z.shape[-1]) or lin.dfda.shape[-1] != a.shape[-1]:
        raise ValueError(
            f"linearisation shapes dfdz {tuple(lin.dfdz.shape)}, dfda {tuple(lin.dfda.shape)} do not match "
            f"z {tuple(z.shape)} and a {tuple(a.shape)}; expected (B, d, d) and (B, d, m)"
        )
    jac = [j.detach().to(z) for j in (lin.dfdz, lin.dfda, lin.drdz, lin.drda)]  # the learner's device and dtype
    return FoGStep.apply(z, a, next_z.to(z), reward.to(z), *jac)


def swap(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DMO's gradient swap: the value of ``target``, the gradient of ``pred``."""
    return pred + (target.detach() - pred).detach()


def swap_step(model: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
              z: torch.Tensor, a: torch.Tensor, next_z: torch.Tensor, reward: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient-swap form of :func:`fog_step`: ``model(z, a) -> (f(z, a), r(z, a))`` is the surrogate.

    Autograd differentiates through ``model`` at the forward values of (z, a), which are the global
    ones, so the result equals :func:`fog_step` with the model's Jacobians at the same point.
    """
    pred_z, pred_r = model(z, a)
    return swap(pred_z, next_z), swap(pred_r, reward)
