"""World-model return of the FoG example's policy before and after training, with deterministic actions
(the tanh of the mean, what the ground-truth evaluation uses) and with the stochastic training policy.

64 envs x 300 steps (one full episode each) from the same seeded starts; prints JSON (mean episode return).

    python examples/fog_pusht.py --out runs/fog_example
    python benchmarks/fog_before_after.py --checkpoint runs/fog_example/checkpoint.pt > OUT.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/fog_example/checkpoint.pt", help="FoGTrainer checkpoint")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=123, help="reset seed of the evaluation episodes")
    args = p.parse_args(argv)
    import torch

    from fog_trainer import FoGConfig, FoGTrainer

    # a checkpoint from before anchored actions existed trained absolute targets
    config = FoGConfig(**{"action_offset": 0.0, **torch.load(args.checkpoint, map_location="cpu", weights_only=False)["config"]})
    config.run_dir, config.tensorboard = tempfile.mkdtemp(), False
    trainer = FoGTrainer(config.env_id, config)  # the same seed: the actor before training
    out = {}
    for stage in ("untrained", "trained"):
        if stage == "trained":
            trainer.load_checkpoint(args.checkpoint)
        for det in (True, False):
            r = trainer.evaluate_world_model(args.steps, deterministic=det, seed=args.seed)
            out[f"{stage}_{'deterministic' if det else 'stochastic'}"] = r["mean_return"]
    out["settings"] = {"checkpoint": args.checkpoint, "steps": args.steps, "seed": args.seed,
                       "num_envs": trainer.num_envs}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
