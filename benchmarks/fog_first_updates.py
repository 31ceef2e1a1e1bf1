"""The first FoG updates on WM-PushT-v0: reward scale, actor gradient norms (reward and critic terms apart) and
Adam's view of them, one line per update.

Adam divides each step by the root of its running mean of squared gradients (``betas[1]``), so one update whose
gradient is far larger than the rest shrinks every step after it until that mean forgets it. The last column,
``adam step``, is the mean over the actor's parameters of ``|m_hat| / (sqrt(v_hat) + eps)`` after the update: about
1 when the gradients are steady, smaller while an old large gradient dominates ``v``.

    python benchmarks/fog_first_updates.py                        # 40 updates, N = 16, actor lr 1e-3, seed 10
    python benchmarks/fog_first_updates.py --updates 3 --num-envs 2 --checkpoint DIR   # seconds
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fog_trainer import FoGConfig, FoGTrainer  # noqa: E402


def adam_step_ratio(opt: torch.optim.Adam) -> float:
    """Mean over parameters of |m_hat| / (sqrt(v_hat) + eps): how large Adam's last step was relative to lr."""
    total, count = 0.0, 0
    for group in opt.param_groups:
        b1, b2 = group["betas"]
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            t = float(st["step"])
            m_hat = st["exp_avg"] / (1 - b1 ** t)
            v_hat = st["exp_avg_sq"] / (1 - b2 ** t)
            total += float((m_hat.abs() / (v_hat.sqrt() + group["eps"])).sum())
            count += p.numel()
    return total / max(count, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=40)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--actor-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--checkpoint", default="", help="world-model checkpoint ('' = the shipped model)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FoGConfig(num_envs=args.num_envs, actor_lr=args.actor_lr, seed=args.seed, grad_split=True,
                        checkpoint=args.checkpoint, progress_bar=False, tensorboard=False, checkpoint_every=0,
                        run_dir=tmp)
        trainer = FoGTrainer("WM-PushT-v0", cfg)
        rows = []
        print("| update | reward scale | grad norm, reward term | grad norm, critic term | grad norm (clipped at "
              f"{cfg.max_grad_norm}) | adam step |")
        print("|---|---|---|---|---|---|")
        for i in range(args.updates):
            logs = trainer.update()
            row = {"update": i, "reward_scale": logs["reward_scale"],
                   "grad_norm_reward_term": logs["grad_norm_reward_term"],
                   "grad_norm_critic_term": logs["grad_norm_critic_term"], "grad_norm": logs["grad_norm"],
                   "adam_step": adam_step_ratio(trainer.actor_opt)}
            rows.append(row)
            print(f"| {i} | {row['reward_scale']:.2f} | {row['grad_norm_reward_term']:.4f} | "
                  f"{row['grad_norm_critic_term']:.4f} | {row['grad_norm']:.4f} | {row['adam_step']:.3f} |", flush=True)
        trainer.vec_env.close()
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
