"""Env steps per second: gym-pusht (state, pixels), the raw batched global model, WM-PushT-v0 single and batched.

    python benchmarks/env_speed.py                 # shipped model, 2 torch threads
    python benchmarks/env_speed.py --smoke --checkpoint DIR

Prints one JSON object; ``vector_over_raw_64`` is the vector env's speed over the raw batched global
model step at 64 envs (target >= 0.9), ``startup_s`` the time of import + gym.make + first reset in a
fresh process (target <= 5 s). The world-model rows are measured once per ``--precisions`` entry (the env's
``precision`` argument); rows of a precision other than float32 carry its name as a suffix
(``wm_vector_env_64_bfloat16``). ``resolved_precisions`` says what ``auto`` became on this machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch


def _rate(fn, steps: int, per_call: int = 1, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps * per_call / (time.perf_counter() - t0)


def gym_pusht_rate(obs_type: str, steps: int) -> float:
    import gymnasium as gym
    import gym_pusht  # noqa: F401

    kw = {"observation_width": 64, "observation_height": 64} if obs_type == "pixels" else {}
    env = gym.make("gym_pusht/PushT-v0", obs_type=obs_type, **kw)
    env.reset(seed=0)
    env.action_space.seed(0)

    def step():
        _, _, te, tr, _ = env.step(env.action_space.sample())
        if te or tr:
            env.reset()

    return _rate(step, steps)


def startup_seconds(checkpoint: str | None) -> float:
    code = (
        "import time; t=time.perf_counter(); import gymnasium as gym, wm_gym; "
        f"env=gym.make('WM-PushT-v0', checkpoint={checkpoint!r}); env.reset(seed=0); "
        "print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: shipped)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="batched steps per measurement")
    p.add_argument("--precisions", default="float32,bfloat16",
                   help="comma-separated global-model precisions to time (float32, bfloat16, auto)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import gymnasium as gym

    import wm_gym  # noqa: F401
    from wm_gym.envs import WorldModel
    from wm_gym.models.global_model import resolve_precision

    steps = 2 if args.smoke else args.steps
    res: dict[str, float] = {"threads": args.threads}
    res["gym_pusht_state"] = gym_pusht_rate("state", 50 if args.smoke else 3000)
    res["gym_pusht_pixels_64"] = gym_pusht_rate("pixels", 20 if args.smoke else 1000)

    wm = WorldModel.load(args.checkpoint)
    K, H = wm.context, wm.task.image_size
    res["resolved_precisions"] = {}
    big = 2 if args.smoke else 64
    for precision in args.precisions.split(","):
        resolved = resolve_precision(precision, wm.device)
        res["resolved_precisions"][precision] = resolved
        sfx = "" if precision == "float32" else f"_{precision}"
        for n in ([2] if args.smoke else [1, 8, 64]):
            obs = torch.rand(n, K, 3, H, H) * 2 - 1
            act = torch.rand(n, K, 2) * 2 - 1
            res[f"raw_global_model_{n}{sfx}"] = _rate(lambda: wm.global_model.step(obs, act, precision=precision),
                                                      steps, n)
            kw = {"num_envs": n, "checkpoint": args.checkpoint, "precision": precision}
            venv = gym.make_vec("WM-PushT-v0", **kw)
            venv.reset(seed=0)
            a = np.random.default_rng(0).uniform(0, 512, (n, 2)).astype(np.float32)
            res[f"wm_vector_env_{n}{sfx}"] = _rate(lambda: venv.step(a), steps, n)
            lat = gym.make_vec("WM-PushT-v0", obs_type="latent", **kw).unwrapped
            lat.reset_tensor(seed=0)
            at = torch.as_tensor(a)
            res[f"wm_fast_path_with_jacobians_{n}{sfx}"] = _rate(lambda: lat.step_tensor(at), steps, n)
        env = gym.make("WM-PushT-v0", checkpoint=args.checkpoint, precision=precision)
        env.reset(seed=0)
        a1 = np.array([256.0, 256.0], np.float32)
        res[f"wm_single_env{sfx}"] = _rate(lambda: env.step(a1), steps * (1 if args.smoke else 5))
        res[f"vector_over_raw_{big}{sfx}"] = res[f"wm_vector_env_{big}{sfx}"] / res[f"raw_global_model_{big}{sfx}"]
    res["startup_s"] = startup_seconds(args.checkpoint)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}, indent=2))


if __name__ == "__main__":
    main()
