"""Does a step along FoG's policy gradient raise the global model's return, as a step along the exact one does?

The gradient-fidelity benchmark compares gradients by cosine; this asks what a policy update needs: for the
actor FoG starts from (about the middle of the action box) and N seeded starts with fixed diffusion noise,
compute the gradient of the H-step return J_H with each method of ``gradient_cost.py`` (FoG: surrogate
Jacobians at the global states; ``bptt_diffusion``: exact, through the sampler; ``surrogate``: imagination),
then move the actor's weights by ``eta`` along each unit-norm direction and measure the *global* return
again, over H steps and over a longer horizon (deterministic actions, same starts and noise). A seeded
random unit direction is the control: what any step of that size does.

    python benchmarks/fog_ascent.py --json-out OUT.json      # shipped model, N=64, H=16, ~3 min on 2 cores
    python benchmarks/fog_ascent.py --smoke --checkpoint DIR
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from gradient_cost import GAMMA, METHODS, make_actor, policy_objective  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--horizon", type=int, default=16, help="H of the differentiated return")
    p.add_argument("--eval-horizon", type=int, default=64, help="the longer horizon the return is also measured at")
    p.add_argument("--etas", default="0.01,0.03,0.1,0.3", help="step sizes along each unit-norm gradient")
    p.add_argument("--head-scale", type=float, default=0.01,
                   help="last-layer scale of the actor (0.01: starts near the middle of the box, as FoG's)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--reward-type", default="dense")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="N=2, H=2, eval horizon 3")
    p.add_argument("--json-out", default=None, help="also write the results here")
    args = p.parse_args()
    if args.smoke:
        args.num_envs, args.horizon, args.eval_horizon = 2, 2, 3
    torch.set_num_threads(args.threads)
    from wm_gym.envs import WorldModel, WorldModelSimulator

    wm = WorldModel.load(args.checkpoint)
    actor = make_actor(wm.latent_dim, args.seed, args.head_scale)
    theta0 = torch.nn.utils.parameters_to_vector(actor.parameters()).detach().clone()

    def fresh_sim():  # the same starts and the same diffusion noise every time
        sim = WorldModelSimulator(wm, args.num_envs, args.reward_type, max_episode_steps=10**9)
        sim.seed([args.seed + i for i in range(args.num_envs)])
        sim.reset_envs(range(args.num_envs))
        return sim

    def global_return(horizon: int) -> float:
        with torch.no_grad():
            sim, J = fresh_sim(), 0.0
            z = sim.latent.clone()
            for t in range(horizon):
                out = sim.step(wm.task.unnormalize_action(actor(z)), with_jacobians=False)
                z = out.final_latent
                J += GAMMA**t * float(out.reward.mean())
        return J

    directions, rows = {}, []
    for method in METHODS:
        actor.zero_grad()
        policy_objective(method, fresh_sim(), actor, wm, args.reward_type, args.horizon).backward()
        g = torch.cat([q.grad.flatten() for q in actor.parameters()])
        directions[method] = g / g.norm().clamp_min(1e-30)
    rand = torch.randn(theta0.shape, generator=torch.Generator().manual_seed(args.seed))
    directions["random"] = rand / rand.norm()
    base = {"J_H": global_return(args.horizon), "J_long": global_return(args.eval_horizon)}
    for method, d in directions.items():
        for eta in [float(e) for e in args.etas.split(",")]:
            torch.nn.utils.vector_to_parameters(theta0 + eta * d, actor.parameters())
            rows.append({"direction": method, "eta": eta, "J_H": global_return(args.horizon),
                         "J_long": global_return(args.eval_horizon)})
    torch.nn.utils.vector_to_parameters(theta0, actor.parameters())
    cos = {f"{a}_vs_{b}": float(directions[a] @ directions[b]) for a in METHODS for b in METHODS if a < b}
    cos.update({f"{a}_vs_random": float(directions[a] @ directions["random"]) for a in METHODS})
    summary = {"num_envs": args.num_envs, "horizon": args.horizon, "eval_horizon": args.eval_horizon,
               "reward_type": args.reward_type, "seed": args.seed, "start": base, "cosines": cos, "steps": rows}
    print(f"| direction | eta | global J_{args.horizon} | change | global J_{args.eval_horizon} | change |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['direction']} | {r['eta']:g} | {r['J_H']:.3f} | {r['J_H'] - base['J_H']:+.3f} | "
              f"{r['J_long']:.3f} | {r['J_long'] - base['J_long']:+.3f} |")
    print(json.dumps({"start": base, "cosines": cos}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
