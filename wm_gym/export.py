"""``wm-gym export``: assemble a world-model checkpoint that ``gym.make("WM-PushT-v0", checkpoint=DIR)`` loads.

It copies the trained global model and surrogate (as fp16 safetensors, to keep the shipped files small),
stores a bank of real initial frames (first frames of the dataset's episodes: gym-pusht's start distribution) and writes a
``metrics.json`` / ``README.md`` with the commands that made it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _save_fp16(model, path: Path) -> None:
    model = model.to(torch.float16)
    model.save_pretrained(path)
    model.to(torch.float32)


def export_checkpoint(global_model_dir: str | Path, surrogate_dir: str | Path, data: str | Path,
                      out: str | Path, num_start_frames: int = 256, metrics: dict | None = None,
                      commands: list[str] | None = None, fp16: bool = True,
                      state_reader_dir: str | Path | None = None) -> Path:
    """Write a complete world-model checkpoint to ``out`` (atomically: built beside it, then swapped in).

    ``state_reader_dir`` (a ``wm-gym train-probe`` output) is given to the global model as its ``state_reader``:
    the state-formula rewards (``dense``, ``push``) are then read from the predicted frames by it
    (:class:`~wm_gym.models.global_model.GlobalModel`). Use a probe other than the one you judge fidelity with.
    """
    from .envs.core import quiet_diffusers

    out = Path(out)
    with quiet_diffusers():
        return _export(global_model_dir, surrogate_dir, data, out, num_start_frames, metrics, commands, fp16,
                       state_reader_dir)


def _export(global_model_dir, surrogate_dir, data, out, num_start_frames, metrics, commands, fp16,
            state_reader_dir) -> Path:
    from .data import list_episodes, load_episode, read_meta
    from .io import atomic_dir
    from .models.global_model import GlobalModel
    from .models.surrogate import Surrogate

    gm = GlobalModel.from_pretrained(global_model_dir)
    if state_reader_dir is not None:
        from .models.state_probe import StateProbe

        gm = GlobalModel(gm.denoiser, gm.reward_model, gm.task, gm.sampler,
                         state_reader=StateProbe.from_pretrained(state_reader_dir, low_cpu_mem_usage=False))
    sur = Surrogate.from_pretrained(surrogate_dir)
    meta = read_meta(data)
    if meta["resolution"][0] != gm.image_size:
        raise ValueError(f"dataset resolution {meta['resolution']} != global model image_size {gm.image_size}")
    paths = list_episodes(data)
    step = max(1, len(paths) // num_start_frames)
    frames = np.stack([load_episode(p)["frames"][0] for p in paths[::step][:num_start_frames]])

    with atomic_dir(out) as tmp:
        if fp16:
            gm.to(torch.float16)
        gm.save_pretrained(tmp / "global_model")
        gm.float()
        (_save_fp16 if fp16 else lambda m, p: m.save_pretrained(p))(sur, tmp / "surrogate")
        np.savez_compressed(tmp / "start_frames.npz", frames=frames)
        source = {"global_model": str(global_model_dir), "surrogate": str(surrogate_dir), "data": str(data)}
        if state_reader_dir is not None:
            source["state_reader"] = str(state_reader_dir)
        info = {"source": source,
                "num_start_frames": int(len(frames)), **(metrics or {})}
        (tmp / "metrics.json").write_text(json.dumps(info, indent=2))
        lines = ["# World-model checkpoint", "", "Made by these commands (run from the repository root):", "",
                 "```bash", *(commands or []), "```", "", "Numbers measured on it: `metrics.json`."]
        (tmp / "README.md").write_text("\n".join(lines) + "\n")
    return out


def add_cli(sub) -> None:
    p = sub.add_parser("export", help="assemble a world-model checkpoint (global model + surrogate + start frames)")
    p.add_argument("--global-model", required=True, help="directory written by train-global (global_model/)")
    p.add_argument("--surrogate", required=True, help="directory written by train-surrogate")
    p.add_argument("--data", required=True, help="dataset the start frames are taken from (first frames)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--metrics", default=None, help="JSON file(s) of measured numbers to embed, comma-separated")
    p.add_argument("--command", action="append", default=[], help="command that made a part (repeatable)")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (default: fp16)")
    p.add_argument("--state-reader", default=None,
                   help="state probe (wm-gym train-probe's OUT) the global model reads the state-formula rewards "
                        "(dense, push) with, instead of its reward CNN; not the probe you judge fidelity with")

    def run(args) -> int:
        metrics = {}
        for f in filter(None, (args.metrics or "").split(",")):
            metrics[Path(f).stem] = json.loads(Path(f).read_text())
        path = export_checkpoint(args.global_model, args.surrogate, args.data, args.out, metrics=metrics,
                                 commands=args.command, fp16=not args.fp32, state_reader_dir=args.state_reader)
        print(f"wrote {path}")
        return 0

    p.set_defaults(func=run)
