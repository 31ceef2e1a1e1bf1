"""Cost of one policy gradient, N envs x H steps: FoG vs BPTT through the diffusion sampler vs pure surrogate.

All three differentiate the same objective, J = sum_t gamma^t r_t (mean over envs), for the same
deterministic actor a = pi(z) (a fresh MLP on the surrogate latent), from the same seeded start frames
with the same diffusion noise:

* ``bptt_diffusion``: the reference. Forward and backward through the global model's few-step sampler,
  its reward model and the encoder, H steps deep.
* ``fog``: forward values from the global model (no graph, the env's torch fast path), backward through
  the surrogate's Jacobians at the visited states (``fog_trainer.fog.fog_step``).
* ``surrogate``: Dreamer-style imagination, forward and backward in the surrogate alone.

Memory is what autograd keeps for the backward pass (every tensor saved for backward, counted once by
storage, actor weights excluded: the activations a gradient method costs beyond the models), plus the
process's peak growth (``ru_maxrss`` on CPU, ``max_memory_allocated`` on CUDA; each method runs in its
own process). Reports whole-update time, backward-only time, memory and the cosine of each gradient to
the BPTT-through-diffusion gradient. Times are the median of ``--repeats`` updates after ``--warmup`` untimed
ones: a process's first differentiated global rollout is ~10x slower than the next ones (allocator and kernel
set-up), a one-off cost that an RL run pays once, so it is reported apart as ``first_update_s``.

``--precision bfloat16`` runs the global model under bfloat16 autocast for both methods that use it (FoG's
no-grad rollout and BPTT's differentiated one, whose backward then runs in bfloat16 too).

    python benchmarks/gradient_cost.py                 # N=64, H=16, shipped model
    python benchmarks/gradient_cost.py --smoke --checkpoint DIR
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

METHODS = ("bptt_diffusion", "fog", "surrogate")
GAMMA = 0.99  # discount of the differentiated return


def make_actor(latent_dim: int, seed: int, head_scale: float = 1.0) -> torch.nn.Module:
    """A deterministic actor z -> a in [-1, 1]^2 (seeded); ``head_scale`` < 1 shrinks the last layer so that
    it starts near the middle of the action box, as FoG's actor does."""
    torch.manual_seed(seed)
    actor = torch.nn.Sequential(torch.nn.Linear(latent_dim, 128), torch.nn.SiLU(), torch.nn.Linear(128, 2),
                                torch.nn.Tanh())
    with torch.no_grad():
        actor[2].weight.mul_(head_scale)
        actor[2].bias.mul_(head_scale)
    return actor


def policy_objective(method: str, sim, actor: torch.nn.Module, wm, reward_type: str, horizon: int,
                     sampler_steps: int | None = None, gamma: float = GAMMA, precision: str = "float32") -> torch.Tensor:
    """J = sum_t gamma^t r_t (mean over the sim's envs) of ``actor`` from the sim's current state, as a
    graph whose gradient is the one ``method`` computes (see the module docstring); steps ``sim``."""
    from fog_trainer.fog import fog_step
    from wm_gym.models.global_model import precision_context

    task, gm, sur = wm.task, wm.global_model, wm.surrogate
    ridx = task.reward_types.index(reward_type)
    J = torch.zeros((), device=sim.latent.device)
    if method == "fog":
        z = sim.latent.clone()
        for t in range(horizon):
            a = task.unnormalize_action(actor(z))
            out = sim.step(a.detach(), with_jacobians=True)
            z, r = fog_step(z, a, out.final_latent, out.reward, out.lin)
            J = J + gamma**t * r.mean()
    elif method == "surrogate":
        z = sim.latent.clone()
        for t in range(horizon):
            a = actor(z)
            r = sur.reward(z, a)[:, ridx]
            z = sur.next(z, a)
            J = J + gamma**t * r.mean()
    elif method == "bptt_diffusion":
        ctx, past = sim.obs_ctx.clone(), sim.past_act.clone()
        z = sur.encode(ctx)
        for t in range(horizon):
            a = actor(z)
            act = torch.cat([past, a[:, None]], dim=1)
            with precision_context(precision, ctx.device):
                nxt = gm.sampler.integrate(gm.denoiser, ctx, act, sim.draw_noise(), num_steps=sampler_steps).float()
                r = gm.rewards(nxt).rew[:, ridx].float()
            ctx = torch.cat([ctx[:, 1:], nxt[:, None]], dim=1)
            past = torch.cat([past[:, 1:], a[:, None]], dim=1)
            z = sur.encode(ctx)
            J = J + gamma**t * r.mean()
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return J


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _one_update(method: str, wm, args, device: torch.device, record_saved: bool = False):
    """One policy update from the same seeded starts: (forward s, backward s, objective, grad, saved MB)."""
    from wm_gym.envs import WorldModelSimulator

    sim = WorldModelSimulator(wm, args.num_envs, args.reward_type, max_episode_steps=10**9, precision=args.precision)
    sim.seed([args.seed + i for i in range(args.num_envs)])
    sim.reset_envs(range(args.num_envs))
    actor = make_actor(wm.latent_dim, args.seed).to(device)
    saved: dict[int, int] = {}  # storage pointer -> bytes of every tensor autograd keeps for the backward

    def pack(x):
        saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    recording = torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x) if record_saved else nullcontext()
    _sync(device)
    t0 = time.perf_counter()
    with recording:
        J = policy_objective(method, sim, actor, wm, args.reward_type, args.horizon, args.sampler_steps,
                             precision=args.precision)
        _sync(device)
    t1 = time.perf_counter()
    params = {p.untyped_storage().data_ptr() for p in actor.parameters()}
    (-J).backward()
    _sync(device)
    t2 = time.perf_counter()
    grad = torch.cat([p.grad.flatten() for p in actor.parameters()]).cpu()
    saved_mb = sum(b for k, b in saved.items() if k not in params) / 2**20
    return t1 - t0, t2 - t1, float(J.detach()), grad, saved_mb


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_method(method: str, args) -> dict:
    """``args.warmup`` untimed updates (the first one records what autograd saves), then ``args.repeats`` timed
    ones; times are their medians. The first update of a process is much slower than the next ones for the
    differentiated global rollout (allocator and kernel set-up: a BPTT update took 43 s, then ~9 s, in float32 on
    the README's CPU), so it is reported apart (``first_update_s``) and never used as the update's cost."""
    from wm_gym.envs import WorldModel

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wm = WorldModel.load(args.checkpoint, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = _peak_bytes(device)
    fwd, bwd = [], []
    for i in range(args.warmup + args.repeats):
        f, b, objective, grad, saved_mb = _one_update(method, wm, args, device, record_saved=(i == 0))
        if i == 0:
            first_update_s, saved_for_backward_mb = f + b, saved_mb
        if i >= args.warmup:
            fwd.append(f)
            bwd.append(b)
    updates = [f + b for f, b in zip(fwd, bwd)]
    return {"method": method, "update_s": statistics.median(updates), "forward_s": statistics.median(fwd),
            "backward_s": statistics.median(bwd), "update_s_all": updates, "first_update_s": first_update_s,
            "saved_for_backward_mb": saved_for_backward_mb,
            "peak_mem_mb": (_peak_bytes(device) - (0 if device.type == "cuda" else base)) / 2**20,
            "objective": objective}, grad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sampler-steps", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--reward-type", default="dense")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="float32", help="the global model's arithmetic: float32, bfloat16, auto")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates first (the first one of a process is slow)")
    p.add_argument("--repeats", type=int, default=5, help="timed updates; the table shows their median")
    p.add_argument("--smoke", action="store_true", help="N=2, H=2, 1 warm-up, 1 repeat")
    p.add_argument("--method", default=None, help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--grad-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help="also write the results here")
    args = p.parse_args()
    if args.warmup < 0 or args.repeats < 1:
        p.error(f"--warmup must be >= 0 and --repeats >= 1, got {args.warmup} and {args.repeats}")
    if args.smoke:
        args.num_envs, args.horizon, args.warmup, args.repeats = 2, 2, 1, 1
    if args.method:
        res, grad = run_method(args.method, args)
        torch.save(grad, args.grad_out)
        print(json.dumps(res))
        return
    results = {}
    with tempfile.TemporaryDirectory() as d:
        grads = {}
        for m in METHODS:
            cmd = [sys.executable, __file__, "--method", m, "--grad-out", f"{d}/{m}.pt"]
            for k in ("num_envs", "horizon", "device", "threads", "reward_type", "seed", "precision", "warmup", "repeats"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
            if args.checkpoint:
                cmd += ["--checkpoint", args.checkpoint]
            if args.sampler_steps:
                cmd += ["--sampler-steps", str(args.sampler_steps)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                results[m] = {"error": out.stderr.strip().splitlines()[-1] if out.stderr else f"exit {out.returncode}"}
                continue
            results[m] = json.loads(out.stdout.strip().splitlines()[-1])
            grads[m] = torch.load(f"{d}/{m}.pt")
    ref = grads.get("bptt_diffusion")
    for m, g in grads.items():
        if ref is not None:
            results[m]["cosine_to_bptt"] = float(torch.nn.functional.cosine_similarity(g, ref, dim=0))
            results[m]["norm_ratio_to_bptt"] = float(g.norm() / ref.norm().clamp_min(1e-30))
    summary = {"num_envs": args.num_envs, "horizon": args.horizon, "device": args.device, "threads": args.threads,
               "precision": args.precision, "warmup": args.warmup, "repeats": args.repeats, "methods": results}
    if "update_s" in results.get("bptt_diffusion", {}) and "update_s" in results.get("fog", {}):
        b, f = results["bptt_diffusion"], results["fog"]
        summary["bptt_over_fog_update_time"] = b["update_s"] / f["update_s"]
        summary["bptt_over_fog_backward_time"] = b["backward_s"] / f["backward_s"]
        summary["bptt_over_fog_memory"] = b["saved_for_backward_mb"] / max(f["saved_for_backward_mb"], 1e-6)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()
