"""Time the surrogate's batched Jacobians (df/dz, df/da, dr/dz, dr/da) computed six ways.

* ``analytic``    ``Surrogate.jacobians`` default: for a one-hidden-layer dynamics MLP the batch of Jacobians
                  is one (B, w) x (w, d*(d+m)) matrix product plus rank-one corrections (else = generic)
* ``analytic-bf16-product`` the same with its one big product in bfloat16 (``precision="bfloat16"``)
* ``analytic-generic`` closed-form forward mode layer by layer through Linear -> LayerNorm -> SiLU
* ``vmap-jacrev`` ``torch.func.vmap(jacrev)``
* ``vmap-jacfwd`` ``torch.func.vmap(jacfwd)``
* ``autograd``    plain autograd, d batched vector-Jacobian products (``is_grads_batched``)

Prints a markdown table (min and median over repeats; the machine may be shared, the min is the cleaner
number). At these sizes the elementwise kernels, not the matrix products, take most of the time, and with
``OMP_WAIT_POLICY=PASSIVE`` (wm_gym's default, see ``wm_gym/__init__.py``) every parallel region pays a
thread wake-up: one thread is then faster than two. ``--threads 1,2`` times both. Usage::

    python benchmarks/jacobian_speed.py                # batch 256, d=64, m=2, 1 and 2 threads; the shipped surrogate first
    python benchmarks/jacobian_speed.py --smoke        # a few seconds, tiny sizes
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import statistics
import time

import torch

from wm_gym.envs.core import quiet_diffusers
from wm_gym.models.surrogate import Linearization, Surrogate


def autograd_jacobians(model: Surrogate, z: torch.Tensor, a: torch.Tensor, k: int = 0) -> Linearization:
    """Reference: d batched VJPs through the ordinary forward pass."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        a = a.detach().requires_grad_(True)
        nz = model.next(z, a)
        d = nz.shape[-1]
        eye = torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, z.shape[0], d)
        dfdz, dfda = torch.autograd.grad(nz, (z, a), eye, is_grads_batched=True)
        r = model.reward(z, a)[:, k]
        drdz, drda = torch.autograd.grad(r.sum(), (z, a))
    return Linearization(z, a, nz.detach(), r.detach(), dfdz.permute(1, 0, 2), dfda.permute(1, 0, 2), drdz, drda)


def time_call(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return min(times), statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to time")
    p.add_argument("--device", default="cpu")
    p.add_argument("--surrogate", default=None,
                   help="also time this saved surrogate (default: the shipped one, wm_gym/assets/pusht/surrogate)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 repeats (seconds)")
    args = p.parse_args(argv)
    threads = [int(t) for t in str(args.threads).split(",")]
    torch.manual_seed(0)
    if args.smoke:
        args.batch, args.latent_dim, args.repeats = 8, 16, 2
    # (dynamics_hidden, dynamics_layers): the default surrogate, a narrower and a wider one, and a deeper one
    # near DESIGN.md's 100k-param MLP
    configs = [(32, 1)] if args.smoke else [(256, 1), (128, 1), (512, 1), (256, 2)]
    dtypes = [torch.float32] if args.smoke else [torch.float32, torch.float64]
    methods = {
        "analytic": lambda m, z, a: m.jacobians(z, a),
        "analytic-bf16-product": lambda m, z, a: m.jacobians(z, a, precision="bfloat16"),
        "analytic-generic": lambda m, z, a: m.jacobians(z, a, method="analytic-generic"),
        "vmap-jacrev": lambda m, z, a: m.jacobians(z, a, method="vmap-jacrev"),
        "vmap-jacfwd": lambda m, z, a: m.jacobians(z, a, method="vmap-jacfwd"),
        "autograd": autograd_jacobians,
    }
    print(f"batch {args.batch}, d={args.latent_dim}, m=2, device {args.device}, {args.repeats} repeats, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
    print("| dynamics MLP | params (dyn + rew) | dtype | method | threads | min ms | median ms | max abs err vs analytic |")
    print("|---|---|---|---|---|---|---|---|")
    models = []
    if not args.smoke:
        from pathlib import Path

        path = Path(args.surrogate or Path(__file__).resolve().parent.parent / "wm_gym/assets/pusht/surrogate")
        with quiet_diffusers():
            shipped = Surrogate.from_pretrained(path).float()
        c = shipped.config
        if c.latent_dim == args.latent_dim:  # the trained weights, reward head included
            models.append((f"shipped: {c.dynamics_layers}x{c.dynamics_hidden}, reward {c.reward_layers}x{c.reward_hidden}",
                           shipped))
    for hidden, layers in configs:
        model = Surrogate(image_size=16, context=1, latent_dim=args.latent_dim, encoder_channels=(8,),
                          dynamics_hidden=hidden, dynamics_layers=layers,
                          reward_hidden=hidden if not args.smoke else 32)
        torch.nn.init.normal_(model.dynamics.out.weight, std=0.05)
        models.append((f"{layers}x{hidden}", model))
    for label, model in models:
        n_params = sum(q.numel() for q in model.dynamics.parameters()) + sum(q.numel() for q in model.reward_head.parameters())
        for dtype in dtypes:
            with quiet_diffusers():  # diffusers warns on any dtype cast of a ModelMixin
                model = model.to(args.device, dtype).eval()
            z = model._norm(torch.randn(args.batch, args.latent_dim, dtype=dtype, device=args.device))
            a = torch.rand(args.batch, 2, dtype=dtype, device=args.device) * 2 - 1
            with torch.no_grad():
                ref = model.jacobians(z, a)
            for name, fn in methods.items():
                with torch.no_grad():
                    out = fn(model, z, a)
                    err = max((getattr(out, f) - getattr(ref, f)).abs().max().item()
                              for f in ("dfdz", "dfda", "drdz", "drda"))

                    def call():
                        fn(model, z, a)
                        if args.device.startswith("cuda"):
                            torch.cuda.synchronize()

                    for n in threads:
                        torch.set_num_threads(n)
                        tmin, tmed = time_call(call, args.repeats)
                        dt = str(dtype).replace("torch.", "")
                        print(f"| {label} | {n_params / 1e3:.0f}k | {dt} | {name} | {n} | {tmin:.2f} | {tmed:.2f} | "
                              f"{err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
