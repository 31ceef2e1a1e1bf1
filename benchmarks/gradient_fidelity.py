"""Gradient fidelity: does the surrogate's gradient of the H-step return point where the global model's does?

Along global-model rollouts from held-out dataset contexts (under the dataset's actions), compare

* reference ``global``: d/da of the global model's H-step return ``sum_k rew_k`` (its reward model's
  label), by central finite differences of the global rollout under common random numbers (the
  generator is restored to the same state for every evaluation, so only the action changes);
* reference ``global-autograd``: the exact derivative of the same global rollout (same noise), by
  backprop through the differentiable sampler (``EulerSampler.integrate``) and the reward model; it
  tells whether the finite differences are resolving the global model's gradient (row ``global-fd``);
* reference ``truth`` (``--truth``, needs gym-pusht): the same for the real Push-T simulator, by central
  finite differences of the true H-step return (the dataset episode is replayed from its seed, which
  reproduces it exactly, then the perturbed actions are applied); the surrogate is then linearised at
  the true frames. This separates the surrogate's error from the global model's;
* ``fog``: the decoupled gradient the trainer uses: forward values from the global rollout, derivatives
  from the surrogate linearised at ``z_k = encode(global frames)`` (``Surrogate.jacobians``), chained
  backwards ``lambda_k = drdz_k + lambda_{k+1} dfdz_k``, ``g_k = drda_k + lambda_{k+1} dfda_k``;
* ``latent``: plain backprop through the surrogate's own latent rollout from ``z_0`` (for contrast);

references ``global-autograd, contact`` / ``, no contact`` and ``truth, contact`` repeat the comparison on the
starts whose real episode has agent-block contact in the window / has none;

per start state: cosine and norm ratio |g| / |g_ref| of the (H x m) gradient, for H in ``--horizons``,
for every reward label. Actions are normalised to [-1, 1].

    python benchmarks/gradient_fidelity.py --global-model runs/global/global_model \
        --surrogate runs/surrogate/surrogate --data data/pusht64 --truth
    python benchmarks/gradient_fidelity.py --smoke      # seconds: tiny random models, checks FD vs autograd
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import time
from types import SimpleNamespace

import numpy as np
import torch

from wm_gym.models.surrogate import Surrogate


# ---------------------------------------------------------------------------------------------------
# rollouts
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def global_rollout(gm, frames, prev, actions, generator, sampler_steps=None, record=False):
    """Roll ``gm`` under ``actions`` (N, L, m) from context ``frames`` (N, P, 3, S, S) (P >= gm.context).

    ``prev`` (N, Kg-1, m) are the actions before step 0. Returns rewards (N, L, R) and, if ``record``,
    the frame history (N, P+L, 3, S, S) and, per step, the state ``(frames, prev, generator state)``
    from which :func:`global_rollout` can restart at that step with identical noise.
    """
    Kg, L = gm.context, actions.shape[1]
    hist, rews, checkpoints = [frames], [], []
    obs = frames[:, -Kg:]
    for k in range(L):
        if record:
            checkpoints.append((torch.cat(hist, 1)[:, -frames.shape[1]:], prev, generator.get_state()))
        act = torch.cat([prev, actions[:, k:k + 1]], 1)
        out = gm.step(obs, act, generator=generator, num_steps=sampler_steps)
        rews.append(out.rew.double())
        obs = torch.cat([obs[:, 1:], out.next_obs[:, None]], 1)
        prev = act[:, 1:]
        if record:
            hist.append(out.next_obs[:, None])
    rew = torch.stack(rews, 1)
    return (rew, torch.cat(hist, 1), checkpoints) if record else rew


def reference_gradient(gm, checkpoints, actions, eps, generator, sampler_steps, horizons):
    """Central finite differences of every H-step return w.r.t. every action: (N, len(horizons), Hmax, m, R)."""
    N, L, m = actions.shape
    grads = None
    for t in range(L):
        frames, prev, gstate = checkpoints[t]
        for j in range(m):
            diff = 0
            for sign in (1.0, -1.0):
                a = actions[:, t:].clone()
                a[:, 0, j] += sign * eps
                generator.set_state(gstate)
                diff = diff + sign * global_rollout(gm, frames, prev, a, generator, sampler_steps)
            diff = diff / (2 * eps)  # (N, L - t, R): d r_k / d a_t[j] for k >= t
            if grads is None:
                grads = diff.new_zeros(N, len(horizons), L, m, diff.shape[-1])
            for hi, h in enumerate(horizons):
                if h > t:
                    grads[:, hi, t, j] = diff[:, : h - t].sum(1)
    return grads


def differentiable_step(gm, obs, act, noise, sampler_steps=None):
    """One global step that autograd can go through: (next frame, rewards (N, R))."""
    if hasattr(gm, "transition"):  # the smoke test's toy model
        nxt, rew, _ = gm.transition(obs, act, noise)
        return nxt, rew
    nxt = gm.sampler.integrate(gm.denoiser, obs, act, noise, num_steps=sampler_steps)
    return nxt, gm.rewards(nxt).rew


def autograd_reference(gm, frames, prev, actions, seed, horizons, sampler_steps=None):
    """d(sum_{k<H} r_k)/d a by backprop through the global rollout with the noise of ``global_rollout`` under
    ``seed``: (N, len(horizons), Hmax, m, R)."""
    N, L, m = actions.shape
    gen = torch.Generator(device=gm.device).manual_seed(seed)
    with torch.enable_grad():
        a = actions.clone().requires_grad_(True)
        obs, p, rews = frames[:, -gm.context:], prev, []
        for t in range(L):
            act = torch.cat([p, a[:, t:t + 1]], 1)
            # drawn exactly as GlobalModel.step / EulerSampler.sample draw it, so the trajectory is the same
            noise = torch.randn(obs[:, -1].shape, generator=gen, device=gen.device, dtype=torch.float32)
            nxt, rew = differentiable_step(gm, obs, act, noise.to(obs.device), sampler_steps)
            rews.append(rew)
            obs, p = torch.cat([obs[:, 1:], nxt[:, None]], 1), act[:, 1:]
        rew = torch.stack(rews, 1)  # (N, L, R)
        out = torch.zeros(N, len(horizons), L, m, rew.shape[-1], dtype=torch.float64)
        for ri in range(rew.shape[-1]):
            for hi, h in enumerate(horizons):
                (g,) = torch.autograd.grad(rew[:, :h, ri].sum(), a, retain_graph=True)
                out[:, hi, :h, :, ri] = g[:, :h].double().cpu()
    return out


def fog_gradient(lins, h):
    """d(sum_{k<h} r_k)/d a_k through the surrogate Jacobians at the global states: (N, h, m)."""
    lam, g = None, [None] * h
    for k in reversed(range(h)):
        lin = lins[k]
        if lam is None:
            g[k], lam = lin.drda, lin.drdz
        else:
            g[k] = lin.drda + torch.einsum("nd,ndm->nm", lam, lin.dfda)
            lam = lin.drdz + torch.einsum("nd,nde->ne", lam, lin.dfdz)
    return torch.stack(g, 1)


def latent_gradient(sur, z0, actions, h, k):
    """Backprop through the surrogate's own latent rollout: (N, h, m)."""
    with torch.enable_grad():
        a = actions[:, :h].clone().requires_grad_(True)
        z, ret = z0, 0
        for t in range(h):
            ret = ret + sur.reward(z, a[:, t])[:, k]
            z = sur.next(z, a[:, t])
        (g,) = torch.autograd.grad(ret.sum(), a)
    return g


def compare(g, ref, tiny=1e-9):
    g, ref = g.flatten(1), ref.flatten(1)
    ng, nr = g.norm(dim=1), ref.norm(dim=1)
    ok = nr > tiny
    cos = (g * ref).sum(1) / (ng * nr).clamp_min(1e-30)
    return cos[ok], (ng / nr.clamp_min(1e-30))[ok], int(ok.sum())


# ---------------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------------
def surrogate_rows(sur, ctx, actions, ref, horizons, reference, extra=None):
    """Compare the surrogate's gradients with ``ref`` (N, len(horizons), L, m, R).

    ``ctx`` (N, L, K, 3, S, S) are the surrogate's context frames at steps 0..L-1 of the reference
    trajectory, ``actions`` (N, L, m) normalised; ``extra`` maps names to further gradients to compare.
    """
    dev = sur.device
    L = ctx.shape[1]
    act = actions.to(dev, torch.float32)
    with torch.no_grad():
        z = [sur.encode(ctx[:, k].to(dev, torch.float32)) for k in range(L)]
    rows = []
    for ri, label in enumerate(sur.config.reward_types):
        with torch.no_grad():
            lins = [sur.jacobians(z[k], act[:, k], reward_index=ri) for k in range(L)]
        for hi, h in enumerate(horizons):
            r = ref[:, hi, :h, :, ri].to(dev)
            grads = {"fog": fog_gradient(lins, h), "latent": latent_gradient(sur, z[0], act, h, ri)}
            for name, g in (extra or {}).items():
                grads[name] = g[:, hi, :h, :, ri].to(dev)
            for name, g in grads.items():
                cos, rel, n = compare(g.double(), r.double())
                rows.append({"reference": reference, "reward": label, "H": h, "gradient": name, "n": n,
                             "cos_mean": float(cos.mean()) if n else float("nan"),
                             "cos_median": float(cos.median()) if n else float("nan"),
                             "rel_norm_median": float(rel.median()) if n else float("nan"),
                             "ref_norm_median": float(r.flatten(1).norm(dim=1).median())})
    return rows


def fidelity(gm, sur, frames, prev, actions, horizons, eps, seed, sampler_steps=None, eps_check=False, out=None,
             autograd=False, noise_seeds=1):
    """Surrogate gradients vs the global model's finite differences along its own rollouts (result rows);
    with ``autograd`` also vs the exact gradient of the same rollout (backprop through the sampler).

    ``noise_seeds`` > 1 (with ``autograd``) also draws the diffusion noise ``noise_seeds`` times: the row
    ``global-autograd-other-noise`` compares the exact gradient under another draw with the reference (how
    much of the global gradient is noise: a deterministic surrogate cannot follow that part), and the
    reference ``global-autograd, mean of S noises`` is the noise-averaged gradient at the same starts.

    ``out`` (a dict), if given, receives the reference gradient under ``"ref"``, the surrogate's contexts along
    the global rollout under ``"ctx"`` and, with ``autograd``, the exact gradient under ``"autograd"``.
    """
    L = max(horizons)
    actions = actions[:, :L]
    gen = torch.Generator(device=gm.device).manual_seed(seed)
    _, hist, checkpoints = global_rollout(gm, frames, prev, actions, gen, sampler_steps, record=True)
    ref = reference_gradient(gm, checkpoints, actions, eps, gen, sampler_steps, horizons)
    if out is not None:
        out["ref"] = ref
    extra = {}
    if eps_check:
        extra["fd(2eps)"] = reference_gradient(gm, checkpoints, actions, 2 * eps, gen, sampler_steps, horizons)
    Ks, P = sur.config.context, frames.shape[1]
    ctx = torch.stack([hist[:, P + k - Ks: P + k] for k in range(L)], 1)
    if out is not None:
        out["ctx"] = ctx
    rows = surrogate_rows(sur, ctx, actions, ref, horizons, "global", extra)
    if autograd:
        exact = autograd_reference(gm, frames, prev, actions, seed, horizons, sampler_steps)
        if out is not None:
            out["autograd"] = exact
        others = [autograd_reference(gm, frames, prev, actions, seed + 1000 * s, horizons, sampler_steps)
                  for s in range(1, noise_seeds)]
        extra_ag = {"global-fd": ref}
        if others:
            extra_ag["global-autograd-other-noise"] = others[0]
        rows += surrogate_rows(sur, ctx, actions, exact, horizons, "global-autograd", extra_ag)
        if others:
            mean = torch.stack([exact] + others).mean(0)
            rows += surrogate_rows(sur, ctx, actions, mean, horizons, f"global-autograd, mean of {noise_seeds} noises",
                                   {"global-autograd-1-noise": exact})
    return rows


# ---------------------------------------------------------------------------------------------------
# ground truth: finite differences through the real simulator
# ---------------------------------------------------------------------------------------------------
def truth_reference(episodes, starts, task, horizons, eps):
    """Central finite differences of the true H-step returns (every label of ``task``) along dataset episodes.

    ``starts`` is a list of (episode index, t); returns (N, len(horizons), L, m, R) w.r.t. normalised actions.
    """
    from gym_pusht.envs.pusht import PushTEnv

    from wm_gym.pusht import reward_labels

    L, half = max(horizons), (task.action_high - task.action_low) / 2.0
    env = PushTEnv(obs_type="state")
    labels = task.reward_types
    out = torch.zeros(len(starts), len(horizons), L, task.action_dim, len(labels), dtype=torch.float64)

    def rewards(ep, t, k, j, delta):
        env.reset(seed=int(ep["seed"]) % 2**31)
        acts = ep["actions"][: t + L].astype(np.float64).copy()
        acts[t + k, j] += delta
        rew = []
        for i, a in enumerate(acts):
            env.step(np.clip(a, task.action_low, task.action_high))
            if i >= t + k:
                state = [*env.agent.position, *env.block.position, env.block.angle % (2 * np.pi)]
                r = reward_labels(state, env._get_coverage())
                rew.append([r[name] for name in labels])
        return np.array(rew)  # (L - k, R): rewards of steps t+k .. t+L-1

    for n, (e, t) in enumerate(starts):
        ep = episodes[e]
        for k in range(L):
            for j in range(task.action_dim):
                d = (rewards(ep, t, k, j, eps * half) - rewards(ep, t, k, j, -eps * half)) / (2 * eps)
                for hi, h in enumerate(horizons):
                    if h > k:
                        out[n, hi, k, j] = torch.from_numpy(d[: h - k].sum(0))
    env.close()
    return out


def print_table(rows):
    print("| reference | reward | H | gradient | mean cos | median cos | median abs(g)/abs(g_ref) | median abs(g_ref) | n |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['reference']} | {r['reward']} | {r['H']} | {r['gradient']} | {r['cos_mean']:.3f} | {r['cos_median']:.3f} | "
              f"{r['rel_norm_median']:.3f} | {r['ref_norm_median']:.3g} | {r['n']} |")


def held_out_starts(data, n, K, Kg, L, seed, val_fraction):
    """``n`` windows of ``L`` steps from the validation split.

    Returns a namespace: ``frames`` (n, P, 3, S, S) context before step 0 (P = max(K, Kg)), ``prev``
    (n, Kg-1, m) actions before step 0, ``actions`` (n, L, m) normalised, ``ctx`` (n, L, K, 3, S, S) the
    true surrogate contexts at steps 0..L-1, ``contact`` (n,) agent-block contact in the window,
    ``starts`` [(episode, t)], ``episodes`` and ``task``.
    """
    from wm_gym.data import context_indices, frames_to_tensor, load_split
    from wm_gym.pusht import TaskSpec

    meta, eps = load_split(data, "val", val_fraction, seed)
    task = TaskSpec.from_dict(meta["task"])
    rng = np.random.default_rng(seed)
    P = max(K, Kg)
    out = SimpleNamespace(frames=[], prev=[], actions=[], ctx=[], contact=[], starts=[], episodes=eps, task=task)
    long = [i for i, e in enumerate(eps) if len(e["actions"]) >= L]
    for _ in range(n):
        e = long[rng.integers(len(long))]
        ep = eps[e]
        t = int(rng.integers(len(ep["actions"]) - L + 1))
        out.frames.append(frames_to_tensor(ep["frames"][context_indices(t, P)]))
        out.ctx.append(torch.stack([frames_to_tensor(ep["frames"][context_indices(t + k, K)]) for k in range(L)]))
        a = task.normalize_action(ep["actions"]).astype(np.float32)
        pi = np.arange(t - Kg + 1, t)
        out.prev.append(torch.from_numpy(np.where((pi >= 0)[:, None], a[np.clip(pi, 0, None)], 0.0).astype(np.float32)))
        out.actions.append(torch.from_numpy(a[t:t + L]))
        out.contact.append(bool(ep["contact"][t:t + L].any()))
        out.starts.append((e, t))
    for k in ("frames", "prev", "actions", "ctx"):
        setattr(out, k, torch.stack(getattr(out, k)))
    out.contact = np.array(out.contact)
    return out


# ---------------------------------------------------------------------------------------------------
# smoke mode: tiny random models, and a check of the finite-difference reference against autograd
# ---------------------------------------------------------------------------------------------------
class ToyGlobalModel(torch.nn.Module):
    """Differentiable stand-in with GlobalModel's ``step`` contract (one random conv step plus seeded noise)."""

    def __init__(self, image_size=16, context=2, num_rewards=None):
        super().__init__()
        from wm_gym.pusht import REWARD_TYPES, TaskSpec

        num_rewards = len(REWARD_TYPES) if num_rewards is None else num_rewards
        self.context, self.image_size, self.task = context, image_size, TaskSpec(image_size=image_size)
        self.conv = torch.nn.Conv2d(3 * context + 2, 3, 3, padding=1)
        self.head = torch.nn.Linear(3 * image_size * image_size, num_rewards + 1)

    @property
    def device(self):
        return self.conv.weight.device

    def transition(self, obs, act, noise):
        B, K, C, H, W = obs.shape
        x = torch.cat([obs.flatten(1, 2), act[:, -1, :, None, None].expand(B, 2, H, W)], 1)
        nxt = torch.tanh(obs[:, -1] + self.conv(x) + 0.1 * noise)
        out = self.head(nxt.flatten(1))
        return nxt, out[:, :-1], torch.sigmoid(out[:, -1])

    @torch.no_grad()
    def step(self, obs, act, generator=None, num_steps=None):
        noise = torch.randn(obs[:, -1].shape, generator=generator, device=self.device)
        nxt, rew, p = self.transition(obs, act, noise)
        return SimpleNamespace(next_obs=nxt, rew=rew, success_prob=p, success=p > 0.5)


def smoke(args) -> None:
    torch.manual_seed(0)
    gm = ToyGlobalModel().double()
    sur = Surrogate(image_size=16, context=2, latent_dim=16, encoder_channels=(8, 8), dynamics_hidden=32,
                    reward_hidden=32)
    N, L = 3, 4
    frames = torch.rand(N, 2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    prev = torch.zeros(N, 1, 2, dtype=torch.float64)
    actions = torch.rand(N, L, 2, dtype=torch.float64) * 2 - 1
    rows = fidelity(gm, sur, frames, prev, actions, (1, 2, 4), 1e-5, args.seed, autograd=True, noise_seeds=2)
    print_table(rows)
    # the finite-difference reference must equal autograd on a differentiable global model
    gen = torch.Generator().manual_seed(args.seed)
    _, _, cps = global_rollout(gm, frames, prev, actions, gen, record=True)
    ref = reference_gradient(gm, cps, actions, 1e-5, gen, None, (4,))
    exact = autograd_reference(gm, frames, prev, actions, args.seed, (4,))[:, 0, :, :, 0]
    err = float((ref[:, 0, :, :, 0] - exact).abs().max() / exact.abs().max())
    print(f"\nFD reference vs autograd on the toy global model: max rel error {err:.2e}")
    if err > 1e-6:
        raise SystemExit(f"finite-difference reference disagrees with autograd (rel error {err:.2e})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--global-model", help="GlobalModel directory (wm-gym train-global's OUT/global_model)")
    p.add_argument("--surrogate", help="Surrogate directory (wm-gym train-surrogate's OUT/surrogate)")
    p.add_argument("--data", help="dataset directory; held-out starts come from its validation split")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation split used at training")
    p.add_argument("--starts", type=int, default=16, help="held-out start states")
    p.add_argument("--horizons", default="1,4,16", help="comma-separated H")
    p.add_argument("--eps", type=float, default=0.02, help="finite-difference step (normalised action units)")
    p.add_argument("--eps-check", action="store_true", help="also report the FD reference at 2*eps vs eps")
    p.add_argument("--truth", action="store_true", help="also compare with finite differences of the real simulator")
    p.add_argument("--no-autograd", action="store_true",
                   help="skip the exact (backprop-through-the-sampler) reference of the global model")
    p.add_argument("--noise-seeds", type=int, default=1,
                   help="draws of the diffusion noise for the exact reference (>1: adds noise-to-noise and "
                        "noise-averaged rows)")
    p.add_argument("--sampler-steps", type=int, default=0, help="global sampler Euler steps (0: its default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--smoke", action="store_true", help="tiny random models, a few seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        return smoke(args)
    if not (args.surrogate and args.data and (args.global_model or args.truth)):
        p.error("--surrogate, --data and --global-model and/or --truth are required (or --smoke)")
    t0 = time.time()
    sur = Surrogate.from_pretrained(args.surrogate).to(args.device).eval()
    gm = None
    if args.global_model:
        from wm_gym.models.global_model import GlobalModel

        gm = GlobalModel.from_pretrained(args.global_model, device=args.device)
    horizons = tuple(int(h) for h in args.horizons.split(","))
    w = held_out_starts(args.data, args.starts, sur.config.context, gm.context if gm else 1, max(horizons),
                        args.seed, args.val_fraction)
    rows, extra = [], {}
    if gm is not None:
        dev = gm.device
        rows += fidelity(gm, sur, w.frames.to(dev), w.prev.to(dev), w.actions.to(dev), horizons, args.eps, args.seed,
                         args.sampler_steps or None, args.eps_check, out=extra, autograd=not args.no_autograd,
                         noise_seeds=args.noise_seeds)
    contact = torch.from_numpy(w.contact)
    if "autograd" in extra and contact.any() and not contact.all():
        # where does the surrogate disagree with the global model: with the block in play or in free motion?
        for name, sel in (("global-autograd, contact", contact), ("global-autograd, no contact", ~contact)):
            rows += surrogate_rows(sur, extra["ctx"][sel], w.actions[sel], extra["autograd"][sel], horizons, name,
                                   {"global-fd": extra["ref"][sel]})
    if args.truth:
        ref = truth_reference(w.episodes, w.starts, w.task, horizons, args.eps)
        g_fd = {"global-fd": extra["ref"]} if "ref" in extra else {}  # the global model's own gradient vs the truth
        rows += surrogate_rows(sur, w.ctx, w.actions, ref, horizons, "truth", g_fd)
        if contact.any():
            rows += surrogate_rows(sur, w.ctx[contact], w.actions[contact], ref[contact], horizons, "truth, contact",
                                   {k: v[contact] for k, v in g_fd.items()})
    print(f"{args.starts} held-out starts ({int(w.contact.sum())} with agent-block contact in the window), "
          f"eps={args.eps}, {time.time() - t0:.0f} s\n")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
