"""Sample efficiency on WM-PushT-v0: FoG vs SB3 PPO (latent MlpPolicy, pixel CnnPolicy), several seeds.

Every algorithm sees the same env (same world model, ``reward_type``, 300-step episodes) and is scored
by the same number: ``ep_rew_mean``, the mean undiscounted return of its last 100 finished training
episodes (SB3's ``rollout/ep_rew_mean``), against world-model env steps. At the end each final policy
is also run in the real gym-pusht (``fog_trainer.evaluate``).

    python benchmarks/sample_efficiency.py --quick      # CPU profile, results in benchmarks/results/
    python benchmarks/sample_efficiency.py --full --device cuda
    python benchmarks/sample_efficiency.py --smoke --checkpoint DIR   # seconds (test suite)

Headline: ``ratio = PPO env steps to reach its best ep_rew_mean / FoG env steps to reach the same``
(per PPO variant, on the seed-mean curves); when FoG never reaches it the ratio is reported as < 1.
A curve point counts once its mean is over at least ``num_envs`` finished episodes: before that it is
the mean of a handful of episodes the world model ended early (e.g. one predicted success at step 123
gave ep_rew_mean -126 and made that the "best" of a run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

PROFILES = {
    "smoke": {"steps": 512, "seeds": [0], "algos": ["fog", "ppo_latent"], "gt_seeds": 1, "gt_steps": 10,
              "num_envs": 8},
    "quick": {"steps": 100_000, "seeds": [0, 1], "algos": ["fog", "ppo_latent"], "gt_seeds": 20,
              "gt_steps": 300, "num_envs": 64},
    "full": {"steps": 1_000_000, "seeds": [0, 1, 2, 3, 4], "algos": ["fog", "ppo_latent", "ppo_pixels"],
             "gt_seeds": 50, "gt_steps": 300, "num_envs": 64},
}


def run_fog(seed, prof, args, out):
    from fog_trainer import FoGConfig, FoGTrainer

    cfg = FoGConfig(num_envs=prof["num_envs"], seed=seed, device=args.device, checkpoint=args.checkpoint or "",
                    reward_type=args.reward_type, run_dir=str(out / f"fog_{seed}"), progress_bar=not args.smoke,
                    checkpoint_every=0)
    t0 = time.time()
    trainer = FoGTrainer("WM-PushT-v0", cfg).learn(prof["steps"])
    rows = [(h["num_timesteps"], h["ep_rew_mean"], h["ep_len_mean"], None, h["ep_count"]) for h in trainer.history
            if h.get("ep_count", 0) >= prof["num_envs"]]
    trainer.save(out / f"fog_{seed}" / "policy")
    return rows, trainer.policy, time.time() - t0


def run_ppo(seed, prof, args, out, obs_type):
    from baselines import PPOArgs, PPOFramePolicy, train_ppo

    from fog_trainer import FoGConfig

    # PPO on the latent acts in FoG's action parameterisation (agent-anchored offsets); on pixels the anchor
    # is not available to the adapter, so PPO-pixels keeps absolute targets
    offset = FoGConfig().action_offset if obs_type == "latent" else 0.0
    a = PPOArgs(obs_type=obs_type, reward_type=args.reward_type, total_timesteps=prof["steps"], action_offset=offset,
                num_envs=prof["num_envs"], n_steps=16 if args.smoke else 32, batch_size=64 if args.smoke else 512,
                n_epochs=2 if args.smoke else 10, checkpoint=args.checkpoint, device=args.device, seed=seed,
                out=str(out), progress_bar=not args.smoke, run_name=f"ppo_{obs_type}_{seed}")
    t0 = time.time()
    model, rows, _ = train_ppo(a)
    rows = [r for r in rows if r[4] >= prof["num_envs"]]
    policy = PPOFramePolicy(model, obs_type, checkpoint=args.checkpoint, device=args.device, action_offset=offset)
    return rows, policy, time.time() - t0


def steps_to_reach(curve: list[tuple[int, float]], level: float) -> float:
    for s, r in curve:
        if r >= level:
            return float(s)
    return float("inf")


def mean_curve(runs: list[list[tuple]], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate each seed's (steps, return) curve on ``grid``; return mean and std over seeds."""
    ys = []
    for rows in runs:
        if not rows:
            continue
        s = np.array([r[0] for r in rows], float)
        y = np.array([r[1] for r in rows], float)
        ys.append(np.interp(grid, s, y, left=np.nan, right=y[-1]))
    if not ys:
        return np.full_like(grid, np.nan), np.full_like(grid, np.nan)
    ys = np.array(ys)
    return np.nanmean(ys, 0), np.nanstd(ys, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    for name in PROFILES:
        g.add_argument(f"--{name}", action="store_true", help=f"profile {PROFILES[name]}")
    p.add_argument("--steps", type=int, default=None, help="override the profile's env steps per run")
    p.add_argument("--seeds", default=None, help="override the seeds, e.g. 0,1,2")
    p.add_argument("--algos", default=None, help="override the algorithms, e.g. fog,ppo_latent")
    p.add_argument("--reward-type", default="dense")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: shipped)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output dir (default: benchmarks/results/sample_efficiency_PROFILE)")
    args = p.parse_args()
    profile = next((n for n in PROFILES if getattr(args, n)), "quick")
    prof = dict(PROFILES[profile])
    if args.steps:
        prof["steps"] = args.steps
    if args.seeds:
        prof["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.algos:
        prof["algos"] = args.algos.split(",")
    out = Path(args.out or Path(__file__).parent / "results" / f"sample_efficiency_{profile}")
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = out / "runs"

    from fog_trainer.evaluate import evaluate_in_ground_truth
    from wm_gym.envs import WorldModel

    image_size = WorldModel.load(args.checkpoint).task.image_size

    curves: dict[str, list] = {a: [] for a in prof["algos"]}
    ground_truth: dict[str, list] = {a: [] for a in prof["algos"]}
    wall: dict[str, list] = {a: [] for a in prof["algos"]}
    for seed in prof["seeds"]:
        for algo in prof["algos"]:
            if algo == "fog":
                rows, policy, dt = run_fog(seed, prof, args, runs_dir)
            elif algo in ("ppo_latent", "ppo_pixels"):
                rows, policy, dt = run_ppo(seed, prof, args, runs_dir, algo.split("_")[1])
            else:
                raise SystemExit(f"unknown algorithm {algo!r}; choose from fog, ppo_latent, ppo_pixels")
            curves[algo].append(rows)
            wall[algo].append(dt)
            gt = evaluate_in_ground_truth(policy, seeds=range(1000, 1000 + prof["gt_seeds"]),
                                          max_steps=prof["gt_steps"], image_size=image_size)
            ground_truth[algo].append({k: v for k, v in gt.items() if not isinstance(v, (list, tuple))})
            print(f"[{algo} seed {seed}] {dt:.0f}s, last ep_rew_mean "
                  f"{rows[-1][1] if rows else float('nan'):.3f}, ground truth {ground_truth[algo][-1]}", flush=True)

    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "seed", "env_steps", "ep_rew_mean"])
        for algo, runs in curves.items():
            for seed, rows in zip(prof["seeds"], runs):
                for r in rows:
                    w.writerow([algo, seed, r[0], f"{r[1]:.5f}"])

    grid = np.linspace(0, prof["steps"], 200)
    mean = {a: mean_curve(curves[a], grid) for a in curves}
    summary: dict = {"profile": profile, "steps_per_run": prof["steps"], "seeds": prof["seeds"],
                     "reward_type": args.reward_type, "device": args.device, "ratios": {}}
    for algo in curves:
        m = mean[algo][0]
        gts = ground_truth[algo]
        summary[algo] = {
            "final_ep_rew_mean": float(m[-1]) if np.isfinite(m[-1]) else None,
            "best_ep_rew_mean": float(np.nanmax(m)) if np.isfinite(m).any() else None,
            "wall_s_per_run": float(np.mean(wall[algo])),
            "ground_truth": {k: float(np.mean([g[k] for g in gts])) for k in gts[0]} if gts else {},
        }
    if "fog" in curves:
        fog_curve = list(zip(grid, mean["fog"][0]))
        for algo in curves:
            if not algo.startswith("ppo") or summary[algo]["best_ep_rew_mean"] is None:
                continue
            best = summary[algo]["best_ep_rew_mean"]
            ppo_steps = steps_to_reach(list(zip(grid, mean[algo][0])), best)
            fog_steps = steps_to_reach(fog_curve, best)
            summary["ratios"][algo] = {"ppo_best": best, "ppo_steps": ppo_steps, "fog_steps": fog_steps,
                                       "ratio": ppo_steps / fog_steps if np.isfinite(fog_steps) and fog_steps > 0
                                       else ("<1 (FoG never reached PPO's best)")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, (m, s) in mean.items():
        ax.plot(grid, m, label=algo)
        ax.fill_between(grid, m - s, m + s, alpha=0.2)
    ax.set_xlabel("world-model env steps")
    ax.set_ylabel(f"ep_rew_mean ({args.reward_type} reward)")
    ax.set_title(f"WM-PushT-v0, {len(prof['seeds'])} seeds (mean ± std)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
