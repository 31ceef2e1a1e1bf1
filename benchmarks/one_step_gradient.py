"""Where does the global model's one-step action gradient part from the real one: sampler or reward model?

Issue 4 scores the surrogate against the global model's exact gradient; at H = 1 that is
``d r(x_1(a)) / d a_0`` with ``x_1`` the global sampler's next frame and ``r`` its reward model, and it
agrees with gym-pusht's only at cosine ~0.4 (``benchmarks/gradient_fidelity.py``, rows ``truth`` /
``global-fd``). This script splits that gradient into its two factors, at held-out starts (the first step
of the windows ``gradient_fidelity.py`` uses with the same ``--seed``, all from real frames):

* ``truth``: central finite differences of gym-pusht's one-step reward (the dataset episode replayed);
* ``global (reward model)``: the global model's exact gradient, through the sampler and its reward model;
* ``global (probe + formula)``: through the same sampler, but the reward is the task's formula
  (``wm_gym.pusht``) applied to a state probe's reading of the next frame: the sampler's action response
  without the reward model's pixel gradient;
* ``surrogate``: the surrogate's ``dr/da`` at the encoded start (what FoG uses at H = 1);

and compares the *action response* itself: the Jacobian of the next state w.r.t. the action, of gym-pusht (finite
differences), of the global model (read by the probe, autograd) and of the probe on gym-pusht's real rendered next
frames (finite differences: what the probe itself adds, e.g. a block reading that moves with the agent).

    python benchmarks/one_step_gradient.py --probe runs/probe --data data/pusht64 --starts 64 \
        --json benchmarks/results/one_step_gradient.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from block_iou import PixelReader  # noqa: E402
from gradient_fidelity import (autograd_reference, compare, differentiable_step, held_out_starts,  # noqa: E402
                               truth_reference)
from wm_gym.fidelity import with_sampler_settings  # noqa: E402
from wm_gym.pusht import STATE_REWARDS  # noqa: E402


def _first_step(gm, frames, seed):
    """The global model's context and the sampler noise ``global_rollout`` draws first under ``seed``."""
    gen = torch.Generator(device=gm.device).manual_seed(seed)
    obs = frames[:, -gm.context:]
    return obs, torch.randn(obs[:, -1].shape, generator=gen, device=gen.device, dtype=torch.float32)


def global_one_step(gm, probe, frames, prev, a0, seed, labels, sampler_steps=None):
    """Probe state of the next frame and its Jacobian w.r.t. a0, and d(formula reward)/d a0 for every label in
    ``labels`` (``pusht.STATE_REWARDS``), under the noise ``global_rollout`` draws with ``seed``:
    (state (N, 5), dstate/da (N, 5, m), {label: dr/da (N, m)})."""
    obs, noise = _first_step(gm, frames, seed)
    with torch.enable_grad():
        a = a0.clone().requires_grad_(True)
        nxt, _ = differentiable_step(gm, obs, torch.cat([prev, a[:, None]], 1), noise, sampler_steps)
        state = probe(nxt).state
        jac = torch.stack([torch.autograd.grad(state[:, i].sum(), a, retain_graph=True)[0]
                           for i in range(state.shape[1])], 1)
        grads = {label: torch.autograd.grad(STATE_REWARDS[label](state.double()).sum(), a, retain_graph=True)[0]
                 for label in labels}
    return state.detach().double(), jac.double(), {k: g.double() for k, g in grads.items()}


def central_difference(plus: torch.Tensor, minus: torch.Tensor, eps: float) -> torch.Tensor:
    """(plus - minus) / (2 eps) of states (..., 5), the angle's difference wrapped to [-pi, pi)."""
    d = plus - minus
    d[..., 4] = torch.remainder(d[..., 4] + math.pi, 2 * math.pi) - math.pi
    return d / (2 * eps)


@torch.no_grad()
def global_fd_jacobian(gm, readers, frames, prev, a0, seed, eps, sampler_steps=None):
    """Central differences of the state each of ``readers`` (a probe, a ``PixelReader``) reads off the global
    model's next frame w.r.t. a0 with step ``eps`` (same noise, each frame generated once for all readers): the
    response to a finite action change, beside autograd's local one. A list of (N, 5, m), one per reader."""
    obs, noise = _first_step(gm, frames, seed)
    cols = [[] for _ in readers]
    for j in range(a0.shape[1]):
        st = []
        for sign in (1.0, -1.0):
            a = a0.clone()
            a[:, j] += sign * eps
            nxt, _ = differentiable_step(gm, obs, torch.cat([prev, a[:, None]], 1), noise, sampler_steps)
            st.append([reader(nxt).state.double() for reader in readers])
        for c, plus, minus in zip(cols, *st):
            c.append(central_difference(plus, minus, eps))
    return [torch.stack(c, 2) for c in cols]


def replay_to_step(env, ep, t, j, delta, task):
    """Replay dataset episode ``ep`` from its seed through step ``t`` in ``env`` (gym-pusht's ``PushTEnv`` or
    :class:`wm_gym.pusht.PushTGroundTruth`), with ``delta`` (env units) added to coordinate ``j`` of action ``t``
    (``j`` None: as recorded); returns the first output of the last ``env.step`` (its observation / frame)."""
    env.reset(seed=int(ep["seed"]) % 2**31)
    acts = ep["actions"][: t + 1].astype(np.float64).copy()
    if j is not None:
        acts[t, j] += delta
    for a in acts:
        out = env.step(np.clip(a, task.action_low, task.action_high))
    return out[0]


def truth_one_step(episodes, starts, task, eps):
    """gym-pusht's next state and its Jacobian w.r.t. the normalised action (central differences):
    (state (N, 5), dstate/da (N, 5, m))."""
    from gym_pusht.envs.pusht import PushTEnv

    env = PushTEnv(obs_type="state")
    half = (task.action_high - task.action_low) / 2.0

    def next_state(ep, t, j, delta):
        replay_to_step(env, ep, t, j, delta, task)
        th = (env.block.angle + np.pi) % (2 * np.pi) - np.pi
        return np.array([*env.agent.position, *env.block.position, th])

    states, jacs = [], []
    for e, t in starts:
        ep = episodes[e]
        states.append(next_state(ep, t, None, 0.0))
        cols = []
        for j in range(task.action_dim):
            d = next_state(ep, t, j, eps * half) - next_state(ep, t, j, -eps * half)
            d[4] = (d[4] + np.pi) % (2 * np.pi) - np.pi
            cols.append(d / (2 * eps))
        jacs.append(np.stack(cols, 1))
    env.close()
    return torch.from_numpy(np.stack(states)), torch.from_numpy(np.stack(jacs))


def probe_on_truth(episodes, starts, task, readers, eps, image_size):
    """What each of ``readers`` (a probe, a ``PixelReader``) reads off gym-pusht's *real* next frame, as a Jacobian
    w.r.t. the normalised action (central differences of frames rendered at ``image_size``, each rendered once for
    all readers): how much of an action response read by a probe is the probe's own. A list of dstate/da
    (N, 5, m), one per reader."""
    from wm_gym.data import frames_to_tensor
    from wm_gym.pusht import PushTGroundTruth

    gt = PushTGroundTruth(image_size=image_size)
    half = (task.action_high - task.action_low) / 2.0

    jacs = [[] for _ in readers]
    for e, t in starts:
        ep = episodes[e]
        pairs = frames_to_tensor(np.stack([replay_to_step(gt, ep, t, j, sign * eps * half, task)
                                           for j in range(task.action_dim) for sign in (1.0, -1.0)]))
        for jac, reader in zip(jacs, readers):
            with torch.no_grad():
                st = reader(pairs).state.double()
            jac.append(central_difference(st[0::2], st[1::2], eps).T)  # (5, m)
    gt.close()
    return [torch.stack(j) for j in jacs]


def summary(g, ref):
    cos, rel, n = compare(g, ref)
    return {"cos_mean": float(cos.mean()) if n else float("nan"),
            "cos_median": float(cos.median()) if n else float("nan"),
            "rel_norm_median": float(rel.median()) if n else float("nan"), "n": n}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--global-model", default=None, help="GlobalModel directory (default: shipped)")
    p.add_argument("--surrogate", default=None, help="Surrogate directory (default: shipped)")
    p.add_argument("--probe", required=True, help="StateProbe directory (wm-gym train-probe's OUT)")
    p.add_argument("--data", required=True)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--starts", type=int, default=64)
    p.add_argument("--window", type=int, default=16, help="window length the starts are drawn for "
                   "(16: the same starts as gradient_fidelity.py --horizons 1,4,16 with the same --seed)")
    p.add_argument("--eps", type=float, default=0.02)
    p.add_argument("--global-fd-eps", type=float, default=0.1,
                   help="finite-difference step of the global model's response to a finite action change")
    p.add_argument("--render-eps", type=float, default=0.05,
                   help="finite-difference step for the probe on real rendered frames (frames are uint8)")
    p.add_argument("--labels", default="dense,push")
    p.add_argument("--sampler-steps", type=int, default=0, help="global sampler Euler steps (0: its default)")
    p.add_argument("--one-draw", action="store_true",
                   help="sample without the antithetic pairing (one noise draw), to see what the pairing does")
    p.add_argument("--min-change", type=float, default=None,
                   help="the sampler's min_change (default: the model's; 0 keeps every predicted change, to see "
                        "what zeroing the faint ones does to the response)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()

    from wm_gym.models.global_model import GlobalModel
    from wm_gym.models.state_probe import StateProbe
    from wm_gym.models.surrogate import Surrogate
    from wm_gym.envs.core import DEFAULT_CHECKPOINT as ckpt

    gm = GlobalModel.from_pretrained(args.global_model or ckpt / "global_model", device="cpu")
    with_sampler_settings(gm, "off" if args.one_draw else "model", -1.0 if args.min_change is None else args.min_change)
    sur = Surrogate.from_pretrained(args.surrogate or ckpt / "surrogate", low_cpu_mem_usage=False).float().eval()
    probe = StateProbe.from_pretrained(args.probe, low_cpu_mem_usage=False).eval()
    w = held_out_starts(args.data, args.starts, sur.config.context, gm.context, args.window, args.seed,
                        args.val_fraction)
    a0 = w.actions[:, 0]
    contact = torch.from_numpy(w.contact)
    labels = args.labels.split(",")
    truth_rew = truth_reference(w.episodes, w.starts, w.task, (1,), args.eps)[:, 0, 0]  # (N, m, R)
    steps = args.sampler_steps or None
    exact = autograd_reference(gm, w.frames, w.prev, w.actions[:, :1], args.seed, (1,), steps)[:, 0, 0]  # (N, m, R)
    t_state, t_jac = truth_one_step(w.episodes, w.starts, w.task, args.eps)
    (p_jac,) = probe_on_truth(w.episodes, w.starts, w.task, [probe], args.render_eps, gm.image_size)
    # the same finite change also read without a probe: the agent's and block's pixel centroids, on the model's
    # and on real frames; pix: reader -> (Jacobian on the model's frames, on gym-pusht's rendered frames)
    pixels = {how: PixelReader(w.task, agent=how) for how in ("mass", "core")}
    fd_jac, *pix_global = global_fd_jacobian(gm, [probe, *pixels.values()], w.frames, w.prev, a0, args.seed,
                                             args.global_fd_eps, steps)
    pix_truth = probe_on_truth(w.episodes, w.starts, w.task, list(pixels.values()), args.global_fd_eps, gm.image_size)
    pix = dict(zip(pixels, zip(pix_global, pix_truth)))
    with torch.no_grad():
        z0 = sur.encode(w.ctx[:, 0])
    rows, sel = [], {"all": torch.ones_like(contact), "contact": contact, "no contact": ~contact}
    g_st, g_jac, g_formula = global_one_step(gm, probe, w.frames, w.prev, a0, args.seed, labels, steps)
    for label in labels:
        ri = list(sur.config.reward_types).index(label)
        with torch.no_grad():
            g_sur = sur.jacobians(z0, a0, reward_index=ri).drda.double()
        grads = {"global (reward model)": exact[..., ri], "global (probe + formula)": g_formula[label],
                 "surrogate": g_sur, "truth": truth_rew[..., ri]}
        for ref in ("truth", "global (reward model)", "global (probe + formula)"):
            for name, g in grads.items():
                if name == ref:
                    continue
                for part, s in sel.items():
                    rows.append({"reward": label, "reference": ref, "gradient": name, "starts": part,
                                 **summary(g[s], grads[ref][s])})
    # the action response itself: next agent position, and the block's on starts without contact
    resp = {}
    for part, s in sel.items():
        tj, gj = t_jac[s][:, 0:2], g_jac[s][:, 0:2]
        resp[part] = {
            "n": int(s.sum()),
            "agent_jacobian_cos": summary(gj, tj),
            "agent_gain_true_median": float(tj.flatten(1).norm(dim=1).median() / math.sqrt(2)),
            "agent_gain_global_median": float(gj.flatten(1).norm(dim=1).median() / math.sqrt(2)),
            "agent_next_err_px_median": float((g_st[s][:, 0:2] - t_state[s][:, 0:2]).norm(dim=1).median()),
            "block_jacobian_true_px_median": float(t_jac[s][:, 2:4].flatten(1).norm(dim=1).median()),
            "block_jacobian_global_px_median": float(g_jac[s][:, 2:4].flatten(1).norm(dim=1).median()),
            "angle_jacobian_true_deg_median": float(t_jac[s][:, 4].norm(dim=1).median() * 180 / math.pi),
            "angle_jacobian_global_deg_median": float(g_jac[s][:, 4].norm(dim=1).median() * 180 / math.pi),
            "agent_jacobian_cos_probe_on_truth": summary(p_jac[s][:, 0:2], tj),
            "agent_gain_global_fd_median": float(fd_jac[s][:, 0:2].flatten(1).norm(dim=1).median() / math.sqrt(2)),
            "block_jacobian_global_fd_px_median": float(fd_jac[s][:, 2:4].flatten(1).norm(dim=1).median()),
            "agent_gain_probe_on_truth_median": float(p_jac[s][:, 0:2].flatten(1).norm(dim=1).median() / math.sqrt(2)),
            "block_jacobian_probe_on_truth_px_median": float(p_jac[s][:, 2:4].flatten(1).norm(dim=1).median()),
            "angle_jacobian_probe_on_truth_deg_median": float(p_jac[s][:, 4].norm(dim=1).median() * 180 / math.pi),
            **{f"agent_gain_pixels_{how}_{src}_fd_median": float(j[s][:, 0:2].flatten(1).norm(dim=1).median()
                                                                  / math.sqrt(2))
               for how, jacs in pix.items() for src, j in zip(("global", "truth"), jacs)},
            "block_jacobian_pixels_global_fd_px_median": float(pix["mass"][0][s][:, 2:4].flatten(1).norm(dim=1).median()),
            "block_jacobian_pixels_truth_fd_px_median": float(pix["mass"][1][s][:, 2:4].flatten(1).norm(dim=1).median()),
        }
    print(f"{args.starts} held-out starts ({int(contact.sum())} with contact in the {args.window}-step window), "
          f"eps={args.eps}, {time.time() - t0:.0f} s\n")
    print("| reward | reference | gradient | starts | mean cos | median cos | median abs(g)/abs(g_ref) | n |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['reward']} | {r['reference']} | {r['gradient']} | {r['starts']} | {r['cos_mean']:.3f} | "
              f"{r['cos_median']:.3f} | {r['rel_norm_median']:.3f} | {r['n']} |")
    print("\nAction response (per normalised action unit; gain = Frobenius norm / sqrt 2 of d agent_xy / d a, px):\n")
    print("| starts | n | agent Jacobian cos (mean / median) | agent gain true / global / probe on real frames "
          "| next agent error px "
          "| block dxy/da true / global / probe on real frames px | angle d/da true / global / probe on real frames deg "
          "| agent Jacobian cos, probe on real frames |")
    print("|---|---|---|---|---|---|---|---|")
    for part, r in resp.items():
        c = r["agent_jacobian_cos"]
        print(f"| {part} | {r['n']} | {c['cos_mean']:.3f} / {c['cos_median']:.3f} | {r['agent_gain_true_median']:.1f} / "
              f"{r['agent_gain_global_median']:.1f} / {r['agent_gain_probe_on_truth_median']:.1f} | "
              f"{r['agent_next_err_px_median']:.1f} | "
              f"{r['block_jacobian_true_px_median']:.1f} / {r['block_jacobian_global_px_median']:.1f} / "
              f"{r['block_jacobian_probe_on_truth_px_median']:.1f} | "
              f"{r['angle_jacobian_true_deg_median']:.1f} / {r['angle_jacobian_global_deg_median']:.1f} / "
              f"{r['angle_jacobian_probe_on_truth_deg_median']:.1f} | "
              f"{r['agent_jacobian_cos_probe_on_truth']['cos_mean']:.3f} / "
              f"{r['agent_jacobian_cos_probe_on_truth']['cos_median']:.3f} |")
    print(f"\nThe global model's response to a finite action change (central differences, eps={args.global_fd_eps}), "
          "medians: agent gain / block dxy/da px")
    for part, r in resp.items():
        print(f"  {part}: {r['agent_gain_global_fd_median']:.1f} / {r['block_jacobian_global_fd_px_median']:.1f}")
    print("\nThe same finite change read without a probe (pixel centroids, block_iou.PixelReader), medians: agent gain "
          "by the agent's blue mass / by its saturated core, block centroid dxy/da px; each gym-pusht's rendered frames "
          "-> the global model's frames")
    for part, r in resp.items():
        m, c = (f"{r[f'agent_gain_pixels_{how}_truth_fd_median']:.1f} -> {r[f'agent_gain_pixels_{how}_global_fd_median']:.1f}"
                for how in ("mass", "core"))
        print(f"  {part}: {m} / {c}, {r['block_jacobian_pixels_truth_fd_px_median']:.1f} -> "
              f"{r['block_jacobian_pixels_global_fd_px_median']:.1f}")
    if args.json:
        from wm_gym.io import atomic_path

        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "action_response": resp}, f, indent=2)


if __name__ == "__main__":
    main()
