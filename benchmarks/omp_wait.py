"""How OpenMP's wait policy and the torch thread count change wm-gym's speed, on a free and on a busy CPU.

torch's CPU kernels run in OpenMP parallel regions. Between regions the worker threads either spin
(``OMP_WAIT_POLICY=ACTIVE``; GNU OpenMP's default, unset, spins for a while first) or sleep
(``PASSIVE``, what ``import wm_gym`` sets when the variable is unset). Spinning threads answer at once,
which pays when the cores are free and the kernels are small (a world-model step at a few envs, the
surrogate's Jacobians), and starves everything when another job wants the same cores. This script
measures both, each setting in a fresh process (the policy is read when the OpenMP runtime loads):

* the env's torch fast path (``step_tensor``, Jacobians included) at 16 and 64 envs, env steps/s;
* the surrogate's batched Jacobians for 256 states, ms;

first on a free CPU, then (``--busy``) beside a 2-thread matrix-product loop in another process.

    python benchmarks/omp_wait.py --busy > benchmarks/results/omp_wait.md
    python benchmarks/omp_wait.py --smoke          # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = [("PASSIVE", 1), ("PASSIVE", 2), ("ACTIVE", 1), ("ACTIVE", 2), ("unset", 2)]


def worker(args) -> None:
    import numpy as np
    import torch  # first: OpenMP reads OMP_WAIT_POLICY when torch loads it, before wm_gym's setdefault

    import gymnasium as gym
    import wm_gym  # noqa: F401
    from wm_gym.envs import WorldModel

    torch.set_num_threads(args.threads)
    res = {}
    for n in args.envs:
        env = gym.make_vec("WM-PushT-v0", num_envs=n, obs_type="latent", checkpoint=args.checkpoint,
                           precision=args.precision).unwrapped
        env.reset_tensor(seed=0)
        a = torch.as_tensor(np.random.default_rng(0).uniform(0, 512, (n, 2)).astype(np.float32))
        for _ in range(2):
            env.step_tensor(a)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            env.step_tensor(a)
        res[f"fast_path_{n}_steps_per_s"] = args.steps * n / (time.perf_counter() - t0)
    sur = WorldModel.load(args.checkpoint).surrogate
    z = sur._norm(torch.randn(256, sur.latent_dim))
    act = torch.rand(256, sur.action_dim) * 2 - 1
    times = []
    with torch.no_grad():
        for i in range(args.steps + 3):
            t0 = time.perf_counter()
            sur.jacobians(z, act)
            if i >= 3:
                times.append(1e3 * (time.perf_counter() - t0))
    res["jacobians_256_ms"] = min(times)
    print(json.dumps(res))


def run(policy: str, threads: int, args) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)  # "unset": the worker imports torch (and so OpenMP) before wm_gym sets it
    if policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--steps", str(args.steps),
           "--precision", args.precision, "--envs", ",".join(map(str, args.envs))]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--precision", default="float32", help="the env's precision argument")
    p.add_argument("--steps", type=int, default=15, help="timed steps (and Jacobian calls) per measurement")
    p.add_argument("--busy", action="store_true", help="also measure beside a 2-thread matrix-product loop")
    p.add_argument("--timeout", type=float, default=600, help="seconds per measurement before giving up")
    p.add_argument("--smoke", action="store_true", help="one setting, 2 envs, 2 steps")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--envs", default="16,64", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.envs = [int(n) for n in str(args.envs).split(",")]
    if args.worker:
        worker(args)
        return
    settings = SETTINGS
    if args.smoke:
        settings, args.envs, args.steps = [("PASSIVE", 1)], [2], 2
    loads = ["free"] + (["busy"] if args.busy else [])
    keys = [f"fast_path_{n}_steps_per_s" for n in args.envs] + ["jacobians_256_ms"]
    print(f"env precision {args.precision}; {os.cpu_count()} CPU cores; 'busy' = beside a 2-thread matrix-product "
          f"loop in another process (OMP_WAIT_POLICY=PASSIVE)\n")
    print("| CPU | OMP_WAIT_POLICY | torch threads | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for load in loads:
        hog = None
        if load == "busy":
            code = ("import torch, time\ntorch.set_num_threads(2)\na = torch.randn(512, 512)\n"
                    "while True: a @ a\n")
            hog = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
            time.sleep(2)
        try:
            for policy, threads in settings:
                try:
                    res = run(policy, threads, args)
                    cells = [f"{res[k]:.1f}" if "steps" in k else f"{res[k]:.2f}" for k in keys]
                except subprocess.TimeoutExpired:
                    cells = [f"> {args.timeout:.0f} s, stopped"] + [""] * (len(keys) - 1)
                print(f"| {load} | {policy} | {threads} | " + " | ".join(cells) + " |", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


if __name__ == "__main__":
    main()
