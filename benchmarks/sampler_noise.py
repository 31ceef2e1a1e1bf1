"""How much of the global model's open-loop error is its sampler noise, and what antithetic pairs buy.

A 1-step EDM sampler returns the denoiser's estimate of the conditional mean of the next frame, but that
estimate still depends on the noise it is given (the network does not cancel EDM's ``c_skip * x`` term,
nor ignore the noise, exactly). Push-T's physics is deterministic, so that dependence is error. This
script rolls the global model open loop on held-out real episodes under the recorded actions (the
validation of ``wm-gym train-global``: pixel MSE to the true frames at each horizon) with

* ``one_draw``: the sampler as in training, one noise draw per step;
* ``antithetic``: the mean of the samples from ``eps`` and ``-eps`` (``EulerSampler(antithetic=True)``);
* ``mean_of_N``: the mean of N independent draws per step (a reference for the noise-free mean; N x cost);

and times one batched step (64 envs, reward model included) for the first two. The same starts and the
same noise stream for every mode. ``--min-change M`` overrides the sampler's ``min_change`` (0: off; the
printed bias is the mean frame error at the longest horizon, model - truth: a drifting colour shows there).

    python benchmarks/sampler_noise.py --global-model wm_gym/assets/pusht/global_model --data data/pusht64 \
        --json benchmarks/results/sampler_noise.json
    python benchmarks/sampler_noise.py --smoke --global-model CKPT/global_model --data DATA    # seconds
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json

import torch

from wm_gym.data import load_split
from wm_gym.models.global_model import GlobalModel
from wm_gym.models.sampler import EulerSampler
from wm_gym.train_global import open_loop_eval, open_loop_starts

from global_speed import time_model  # noqa: E402  (a sibling script: benchmarks/ is on sys.path when run)


class MeanOfDraws(EulerSampler):
    """The mean of ``draws`` independent samples per call (a reference, ``draws`` times the cost)."""

    def __init__(self, base: EulerSampler, draws: int):
        cfg = base.config()
        cfg["antithetic"] = False
        super().__init__(**cfg)
        self.draws = draws

    def sample(self, denoiser, obs, act, generator=None, num_steps=None, noise=None):
        out = super().sample(denoiser, obs, act, generator=generator, num_steps=num_steps, noise=noise)
        for _ in range(self.draws - 1):
            out = out + super().sample(denoiser, obs, act, generator=generator, num_steps=num_steps)
        return out / self.draws


def samplers(base: EulerSampler, draws: list[int]) -> dict[str, EulerSampler]:
    modes = {"one_draw": base.replace(antithetic=False), "antithetic": base.replace(antithetic=True)}
    modes.update({f"mean_of_{n}": MeanOfDraws(base, n) for n in draws})
    return modes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--global-model", required=True, help="a saved GlobalModel directory")
    p.add_argument("--data", required=True, help="dataset directory (its val split is used)")
    p.add_argument("--starts", type=int, default=128, help="held-out open-loop starts")
    p.add_argument("--horizons", default="1,4,16", help="comma-separated horizons")
    p.add_argument("--draws", default="2,16", help="N of the mean_of_N reference modes")
    p.add_argument("--min-change", type=float, default=-1.0,
                   help="the sampler's min_change for every mode (-1: the model's setting; 0: off)")
    p.add_argument("--seed", type=int, default=0, help="seeds the starts and the noise")
    p.add_argument("--batch", type=int, default=64, help="envs per timed step")
    p.add_argument("--repeats", type=int, default=10, help="timed steps per mode")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--smoke", action="store_true", help="few starts, short horizons (seconds)")
    args = p.parse_args(argv)
    if args.smoke:
        args.starts, args.horizons, args.draws, args.batch, args.repeats = 4, "1,2", "2", 4, 1
    torch.set_num_threads(args.threads)
    horizons = [int(h) for h in args.horizons.split(",")]
    gm = GlobalModel.from_pretrained(args.global_model, device="cpu")
    if args.min_change >= 0:
        gm.sampler = gm.sampler.replace(min_change=args.min_change)
    _, episodes = load_split(args.data, "val")
    starts = open_loop_starts(episodes, args.starts, max(horizons), gm.context, args.seed)
    shipped = gm.sampler
    rows = {}
    for name, sampler in samplers(shipped, [int(n) for n in args.draws.split(",")]).items():
        gm.sampler = sampler
        logs = open_loop_eval(gm, episodes, starts, 0, args.seed, horizons=horizons)
        row = {f"mse_h{h}": logs[f"mse_h{h}"] for h in horizons}
        row.update({f"mse_changed_h{h}": logs[f"mse_changed_h{h}"] for h in horizons})
        row.update({f"bias_h{h}": logs[f"bias_h{h}"] for h in horizons})
        if not isinstance(sampler, MeanOfDraws):
            row["env_steps_per_s"] = time_model(gm, args.batch, sampler.num_steps, args.repeats)["env_steps_per_s"]
        rows[name] = row
        print(f"{name:12} " + "  ".join(f"h{h} mse {row[f'mse_h{h}']:.5f}" for h in horizons)
              + f"  (h{max(horizons)} bias {row[f'bias_h{max(horizons)}']:+.4f})"
              + (f"  {row['env_steps_per_s']:.0f} env steps/s (batch {args.batch})" if "env_steps_per_s" in row else ""),
              flush=True)
    gm.sampler = shipped
    copy = {f"mse_copy_h{h}": logs[f"mse_copy_h{h}"] for h in horizons}
    print("copy-last    " + "  ".join(f"h{h} mse {copy[f'mse_copy_h{h}']:.5f}" for h in horizons))
    result = {"global_model": args.global_model, "data": args.data, "starts": len(starts), "seed": args.seed,
              "threads": args.threads, "batch": args.batch, "model_sampler": shipped.config(), "modes": rows,
              "copy_last": copy}
    if args.json:
        from wm_gym.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
