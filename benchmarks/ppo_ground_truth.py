"""Reference: SB3 PPO trained on the real gym-pusht, scored in gym-pusht against *real* env steps.

The sample-efficiency benchmark counts world-model steps for every algorithm. This one asks the question a
world model is for: how many steps of the real simulator does model-free PPO need to reach the gym-pusht
return that FoG reaches with no real steps at all (FoG trains in ``WM-PushT-v0`` only; its gym-pusht scores
are read from the sample-efficiency summary). PPO gets the world model's task (``dense`` reward, 300-step
episodes, actions in [-1, 1] over the workspace, :mod:`baselines.ground_truth`), the same settings as the
world-model PPO runs (64 envs, RL-Zoo-like defaults, :mod:`baselines.ppo`) and one of two observations:

* ``state``: the true state (agent xy, block xy, angle): privileged, and much easier than frames;
* ``state_anchored``: the same with FoG's anchored actions (targets at most ``FoGConfig.action_offset`` from the
  agent, here its true position), the action parameterisation of FoG and PPO-latent; the others, like PPO-pixels
  in the world model, act with absolute targets (an untrained policy then aims at the middle of the workspace,
  where the goal is);
* ``pixels``: the 64 x 64 frames the world model draws, as PPO-pixels sees them in the world model.

Every policy is evaluated the way the sample-efficiency benchmark evaluates in gym-pusht (deterministic, the
same seeds 1000.., 300 steps) at the same env-step checkpoints. Each finished run is saved as
``OUT/runs/ppo_truth_VARIANT_SEED.json`` with its settings; a rerun with the same settings reuses it.

    python benchmarks/ppo_ground_truth.py --quick          # results in benchmarks/results/ppo_ground_truth/
    python benchmarks/ppo_ground_truth.py --smoke --out DIR  # seconds (test suite)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sample_efficiency import PROFILES as SE_PROFILES  # a sibling script: benchmarks/ is on sys.path when run
from sample_efficiency import (ScheduledEval, _load_result, algo_seeds, eval_schedule, ground_truth_points,
                               ground_truth_summary, mean_curve, steps_to_reach, write_curves)

PROFILES = {name: {**SE_PROFILES[name], "variants": ["state", "state_anchored"] if name == "smoke"
                   else ["state", "state_anchored", "pixels"]} for name in ("smoke", "quick")}
PROFILES["quick"]["seeds"] = [0, 1, 2, 3]


def variant_settings(variant: str) -> tuple[str, float]:
    """(obs_type, action_offset) of a variant: ``state``, ``pixels``, or either with ``_anchored``."""
    from fog_trainer import FoGConfig

    obs_type, _, anchored = variant.partition("_")
    if obs_type not in ("state", "pixels") or anchored not in ("", "anchored"):
        raise SystemExit(f"unknown variant {variant!r}: state, pixels, state_anchored or pixels_anchored")
    return obs_type, FoGConfig.action_offset if anchored else 0.0


TRAIN_SEED0 = 100_000  # training starts are drawn from other seeds than the evaluation's


def run(variant: str, seed: int, prof: dict, runs_dir: Path, smoke: bool) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    from baselines import PPOArgs, PPOTruthPolicy, train_ppo

    obs_type, action_offset = variant_settings(variant)
    schedule = eval_schedule(prof["steps"], prof["eval_first"], prof["eval_points"])
    # gym-pusht only, at every point of the schedule
    evaluate = ScheduledEval(None, schedule, lambda policy: ground_truth_summary(policy, prof), gt_at=tuple(schedule))

    class _Eval(BaseCallback):
        def _init_callback(self) -> None:
            self.policy = PPOTruthPolicy(self.model, obs_type, action_offset=action_offset)

        def _on_training_start(self) -> None:
            evaluate(0, None, self.policy)

        def _on_step(self) -> bool:
            evaluate(self.num_timesteps, None, self.policy)
            return True

    a = PPOArgs(env="gym-pusht", obs_type=obs_type, action_offset=action_offset, reward_type="dense",
                total_timesteps=prof["steps"],
                num_envs=prof["num_envs"], n_steps=16 if smoke else 32, batch_size=64 if smoke else 512,
                n_epochs=2 if smoke else 10, seed=TRAIN_SEED0 + seed, out=str(runs_dir), progress_bar=not smoke,
                run_name=f"ppo_truth_{variant}_{seed}")
    t0 = time.time()
    _, train_rows, _ = train_ppo(a, callback=_Eval())  # SB3 calls _on_step at every step, the last one included
    return {"rows": [r for r in train_rows if r[4] >= prof["num_envs"]], "gt_rows": evaluate.gt_rows,
            "wall_s": time.time() - t0}


def fog_reference(path: Path) -> dict | None:
    """FoG's gym-pusht dense return against world-model steps, from a sample-efficiency summary."""
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    fog = s.get("fog")
    if not fog or not fog.get("ground_truth_at"):
        return None
    points = ground_truth_points(s, "fog")
    root = Path(__file__).resolve().parent.parent
    shown = path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else path
    return {"summary": str(shown), "seeds": s["seeds_per_algo"]["fog"], "steps": [p[0] for p in points],
            "gym_pusht_return": [p[1] for p in points]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    for name in PROFILES:
        g.add_argument(f"--{name}", action="store_true", help=f"profile {PROFILES[name]}")
    p.add_argument("--seeds", default=None, help="override the seeds, e.g. 0,1")
    p.add_argument("--variants", default=None, help="override the variants, e.g. state,pixels")
    p.add_argument("--variant-seeds", action="append", default=[], metavar="VARIANT=SEEDS",
                   help="other seeds for one variant, e.g. pixels=0,1 (repeatable)")
    p.add_argument("--fog-summary", default=str(Path(__file__).parent / "results" / "sample_efficiency_quick" /
                                                 "summary.json"),
                   help="sample-efficiency summary.json whose FoG gym-pusht returns are the reference")
    p.add_argument("--out", default=None, help="output dir (default: benchmarks/results/ppo_ground_truth)")
    args = p.parse_args()
    profile = next((n for n in PROFILES if getattr(args, n)), "quick")
    prof = dict(PROFILES[profile])
    if args.seeds:
        prof["seeds"] = sorted({int(s) for s in args.seeds.split(",")})
    if args.variants:
        prof["variants"] = args.variants.split(",")
    for variant in prof["variants"]:
        variant_settings(variant)  # unknown names fail before anything runs
    seeds_of = algo_seeds(prof["variants"], prof["seeds"], args.variant_seeds)
    out = Path(args.out or Path(__file__).parent / "results" / "ppo_ground_truth")
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    from wm_gym.io import atomic_write_text

    keys = ("steps", "num_envs", "gt_seeds", "gt_steps", "eval_first", "eval_points")
    curves, gt_curves, wall = {}, {}, {}
    for variant in prof["variants"]:
        algo = f"ppo_truth_{variant}"
        obs_type, action_offset = variant_settings(variant)
        curves[algo], gt_curves[algo], wall[algo] = [], [], []
        for seed in seeds_of[variant]:
            path = runs_dir / f"{algo}_{seed}.json"
            settings = {"obs_type": obs_type, "seed": seed, "smoke": profile == "smoke", **{k: prof[k] for k in keys},
                        **({"action_offset": action_offset} if action_offset else {})}
            result = _load_result(path)
            if result is not None and result.get("settings") == settings:
                print(f"[{algo} seed {seed}] finished run reused from {path}", flush=True)
            else:
                result = {"settings": settings, **run(variant, seed, prof, runs_dir, profile == "smoke")}
                atomic_write_text(path, json.dumps(result, default=float))
            curves[algo].append(result["rows"])
            gt_curves[algo].append([(s, g["mean_return_dense"]) for s, g in result["gt_rows"]])
            wall[algo].append(result["wall_s"])
            print(f"[{algo} seed {seed}] {result['wall_s']:.0f}s, gym-pusht dense return "
                  f"{[(s, round(r, 1)) for s, r in gt_curves[algo][-1]]}", flush=True)

    seeds_of = {f"ppo_truth_{v}": seeds for v, seeds in seeds_of.items()}
    write_curves(out / "curves.csv", "ep_rew_mean", curves, seeds_of)
    write_curves(out / "gym_pusht_curves.csv", "gym_pusht_return_dense", gt_curves, seeds_of)
    points = np.array(eval_schedule(prof["steps"], prof["eval_first"], prof["eval_points"]), float)
    fog = fog_reference(Path(args.fog_summary)) if profile != "smoke" else None
    summary: dict = {"profile": profile, "steps_per_run": prof["steps"], "seeds": prof["seeds"],
                     "seeds_per_variant": seeds_of, "action_offset_anchored": variant_settings("state_anchored")[1],
                     "num_envs": prof["num_envs"], "gt_seeds": prof["gt_seeds"], "gt_steps": prof["gt_steps"],
                     "eval_schedule": [int(x) for x in points], "fog_reference": fog}
    for algo in curves:
        m, sd = mean_curve(gt_curves[algo], points)
        entry = {"seeds": seeds_of[algo], "gym_pusht_return": [float(x) for x in m],
                 "gym_pusht_return_std": [float(x) for x in sd],
                 "first": float(m[0]), "final": float(m[-1]), "best": float(np.nanmax(m)),
                 "wall_s_per_run": float(np.mean(wall[algo]))}
        if fog is not None:
            # real env steps PPO needs to reach what FoG reached with world-model steps only (inf: never)
            entry["real_steps_to_fog_final"] = steps_to_reach(points, m, fog["gym_pusht_return"][-1])
        summary[algo] = entry
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for algo in curves:
        m, sd = summary[algo]["gym_pusht_return"], summary[algo]["gym_pusht_return_std"]
        ax.plot(points, m, marker="o",
                label=f"PPO in gym-pusht, {algo.removeprefix('ppo_truth_')} ({len(seeds_of[algo])} seeds)")
        ax.fill_between(points, np.subtract(m, sd), np.add(m, sd), alpha=0.2)
    if fog is not None:
        ax.plot(fog["steps"], fog["gym_pusht_return"], marker="s", color="k",
                label=f"FoG in the world model ({len(fog['seeds'])} seeds; x = world-model steps)")
    ax.set_xlabel("env steps (PPO: real gym-pusht steps)")
    ax.set_ylabel(f"gym-pusht dense return ({prof['gt_seeds']} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
