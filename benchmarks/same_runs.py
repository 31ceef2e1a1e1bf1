"""Do two `sample_efficiency.py` outputs hold the same runs? The same command on the same kind of host should give them.

    python benchmarks/same_runs.py benchmarks/results/ppo_tuning/T5 runs/repro/T5

For every run file (``runs/ALGO_SEED.json``) that both folders have, it prints the settings in which they differ and
the largest absolute difference between the two runs' world-model eval returns (at the env steps both evaluated),
training curve (``ep_rew_mean``) and gym-pusht scores; the wall time, the host and the packages whose versions
differ are printed, not compared (the wall time depends on what else the host was doing; host and packages are
what may explain a difference). Runs that differ only in their evaluation schedule
(``sample_efficiency.py --eval-extra``) are the same training run when evaluating has no side effects, which is
what comparing them checks. The exit status is 1 when a run differs in another setting or by more than
``--tolerance``, or no run is in both folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_efficiency import NOT_RECORDED  # noqa: E402


def _numbers(x) -> list[float]:
    """Every number in a nested list/dict, in a fixed order (dict keys sorted)."""
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _numbers(x[k])]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _numbers(item)]
    return [float(x)]


def largest_difference(a, b) -> float:
    """The largest absolute difference between two results of the same shape (inf when the shapes differ)."""
    na, nb = _numbers(a), _numbers(b)
    if len(na) != len(nb):
        return float("inf")
    return max((abs(x - y) for x, y in zip(na, nb)), default=0.0)


def compare_run(a: dict, b: dict) -> dict:
    """Two saved runs side by side: their settings, and each result's largest difference. A training-curve row is
    (env steps, ep_rew_mean, ep_len_mean, seconds, episodes): its seconds are a wall time and are left out."""
    def curve(run: dict) -> list:
        return [row[:3] + row[4:] for row in run["rows"]]

    sa, sb = a["settings"], b["settings"]
    eval_a, eval_b = dict(map(tuple, a["eval_rows"])), dict(map(tuple, b["eval_rows"]))
    common = sorted(set(eval_a) & set(eval_b))
    return {"settings_differ": sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k)),
            "eval_points": len(common),
            "eval_return": largest_difference([eval_a[k] for k in common], [eval_b[k] for k in common])
            if common else float("inf"),
            "ep_rew_mean": largest_difference(curve(a), curve(b)),
            "gym_pusht": largest_difference([a["ground_truth"], a["gt_rows"]], [b["ground_truth"], b["gt_rows"]]),
            "wall_s": (a["wall_s"], b["wall_s"]), "host": (a.get("host", NOT_RECORDED), b.get("host", NOT_RECORDED)),
            "software_differs": software_differs(a.get("software"), b.get("software"))}


def software_differs(a: dict | None, b: dict | None) -> str:
    """The packages whose recorded versions differ between two runs, as text (runs saved before session 38 record
    none: :data:`NOT_RECORDED`)."""
    if a is None or b is None:
        return NOT_RECORDED
    return ", ".join(f"{k} {a.get(k, NOT_RECORDED)} / {b.get(k, NOT_RECORDED)}"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)) or "none"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", type=Path, help="a sample_efficiency.py output folder")
    p.add_argument("second", type=Path, help="another one")
    p.add_argument("--tolerance", type=float, default=1e-9,
                   help="largest difference still counted as the same (default 1e-9: the last bits of a float; a "
                        "gym-pusht coverage mean has been seen to differ by 1e-17 between two otherwise equal runs)")
    args = p.parse_args(argv)
    names = sorted({f.name for f in (args.first / "runs").glob("*.json")} &
                   {f.name for f in (args.second / "runs").glob("*.json")})
    if not names:
        print(f"no run file is in both {args.first}/runs and {args.second}/runs", file=sys.stderr)
        return 1
    print("| run | settings that differ | eval return (points compared) | ep_rew_mean | gym-pusht | wall s | host | "
          "package versions that differ |")
    print("|---|---|---|---|---|---|---|---|")
    differ = False
    for name in names:
        r = compare_run(*(json.loads((folder / "runs" / name).read_text()) for folder in (args.first, args.second)))
        diffs = [r["eval_return"], r["ep_rew_mean"], r["gym_pusht"]]
        differ |= bool(set(r["settings_differ"]) - {"schedule"}) or max(diffs) > args.tolerance
        print(f"| {name.removesuffix('.json')} | {', '.join(r['settings_differ']) or 'none'} | "
              f"{diffs[0]:.3g} ({r['eval_points']}) | " + " | ".join(f"{d:.3g}" for d in diffs[1:])
              + f" | {r['wall_s'][0]:.0f} / {r['wall_s'][1]:.0f} | {r['host'][0]} / {r['host'][1]} | "
              f"{r['software_differs']} |")
    print("the runs differ" if differ else f"the same runs (largest difference <= {args.tolerance:g})")
    return int(differ)


if __name__ == "__main__":
    sys.exit(main())
