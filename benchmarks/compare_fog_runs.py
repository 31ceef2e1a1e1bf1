"""Score FoG runs of two `sample_efficiency.py` outputs against the same saved PPO runs.

A change to FoG needs only FoG's runs again: this reads FoG's per-seed eval curves from each output folder
(``eval_curves.csv`` and ``summary.json``, as `sample_efficiency.py` writes them, e.g. one made with
``--algos fog``) and PPO's from the reference folder, checks that they were evaluated on the same schedule, and
prints the benchmark's headline (:func:`sample_efficiency._ratio` on the seed-mean curves, and per seed) for each
FoG, with its eval returns and gym-pusht returns, as a markdown table; ``--json`` writes the numbers too. Like the
benchmark, it refuses to score runs made on one host against runs made on another (``--mixed-hosts`` allows it).

    python benchmarks/compare_fog_runs.py --reference benchmarks/results/sample_efficiency_quick_n16 \\
        --fog before=benchmarks/results/sample_efficiency_quick_n16 --fog after=benchmarks/results/sample_efficiency_reward_scale
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_efficiency import NOT_RECORDED, _ratio, check_one_host, ground_truth_points, mean_curve  # noqa: E402


def read_eval_curves(folder: Path) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """{algo: {seed: [(env_steps, eval_return), ...]}} from a benchmark output's ``eval_curves.csv``."""
    curves: dict = defaultdict(lambda: defaultdict(list))
    with open(folder / "eval_curves.csv", newline="") as f:
        for row in csv.DictReader(f):
            curves[row["algo"]][int(row["seed"])].append((int(row["env_steps"]), float(row["eval_return"])))
    return curves


def run_hosts(summary: dict, algo: str) -> dict[int, str]:
    """{seed: host} of one algorithm's runs in a benchmark ``summary.json`` (:data:`NOT_RECORDED` where it has none:
    summaries written before session 36)."""
    seeds = summary.get("seeds_per_algo", {}).get(algo, summary.get("seeds", []))
    hosts = summary.get(algo, {}).get("hosts") or [NOT_RECORDED] * len(seeds)
    return dict(zip(seeds, hosts))


def fog_scores(name: str, folder: Path, ref_summary: dict, ppo: dict[int, list], reference: Path,
               ppo_algo: str = "ppo_latent", mixed_hosts: bool = False) -> dict:
    """One FoG output's headline against the reference's PPO runs ``ppo`` ({seed: eval rows}) of ``ppo_algo``."""
    summary = json.loads((folder / "summary.json").read_text())
    for key in ("eval_envs", "eval_steps", "steps_per_run", "reward_type"):
        if summary[key] != ref_summary[key]:
            raise SystemExit(f"{folder} and {reference} differ in {key} ({summary[key]} vs {ref_summary[key]}): "
                             "their curves cannot be compared; run both with the same profile")
    # FoG may have been evaluated at more points (sample_efficiency.py --eval-extra), never at fewer
    missing_points = sorted(set(ref_summary["eval_schedule"]) - set(summary["eval_schedule"]))
    if missing_points:
        raise SystemExit(f"{folder} was not evaluated at {missing_points} env steps, where {reference} was: "
                         "run both with the same profile (--eval-extra may only add points)")
    points = np.array(ref_summary["eval_schedule"], float)
    fog_points = np.array(summary["eval_schedule"], float)
    fog = read_eval_curves(folder)["fog"]
    if not fog:
        raise SystemExit(f"{folder}/eval_curves.csv has no FoG runs")
    seeds = sorted(fog)
    missing = [s for s in seeds if s not in ppo]
    if missing:
        raise SystemExit(f"{reference} has no PPO run for seeds {missing}")
    if not mixed_hosts:
        fog_hosts, ppo_hosts = run_hosts(summary, "fog"), run_hosts(ref_summary, ppo_algo)
        check_one_host({**{f"{ppo_algo} seed {s} of the reference": ppo_hosts.get(s, NOT_RECORDED) for s in seeds},
                        **{f"fog seed {s}": fog_hosts.get(s, NOT_RECORDED) for s in seeds}},
                       f"Scoring {folder} against {reference}")
    fog_mean = mean_curve([fog[s] for s in seeds], fog_points)[0]
    ppo_mean = mean_curve([ppo[s] for s in seeds], points)[0]
    per_seed = [{"seed": s, **_ratio(points, mean_curve([ppo[s]], points)[0], mean_curve([fog[s]], fog_points)[0],
                                     fog_points)} for s in seeds]
    gt = ground_truth_points(summary, "fog")
    on_reference_points = np.isin(fog_points, points)
    return {"name": name, "folder": str(folder), "seeds": seeds, "fog_config": summary["fog_config"],
            "eval_return": [float(x) for x in fog_mean[on_reference_points]],
            "ratio": _ratio(points, ppo_mean, fog_mean, fog_points), "ratios_per_seed": per_seed,
            "gt_dense": [round(r, 1) for _, r in gt], "gt_at": [steps for steps, _ in gt],
            # where FoG was evaluated at more points than the reference: all of them (its crossing is read on them)
            **({"fog_eval_schedule": summary["eval_schedule"], "fog_eval_return": [float(x) for x in fog_mean]}
               if len(fog_points) > len(points) else {})}


def fmt_ratio(r) -> str:
    return f"{r:.1f}x" if isinstance(r, float) else str(r)


def report(reference: Path, fogs: list[tuple[str, Path]], ppo: str = "ppo_latent", mixed_hosts: bool = False) -> dict:
    """The numbers: ``{"reference", "ppo", "eval_schedule", "fog": [one :func:`fog_scores` per FoG output]}``."""
    ref_summary = json.loads((reference / "summary.json").read_text())
    ppo_runs = read_eval_curves(reference)[ppo]
    if not ppo_runs:
        raise SystemExit(f"{reference}/eval_curves.csv has no {ppo} runs")
    return {"reference": str(reference), "ppo": ppo, "eval_schedule": ref_summary["eval_schedule"],
            "fog": [fog_scores(name, folder, ref_summary, ppo_runs, reference, ppo, mixed_hosts)
                    for name, folder in fogs]}


def markdown(rep: dict) -> list[str]:
    """A :func:`report` as a sentence and a markdown table (also what the README shows). PPO's best is taken on
    the seed-mean curve of each row's seeds; when the rows have different seeds (so different bests) the table
    gets a column with each row's."""
    r0 = rep["fog"][0]["ratio"]
    per_row = len({(r["ratio"]["ppo_best"], r["ratio"]["ppo_steps"]) for r in rep["fog"]}) > 1
    head = (f"FoG against {rep['ppo']} of `{rep['reference']}` ("
            + ("its best on the seed-mean curve of each row's seeds" if per_row else
               f"best {r0['ppo_best']:.2f} on the seed-mean curve, reached after {r0['ppo_steps']:,.0f} steps")
            + f"); eval at {', '.join(f'{s:,}' for s in rep['eval_schedule'])} env steps.\n")
    cols = ["FoG", "seeds", "eval return (seed mean) at each point"] + (["PPO's best (after steps)"] if per_row else []) \
        + ["steps to PPO's best", "ratio", "sustained", "per seed",
           "gym-pusht dense at " + " / ".join(f"{s:,}" for s in rep["fog"][0]["gt_at"])]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    finer = []
    for r in rep["fog"]:
        rr = r["ratio"]
        if "fog_eval_schedule" in r:
            finer.append(f"{r['name']}: FoG also evaluated at "
                         + ", ".join(f"{s:,} ({x:.1f})" for s, x in zip(r["fog_eval_schedule"], r["fog_eval_return"])
                                     if s not in rep["eval_schedule"]))
        cells = [r["name"] + (" *" if "fog_eval_schedule" in r else ""), ",".join(map(str, r["seeds"])),
                 ", ".join(f"{x:.1f}" for x in r["eval_return"])]
        if per_row:
            cells.append(f"{rr['ppo_best']:.2f} ({rr['ppo_steps']:,.0f})")
        cells += [f"{rr['fog_steps']:,.0f}", fmt_ratio(rr["ratio"]), fmt_ratio(rr["ratio_sustained"]),
                  ", ".join(fmt_ratio(q["ratio"]) for q in r["ratios_per_seed"]),
                  " / ".join(f"{g:.1f}" for g in r["gt_dense"])]
        lines.append("| " + " | ".join(cells) + " |")
    if finer:
        lines.append("\n\\* FoG's steps to PPO's best read on its own, finer evaluation schedule "
                     "(`sample_efficiency.py --eval-extra`; seed-mean eval return in brackets): " + "; ".join(finer) + ".")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="benchmark output with the PPO runs")
    p.add_argument("--ppo", default="ppo_latent", help="which PPO of the reference")
    p.add_argument("--fog", action="append", required=True, metavar="NAME=DIR", help="a FoG benchmark output, named in the table (split at the last '=', so NAME may hold one)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--mixed-hosts", action="store_true", help="score FoG runs against PPO runs of another host")
    args = p.parse_args(argv)
    fogs = []
    for item in args.fog:
        name, sep, folder = item.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"--fog takes NAME=DIR, got {item!r}")
        fogs.append((name, Path(folder)))
    rep = report(args.reference, fogs, args.ppo, args.mixed_hosts)
    print("\n".join(markdown(rep)))
    if args.json:
        args.json.write_text(json.dumps(rep, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
