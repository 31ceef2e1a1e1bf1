"""What a FoG policy does in the real gym-pusht: the per-step terms of the dense reward, trained vs untrained.

For each policy (the saved one and the same network before training, ``FoGPolicy.untrained``), one
300-step episode per seed; prints JSON with the mean per step of the block position error, the block
angle error and the agent-to-block penalty (the three terms of ``wm_gym.pusht.dense_reward``), the
mean distance from the action (a target position) to the block, and the fraction of steps in contact.

    python benchmarks/reward_terms.py --policy runs/fog_example/policy --seeds 10
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="directory written by FoGTrainer.save / FoGPolicy.save")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--max-steps", type=int, default=300)
    args = p.parse_args()
    from fog_trainer import FoGPolicy
    from wm_gym.pusht import GOAL_POSE, PushTGroundTruth, _reach_penalty, wrap_angle

    policy = FoGPolicy.load(args.policy)
    gt = PushTGroundTruth(int(policy.surrogate.config.image_size), args.max_steps)
    out = {}
    for name, pol in (("trained", policy), ("untrained", policy.untrained(seed=0))):
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            frame, info = gt.reset(seed=seed)
            pol.reset()
            done = False
            while not done:
                a = pol.act(frame)
                frame, _, term, trunc, info = gt.step(a)
                s = info["state"]
                pos = np.linalg.norm(s[2:4] - GOAL_POSE[:2]) / 256.0
                ang = abs(float(wrap_angle(s[4] - GOAL_POSE[2]))) / np.pi
                rows.append([pos, ang, float(_reach_penalty(s[0:2], s[2:4], 60.0)),
                             float(np.linalg.norm(a - s[2:4])), float(info["contact"])])
                done = term or trunc
        m = np.mean(rows, 0)
        out[name] = {"block_position_error": m[0], "block_angle_error": m[1], "agent_to_block_penalty": m[2],
                     "action_to_block_px": m[3], "contact_fraction": m[4], "steps": len(rows)}
    gt.close()
    out["settings"] = vars(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
