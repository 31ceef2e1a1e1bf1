"""Compare world models by the FoG policies trained in them, over training seeds, in gym-pusht.

    python benchmarks/fog_seeds.py shipped='runs/fog_shipped_s*_gt50.json' cw30='runs/fog_cw30_s*_gt50.json'

Each argument is LABEL=GLOB: the ``--json`` files of ``benchmarks/ground_truth_eval.py``, one per training
seed of ``examples/fog_pusht.py`` in that model (same evaluation seeds in every file). Prints a markdown table:
the deterministic and the sampled policy's dense return per training seed, their mean and standard deviation
over seeds, the mean max coverage, and each model's difference to the first one with its standard error
(Welch), so one lucky or unlucky training seed is seen as such.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys


def load_runs(pattern: str) -> dict[str, dict]:
    """Training seed (from the file name's ``_s<N>``, else the file name) -> ground_truth_eval results."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"no file matches {pattern!r}: pass the --json files of benchmarks/ground_truth_eval.py")
    runs = {}
    for f in files:
        with open(f) as fh:
            res = json.load(fh)
        if "fog" not in res or "fog_sampled" not in res:
            raise SystemExit(f"{f} is not a benchmarks/ground_truth_eval.py result (no 'fog' / 'fog_sampled' entry)")
        m = re.search(r"_s(\d+)", os.path.basename(f))
        seed = m.group(1) if m else f
        if seed in runs:
            raise SystemExit(f"{pattern!r} matches two files of training seed {seed}: narrow it to one model's files")
        runs[seed] = res
    return runs


def mean_sd(xs: list[float]) -> tuple[float, float]:
    mu = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return mu, sd


def table(models: dict[str, dict[str, dict]]) -> str:
    rows = ["| model | training seeds | deterministic, per seed | mean (sd) | sampled, mean (sd) | max coverage | "
            "deterministic vs first (se) |", "|---|---|---|---|---|---|---|"]
    first = None
    for label, runs in models.items():
        det = [r["fog"]["mean_return_dense"] for r in runs.values()]
        smp = [r["fog_sampled"]["mean_return_dense"] for r in runs.values()]
        cov = sum(r["fog"]["mean_max_coverage"] for r in runs.values()) / len(runs)
        (mu, sd), (ms, ss) = mean_sd(det), mean_sd(smp)
        if first is None:
            first, diff = (mu, sd, len(det)), "-"
        else:
            se = math.sqrt(sd ** 2 / len(det) + first[1] ** 2 / first[2])
            diff = f"{mu - first[0]:+.1f} ({se:.1f})"
        rows.append(f"| {label} | {','.join(runs)} | {' / '.join(f'{x:.1f}' for x in det)} | {mu:.1f} ({sd:.1f}) | "
                    f"{ms:.1f} ({ss:.1f}) | {cov:.3f} | {diff} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="LABEL=GLOB of ground_truth_eval.py --json files")
    args = p.parse_args(argv)
    models = {}
    for item in args.models:
        label, sep, pattern = item.partition("=")
        if not sep or not label or not pattern:
            raise SystemExit(f"expected LABEL=GLOB, got {item!r}")
        models[label] = load_runs(pattern)
    print(table(models))


if __name__ == "__main__":
    main(sys.argv[1:])
