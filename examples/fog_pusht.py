"""Train FoG inside the Push-T world model (WM-PushT-v0), then evaluate it in the real gym-pusht.

    python examples/fog_pusht.py                                   # <= 15 min on 2 CPU cores
    python examples/fog_pusht.py --total-env-steps 2000000 --max-minutes 0 --device cuda
    python examples/fog_pusht.py --smoke                           # a few updates, seconds (tests)

Writes to --out: ``policy/`` (FoGPolicy.save), ``learning_curve.png``, ``episode.mp4`` (ground truth),
``summary.json`` and the TensorBoard run (``tensorboard --logdir OUT``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fog_trainer import FoGConfig, FoGTrainer  # noqa: E402
from fog_trainer.evaluate import RandomPolicy, ScriptedPusher, evaluate_in_ground_truth  # noqa: E402


def plot_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["num_timesteps"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    series = [("ep_rew_mean", "world-model episode return (last 100)"), ("grad_norm", "actor grad norm (pre-clip)"),
              ("critic_loss", "critic loss (normalised)")]
    for ax, (key, title) in zip(axes, series):
        ax.plot(steps, [h.get(key, float("nan")) for h in history])
        ax.set_title(title)
        ax.set_xlabel("env steps")
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-env-steps", type=int, default=150_000, help="global-model env steps to train for")
    p.add_argument("--max-minutes", type=float, default=10.0, help="stop training after this long (0: no limit)")
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--critic-weight", type=float, default=FoGConfig.critic_weight)
    p.add_argument("--eval-seeds", type=int, default=20, help="ground-truth gym-pusht episodes per policy")
    p.add_argument("--no-baselines", action="store_true", help="skip the random / scripted reference runs")
    p.add_argument("--checkpoint", default="", help="world-model checkpoint directory ('' = the shipped model)")
    p.add_argument("--device", default="cpu", help="torch device of the world model and the networks (e.g. cuda)")
    p.add_argument("--precision", default="auto", help="the world model's arithmetic: float32, bfloat16 or auto "
                   "(bfloat16 on a GPU or a CPU with native bfloat16, e.g. AMX: ~1.5x as fast, same open-loop error)")
    p.add_argument("--out", default="runs/fog_example")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--smoke", action="store_true", help="a few tiny updates and 2 short evaluation episodes")
    a = p.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(a.out)
    smoke = a.smoke

    # 1. train in the world model
    config = FoGConfig(num_envs=4 if smoke else a.num_envs, horizon=4 if smoke else a.horizon,
                       critic_weight=a.critic_weight, critic_iters=2 if smoke else FoGConfig.critic_iters,
                       checkpoint=a.checkpoint, device=a.device, precision=a.precision, seed=a.seed, run_dir=str(out),
                       max_time_s=0 if smoke else a.max_minutes * 60, checkpoint_every=0 if smoke else 50,
                       progress_bar=not smoke)
    total = 3 * config.steps_per_update if smoke else a.total_env_steps
    t0 = time.time()
    trainer = FoGTrainer(config.env_id, config).learn(total, resume=a.resume)
    train_s = time.time() - t0
    last = trainer.history[-1]
    timing = {k: round(v, 2) for k, v in trainer.timings.items()}
    print(f"trained {trainer.num_timesteps} env steps in {train_s:.0f} s ({last['fps']:.0f} steps/s), "
          f"{trainer.skipped_updates} skipped updates; time per phase (s): {timing}")
    print(f"world-model return (stochastic policy, last 100 episodes): {last.get('ep_rew_mean', float('nan')):.3f}")
    wm_eval = trainer.evaluate_world_model(steps=4 if smoke else 100)
    print(f"world-model mean reward per step (deterministic policy, {4 if smoke else 100} steps): "
          f"{wm_eval['mean_reward']:.4f}")

    # 2. keep the policy, draw the curve
    trainer.save(out / "policy")
    plot_curve(trainer.history, out / "learning_curve.png")

    # 3. evaluate in the real gym-pusht (the policy sees frames only; the scripted pusher reads the true state)
    image_size = int(trainer.env.surrogate.config.image_size)
    kw = dict(seeds=range(2 if smoke else a.eval_seeds), image_size=image_size, max_steps=10 if smoke else 300)
    results = {"fog": evaluate_in_ground_truth(trainer.policy, video_path=out / "episode.mp4", progress=not smoke, **kw)}
    if not a.no_baselines:
        results["fog_untrained"] = evaluate_in_ground_truth(trainer.policy.untrained(config.seed), **kw)
        results["random"] = evaluate_in_ground_truth(RandomPolicy(), **kw)
        results["scripted_privileged"] = evaluate_in_ground_truth(ScriptedPusher(), **kw)
    print(f"ground-truth gym-pusht, {len(kw['seeds'])} seeds, {kw['max_steps']} steps:")
    print(f"  {'policy':<22}{'max coverage':>14}{'final coverage':>16}{'success':>9}{'dense return':>14}")
    for name, r in results.items():
        print(f"  {name:<22}{r['mean_max_coverage']:>14.3f}{r['mean_final_coverage']:>16.3f}{r['success_rate']:>9.2f}"
              f"{r['mean_return_dense']:>14.1f}")
    summary = {"env_steps": trainer.num_timesteps, "train_seconds": train_s, "timings_s": timing,
               "skipped_updates": trainer.skipped_updates, "world_model": {**wm_eval, "ep_rew_mean": last.get("ep_rew_mean")},
               "ground_truth": results, "config": config.to_dict()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out}/: policy/, learning_curve.png, episode.mp4, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
