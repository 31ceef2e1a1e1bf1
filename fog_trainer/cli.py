"""``fog-train``: train FoG in a world-model env from the command line (every FoGConfig field is a flag).

    fog-train --total-env-steps 200000 --num-envs 64 --horizon 16 --run-dir runs/fog1
    fog-train --total-env-steps 400000 --run-dir runs/fog1 --resume      # continue an interrupted run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .config import FoGConfig


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _tuple_of(kind):
    def parse(s: str):
        try:
            return tuple(kind(x) for x in s.replace(" ", "").split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, e.g. 256,256; got {s!r}")
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fog-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total-env-steps", type=int, default=200_000, help="global-model env steps to train for")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt (needs --run-dir)")
    p.add_argument("--eval-seeds", type=int, default=0, help="ground-truth gym-pusht episodes to evaluate after")
    hints = typing.get_type_hints(FoGConfig)
    for f in dataclasses.fields(FoGConfig):
        tp, default = hints[f.name], f.default
        kind = _bool if tp is bool else _tuple_of(typing.get_args(tp)[0]) if typing.get_origin(tp) is tuple else tp
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, metavar=tp.__name__.upper(),
                       help=f"{f.metadata['help']} (default: {shown})")
    return p


def main(argv=None) -> int:
    args = vars(build_parser().parse_args(argv))
    total, resume, eval_seeds = args.pop("total_env_steps"), args.pop("resume"), args.pop("eval_seeds")
    if resume and not args["run_dir"]:
        raise SystemExit("fog-train: error: --resume needs the --run-dir of the run to continue")
    try:
        config = FoGConfig(**args)
    except ValueError as e:
        raise SystemExit(f"fog-train: error: {e}")
    from .trainer import FoGTrainer

    trainer = FoGTrainer(config.env_id, config).learn(total, resume=resume)
    path = trainer.save(trainer.run_dir / "policy")
    summary = {"run_dir": str(trainer.run_dir), "policy": str(path), "env_steps": trainer.num_timesteps,
               "skipped_updates": trainer.skipped_updates, **{k: trainer.history[-1].get(k) for k in
                                                              ("ep_rew_mean", "ep_len_mean", "fps")}}
    if eval_seeds:
        from .evaluate import evaluate_in_ground_truth

        res = evaluate_in_ground_truth(trainer.policy, seeds=range(eval_seeds),
                                       image_size=int(trainer.env.surrogate.config.image_size),
                                       progress=config.progress_bar)
        summary["ground_truth"] = {k: v for k, v in res.items() if not isinstance(v, list)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
