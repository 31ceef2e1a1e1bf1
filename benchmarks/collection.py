"""Data-collection throughput vs raw gym-pusht, and contact / displacement statistics of a dataset.

    python benchmarks/collection.py                       # throughput (1 and 2 workers) + stats of a fresh set
    python benchmarks/collection.py --stats /path/to/data # statistics of an existing collection
    python benchmarks/collection.py --smoke               # seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def raw_gym_pusht_steps_per_s(steps: int, image_size: int) -> float:
    import gymnasium as gym
    import gym_pusht  # noqa: F401

    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels", observation_width=image_size,
                   observation_height=image_size)
    env.reset(seed=0)
    env.action_space.seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def dataset_stats(root) -> dict:
    from wm_gym.data import list_episodes, load_episode
    from wm_gym.pusht import wrap_angle

    contact, disp, rot, moved, behaviours, reach, change = [], [], [], [], [], [], []
    history, taken = [], []  # the action's linear prediction from the last 3 actions and agent positions
    for p in list_episodes(root):
        ep = load_episode(p)
        s = ep["states"].astype(np.float64)
        a = ep["actions"].astype(np.float64)
        reach.append(np.linalg.norm(a - s[:-1, :2], axis=1))  # how far the target is from the agent
        change.append(np.linalg.norm(np.diff(a, axis=0), axis=1))  # how far the target moves per step
        T = len(a)  # rows t = 3..T-1: a[t-3], a[t-2], a[t-1], agent xy at t-2, t-1, t, and a constant
        if T > 3:
            history.append(np.concatenate([a[0:T - 3], a[1:T - 2], a[2:T - 1], s[1:T - 2, :2], s[2:T - 1, :2],
                                           s[3:T, :2], np.ones((T - 3, 1))], axis=1))
            taken.append(a[3:])
        d = float(np.linalg.norm(s[-1, 2:4] - s[0, 2:4]))
        r = float(np.degrees(np.abs(wrap_angle(s[-1, 4] - s[0, 4]))))
        contact.append(ep["contact"].mean())
        disp.append(d)
        rot.append(r)
        moved.append(d > 20 or r > 15)
        behaviours.append(str(ep["behaviour"]))
    steps = sum(1 for _ in contact)
    X, Y = (np.concatenate(history), np.concatenate(taken)) if history else (np.zeros((0, 13)), np.zeros((0, 2)))
    residual = Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0] if len(Y) > X.shape[-1] else np.full((1, 2), np.nan)
    q = lambda x: [round(float(v), 1) for v in np.percentile(x, [10, 25, 50, 75, 90])]
    return {
        "episodes": steps,
        "contact_fraction_of_steps": round(float(np.mean(contact)), 3),
        "episodes_moved_T_gt_20px_or_15deg": round(float(np.mean(moved)), 3),
        "T_displacement_px_p10_25_50_75_90": q(disp),
        "T_rotation_deg_p10_25_50_75_90": q(rot),
        # where a policy's actions leave the training data's (a world model is only trained on these)
        "action_to_agent_px_p10_25_50_75_90": q(np.concatenate(reach)),
        "action_change_px_p10_25_50_75_90": q(np.concatenate(change)),
        # rms per axis of what a linear fit of the last 3 actions and agent positions leaves unexplained of the
        # action: the variation from which a world model can learn the action's own effect on the next frame
        "action_unexplained_by_history_px": round(float(np.sqrt(np.mean(residual**2))), 1),
        "behaviour_counts": {b: behaviours.count(b) for b in sorted(set(behaviours))},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=40, help="episodes per throughput measurement")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--stats", default=None, help="dataset directory to summarise (skips throughput)")
    p.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    args = p.parse_args()
    if args.stats:
        print(json.dumps(dataset_stats(args.stats), indent=2))
        return
    from wm_gym.data import collect

    eps, max_steps = (2, 20) if args.smoke else (args.episodes, 300)
    raw = raw_gym_pusht_steps_per_s(eps * max_steps, args.image_size)
    results = {"raw_gym_pusht_pixels_steps_per_s": round(raw, 1)}
    with tempfile.TemporaryDirectory() as d:
        for workers in (1, 2):
            s = collect(f"{d}/w{workers}", eps, seed=workers, workers=workers, image_size=args.image_size,
                        max_steps=max_steps, progress=False)
            results[f"collect_{workers}_worker_steps_per_s"] = round(s["steps_per_s"], 1)
        results["overhead_1_worker_vs_raw"] = round(1 - results["collect_1_worker_steps_per_s"] / raw, 3)
        results["speedup_2_workers"] = round(results["collect_2_worker_steps_per_s"] /
                                             results["collect_1_worker_steps_per_s"], 2)
        results["stats_of_this_collection"] = dataset_stats(f"{d}/w1")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
