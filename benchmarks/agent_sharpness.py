"""How sharply does the global model draw the agent in its next frame? Blue mass vs saturated core, generated vs real.

``block_iou.PixelReader`` reads the agent two ways: its blue *mass* (about linear in how much of a pixel it covers,
faint smear included) and its saturated *core* (pixels at least ~2/3 covered). This sums both weights over the
frame, for the model's one-step prediction and for the real next frame, at eval-fidelity's held-out starts
(``choose_starts``, seed 0, 4 per validation episode; ``--split train``: the same choice on the training
episodes), split by whether the real agent moved more than
``--moved`` px in that step. A model that moves a sharp disk keeps both ratios near 1; one that draws a step as
a smear keeps the mass and loses the core (study: benchmarks/results/global_action_target/README.md).

    python benchmarks/agent_sharpness.py --models wm_gym/assets/pusht/global_model --data data/pusht64
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from block_iou import PixelReader, add_sampler_args, with_sampler_args


def agent_weights(frames_uint8: np.ndarray, task) -> dict[str, np.ndarray]:
    """Summed agent weights per frame, (N,) for each of ``mass`` and ``core``."""
    from wm_gym.data import frames_to_tensor

    x = frames_to_tensor(frames_uint8)
    with torch.no_grad():
        return {how: PixelReader(task, agent=how).agent_weight(x).sum((1, 2)).numpy() for how in ("mass", "core")}


def main(argv=None) -> None:
    from wm_gym.data import load_split, tensor_to_frames
    from wm_gym.fidelity import choose_starts, rollout_model, truth_at
    from wm_gym.models.global_model import GlobalModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="GlobalModel directories joined by commas")
    p.add_argument("--data", required=True, help="dataset")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="which split's episodes to start from (train: does the model smear where it was fitted?)")
    p.add_argument("--starts-per-episode", type=int, default=4)
    p.add_argument("--moved", type=float, default=8.0, help="px of 512 the real agent must move to count as moving")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the table's numbers here")
    add_sampler_args(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, eps = load_split(args.data, args.split)
    starts = choose_starts(eps, [1, 4, 16, 64], args.starts_per_episode, args.seed)  # eval-fidelity's starts
    ep_len = np.array([len(eps[e]["actions"]) for e in starts.episode])
    s0, s1 = truth_at(eps, starts, ep_len, 0, "states"), truth_at(eps, starts, ep_len, 1, "states")
    moving = np.linalg.norm(s1[:, :2] - s0[:, :2], axis=1) > args.moved
    rows, real = {}, None
    for path in args.models.split(","):
        gm = with_sampler_args(GlobalModel.from_pretrained(path), args)
        out = rollout_model(gm, eps, starts, [1], generator=torch.Generator().manual_seed(args.seed),
                            num_steps=args.num_steps or None, progress=False)
        gen = agent_weights(tensor_to_frames(out["frames"][1]), gm.task)
        if real is None:  # the real next frames are the same for every model: read them once
            real = agent_weights(truth_at(eps, starts, ep_len, 1, "frames"), gm.task)
        rows[path] = {part: {"n": int(sel.sum()), **{f"{how}_{src}": float(w[how][sel].mean()) if sel.any() else math.nan
                                                    for how in ("mass", "core") for src, w in (("model", gen), ("real", real))}}
                      for part, sel in (("moving", moving), ("still", ~moving))}
    print(f"agent weight summed over the next frame, mean over starts (moving: the real agent moved > {args.moved} px)\n")
    print("| model | starts | n | blue mass: model / real | saturated core: model / real |")
    print("|---|---|---|---|---|")
    for path, r in rows.items():
        for part, v in r.items():
            print(f"| {path} | {part} | {v['n']} | {v['mass_model']:.2f} / {v['mass_real']:.2f} | "
                  f"{v['core_model']:.2f} / {v['core_real']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
