"""Evaluate a saved FoG policy in the real gym-pusht beside the random and the scripted (privileged) policies.

    python benchmarks/ground_truth_eval.py --policy runs/fog_example/policy --seeds 50 --json OUT.json

Every policy plays one 300-step episode per seed (seeds 0..N-1, the same for all policies); prints and
writes mean max coverage, mean final coverage, success rate and the mean return of each reward label.
Policies: the trained one (``fog``), the same network before training (``fog_untrained``: a freshly
initialised actor on the same encoder, i.e. what learning started from; its deterministic action is the
middle of the workspace), uniform random targets, and the scripted pusher that reads the true state.
The FoG policies act with the tanh of the mean; ``fog_sampled`` and ``fog_untrained_sampled`` are the same
two networks acting with sampled actions (the stochastic policy FoG optimises; noise seeded per episode).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="directory written by FoGTrainer.save / FoGPolicy.save")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    from fog_trainer import FoGPolicy, RandomPolicy, SampledPolicy, ScriptedPusher, evaluate_in_ground_truth

    policy = FoGPolicy.load(args.policy)
    untrained = policy.untrained(seed=0)
    kw = dict(seeds=range(args.seeds), image_size=int(policy.surrogate.config.image_size), max_steps=args.max_steps)
    results = {name: evaluate_in_ground_truth(pol, **kw) for name, pol in
               (("fog", policy), ("fog_untrained", untrained), ("fog_sampled", SampledPolicy(policy)),
                ("fog_untrained_sampled", SampledPolicy(untrained)), ("random", RandomPolicy()),
                ("scripted_privileged", ScriptedPusher()))}
    summary = {name: {k: v for k, v in r.items() if not isinstance(v, (list, tuple))} for name, r in results.items()}
    summary["settings"] = {"policy": args.policy, "seeds": args.seeds, "max_steps": args.max_steps}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
