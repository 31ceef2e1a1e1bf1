"""Speed of the global world model: env steps/s of a batched step, beside gym-pusht's pixel env.

One batched step = the few-step Euler sampler (``num_steps`` denoiser calls) + the reward model, under
``torch.inference_mode``, for ``--batch`` envs. Prints one line per configuration and gym-pusht's
steps/s (one env, pixel observations at the same resolution) measured in the same run.

    python benchmarks/global_speed.py                       # the default architecture, random weights
    python benchmarks/global_speed.py --model runs/global/global_model
    python benchmarks/global_speed.py --compare             # the architecture table of the report
    python benchmarks/global_speed.py --train --threads 1   # training samples/s, float32 vs bfloat16
    python benchmarks/global_speed.py --smoke               # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

# OpenMP spin-waiting makes multi-thread torch pathologically slow on a shared CPU (must precede torch)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wm_gym.models.denoiser import Denoiser  # noqa: E402
from wm_gym.models.global_model import GlobalModel  # noqa: E402
from wm_gym.models.reward_model import RewardModel  # noqa: E402
from wm_gym.pusht import PUSHT  # noqa: E402


def build(widths: tuple[int, ...], image_size: int, patch: int = 4, action_planes: bool = True) -> GlobalModel:
    task = dataclasses.replace(PUSHT, image_size=image_size)
    den = Denoiser(image_size=image_size, block_out_channels=widths, patch=patch, action_planes=action_planes)
    rew = RewardModel(image_size=image_size, num_rewards=len(task.reward_types))
    return GlobalModel(den, rew, task)


def time_model(model: GlobalModel, batch: int, num_steps: int, repeats: int, channels_last: bool = False) -> dict:
    S, K = model.image_size, model.context
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    obs = torch.rand(batch, K, 3, S, S) * 2 - 1
    act = torch.rand(batch, K, 2) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            model.step(obs, act, generator=gen, num_steps=num_steps)
            if i >= 2:  # the first calls build oneDNN primitives
                times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    return {"num_steps": num_steps, "batch": batch, "ms_per_step": 1000 * dt, "env_steps_per_s": batch / dt,
            "params_M": sum(p.numel() for p in model.denoiser.parameters()) / 1e6}


def time_training(model: GlobalModel, batch: int, repeats: int, precision: str) -> dict:
    """Denoiser training throughput (EDM loss, backward, AdamW step) at ``precision`` (``train-global --precision``)."""
    from wm_gym.models.global_model import precision_context

    den = model.denoiser.train()
    opt = torch.optim.AdamW(den.parameters(), lr=1e-5)
    S, K = model.image_size, model.context
    g = torch.Generator().manual_seed(0)
    data = {"obs": torch.rand(batch, K, 3, S, S, generator=g) * 2 - 1, "act": torch.rand(batch, K, 2, generator=g) * 2 - 1,
            "next_obs": torch.rand(batch, 3, S, S, generator=g) * 2 - 1}
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        with precision_context(precision, "cpu"):
            loss, _ = den.loss(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    den.eval()
    dt = statistics.median(times)
    return {"precision": precision, "batch": batch, "ms_per_train_step": 1000 * dt, "train_samples_per_s": batch / dt}


def gym_pusht_speed(image_size: int, steps: int) -> float:
    from gym_pusht.envs.pusht import PushTEnv

    env = PushTEnv(obs_type="pixels", observation_width=image_size, observation_height=image_size)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(0, 512, size=2))
        if term or trunc:
            env.reset()
    env.close()
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="a saved GlobalModel directory (default: random weights)")
    p.add_argument("--widths", default="32,64,64", help="UNet widths of the random-weight model")
    p.add_argument("--batch", type=int, default=64, help="envs stepped together")
    p.add_argument("--image-size", type=int, default=64, help="frame size of the random-weight model")
    p.add_argument("--num-steps", type=int, default=0, help="sampler steps (0: the model's default)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--repeats", type=int, default=10, help="timed batched steps (median reported)")
    p.add_argument("--compare", action="store_true", help="time a table of architectures and sampler steps")
    p.add_argument("--train", action="store_true",
                   help="time denoiser training steps in float32 and bfloat16 (train-global --precision) instead")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, runs in seconds")
    p.add_argument("--json", action="store_true", help="print JSON lines only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.batch, args.repeats, args.image_size = 8, 2, 32

    if args.train:
        model = GlobalModel.from_pretrained(args.model, device="cpu") if args.model else build(
            tuple(int(w) for w in args.widths.split(",")), args.image_size)
        for precision in ("float32", "bfloat16"):
            r = time_training(model, args.batch, args.repeats, precision)
            print(json.dumps(r) if args.json else f"training, {precision}, batch {r['batch']}, {args.threads} threads: "
                  f"{r['ms_per_train_step']:.0f} ms/step, {r['train_samples_per_s']:.0f} samples/s")
        return
    rows = []
    if args.compare and not args.model:
        grid = [((64, 128, 128), False), ((48, 96, 96), True), ((48, 96), True), ((32, 64, 64), True),
                ((32, 64), True)]
        for widths, planes in grid:
            model = build(widths, args.image_size, action_planes=planes)
            for n in (1, 2, 3):
                r = time_model(model, args.batch, n, args.repeats)
                rows.append({"widths": list(widths), "action_planes": planes, "channels_last": False, **r})
        model = build((32, 64, 64), args.image_size)
        r = time_model(model, args.batch, 3, args.repeats, channels_last=True)
        rows.append({"widths": [32, 64, 64], "action_planes": True, "channels_last": True, **r})
    else:
        if args.model:
            model = GlobalModel.from_pretrained(args.model, device="cpu")
            widths = model.denoiser.config.block_out_channels
        else:
            widths = tuple(int(w) for w in args.widths.split(","))
            model = build(widths, args.image_size)
        n = args.num_steps or model.sampler.num_steps
        rows.append({"widths": list(widths), "channels_last": False, **time_model(model, args.batch, n, args.repeats)})

    gym_sps = gym_pusht_speed(args.image_size, 50 if args.smoke else 500)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"widths={r['widths']!s:16} planes={r.get('action_planes', True)!s:5} "
                  f"channels_last={r['channels_last']!s:5} steps={r['num_steps']} params={r['params_M']:.2f}M "
                  f"batch={r['batch']}: {r['ms_per_step']:7.1f} ms/step  {r['env_steps_per_s']:7.0f} env steps/s")
    line = {"gym_pusht_pixels_steps_per_s": gym_sps, "image_size": args.image_size, "threads": args.threads}
    print(json.dumps(line) if args.json else f"gym-pusht pixels ({args.image_size}x{args.image_size}, one env): "
          f"{gym_sps:.0f} steps/s")


if __name__ == "__main__":
    main()
