"""Train SB3 PPO inside the world model (WM-PushT-v0), then evaluate it in the real gym-pusht.

    python examples/ppo_pusht.py                      # latent MlpPolicy, ~15 min on 2 CPU cores
    python examples/ppo_pusht.py --obs-type pixels    # CnnPolicy on 64x64 frames
    python examples/ppo_pusht.py --env gym-pusht --obs-type state   # reference: PPO on the real simulator
    python examples/ppo_pusht.py --smoke              # a few hundred steps (used by the tests)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baselines.ground_truth import PPOTruthPolicy  # noqa: E402
from baselines.ppo import PPOArgs, PPOFramePolicy, train_ppo  # noqa: E402
from fog_trainer import FoGConfig  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="WM-PushT-v0", choices=["WM-PushT-v0", "gym-pusht"],
                   help="train in the world model, or (reference) in the real simulator")
    p.add_argument("--obs-type", default="latent", choices=["latent", "pixels", "state"],
                   help="WM-PushT-v0: latent or pixels; gym-pusht: state or pixels")
    p.add_argument("--action-offset", type=float, default=None,
                   help="anchored actions at most this far from the agent (WM-PushT-v0: latent only; default: "
                        f"FoG's, {FoGConfig.action_offset:g} px, for latent; 0 = absolute targets otherwise)")
    p.add_argument("--total-timesteps", type=int, default=100_000)
    p.add_argument("--eval-seeds", type=int, default=20, help="ground-truth gym-pusht episodes to evaluate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: shipped)")
    p.add_argument("--out", default="runs/ppo_example")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    a = p.parse_args(argv)
    if a.action_offset is None:
        a.action_offset = FoGConfig.action_offset if a.obs_type == "latent" else 0.0
    args = PPOArgs(env=a.env, obs_type=a.obs_type, action_offset=a.action_offset,
                   total_timesteps=256 if a.smoke else a.total_timesteps,
                   num_envs=8 if a.smoke else 64, n_steps=16 if a.smoke else 32, batch_size=64 if a.smoke else 512,
                   n_epochs=2 if a.smoke else 10, device=a.device, checkpoint=a.checkpoint, out=a.out, seed=a.seed,
                   progress_bar=not a.smoke)
    model, rows, out = train_ppo(args)
    print(f"training return (mean of last 100 episodes): {rows[-1][1] if rows else float('nan'):.3f}")
    from fog_trainer.evaluate import evaluate_in_ground_truth

    if a.env == "gym-pusht":
        policy, image_size = PPOTruthPolicy(model, a.obs_type, action_offset=a.action_offset), 64
    else:
        policy = PPOFramePolicy(model, a.obs_type, checkpoint=a.checkpoint, device=a.device, action_offset=a.action_offset)
        image_size = policy.wm.task.image_size
    res = evaluate_in_ground_truth(policy, seeds=range(2 if a.smoke else a.eval_seeds), image_size=image_size,
                                   max_steps=10 if a.smoke else 300, video_path=str(out / "episode.mp4"))
    summary = {k: v for k, v in res.items() if not isinstance(v, (list, tuple))}
    print("ground-truth gym-pusht:", json.dumps(summary))
    (out / "ground_truth_eval.json").write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
