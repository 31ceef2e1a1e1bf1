"""Scripted reference policies on the surrogate's state read-out, scored in the world model and in gym-pusht.

What can simple behaviours reach under the action parameterisation FoG and PPO-latent learn with? Each
policy reads an *estimated* state from the latent (the surrogate's linear state head: agent xy, block xy,
block angle) and picks a target; the anchored ones move the target at most ``--max-offset`` px per
coordinate from the estimated agent position, as an anchored actor does (``FoGConfig.action_offset``).
They act on latents in the world model and on frames (through the surrogate's encoder) in gym-pusht, so
they are frames-only policies like the learned ones, not privileged.

* ``hold``: target = the agent (about what an untrained anchored actor does);
* ``center``: walk to the middle of the workspace (where the goal T lies);
* ``to_block``: walk to the block's centre (and push it wherever that goes);
* ``push``: walk to the point behind the block on the side away from the goal (``wm_gym.pusht.push_point``),
  then push towards the goal;
* ``center_absolute``: the absolute target (256, 256) at every step (what an untrained absolute actor does).

The world-model score is :class:`fog_trainer.evaluate.WorldModelEvaluator` with the sample-efficiency
benchmark's settings (32 fixed starts, seed 20000, 300 steps), so the numbers sit beside its eval curves.

    python benchmarks/reference_policies.py --json benchmarks/results/reference_policies.json
    python benchmarks/reference_policies.py --smoke --checkpoint DIR      # seconds (test suite)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import time

import numpy as np
import torch

from wm_gym.pusht import GOAL_POSE, push_point

RULES = ("hold", "center", "to_block", "push", "center_absolute")


class LatentScript:
    """A scripted rule on the state read from a latent; ``act_latent`` (world model) and ``reset``/``act`` (frames)."""

    def __init__(self, wm, rule: str, max_offset: float = 48.0, push_radius: float = 25.0):
        from wm_gym.data import FrameHistory

        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        if wm.surrogate.state_head is None:
            raise ValueError("scripted policies read the surrogate's state head; this surrogate has none (state_dim=0)")
        self.wm, self.rule, self.max_offset, self.push_radius = wm, rule, max_offset, push_radius
        self.low, self.high = float(wm.task.action_low), float(wm.task.action_high)
        self.history = FrameHistory(wm.context)

    @torch.no_grad()
    def state(self, z: np.ndarray) -> np.ndarray:
        """Estimated Push-T states (B, 5): agent xy, block xy (env units), block angle (rad)."""
        from wm_gym.train_surrogate import state_from_features

        f = self.wm.surrogate.state_head(torch.as_tensor(np.asarray(z, np.float32), device=self.wm.device)).cpu().numpy()
        return state_from_features(f, self.wm.task)

    def act_latent(self, z: np.ndarray) -> np.ndarray:
        s = self.state(z)
        agent, block, goal = s[:, :2], s[:, 2:4], GOAL_POSE[:2]
        if self.rule == "center_absolute":
            return np.tile(goal, (len(s), 1)).astype(np.float32)
        if self.rule == "hold":
            aim = agent
        elif self.rule == "center":
            aim = np.broadcast_to(goal, agent.shape)
        elif self.rule == "to_block":
            aim = block
        else:  # push: get behind the block, then push through it towards the goal
            behind = push_point(s)
            to_goal = goal - block
            to_goal = to_goal / (np.linalg.norm(to_goal, axis=1, keepdims=True) + 1e-6)
            ready = np.linalg.norm(agent - behind, axis=1, keepdims=True) < self.push_radius
            aim = np.where(ready, agent + self.max_offset * to_goal, behind)
        target = agent + np.clip(aim - agent, -self.max_offset, self.max_offset)
        return np.clip(target, self.low, self.high).astype(np.float32)

    def reset(self) -> None:
        self.history.reset()

    @torch.no_grad()
    def act(self, frame: np.ndarray) -> np.ndarray:
        from wm_gym.data import frames_to_tensor

        x = frames_to_tensor(self.history.push(frame))[None].to(self.wm.device)
        return self.act_latent(self.wm.surrogate.encode(x).cpu().numpy())[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: shipped)")
    p.add_argument("--reward-type", default="dense")
    p.add_argument("--max-offset", type=float, default=48.0, help="anchored rules: px per coordinate per step")
    p.add_argument("--eval-envs", type=int, default=32)
    p.add_argument("--eval-seed", type=int, default=20_000, help="as benchmarks/sample_efficiency.py's EVAL_SEED")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--gt-seeds", type=int, default=20, help="gym-pusht episodes (seeds 1000, 1001, ...)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--smoke", action="store_true", help="a few steps (test suite)")
    args = p.parse_args()
    if args.smoke:
        args.eval_envs, args.max_steps, args.gt_seeds = 2, 4, 1

    from fog_trainer.evaluate import WorldModelEvaluator, evaluate_in_ground_truth
    from wm_gym.envs import WorldModel

    wm = WorldModel.load(args.checkpoint)
    evaluator = WorldModelEvaluator(num_envs=args.eval_envs, seed=args.eval_seed, reward_type=args.reward_type,
                                    checkpoint=args.checkpoint, max_steps=args.max_steps)
    results: dict = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    for rule in RULES:
        t0 = time.time()
        policy = LatentScript(wm, rule, args.max_offset)
        world = evaluator(policy.act_latent)
        gt = evaluate_in_ground_truth(policy, seeds=range(1000, 1000 + args.gt_seeds), max_steps=args.max_steps,
                                      image_size=wm.task.image_size)
        results[rule] = {"wm_eval_return": world["mean_return"], "wm_eval_std": world["std_return"],
                         "gt_mean_return_dense": gt["mean_return_dense"], "gt_mean_max_coverage": gt["mean_max_coverage"],
                         "gt_success_rate": gt["success_rate"], "seconds": time.time() - t0}
        print(f"{rule:16s} world model {world['mean_return']:8.1f}   gym-pusht dense {gt['mean_return_dense']:8.1f}  "
              f"max coverage {gt['mean_max_coverage']:.3f}  success {gt['success_rate']:.2f}", flush=True)
    evaluator.close()
    if args.json:
        from wm_gym.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
