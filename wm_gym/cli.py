"""``wm-gym`` command line: collect data, train the global model and the surrogate, evaluate fidelity."""

from __future__ import annotations

import argparse
import json
import sys


def _positive(kind, allow_zero: bool = False):
    """An argparse type: a ``kind`` number > 0 (>= 0 with ``allow_zero``)."""
    def parse(s):
        v = kind(s)
        if not (v >= 0 if allow_zero else v > 0):  # NaN fails both
            raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0, got {s}")
        return v
    return parse


def _cmd_collect(args) -> int:
    from .data import collect

    mix = None
    if args.mix:
        mix = {}
        for part in args.mix.split(","):
            name, _, w = part.partition("=")
            try:
                mix[name.strip()] = float(w)
            except ValueError:
                raise SystemExit(f"wm-gym collect: error: --mix expects name=weight,..., got {args.mix!r}")
    if args.policy and mix is not None:
        raise SystemExit("wm-gym collect: error: --mix and --policy are exclusive (one behaviour)")
    summary = collect(args.out, args.episodes, seed=args.seed, workers=args.workers, image_size=args.image_size,
                      mix=mix, progress=not args.quiet, policy=args.policy or None, sampled=not args.deterministic,
                      action_noise=args.action_noise)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wm-gym", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="collect ground-truth Push-T episodes (resumable)")
    c.add_argument("--episodes", type=_positive(int), required=True, help="total episodes wanted in OUT")
    c.add_argument("--out", required=True, help="dataset directory (created or extended)")
    c.add_argument("--seed", type=int, default=0, help="dataset seed; episode i is a function of (seed, i)")
    c.add_argument("--workers", type=_positive(int), default=1, help="parallel processes")
    c.add_argument("--image-size", type=_positive(int), default=64, help="frame size (square)")
    c.add_argument("--mix", default="", help="behaviour mix, e.g. pusher=0.8,random_walk=0.2")
    c.add_argument("--policy", default="", help="behaviour: a saved frame policy directory (FoGPolicy.save) "
                   "instead of the scripted mix, e.g. to measure or fine-tune the world model where it acts")
    c.add_argument("--deterministic", action="store_true", help="with --policy: act with the tanh of the mean "
                   "(default: sampled actions, the stochastic policy FoG trains)")
    c.add_argument("--action-noise", type=_positive(float, allow_zero=True), default=0.0, metavar="PX",
                   help="std (env px) of Gaussian noise added to every behaviour action, so the action's effect is "
                   "identifiable from the data (default 0: the behaviour as it is)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_collect)

    from . import cli_train  # noqa: F401  (registers train/eval subcommands when available)
    cli_train.add_commands(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
