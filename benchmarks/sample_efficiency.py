"""Sample efficiency on WM-PushT-v0: FoG vs SB3 PPO (latent MlpPolicy, pixel CnnPolicy), several seeds.

Every algorithm sees the same env (same world model, ``reward_type``, 300-step episodes) and is scored
by the same two numbers against world-model env steps (every training step of the global model counts):

* ``eval_return`` (the headline): the deterministic policy's mean return over one full episode in each of
  ``eval_envs`` world-model envs reset from the same seeded start states with the same diffusion noise
  (:class:`fog_trainer.evaluate.WorldModelEvaluator`, the world-model ``EvalCallback``), at the same
  env-step checkpoints for every algorithm (0, then a geometric grid up to the budget, so early progress is
  resolved). Evaluation steps are not counted as training steps.
* ``ep_rew_mean``: the mean undiscounted return of the last 100 finished *training* episodes (SB3's
  ``rollout/ep_rew_mean``). It lags: with 64 envs and 300-step episodes its first value (64 episodes)
  exists only after ~19k steps, so it cannot show a speed-up larger than ~5x at 100k steps.

At the start, halfway and at the end the policy is also run in the real gym-pusht (``fog_trainer.evaluate``),
and a constant target at the middle of the action box is scored by the same evaluation for scale. Each finished
run is saved as ``OUT/runs/ALGO_SEED.json`` with the settings that made it; a rerun with the same settings
reuses it, so an interrupted benchmark resumes at the run it was in. Each run also records its host (the CPU's
model name with its vector instructions, or the GPU's: ``machine.host_name``) and its package versions; a summary
that would combine runs of several hosts is refused unless ``--mixed-hosts`` is given, because the same command
gives other numbers on another CPU.

    python benchmarks/sample_efficiency.py --quick      # CPU profile, results in benchmarks/results/
    python benchmarks/sample_efficiency.py --full --device cuda
    python benchmarks/sample_efficiency.py --smoke --checkpoint DIR   # seconds (test suite)

Headline: ``ratio = PPO env steps to reach its best eval_return / FoG env steps to reach the same`` (per
PPO variant, on the seed-mean eval curves, linearly interpolated between checkpoints); when FoG never
reaches it the ratio is reported as < 1. The same ratio per seed (FoG's run against PPO's run of that seed)
shows how much of the headline one seed decides, and resampling the seeds (:func:`ratio_bootstrap`) how much
the set of seeds decides. The same ratio on the ``ep_rew_mean`` curves is also written. Where FoG passes PPO's
best before the first checkpoint the crossing is interpolated from the start; ``--eval-extra 256,512,...`` evaluates
at more points to resolve it (``compare_fog_runs.py`` reads FoG's crossing on them against PPO runs of the profile).
A training-curve point counts once its mean is over at least ``num_envs`` finished episodes: before that
it is the mean of a handful of episodes the world model ended early.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch; see wm_gym/__init__.py

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

# FoG's N and actor lr for sample efficiency: one update per N x H steps, so a smaller N gives more updates per
# env step. The lr was picked by a 30k-step, one-seed sweep (benchmarks/results/sample_efficiency_fog_settings.md),
# N = 8 (N = 16 until session 32) from N = 16 / 8 / 4 on seeds 0-3 (benchmarks/results/fog_envs_per_update/);
# PPO keeps its RL-Zoo-like settings (baselines/ppo.py).
FOG_SETTINGS = {"num_envs": 8, "actor_lr": 1e-3}
PROFILES = {
    "smoke": {"steps": 512, "seeds": [0], "algos": ["fog", "ppo_latent"], "gt_seeds": 1, "gt_steps": 10,
              "num_envs": 8, "eval_envs": 2, "eval_steps": 5, "eval_first": 256, "eval_points": 3},
    "quick": {"steps": 100_000, "seeds": [0, 1], "algos": ["fog", "ppo_latent", "ppo_pixels"], "gt_seeds": 20,
              "gt_steps": 300, "num_envs": 64, "eval_envs": 32, "eval_steps": 300, "eval_first": 2048,
              "eval_points": 9, "fog": FOG_SETTINGS},
    "full": {"steps": 1_000_000, "seeds": [0, 1, 2, 3, 4], "algos": ["fog", "ppo_latent", "ppo_pixels"],
             "gt_seeds": 50, "gt_steps": 300, "num_envs": 64, "eval_envs": 64, "eval_steps": 300,
             "eval_first": 2048, "eval_points": 13, "fog": FOG_SETTINGS},
}
# the PPO hyper-parameters ``--ppo KEY=VALUE`` may change (baselines.PPOArgs fields)
PPO_TUNABLE = ("n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda", "ent_coef", "clip_range",
               "log_std_init", "normalize_reward")
OBS_TYPE = {"fog": "latent", "ppo_latent": "latent", "ppo_pixels": "pixels"}  # what each algorithm acts on
EVAL_SEED = 20_000  # start states and diffusion noise of every evaluation (training uses the run's seed)
GT_SEED0 = 1000  # the first of the gym-pusht seeds every policy is scored on


def eval_schedule(total: int, first: int, points: int) -> list[int]:
    """Env steps at which to evaluate: 0, then ``points - 1`` geometrically spaced from ``first`` to ``total``."""
    grid = np.geomspace(first, total, max(points - 1, 1)) if total > first else np.array([total])
    return [0] + sorted({int(round(x)) for x in grid})


def with_extra_points(schedule: list[int], extra: str | None, total: int) -> list[int]:
    """``schedule`` with the env-step counts of ``extra`` ("256,512,...") added, sorted; a count outside
    (0, ``total``) is a clear error."""
    if not extra:
        return schedule
    try:
        points = {int(x) for x in extra.split(",")}
    except ValueError:
        raise SystemExit(f"--eval-extra takes env-step counts separated by commas, e.g. 256,512; got {extra!r}")
    bad = sorted(x for x in points if not 0 < x < total)
    if bad:
        raise SystemExit(f"--eval-extra points must lie between 0 and the budget ({total:,} steps); got {bad}")
    return sorted(set(schedule) | points)


def ground_truth_summary(policy, prof: dict, image_size: int = 64) -> dict:
    """The policy in gym-pusht: one deterministic episode of ``prof["gt_steps"]`` steps from each of the seeds
    ``GT_SEED0, GT_SEED0 + 1, ...`` (``prof["gt_seeds"]`` of them); the means of
    :func:`fog_trainer.evaluate.evaluate_in_ground_truth`, without its per-seed lists."""
    from fog_trainer.evaluate import evaluate_in_ground_truth

    gt = evaluate_in_ground_truth(policy, seeds=range(GT_SEED0, GT_SEED0 + prof["gt_seeds"]),
                                  max_steps=prof["gt_steps"], image_size=image_size)
    return {k: v for k, v in gt.items() if not isinstance(v, (list, tuple))}


def ground_truth_points(summary: dict, algo: str) -> list[tuple[int, float]]:
    """[(env_steps, gym-pusht dense return)] of ``algo`` in a summary this script wrote: its ``gt_at`` checkpoints,
    then the end of the run (seed means)."""
    entry = summary[algo]
    return ([(p["env_steps"], p["mean_return_dense"]) for p in entry["ground_truth_at"]]
            + [(summary["steps_per_run"], entry["ground_truth"]["mean_return_dense"])])


class ScheduledEval:
    """Evaluates a policy whenever training has passed the next point of the schedule (once per crossing,
    recorded at the actual step count); ``rows`` = [(env_steps, mean eval return)] (none with ``evaluator=None``).
    At the points in ``gt_at`` the frame-acting policy is also run in gym-pusht by ``ground_truth(policy) -> dict``;
    ``gt_rows`` = [(env_steps, that dict)]."""

    def __init__(self, evaluator, schedule: list[int], ground_truth=None, gt_at: tuple[int, ...] = ()):
        self.evaluator, self.pending, self.rows = evaluator, list(schedule), []
        self.ground_truth, self.gt_at, self.gt_rows = ground_truth, set(gt_at), []

    def __call__(self, num_timesteps: int, act, policy=None) -> None:
        if self.pending and num_timesteps >= self.pending[0]:
            passed = []
            while self.pending and num_timesteps >= self.pending[0]:
                passed.append(self.pending.pop(0))
            if self.evaluator is not None:
                self.rows.append((int(num_timesteps), self.evaluator(act)["mean_return"]))
            if self.ground_truth is not None and self.gt_at.intersection(passed):
                self.gt_rows.append((int(num_timesteps), self.ground_truth(policy)))


def parse_overrides(items: list[str] | None, defaults: dict, allowed, flag: str, what: str) -> dict:
    """``["key=value", ...]`` -> {key: value}, each value cast to the type of ``defaults[key]``; a key outside
    ``allowed`` (or without ``=``) is a clear error naming ``flag`` and ``what`` the keys may be."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise SystemExit(f"{flag} takes KEY=VALUE with KEY {what}, got {item!r}")
        kind = type(defaults[key])
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def fog_overrides(items: list[str] | None) -> dict:
    """``["num_envs=16", "actor_lr=1e-3"]`` -> FoGConfig keyword arguments (scalar fields)."""
    from fog_trainer import FoGConfig

    defaults = FoGConfig().to_dict()
    scalar = [k for k, v in defaults.items() if not isinstance(v, (tuple, list))]
    return parse_overrides(items, defaults, scalar, "--fog", "a scalar FoGConfig field")


def ppo_overrides(items: list[str] | None) -> dict:
    """``["n_steps=8", "normalize_reward=true"]`` -> PPOArgs keyword arguments for the PPO runs (hyper-parameters
    only: the env, budget, seed and outputs are the benchmark's)."""
    from baselines import PPOArgs

    return parse_overrides(items, PPOArgs().__dict__, PPO_TUNABLE, "--ppo", f"one of {', '.join(PPO_TUNABLE)}")


def fog_settings(prof: dict, args) -> dict:
    """FoGConfig overrides of a run: the env count, then the profile's, then ``--fog KEY=VALUE``."""
    return {"num_envs": prof["num_envs"], **prof.get("fog", {}), **fog_overrides(args.fog)}


def run_fog(seed, prof, args, out, evaluate: ScheduledEval):
    from fog_trainer import FoGConfig, FoGTrainer

    cfg = FoGConfig(**fog_settings(prof, args), seed=seed, device=args.device, precision=args.precision,
                    checkpoint=args.checkpoint or "", reward_type=args.reward_type, run_dir=str(out / f"fog_{seed}"),
                    progress_bar=not args.smoke, checkpoint_every=0)
    t0 = time.time()
    trainer = FoGTrainer("WM-PushT-v0", cfg)
    evaluate(0, trainer.policy.act_latent, trainer.policy)
    trainer.learn(prof["steps"],
                  callback=lambda tr, logs: evaluate(tr.num_timesteps, tr.policy.act_latent, tr.policy))
    rows = [(h["num_timesteps"], h["ep_rew_mean"], h["ep_len_mean"], None, h["ep_count"]) for h in trainer.history
            if h.get("ep_count", 0) >= cfg.num_envs]
    trainer.save(out / f"fog_{seed}" / "policy")
    return rows, trainer.policy, time.time() - t0


def run_ppo(seed, prof, args, out, obs_type, evaluate: ScheduledEval):
    from stable_baselines3.common.callbacks import BaseCallback

    from baselines import PPOArgs, PPOFramePolicy, train_ppo
    from fog_trainer import FoGConfig

    # PPO on the latent acts in FoG's action parameterisation (agent-anchored offsets); on pixels the anchor
    # is not available to the adapter, so PPO-pixels keeps absolute targets
    offset = FoGConfig(**fog_settings(prof, args)).action_offset if obs_type == "latent" else 0.0
    a = PPOArgs(obs_type=obs_type, reward_type=args.reward_type, total_timesteps=prof["steps"], action_offset=offset,
                num_envs=prof["num_envs"], n_steps=16 if args.smoke else 32, batch_size=64 if args.smoke else 512,
                n_epochs=2 if args.smoke else 10, checkpoint=args.checkpoint, device=args.device,
                precision=args.precision, seed=seed,
                out=str(out), progress_bar=not args.smoke, run_name=f"ppo_{obs_type}_{seed}")
    a = dataclasses.replace(a, **ppo_overrides(args.ppo))

    class _Eval(BaseCallback):
        def _init_callback(self) -> None:
            self.policy = PPOFramePolicy(self.model, obs_type, checkpoint=args.checkpoint, device=args.device,
                                         action_offset=offset)

        def _on_training_start(self) -> None:
            evaluate(0, self.policy.act_obs, self.policy)

        def _on_step(self) -> bool:
            evaluate(self.num_timesteps, self.policy.act_obs, self.policy)
            return True

    t0 = time.time()
    model, rows, _ = train_ppo(a, callback=_Eval())
    rows = [r for r in rows if r[4] >= prof["num_envs"]]
    # SB3 calls _on_step at the last step too, and PPO rounds the budget up to whole rollouts, so the schedule's
    # last point (the budget) has been evaluated by now
    policy = PPOFramePolicy(model, obs_type, checkpoint=args.checkpoint, device=args.device, action_offset=offset)
    return rows, policy, time.time() - t0


def checkpoint_fingerprint(checkpoint: str | None) -> str:
    """sha256 of a world-model checkpoint's weights and configs (e.g. the sampler setting), not its notes."""
    import hashlib

    from wm_gym.envs.core import checkpoint_dir

    root = checkpoint_dir(checkpoint)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".npz")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_settings(algo: str, seed: int, prof: dict, args, schedule: list[int], gt_at: tuple[int, ...],
                 checkpoint_sha256: str) -> dict:
    """Everything that determines one run's result (a saved result is reused only when all of it matches);
    ``checkpoint_sha256`` is :func:`checkpoint_fingerprint` of ``args.checkpoint``."""
    keys = ("steps", "num_envs", "eval_envs", "eval_steps", "gt_seeds", "gt_steps")
    return {"algo": algo, "seed": seed, **{k: prof[k] for k in keys}, "schedule": schedule, "gt_at": list(gt_at),
            "reward_type": args.reward_type, "checkpoint": args.checkpoint,
            "checkpoint_sha256": checkpoint_sha256, "device": args.device,
            "smoke": bool(args.smoke), "fog": fog_settings(prof, args) if algo == "fog" else None,
            # only when given, so that runs saved before the option existed still match
            **({"ppo": ppo_overrides(args.ppo)} if args.ppo and algo.startswith("ppo") else {}),
            # only when not float32, so that runs saved before the option existed still match
            **({"precision": args.precision} if args.precision != "float32" else {})}


NOT_RECORDED = "not recorded"  # the host of a run saved before session 36, when runs began to record it


def check_one_host(hosts: dict[str, str], what: Path | str) -> None:
    """Refuse a comparison whose runs come from several hosts. ``hosts`` maps each run of the comparison (reused or
    to be made) to the host that made or will make it (:data:`NOT_RECORDED` counts as a host of its own: nothing
    says it is this one); ``what`` names the comparison in the message. The same command gives other numbers on
    another CPU, and the ratio moves with them (41.4x on one host, 11.6x on another:
    ``benchmarks/results/ppo_tuning/README.md``), so a mixed comparison measures the hosts as much as the
    algorithms."""
    by_host: dict[str, list[str]] = {}
    for run, host in hosts.items():
        by_host.setdefault(host, []).append(run)
    if len(by_host) > 1:
        listed = "; ".join(f"{host}: {', '.join(runs)}" for host, runs in by_host.items())
        raise SystemExit(
            f"{what} would compare runs made on {len(by_host)} hosts ({listed}). The same command gives other numbers "
            "on another CPU, so such a comparison measures the hosts as well as the algorithms. Compare runs of one "
            "host (for the benchmark: a new --out, or one holding only this host's runs), or pass --mixed-hosts to "
            "compare them anyway.")


def _load_result(path: Path) -> dict | None:
    """A saved run result, or None when there is none or it cannot be read (the run is then made again)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"{path} is unreadable ({e}); running it again", flush=True)
        return None


def steps_to_reach(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First env-step count at which the piecewise-linear curve (steps, values) reaches ``level`` (inf: never)."""
    for k, (s, v) in enumerate(zip(steps, values)):
        if np.isfinite(v) and v >= level:
            if k == 0 or not np.isfinite(values[k - 1]):
                return float(s)
            s0, v0 = steps[k - 1], values[k - 1]
            return float(s0 + (s - s0) * (level - v0) / (v - v0))
    return float("inf")


def steps_to_stay(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """Env-step count from which the piecewise-linear curve stays at or above ``level`` to its end (inf: it
    ends below). Unlike :func:`steps_to_reach`, one lucky checkpoint followed by a fall does not count."""
    below = [k for k, v in enumerate(values) if not (np.isfinite(v) and v >= level)]
    if not below:
        return float(steps[0])
    k = below[-1]
    if k == len(values) - 1:
        return float("inf")
    return steps_to_reach(steps[k:], values[k:], level)


def mean_curve(runs: list[list[tuple]], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate each seed's (steps, return) curve on ``grid``; return mean and std over seeds."""
    ys = []
    for rows in runs:
        if not rows:
            continue
        s = np.array([r[0] for r in rows], float)
        y = np.array([r[1] for r in rows], float)
        ys.append(np.interp(grid, s, y, left=np.nan, right=y[-1]))
    if not ys:
        return np.full_like(grid, np.nan), np.full_like(grid, np.nan)
    ys = np.array(ys)
    return np.nanmean(ys, 0), np.nanstd(ys, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    for name in PROFILES:
        g.add_argument(f"--{name}", action="store_true", help=f"profile {PROFILES[name]}")
    p.add_argument("--steps", type=int, default=None, help="override the profile's env steps per run")
    p.add_argument("--seeds", default=None, help="override the seeds, e.g. 0,1,2")
    p.add_argument("--algos", default=None, help="override the algorithms, e.g. fog,ppo_latent")
    p.add_argument("--algo-seeds", action="append", default=[], metavar="ALGO=SEEDS",
                   help="other seeds for one algorithm, e.g. ppo_pixels=0,1 to run an expensive one on fewer seeds "
                        "(repeatable; the summary says which seeds each algorithm has)")
    p.add_argument("--reward-type", default="dense")
    p.add_argument("--fog", action="append", metavar="KEY=VALUE",
                   help="override a FoGConfig field for FoG's runs, e.g. --fog num_envs=16 (repeatable)")
    p.add_argument("--ppo", action="append", metavar="KEY=VALUE",
                   help="override a PPO hyper-parameter for the PPO runs, e.g. --ppo n_steps=8 (repeatable; one of "
                        + ", ".join(PPO_TUNABLE) + ")")
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: shipped)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="float32",
                   help="the world model's arithmetic for every algorithm and evaluation: float32, bfloat16 or auto "
                        "(bfloat16 is ~1.4x as fast on CPUs with AMX; runs are saved per precision)")
    p.add_argument("--out", default=None, help="output dir (default: benchmarks/results/sample_efficiency_PROFILE)")
    p.add_argument("--eval-extra", default=None, metavar="STEPS",
                   help="more evaluation points besides the profile's, e.g. 256,512,1024 to resolve where FoG crosses "
                        "PPO's best before the first checkpoint (benchmarks/compare_fog_runs.py scores such runs against "
                        "PPO runs of the profile's schedule); runs are saved per schedule")
    p.add_argument("--mixed-hosts", action="store_true",
                   help="allow the summary to combine saved runs made on another host (each run file records its "
                        "host) with runs made on this one, or runs of several hosts; refused by default")
    args = p.parse_args()
    profile = next((n for n in PROFILES if getattr(args, n)), "quick")
    prof = dict(PROFILES[profile])
    if args.steps:
        prof["steps"] = args.steps
    if args.seeds:
        prof["seeds"] = sorted({int(s) for s in args.seeds.split(",")})
    if args.algos:
        prof["algos"] = args.algos.split(",")
    out = Path(args.out or Path(__file__).parent / "results" / f"sample_efficiency_{profile}")
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)

    from fog_trainer import FoGConfig
    from fog_trainer.evaluate import WorldModelEvaluator
    from wm_gym.io import atomic_write_text
    from wm_gym.envs import WorldModel
    from machine import host_name, software

    task = WorldModel.load(args.checkpoint).task
    image_size = task.image_size
    action_low, action_high = np.full(task.action_dim, task.action_low), np.full(task.action_dim, task.action_high)
    evaluators: dict[str, WorldModelEvaluator] = {}  # per observation type; same starts and noise for all

    def evaluator_for(obs_type: str) -> WorldModelEvaluator:
        if obs_type not in evaluators:
            evaluators[obs_type] = WorldModelEvaluator(
                num_envs=prof["eval_envs"], seed=EVAL_SEED, reward_type=args.reward_type, checkpoint=args.checkpoint,
                device=args.device, max_steps=prof["eval_steps"], obs_type=obs_type, precision=args.precision)
        return evaluators[obs_type]
    schedule = eval_schedule(prof["steps"], prof["eval_first"], prof["eval_points"])
    gt_at = (schedule[0], schedule[len(schedule) // 2])  # gym-pusht at the start and halfway (and at the end)
    schedule = with_extra_points(schedule, args.eval_extra, prof["steps"])  # gt_at stays the profile's
    checkpoint_sha256 = checkpoint_fingerprint(args.checkpoint)  # once: every saved run is checked against it

    def ground_truth(policy) -> dict:
        return ground_truth_summary(policy, prof, image_size)

    algos = prof["algos"]
    curves: dict[str, list] = {a: [] for a in algos}
    evals: dict[str, list] = {a: [] for a in algos}
    ground_truths: dict[str, list] = {a: [] for a in algos}
    gt_curves: dict[str, list] = {a: [] for a in algos}
    wall: dict[str, list] = {a: [] for a in algos}
    hosts: dict[str, list] = {a: [] for a in algos}
    for algo in algos:
        if algo not in OBS_TYPE:
            raise SystemExit(f"unknown algorithm {algo!r}; choose from {', '.join(OBS_TYPE)}")
    seeds_of = algo_seeds(algos, prof["seeds"], args.algo_seeds)
    this_host = host_name(args.device)
    # a finished run is kept on disk with the settings that made it: an interrupted benchmark resumes. Which runs
    # are reused is settled first, so that a comparison across hosts is refused before anything runs.
    planned: list[tuple[str, int, Path, dict, dict | None]] = []
    for seed in sorted(set().union(*seeds_of.values())):
        for algo in algos:
            if seed not in seeds_of[algo]:
                continue
            result_path = runs_dir / f"{algo}_{seed}.json"
            settings = run_settings(algo, seed, prof, args, schedule, gt_at, checkpoint_sha256)
            result = _load_result(result_path)
            planned.append((algo, seed, result_path, settings,
                            result if result is not None and result.get("settings") == settings else None))
    if not args.mixed_hosts:
        check_one_host({f"{algo} seed {seed}" + ("" if saved else " (to be made)"):
                        saved.get("host", NOT_RECORDED) if saved else this_host
                        for algo, seed, _, _, saved in planned}, out)
    for algo, seed, result_path, settings, result in planned:
        if result is not None:
            print(f"[{algo} seed {seed}] finished run reused from {result_path}", flush=True)
        else:
            evaluate = ScheduledEval(evaluator_for(OBS_TYPE[algo]), schedule, ground_truth, gt_at)
            if algo == "fog":
                rows, policy, dt = run_fog(seed, prof, args, runs_dir, evaluate)
            else:
                rows, policy, dt = run_ppo(seed, prof, args, runs_dir, OBS_TYPE[algo], evaluate)
            # the host is kept beside the settings, not in them: the same command gives another run on a CPU
            # whose kernels round differently, and saved runs keep matching their settings (check_one_host)
            result = {"settings": settings, "rows": rows, "eval_rows": evaluate.rows, "wall_s": dt,
                      "ground_truth": ground_truth(policy), "gt_rows": evaluate.gt_rows, "host": this_host,
                      "software": software()}
            atomic_write_text(result_path, json.dumps(result, default=float))
        curves[algo].append(result["rows"])
        evals[algo].append(result["eval_rows"])
        wall[algo].append(result["wall_s"])
        hosts[algo].append(result.get("host", NOT_RECORDED))
        ground_truths[algo].append(result["ground_truth"])
        gt_curves[algo].append(result["gt_rows"])
        print(f"[{algo} seed {seed}] {result['wall_s']:.0f}s (evaluations included), eval returns "
              f"{[round(r, 1) for _, r in result['eval_rows']]}, ground truth {result['ground_truth']}", flush=True)

    write_curves(out / "curves.csv", "ep_rew_mean", curves, seeds_of)
    write_curves(out / "eval_curves.csv", "eval_return", evals, seeds_of)

    points = np.array(schedule, float)
    eval_mean = {a: mean_curve(evals[a], points) for a in algos}
    grid = np.linspace(0, prof["steps"], 200)
    train_mean = {a: mean_curve(curves[a], grid) for a in algos}
    # a fixed reference on the same evaluation: every step, the target is the middle of the action box
    center = evaluator_for("latent")(lambda z: np.tile((action_low + action_high) / 2, (len(z), 1)))["mean_return"]
    summary: dict = {"profile": profile, "steps_per_run": prof["steps"], "seeds": prof["seeds"],
                     "seeds_per_algo": seeds_of,
                     "reward_type": args.reward_type, "device": args.device, "precision": args.precision,
                     "eval_envs": prof["eval_envs"],
                     "eval_steps": prof["eval_steps"], "eval_schedule": schedule, "gt_at": list(gt_at), "gt_seeds": prof["gt_seeds"],
                     "fog_config": fog_settings(prof, args), "ppo_overrides": ppo_overrides(args.ppo),
                     "center_target_eval_return": center,
                     "action_offset": FoGConfig(**fog_settings(prof, args)).action_offset,
                     "ratios": {}, "ratios_per_seed": {}, "ratios_bootstrap": {}, "ratios_ep_rew_mean": {}}
    for algo in algos:
        m, tm, gts = eval_mean[algo][0], train_mean[algo][0], ground_truths[algo]
        summary[algo] = {
            "eval_return": [float(x) for x in m],
            "first_eval_return": float(m[0]),
            "final_eval_return": float(m[-1]),
            "best_eval_return": float(np.nanmax(m)),
            "first_ep_rew_mean": _first_finite(tm),
            "final_ep_rew_mean": float(tm[-1]) if np.isfinite(tm[-1]) else None,
            "best_ep_rew_mean": float(np.nanmax(tm)) if np.isfinite(tm).any() else None,
            "wall_s_per_run": float(np.mean(wall[algo])),
            "hosts": hosts[algo],  # per seed, in seed order (NOT_RECORDED: a run saved before session 36)
            "ground_truth": {k: float(np.mean([g[k] for g in gts])) for k in gts[0]} if gts else {},
            # the same at the gt_at checkpoints (mean over seeds; a checkpoint is recorded at its crossing step)
            "ground_truth_at": [{"env_steps": point, **{k: float(np.mean([rows[i][1][k] for rows in gt_curves[algo]]))
                                                        for k in ("mean_return_dense", "mean_max_coverage")}}
                                for i, point in enumerate(gt_at) if all(len(rows) > i for rows in gt_curves[algo])],
        }
    if "fog" in algos:
        for algo in algos:
            if not algo.startswith("ppo"):
                continue
            summary["ratios"][algo] = _ratio(points, eval_mean[algo][0], eval_mean["fog"][0])
            # the spread behind the headline: each seed's FoG run against the PPO run of the same seed
            ppo_runs, fog_runs = dict(zip(seeds_of[algo], evals[algo])), dict(zip(seeds_of["fog"], evals["fog"]))
            summary["ratios_per_seed"][algo] = [
                {"seed": seed, **_ratio(points, mean_curve([ppo_runs[seed]], points)[0],
                                        mean_curve([fog_runs[seed]], points)[0])}
                for seed in seeds_of[algo] if seed in fog_runs]
            if len(set(ppo_runs) & set(fog_runs)) > 1:
                summary["ratios_bootstrap"][algo] = ratio_bootstrap(points, ppo_runs, fog_runs)
            if summary[algo]["best_ep_rew_mean"] is not None:
                summary["ratios_ep_rew_mean"][algo] = _ratio(grid, train_mean[algo][0], train_mean["fog"][0])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    for evaluator in evaluators.values():
        evaluator.close()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for algo in algos:
        m, sd = eval_mean[algo]
        axes[0].plot(points, m, marker="o", label=f"{algo} ({len(seeds_of[algo])} seeds)")
        axes[0].fill_between(points, m - sd, m + sd, alpha=0.2)
        m, sd = train_mean[algo]
        axes[1].plot(grid, m, label=f"{algo} ({len(seeds_of[algo])} seeds)")
        axes[1].fill_between(grid, m - sd, m + sd, alpha=0.2)
    axes[0].set_title(f"deterministic eval, {prof['eval_envs']} fixed starts")
    axes[0].set_ylabel(f"eval return ({args.reward_type} reward)")
    axes[1].set_title("training episodes (last 100)")
    axes[1].set_ylabel("ep_rew_mean")
    for ax in axes:
        ax.set_xlabel("world-model env steps")
        ax.legend()
    fig.suptitle("WM-PushT-v0 (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(json.dumps(summary, indent=2, default=float))


def algo_seeds(algos: list[str], seeds: list[int], overrides: list[str]) -> dict[str, list[int]]:
    """The seeds each algorithm runs, sorted (the order its runs are made and listed in): ``seeds``, except where
    an override ``"ALGO=S,S"`` names others."""
    seeds_of = {algo: sorted(set(seeds)) for algo in algos}
    for item in overrides:
        algo, sep, value = item.partition("=")
        if not sep or algo not in seeds_of:
            raise SystemExit(f"--algo-seeds {item!r}: expected ALGO=SEEDS with ALGO one of {', '.join(algos)}, "
                             "e.g. ppo_pixels=0,1")
        try:
            seeds_of[algo] = sorted({int(x) for x in value.split(",")})
        except ValueError:
            raise SystemExit(f"--algo-seeds {item!r}: seeds must be integers separated by commas, e.g. 0,1") from None
    return seeds_of


def write_curves(path: Path, column: str, curves: dict[str, list], seeds: dict[str, list[int]]) -> None:
    """CSV rows (algo, seed, env_steps, column) from {algo: [rows of its first seed, ...]} and {algo: its seeds}."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "seed", "env_steps", column])
        for algo, runs in curves.items():
            for seed, rows in zip(seeds[algo], runs):
                for r in rows:
                    w.writerow([algo, seed, r[0], f"{r[1]:.5f}"])


def _first_finite(curve: np.ndarray) -> float | None:
    finite = curve[np.isfinite(curve)]
    return float(finite[0]) if len(finite) else None


def _ratio(steps: np.ndarray, ppo: np.ndarray, fog: np.ndarray, fog_grid: np.ndarray | None = None) -> dict:
    """PPO's steps to its best return / FoG's steps to the same return (both linearly interpolated); and the
    same with FoG's steps from which it *stays* at or above that return (``ratio_sustained``). FoG's curve is on
    ``fog_grid`` when given (FoG evaluated at more points than PPO), else on ``steps`` as PPO's."""
    fog_grid = steps if fog_grid is None else fog_grid
    best = float(np.nanmax(ppo))
    ppo_steps = steps_to_reach(steps, ppo, best)

    def ratio_for(fog_steps: float):
        if not np.isfinite(fog_steps):
            return "<1 (FoG never reached PPO's best)"
        if fog_steps == 0:
            return "undefined (FoG's initial policy already scores PPO's best)"
        return ppo_steps / fog_steps

    fog_steps, fog_stay = steps_to_reach(fog_grid, fog, best), steps_to_stay(fog_grid, fog, best)
    return {"ppo_best": best, "ppo_steps": ppo_steps, "fog_steps": fog_steps, "ratio": ratio_for(fog_steps),
            "fog_steps_sustained": fog_stay, "ratio_sustained": ratio_for(fog_stay)}


def ratio_bootstrap(steps: np.ndarray, ppo_runs: dict, fog_runs: dict, draws: int = 2000, seed: int = 0) -> dict:
    """How much the headline depends on which seeds were run: resample the seeds that both algorithms have (with
    replacement, FoG's and PPO's run of a seed kept together), recompute :func:`_ratio` on the resampled seed-mean
    curves, and report percentiles of the ratio (first crossing and sustained). A draw in which FoG never reaches
    PPO's best counts as 0 (the ratio is < 1), one in which FoG's initial policy already scores it as inf."""
    seeds = sorted(set(ppo_runs) & set(fog_runs))
    ppo = {s: mean_curve([ppo_runs[s]], steps)[0] for s in seeds}
    fog = {s: mean_curve([fog_runs[s]], steps)[0] for s in seeds}
    rng = np.random.default_rng(seed)
    out: dict = {"seeds": seeds, "draws": draws, "rng_seed": seed}
    fog_steps_of = {"ratio": "fog_steps", "ratio_sustained": "fog_steps_sustained"}  # what each ratio divides by
    values: dict[str, list[float]] = {key: [] for key in fog_steps_of}
    for _ in range(draws):
        pick = rng.choice(seeds, size=len(seeds))
        r = _ratio(steps, np.mean([ppo[s] for s in pick], 0), np.mean([fog[s] for s in pick], 0))
        for key, fog_key in fog_steps_of.items():  # from the step counts: never reached (inf) -> 0, at 0 -> inf
            values[key].append(r["ppo_steps"] / r[fog_key] if r[fog_key] else float("inf"))
    for key, v in values.items():
        v = np.array(v)
        out[key] = {"p5": float(np.percentile(v, 5)), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
                    "fraction_at_least_20x": float(np.mean(v >= 20))}
    return out


if __name__ == "__main__":
    main()
