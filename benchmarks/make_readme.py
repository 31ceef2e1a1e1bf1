"""Regenerate the README's results section from the JSON files in ``benchmarks/results/``.

    python benchmarks/make_readme.py            # rewrites README.md between the results markers
    python benchmarks/make_readme.py --check    # exit 1 if README.md is not up to date

Every number in the section comes from a file written by a benchmark script; the command that wrote
each file is listed beside its table (see ``benchmarks/run_all.sh``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from wm_gym.pusht import REWARD_TYPES

from compare_fog_runs import markdown as fog_comparison_table  # a sibling script: benchmarks/ is on sys.path when run
from compare_fog_runs import run_hosts
from sample_efficiency import NOT_RECORDED

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TARGETS_BEGIN, TARGETS_END = "<!-- targets:begin -->", "<!-- targets:end -->"


def _load(name: str):
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def _f(x, nd=2):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _ratio_text(ratio, short: bool = False) -> str:
    """A sample-efficiency ratio: a number as ``12.3x``; the cases without one (strings) by what they say, or
    with ``short`` by their first word (``<1``, ``undefined``)."""
    if isinstance(ratio, str):
        return ratio.split(" ")[0] if short else ratio
    return f"{ratio:.1f}x"


def _md_table(name: str) -> list[dict]:
    """The rows of the first markdown table in a benchmark's ``.md`` output, as dicts keyed by its header."""
    p = RESULTS / name
    if not p.exists():
        return []
    lines = [ln for ln in p.read_text().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return []
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return [dict(zip(cells[0], row)) for row in cells[2:] if len(row) == len(cells[0])]


def _target_row(issue: int, target: str, measured: str, met: bool | None, where: str) -> str:
    verdict = "n/a" if met is None else "**met**" if met else "missed"
    return f"| {issue} | {target} | {measured} | {verdict} | {where} |"


def targets_section() -> str:
    """The issues' numeric targets beside what the committed benchmark outputs measured (one row per target)."""
    rows = []
    es, fid = _load("env_speed.json"), _load("fidelity/fidelity.json")
    if es:
        wm, bf, gt = es["wm_vector_env_64"], es.get("wm_vector_env_64_bfloat16"), es["gym_pusht_pixels_64"]
        rows.append(_target_row(3, "batched global step, 64 envs, float32: >= 300 env steps/s", f"{wm:.0f}", wm >= 300,
                                "env-speed table"))
        if bf is not None:
            rows.append(_target_row(3, "stretch: faster than gym-pusht's pixel steps (same run)",
                                    f"{wm:.0f} float32, {bf:.0f} bfloat16 vs {gt:.0f}", max(wm, bf) > gt, "env-speed table"))
    if fid:
        m = fid["model"]["16"]
        for key, label, lim in (("agent_px", "agent error (px of 512)", 8), ("block_px", "T position error (px)", 10),
                                ("angle_deg", "T angle error (deg)", 10), ("rew_mae_coverage", "reward MAE", 0.05)):
            nd = 3 if lim < 1 else 1
            rows.append(_target_row(3, f"16 open-loop steps, held-out episodes: {label} <= {lim}", f"{m[key]:.{nd}f}",
                                    m[key] <= lim, "fidelity table"))
    gt_metrics = json.loads((ROOT / "wm_gym/assets/pusht/metrics.json").read_text()).get("global_training", {})
    # the training script's 3,000 frames of its validation episodes, and (benchmarks/reward_real.py) every frame of a
    # collection the model never saw, whose interval over episodes decides: met when even its upper end is <= 0.03
    split, fresh = _load("reward_model_data/shipped_pusht64.json"), _load("reward_model_data/shipped_fresh_s3.json")
    for i, label in enumerate(REWARD_TYPES):  # the reward model's outputs, in this order
        mae = gt_metrics.get(f"reward_real_mae_{i}")
        if mae is None:
            continue
        measured, met, where = f"{mae:.4f}", mae <= 0.03, "`wm_gym/assets/pusht/metrics.json`"
        if split and fresh:
            a = fresh["heldout_all"]
            lo, hi = a["reward_model_p5_p95"][label]
            measured = (f"{mae:.4f} on 3,000 frames of the {split['episodes']['heldout']} validation episodes; "
                        f"{a['reward_model'][label]:.4f} (90 % {lo:.4f}-{hi:.4f}) on all {a['frames']:,} frames of "
                        f"{fresh['episodes']['heldout']} episodes of a fresh collection")
            met, where = hi <= 0.03, where + ", `benchmarks/results/reward_model_data/`"
        rows.append(_target_row(3, f"reward model, held-out real frames: `{label}` reward MAE <= 0.03", measured,
                                met, where))
    if "reward_goal_success_f1" in gt_metrics:
        f1 = gt_metrics["reward_goal_success_f1"]
        rows.append(_target_row(3, "reward model: success F1 >= 0.9 (held-out near-goal frames rendered by gym-pusht)", f"{f1:.2f}",
                                f1 >= 0.9, "`wm_gym/assets/pusht/metrics.json`"))
    jac = [r for r in _md_table("jacobian_speed.md") if r.get("method") == "analytic" and r.get("dtype") == "float32"
           and r.get("dynamics MLP", "").startswith("shipped")]
    if jac:
        best = min(jac, key=lambda r: float(r["min ms"]))
        ms = float(best["min ms"])
        rows.append(_target_row(4, "Jacobians, batch 256 (d = 64, m = 2): <= 5 ms",
                                f"{ms:.2f} ms ({best['threads']} thread{'s' if best['threads'] != '1' else ''}, min of "
                                f"repeats; median {best['median ms']})", ms <= 5, "Jacobian table"))
    gf = _load("gradient_fidelity.json")
    if gf:
        ref = "global-autograd, mean of 4 noises"
        cos = {r["H"]: r["cos_mean"] for r in gf["rows"]
               if r["reference"] == ref and r["reward"] == "dense" and r["gradient"] == "fog"}
        for h, lim in ((1, 0.8), (16, 0.5)):
            if h in cos:
                rows.append(_target_row(4, f"gradient of the H = {h} dense return vs the global model's: mean cosine "
                                           f">= {lim}", f"{cos[h]:.2f}", cos[h] >= lim,
                                        f"gradient-fidelity table (`{ref}`)"))
    for name, label in (("sample_efficiency_quick/summary.json", "the benchmark's PPO-latent (RL-Zoo-like settings)"),
                        ("ppo_tuning/T4_seeds0-5/summary.json", "PPO-latent with settings for the 100k budget (T4)"),
                        ("ppo_tuning/default_epyc/summary.json", "the benchmark's PPO-latent, both made again"),
                        ("ppo_tuning/T4_epyc_seeds0-5/summary.json", "T4, both made again"),
                        ("ppo_tuning/T4_16points/summary.json",
                         "T4, both made again on another host, both evaluated at 16 points instead of 9")):
        se = _load(name)
        r = (se or {}).get("ratios", {}).get("ppo_latent")
        if r and not isinstance(r["ratio"], str):
            rows.append(_target_row(7, f"sample efficiency, PPO steps / FoG steps to PPO's best: >= 20x, against {label}",
                                    f"{r['ratio']:.1f}x{_sustained_text(r)} ({len(se['seeds'])} seeds; {_host_label(se)})",
                                    r["ratio"] >= 20,
                                    "sample-efficiency tables"))
    fine = _load("fog_crossing/compare_default.json")
    if fine:  # the default PPO's first update comes after 2,048 steps: FoG's extra points leave its curve as it is
        r = next((row["ratio"] for row in fine["fog"] if "fog_eval_schedule" in row), None)
        if r and not isinstance(r["ratio"], str):
            rows.append(_target_row(
                7, "sample efficiency, PPO steps / FoG steps to PPO's best: >= 20x, against the benchmark's "
                   "PPO-latent, both made again, FoG evaluated at 16 points instead of 9 (PPO's curve is unchanged "
                   "by them: its first update comes after 2,048 steps)",
                f"{r['ratio']:.1f}x{_sustained_text(r)} "
                f"({len(fine['fog'][0]['seeds'])} seeds; {_host_label(_load('fog_crossing/summary.json'))})",
                r["ratio"] >= 20,
                "FoG-crossing tables"))
    gc = _load("gradient_cost.json")
    if gc:
        t, mem = gc["bptt_over_fog_update_time"], gc["bptt_over_fog_memory"]
        rows.append(_target_row(7, "one policy update (N = 64, H = 16): BPTT-through-diffusion time / FoG time >= 20x",
                                f"{t:.1f}x (backward alone {gc['bptt_over_fog_backward_time']:.0f}x)", t >= 20,
                                "gradient-cost table"))
        rows.append(_target_row(7, "the same, memory >= 10x", f"{mem:.0f}x", mem >= 10, "gradient-cost table"))
    if not rows:
        return "No benchmark outputs yet."
    return "\n".join(["| issue | target | measured | verdict | where |", "|---|---|---|---|---|", *rows])


def _sustained_text(r: dict) -> str:
    """``" first crossing; sustained 4.7x"`` for a headline ratio whose sustained crossing comes later, else ``""``."""
    if _ratio_text(r["ratio_sustained"]) == _ratio_text(r["ratio"]):
        return ""
    return f" first crossing; sustained {_ratio_text(r['ratio_sustained'])}"


def _fog_comparison(name: str, heading: str, text: str) -> list[str]:
    """A ``benchmarks/compare_fog_runs.py --json`` file as a heading, ``text`` + its sentence, and its table."""
    rep = _load(name)
    if not rep:
        return []
    intro, *table = fog_comparison_table(rep)
    return [f"\n#### {heading} (`benchmarks/compare_fog_runs.py`)\n", text + intro, *table]


def _fog_comparison_sections() -> list[str]:
    """FoG variants scored against saved PPO runs: N = 16 and 8 against the benchmark's own PPO runs, then the
    studies of sessions 30-31 against the previous benchmark's (the reward-scale fix, the envs per update)."""
    return _fog_comparison(
        "sample_efficiency_quick/compare.json", "FoG with N = 16 and N = 8 envs per update, against the PPO runs above",
        "One FoG update sees N x 16 env steps: with N = 8 it makes twice as many updates from the same env steps as "
        "with N = 16, which the benchmark used until session 32. N = 8 was chosen from N = 16 / 8 / 4 on seeds 0-3 "
        "against the previous benchmark's PPO runs (the last table of this section); seeds 4 and 5 were run after the "
        "choice. `N = 16` is session 30's rerun of the benchmark's FoG after the reward-scale fix "
        "(`benchmarks/results/sample_efficiency_reward_scale/`, seeds 0-3) and the held-out runs of "
        "`benchmarks/results/fog_envs_per_update/` (seeds 4, 5); `N = 8` rows are the runs of the table above, "
        "split by seeds. "
    ) + _fog_comparison(
        "fog_tuning/compare.json", "FoG with other settings for the budget, against the PPO-latent with settings for it",
        "Session 34 gave FoG the treatment session 33 gave PPO (`benchmarks/results/fog_tuning/README.md`): one change "
        "at a time on seeds 0 and 1, against `T4`'s PPO runs of those seeds; the first row is the benchmark's FoG. "
    ) + _fog_comparison(
        "fog_crossing/compare_T4.json",
        "Where FoG crosses PPO's best, read on 16 evaluation points instead of 9: against T4 on the AMD host",
        "FoG passes PPO's best before the first checkpoint (2,048 steps), where the headline interpolates linearly "
        "from the start. Session 37 made FoG's six runs again on the AMD host with 7 more evaluation points "
        "(`sample_efficiency.py --eval-extra 256,...,1792`; `benchmarks/results/fog_crossing/README.md`) and reads "
        "its crossing on them; PPO's runs and its best are those of `ppo_tuning/T4_epyc_seeds0-5`. The first row is "
        "that folder's FoG on the 9 points. T4 updates every 512 steps and its runs were not evaluated at the extra "
        "points, where its best might be higher or fall elsewhere: only FoG's side is resolved here (both sides on 16 "
        "points, from another host: the row `T4_16points` of the PPO-tuning table). "
    ) + _fog_comparison(
        "fog_crossing/compare_default.json",
        "The same against the benchmark's default PPO-latent on the AMD host",
        "As above, against the PPO runs of `ppo_tuning/default_epyc`. This PPO does not update before 2,048 steps "
        "(64 envs x 32 steps), so at the extra points its policy and its evaluation are the initial ones: the "
        "comparison is symmetric. The first crossing grows with how often FoG's noisy early curve is sampled; the "
        "sustained crossing did not move. "
    ) + _fog_comparison(
        "sample_efficiency_reward_scale/compare.json",
        "Earlier: FoG before and after session 30's reward-scale fix, against the previous benchmark's PPO runs",
        "Until session 32 the benchmark ran FoG with N = 16, and its table "
        "(`benchmarks/results/sample_efficiency_quick_n16/`, sessions 27-28; its PPO runs' files were not committed) "
        "was made before FoG divided its first update's rewards by a real return statistic "
        "(the first update used a scale of 1; its actor gradient, 0.68 where later ones are 0.002-0.31, kept Adam's "
        "steps small for tens of updates). `before` is that table's FoG, `after` the same benchmark's FoG runs made again "
        "with the fix (`benchmarks/results/sample_efficiency_reward_scale/`), both scored against that table's PPO runs. "
    ) + _fog_comparison(
        "fog_envs_per_update/compare.json",
        "Earlier: FoG with N = 16 / 8 / 4 envs per update, against the previous benchmark's PPO runs",
        "With N = 8 or 4 FoG makes 2x or 4x as many updates from the same env steps as with N = 16 "
        "(`benchmarks/results/fog_envs_per_update/README.md`; N was chosen after seeing these seeds, so read the best "
        "row as optimistic). "
    )


def _hosts_text(se: dict, algos=("fog", "ppo_latent")) -> str:
    """The hosts that made a sample-efficiency summary's runs, as its runs recorded them (``"hosts"``)."""
    return " + ".join(sorted({h for a in algos if a in se for h in run_hosts(se, a).values()}))


def _host_label(se: dict) -> str:
    """:func:`_hosts_text` for a target row: runs that record no host ran on the Intel host of ``machine.json``."""
    host = _hosts_text(se)
    return "Intel host, not recorded in its runs" if host == NOT_RECORDED else f"{host} host"


def _ppo_tuning_section() -> list[str]:
    """PPO-latent with other hyper-parameters (``sample_efficiency.py --ppo``), each folder of
    ``benchmarks/results/ppo_tuning/`` against the benchmark's FoG runs of the same seeds."""
    rows = []
    for path in sorted((RESULTS / "ppo_tuning").glob("*/summary.json")):
        se = json.loads(path.read_text())
        r, s = se.get("ratios", {}).get("ppo_latent"), se.get("ppo_latent")
        if not r or not s:
            continue
        seeds = se["seeds_per_algo"]["ppo_latent"]
        settings = ", ".join(f"{k} = {v}" for k, v in se.get("ppo_overrides", {}).items()) or "the defaults"
        per_seed = " / ".join(_ratio_text(q["ratio"], True) for q in se["ratios_per_seed"]["ppo_latent"])
        best_at = "its start" if r["ppo_steps"] == 0 else f"{_f(r['ppo_steps'], 0)}"
        rows.append(f"| {path.parent.name} | {_hosts_text(se)} | {settings} | {', '.join(map(str, seeds))} | "
                    f"{len(se['eval_schedule'])} | "
                    f"{_f(s['first_eval_return'], 1)} | "
                    f"{_f(s['final_eval_return'], 1)} | {_f(s['best_eval_return'], 1)} at {best_at} | "
                    f"{_f(r['fog_steps'], 0)} | {_ratio_text(r['ratio'])} / {_ratio_text(r['ratio_sustained'])} | "
                    f"{per_seed} | {_f(s['ground_truth'].get('mean_return_dense'), 1)} |")
    if not rows:
        return []
    return ["\n#### PPO-latent with settings for a small budget (`sample_efficiency.py --ppo KEY=VALUE`, "
            "`benchmarks/results/ppo_tuning/README.md`)\n",
            "The benchmark's PPO keeps RL-Zoo-like settings (`baselines/ppo.py`: 64 envs x 32 steps per update, batch "
            "512, 10 epochs, lr 3e-4, initial log std 0). Each row changes some of them, everything else as the table "
            "above (same evaluation; its points are in the column eval points), and is scored against FoG's runs of "
            "the same seeds. Ratio = first crossing / sustained, on the seed-mean curves. The same command gives another run on another host (oneDNN "
            "picks other kernels), so each row's PPO and FoG runs come from one host: the one its run files record "
            "(runs saved before session 36 record none; they ran on the Intel host with AMX that `machine.json` "
            "describes). default_epyc is the benchmark's own command made again on the second host, T4_epyc T4's; the "
            "AMD rows share FoG's runs. Eval points: the profile's 9 checkpoints, or 16 where both sides were also "
            "evaluated at 256, 512, ..., 1,792 env steps (`--eval-extra`; same runs at the shared points, "
            "`benchmarks/results/fog_crossing/README.md`).\n",
            "| run | host | PPO settings changed | seeds | eval points | PPO eval at 0 | final | best (at env steps) | "
            "FoG steps to PPO's best | ratio | per seed | PPO GT dense return (final) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def _ppo_ground_truth_section() -> list[str]:
    """PPO trained on the real gym-pusht, against FoG's gym-pusht scores (``benchmarks/ppo_ground_truth.py``)."""
    pg = _load("ppo_ground_truth/summary.json")
    if not pg:
        return []
    out = ["\n### Reference: PPO trained on the real gym-pusht (`benchmarks/ppo_ground_truth.py --quick`)\n",
           f"The same PPO settings, {pg['num_envs']} envs, `dense` reward and 300-step episodes, trained on the "
           f"simulator itself ({pg['steps_per_run']:,} *real* env steps per run) and "
           f"scored like the runs above in gym-pusht ({pg['gt_seeds']} seeds, deterministic) at env steps "
           f"{', '.join(f'{x:,}' for x in pg['eval_schedule'])}. `state` observes the true state (privileged: no "
           "world-model policy has it), `pixels` the 64 x 64 frames; `anchored` acts as FoG and PPO-latent do, with "
           f"targets at most {_f(pg['action_offset_anchored'], 0)} px from the agent (its true position), the others "
           "with absolute targets, whose untrained policy aims at the middle of the workspace, where the goal is. "
           "FoG's row is the table above's: it never sees a real step.\n"]
    sched = pg["eval_schedule"]
    picks = sorted({0, len(sched) // 2, len(sched) - 1})
    out.append("| algorithm | env steps counted | gym-pusht dense return at " + " / ".join(f"{sched[i]:,}" for i in picks)
               + " | best | real steps to FoG's final gym-pusht return | wall s / run |")
    out.append("|---|---|---|---|---|---|")
    fog = pg.get("fog_reference")
    for algo in (k for k in pg if k.startswith("ppo_truth_")):
        s = pg[algo]
        reach = s.get("real_steps_to_fog_final")
        reach_text = ("n/a" if reach is None else "0 (its untrained policy scores higher)" if reach == 0 else
                      f"{reach:,.0f}" if np.isfinite(reach) else f"not within {pg['steps_per_run']:,}")
        obs, _, anchored = algo.removeprefix("ppo_truth_").partition("_")
        out.append(f"| PPO in gym-pusht, {obs}{', anchored' if anchored else ''} ({len(s['seeds'])} seeds) | real | "
                   + " / ".join(_f(s["gym_pusht_return"][i], 1) for i in picks)
                   + f" | {_f(s['best'], 1)} | {reach_text} | {_f(s['wall_s_per_run'], 0)} |")
    if fog:
        out.append(f"| FoG in WM-PushT-v0 ({len(fog['seeds'])} seeds) | world model only | "
                   + " / ".join(f"{_f(r, 1)} (at {x:,})" for x, r in zip(fog["steps"], fog["gym_pusht_return"]))
                   + " | | | |")
    out.append("\n![PPO in gym-pusht](benchmarks/results/ppo_ground_truth/curves.png)")
    return out


def section() -> str:
    out = []
    machine = _load("machine.json") or {"cpu": platform.processor() or platform.machine()}
    note = f" ({machine['note']})" if machine.get("note") else ""
    out.append(f"Machine: {machine.get('description', machine.get('cpu'))}{note}. "
               "Regenerate everything with `bash benchmarks/run_all.sh` then `python benchmarks/make_readme.py`. "
               "Speed, and anything run in bfloat16 (`precision=\"auto\"` picks it on CPUs with AMX or "
               "AVX512-BF16, e.g. the FoG example), differs by host, and on a shared virtual machine from one session to "
               "the next: `benchmarks/results/host_intel_amx/README.md` puts the speed tables of four runs side by "
               "side.")

    se = _load("sample_efficiency_quick/summary.json")
    out.append("\n### Sample efficiency: FoG vs PPO in WM-PushT-v0 (`benchmarks/sample_efficiency.py --quick`)\n")
    if se and "eval_schedule" in se:
        per_algo = se.get("seeds_per_algo", {})
        fewer = [f"{a}: seed{'s' if len(v) > 1 else ''} {', '.join(map(str, v))} only"
                 for a, v in per_algo.items() if v != se["seeds"]]
        out.append(f"{len(se['seeds'])} seeds ({', '.join(map(str, se['seeds']))}"
                   + (f"; {', '.join(fewer)}" if fewer else "") + f"), {se['steps_per_run']:,} world-model env steps per run, "
                   f"`{se['reward_type']}` reward, FoG with N = {se['fog_config']['num_envs']} envs"
                   + "".join(f", {k} = {v}" for k, v in se["fog_config"].items() if k != "num_envs")
                   + f" (otherwise `FoGConfig` defaults). `eval` = the deterministic "
                   f"policy's return over one full episode in each of {se['eval_envs']} world-model envs from fixed "
                   f"seeded starts and noise, at env steps {', '.join(f'{x:,}' for x in se['eval_schedule'])} "
                   "(mean over seeds); `ep_rew_mean` = mean return of the last 100 training episodes (it lags: its "
                   "first value needs ~19k steps). Ground truth (GT) = the policy run in the real gym-pusht "
                   f"({se['gt_seeds']} seeds) at the start, halfway and at the end; "
                   "wall time includes the evaluations. "
                   f"FoG and PPO-latent act with anchored targets (at most {_f(se['action_offset'], 0)} px "
                   "from the agent), PPO-pixels with "
                   "absolute targets (its initial policy aims at the middle of the workspace)."
                   f" For scale: a constant target at the middle of the workspace scores "
                   f"{_f(se['center_target_eval_return'])} on the same evaluation.\n")
        gt_head = " / ".join([f"at {x:,}" for x in se["gt_at"]] + ["final"])
        out.append("| algorithm | eval at 0 | final eval | best eval | final ep_rew_mean | wall s / run | "
                   f"GT mean max coverage | GT success | GT dense return ({gt_head}) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for algo in ("fog", "ppo_latent", "ppo_pixels"):
            if algo in se:
                s = se[algo]
                gt = s.get("ground_truth", {})
                out.append(f"| {algo} | {_f(s['first_eval_return'])} | {_f(s['final_eval_return'])} | "
                           f"{_f(s['best_eval_return'])} | {_f(s['final_ep_rew_mean'])} | "
                           f"{_f(s['wall_s_per_run'], 0)} | {_f(gt.get('mean_max_coverage'), 3)} | "
                           f"{_f(gt.get('success_rate'), 2)} | "
                           + " / ".join([_f(g["mean_return_dense"], 1) for g in s["ground_truth_at"]]
                                        + [_f(gt.get("mean_return_dense"), 1)]) + " |")
        for algo, r in se.get("ratios", {}).items():
            ratio = _ratio_text(r["ratio"])
            if r["ppo_steps"] == 0:
                out.append(f"\nHeadline ({algo}): PPO's best deterministic eval return is its initial policy's "
                           f"({_f(r['ppo_best'])}; training lowered it), which FoG "
                           + (f"reaches after {_f(r['fog_steps'], 0)} steps." if np.isfinite(r["fog_steps"])
                              else "never reaches: no ratio."))
            else:
                out.append(f"\nHeadline ({algo}): PPO's deterministic eval return reaches its best {_f(r['ppo_best'])} "
                           f"after {_f(r['ppo_steps'], 0)} steps, FoG's "
                           + (f"after {_f(r['fog_steps'], 0)}" if np.isfinite(r["fog_steps"]) else "never does")
                           + f": **{ratio}** (goal: 20x).")
            if r["ppo_steps"] != 0:
                rs = r["ratio_sustained"]
                out.append("Counting FoG's steps from where its curve *stays* at or above that return: "
                           + (f"after {_f(r['fog_steps_sustained'], 0)} steps, **{rs:.1f}x**." if not isinstance(rs, str)
                              else f"{rs}."))
            per_seed = se.get("ratios_per_seed", {}).get(algo)
            if per_seed and len(per_seed) > 1 and r["ppo_steps"] != 0:
                out.append("Per seed (FoG's run against the PPO run of the same seed and that run's best; first "
                           "crossing / sustained): " + ", ".join(
                               f"seed {q['seed']} {_ratio_text(q['ratio'], True)} / {_ratio_text(q['ratio_sustained'], True)}"
                               for q in per_seed) + ".")
            boot = se.get("ratios_bootstrap", {}).get(algo)
            if boot and r["ppo_steps"] != 0:
                b = boot["ratio"]
                out.append(f"Resampling the {len(boot['seeds'])} seeds with replacement ({boot['draws']:,} draws, FoG's and "
                           f"PPO's run of a seed together; `ratio_bootstrap`): median {b['median']:.1f}x, 90 % interval "
                           f"{b['p5']:.1f}x-{b['p95']:.1f}x, at least 20x in {100 * b['fraction_at_least_20x']:.0f} % of "
                           "draws.")
            t = se.get("ratios_ep_rew_mean", {}).get(algo)
            if t:
                tr = _ratio_text(t["ratio"])
                out.append(f"The same on the training curves (`ep_rew_mean`, best {_f(t['ppo_best'])}): {tr}.")
        out.append("\n![learning curves](benchmarks/results/sample_efficiency_quick/curves.png)")
    else:
        out.append("not run yet (or run by an older version of the script: rerun it)")
    out.extend(_ppo_tuning_section())
    out.extend(_fog_comparison_sections())

    out.extend(_ppo_ground_truth_section())

    ref = _load("reference_policies.json")
    if ref:
        st = ref["settings"]
        out.append(f"\nScripted references on the same world-model evaluation and in gym-pusht "
                   f"({st['gt_seeds']} seeds), frames only: each reads the surrogate's state estimate from the latent; "
                   f"the anchored ones move at most {_f(st['max_offset'], 0)} px per step "
                   "(`benchmarks/reference_policies.py`, its docstring defines the rules):\n")
        out.append("| scripted policy | world-model eval | GT dense return | GT mean max coverage | GT success |")
        out.append("|---|---|---|---|---|")
        for name, r in ref.items():
            if name != "settings":
                out.append(f"| {name} | {_f(r['wm_eval_return'])} | {_f(r['gt_mean_return_dense'], 1)} | "
                           f"{_f(r['gt_mean_max_coverage'], 3)} | {_f(r['gt_success_rate'], 2)} |")

    fog = _load("fog_example.json")
    out.append("\n### `examples/fog_pusht.py` (default budget) in the ground truth\n")
    if fog:
        out.append("| policy | GT seeds | mean max coverage | mean final coverage | success rate | GT dense return |")
        out.append("|---|---|---|---|---|---|")
        for name, r in fog.get("ground_truth", {}).items():
            out.append(f"| {name} | {len(r.get('seeds', [])) or 'n/a'} | {_f(r.get('mean_max_coverage'), 3)} | "
                       f"{_f(r.get('mean_final_coverage'), 3)} | {_f(r.get('success_rate'), 2)} | "
                       f"{_f(r.get('mean_return_dense'), 1)} |")
        if "world_model" in fog:
            wm = fog["world_model"]
            out.append(f"\nTrained {fog['env_steps']:,} world-model env steps in {fog['train_seconds']:.0f} s; time per "
                       f"phase (s): {json.dumps(fog.get('timings_s'))}. World-model ep_rew_mean (last 100 episodes) "
                       f"{_f(wm.get('ep_rew_mean'))}, deterministic mean reward per step {_f(wm.get('mean_reward'), 3)}.")
            out.append("\n![FoG learning curve](benchmarks/results/fog_learning_curve.png)")
    else:
        out.append("not run yet")

    gt50 = _load("fog_ground_truth_50.json")
    if gt50:
        out.append(f"\nThe same FoG policy over {gt50['settings']['seeds']} ground-truth seeds "
                   "(`benchmarks/ground_truth_eval.py`):\n")
        out.append("| policy | mean max coverage | mean final coverage | success rate | GT dense return |")
        out.append("|---|---|---|---|---|")
        for name, r in gt50.items():
            if name != "settings":
                out.append(f"| {name} | {_f(r['mean_max_coverage'], 3)} | {_f(r['mean_final_coverage'], 3)} | "
                           f"{_f(r['success_rate'], 2)} | {_f(r.get('mean_return_dense'), 1)} |")

    out.append("\n### Cost of one policy gradient (`benchmarks/gradient_cost.py`)\n")
    for name in ("gradient_cost.json", "gradient_cost_bfloat16.json"):
        gc = _load(name)
        if not gc:
            out.append("not run yet" if name == "gradient_cost.json" else "")
            continue
        timing = (f"median of {gc['repeats']} updates after {gc['warmup']} untimed" if "repeats" in gc
                  else "one cold update per method")
        out.append(f"N = {gc['num_envs']} envs, H = {gc['horizon']} steps, {gc['device']}, {gc['threads']} threads, "
                   f"global model in {gc.get('precision', 'float32')}; times: {timing}.\n")
        out.append("| method | whole update s | backward s | first update of the process s | saved for backward MB "
                   "| cosine to BPTT-through-diffusion |")
        out.append("|---|---|---|---|---|---|")
        for m, r in gc["methods"].items():
            if "error" in r:
                out.append(f"| {m} | failed: {r['error']} | | | | |")
            else:
                out.append(f"| {m} | {_f(r['update_s'])} | {_f(r['backward_s'], 3)} | {_f(r.get('first_update_s'))} | "
                           f"{_f(r['saved_for_backward_mb'], 1)} | {_f(r.get('cosine_to_bptt'))} |")
        if "bptt_over_fog_update_time" in gc:
            out.append(f"\nBPTT-through-diffusion / FoG: whole update {gc['bptt_over_fog_update_time']:.1f}x, "
                       f"backward {gc['bptt_over_fog_backward_time']:.0f}x, memory {gc['bptt_over_fog_memory']:.0f}x.\n")

    asc = _load("fog_ascent.json")
    out.append("\n### Does a step along FoG's gradient raise the global return? (`benchmarks/fog_ascent.py`)\n")
    if asc:
        H, L, st = asc["horizon"], asc["eval_horizon"], asc["start"]
        out.append(f"The actor FoG starts from (about the middle of the box), N = {asc['num_envs']} seeded starts, "
                   f"fixed diffusion noise, `{asc['reward_type']}` reward: its weights moved by eta along each unit "
                   f"gradient of the {H}-step return; deterministic global-model return after the step. At the start: "
                   f"J_{H} {st['J_H']:.3f}, J_{L} {st['J_long']:.3f}. Cosines between the directions: "
                   + ", ".join(f"{k.replace('_vs_', ' / ')} {v:.2f}" for k, v in asc["cosines"].items()) + ".\n")
        out.append(f"| direction | eta | change of global J_{H} | change of global J_{L} |")
        out.append("|---|---|---|---|")
        for r in asc["steps"]:
            out.append(f"| {r['direction']} | {r['eta']:g} | {r['J_H'] - st['J_H']:+.3f} | {r['J_long'] - st['J_long']:+.3f} |")
    else:
        out.append("not run yet")

    es = _load("env_speed.json")
    out.append("\n### Env speed (`benchmarks/env_speed.py`)\n")
    if es:
        extra = [p for p in es.get("resolved_precisions", {}) if p != "float32"]
        out.append("| env | steps/s (float32) | " + " | ".join(f"steps/s ({p})" for p in extra) + " |")
        out.append("|---|---|" + "---|" * len(extra))
        for k, v in es.items():
            if k in ("threads", "startup_s", "resolved_precisions") or k.startswith("vector_over") \
                    or any(k.endswith(f"_{p}") for p in extra):
                continue
            wm_row = k.startswith(("raw_", "wm_"))
            out.append(f"| {k} | {_f(v, 1)} | " + " | ".join(_f(es.get(f"{k}_{p}"), 1) if wm_row else "" for p in extra)
                       + " |")
        over = es.get("vector_over_raw_64", next((v for k, v in es.items() if k.startswith("vector_over")), None))
        out.append(f"\nVector env / raw batched global model: {_f(over)}; import + make + first reset: "
                   f"{_f(es.get('startup_s'))} s ({es.get('threads')} torch threads). The precision columns are the env's "
                   f"`precision` argument (bfloat16: the global model under `torch.autocast`"
                   + "".join(f"; {p} ran as {r}" for p, r in es.get("resolved_precisions", {}).items() if p != r)
                   + "); the gym-pusht rows are the simulator's own.")
    else:
        out.append("not run yet")

    sn = _load("sampler_noise.json")
    out.append("\n### Sampler noise: one draw vs antithetic pairs (`benchmarks/sampler_noise.py`)\n")
    if sn:
        hs = sorted(int(k[5:]) for k in sn["modes"]["one_draw"] if k.startswith("mse_h"))
        out.append("| sampler | " + " | ".join(f"pixel MSE h{h}" for h in hs) + " | env steps/s (batch "
                   f"{sn['batch']}) |")
        out.append("|---|" + "---|" * (len(hs) + 1))
        for mode, row in [*sn["modes"].items(), ("copy_last", {f"mse_h{h}": sn["copy_last"][f"mse_copy_h{h}"]
                                                               for h in hs})]:
            out.append(f"| {mode} | " + " | ".join(f"{row[f'mse_h{h}']:.5f}" for h in hs) + " | "
                       + (_f(row["env_steps_per_s"], 0) if "env_steps_per_s" in row else "") + " |")
        out.append(f"\n{sn['starts']} held-out open-loop starts under the recorded actions; the model's own sampler setting: "
                   f"{'antithetic' if sn['model_sampler'].get('antithetic') else 'one draw'}, "
                   f"{sn['model_sampler']['num_steps']} Euler step(s), min_change "
                   f"{sn['model_sampler'].get('min_change', 0.0):g} (every mode).")
    else:
        out.append("not run yet")

    for name, title in (
        ("fidelity/fidelity.md", "Global-model fidelity, open loop on held-out real episodes (`wm-gym eval-fidelity`)"),
        ("fidelity_bfloat16/fidelity.md", "The same with the global model in bfloat16 (`wm-gym eval-fidelity "
         "--precision bfloat16`; the env's `precision` argument)"),
        ("fidelity_fog_policy/fidelity.md", "The same, on episodes of the example's FoG policy (sampled actions) in "
         "gym-pusht: where the policy acts (`wm-gym collect --policy`, run_all's fog stage; made in session 27 with the "
         "example's policy of then, before session 30's FoG fix; this stage's last two commands need the state probe)"),
        ("gradient_fidelity.md", "Surrogate gradient fidelity (`benchmarks/gradient_fidelity.py`)"),
        ("jacobian_speed.md", "Surrogate Jacobians (`benchmarks/jacobian_speed.py`)"),
        ("omp_wait.md", "OpenMP wait policy and torch threads, free and busy CPU (`benchmarks/omp_wait.py`)"),
        ("training_speed.md", "Global-model training throughput, float32 vs bfloat16 (`wm-gym train-global --precision`; "
         "`benchmarks/global_speed.py --train`)"),
    ):
        p = RESULTS / name
        out.append(f"\n### {title}\n")
        out.append(p.read_text().strip() if p.exists() else "not run yet")
    for name, title in (("collection.json", "Data collection throughput (`benchmarks/collection.py`)"),
                        ("dataset_stats.json", "The training collection (`benchmarks/collection.py --stats`)")):
        data = _load(name)
        out.append(f"\n### {title}\n")
        out.append("```json\n" + json.dumps(data, indent=1) + "\n```" if data else "not run yet")
    return "\n".join(out)


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + "\n" + body + "\n" + end + tail


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    readme = (ROOT / "README.md").read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md lacks the markers {BEGIN} / {END}", file=sys.stderr)
        return 1
    new = _replace_block(readme, BEGIN, END, section())
    if TARGETS_BEGIN in new and TARGETS_END in new:
        new = _replace_block(new, TARGETS_BEGIN, TARGETS_END, targets_section())
    if args.check:
        return 0 if new == readme else 1
    (ROOT / "README.md").write_text(new)
    print("README.md results section regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
