"""Fidelity of the global world model against the truth, on held-out real episodes.

From start points in the val split, the global model is rolled **open loop** on the recorded actions:
it keeps its own K-frame context and every generated frame is fed back. At each horizon ``h`` the
generated frame x̂_{t0+h} is compared with the real x_{t0+h}:

=====================  ==========================================================================
metric                 meaning
=====================  ==========================================================================
``agent_px``           |probe agent xy of x̂ - true agent xy| (workspace px of 512)
``block_px``           |probe block xy of x̂ - true block xy| (px)
``angle_deg``          |probe block angle of x̂ - true angle|, wrapped to [0, 180]
``coverage_frame_err`` |coverage reward of the block pose the probe reads in x̂ - true coverage
                       reward| (Push-T only): does the *frame* carry the right reward
``rew_mae_<type>``     |reward predicted by the model for the step into t0+h - true label|
``psnr`` / ``mse``     pixel PSNR (dB, frames scaled to [0, 1], capped at 100) and MSE
``*_moving``           ``block_px`` / ``angle_deg`` over the rollouts whose true block moved between
                       t0 and t0+h (by > 4 px or > 2 deg; ``n_moving`` of them): copy-last is exact
                       on a still block, so this is where a world model must earn its keep
=====================  ==========================================================================

Rows: ``model`` (the global model), ``copy_last`` (the bar to beat: it predicts x_{t0} for every
future frame and the last observed reward label for every future reward), ``mean_state`` (the
average state of the evaluated episodes, a constant: the error of knowing nothing -- a model whose
frames dissolve into a smudge that the probe reads as "somewhere central" scores near it) and
``probe_floor`` (the probe on the real x_{t0+h} against the true state: the floor of the probe-based
metrics). ``h = 0``
is allowed as a sanity horizon: both methods return the real last context frame there.

    wm-gym train-probe   --data data/pusht64 --out runs/probe
    wm-gym eval-fidelity --model runs/global/global_model --probe runs/probe --data data/pusht64 --out runs/fidelity
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cliargs import add_dataclass_arguments, arg
from .data import context_indices, frames_to_tensor, load_split, tensor_to_frames
from .io import atomic_path, atomic_write_text
from .models.state_probe import StateProbe, angle_error_deg, state_errors
from .pusht import GOAL_POSE, TaskSpec, coverage_reward

PSNR_CAP = 100.0
METHODS = ("model", "copy_last", "mean_state", "probe_floor")


# ---------------------------------------------------------------------------------------------------
# Push-T geometry (block pose -> coverage), for the frame-implied reward
# ---------------------------------------------------------------------------------------------------
def _tee_polygon(x: float, y: float, angle: float, scale: float = 30.0, length: float = 4.0):
    """The Push-T block (gym-pusht's ``add_tee``) at body pose (x, y, angle) as a shapely polygon."""
    import shapely.geometry as sg
    from shapely.ops import unary_union

    bar = [(-length * scale / 2, scale), (length * scale / 2, scale), (length * scale / 2, 0), (-length * scale / 2, 0)]
    stem = [(-scale / 2, scale), (-scale / 2, length * scale), (scale / 2, length * scale), (scale / 2, scale)]
    c, s = math.cos(angle), math.sin(angle)
    return unary_union([sg.Polygon([(x + u * c - v * s, y + u * s + v * c) for u, v in part]) for part in (bar, stem)])


def pusht_coverage(block_pose: np.ndarray) -> np.ndarray:
    """Fraction of the goal T covered by the block at poses (N, 3) = (x, y, angle), like gym-pusht."""
    goal = _tee_polygon(*GOAL_POSE)
    poses = np.atleast_2d(np.asarray(block_pose, np.float64))
    return np.array([_tee_polygon(*p).intersection(goal).area / goal.area for p in poses])


# ---------------------------------------------------------------------------------------------------
# rollouts
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Starts:
    """Start points of the open-loop rollouts: episode index and start time t0 (>= 1) of each."""

    episode: np.ndarray
    t0: np.ndarray


def choose_starts(episodes: list[dict], horizons, per_episode: int, seed: int) -> Starts:
    """``per_episode`` distinct t0 in [1, T - max(h)] per episode (fewer if the episode is short).

    t0 >= 1 so that the last observed reward label (the copy-last reward) exists.
    """
    rng = np.random.default_rng(seed)
    max_h = max(horizons)
    ep_idx, t0s = [], []
    for e, ep in enumerate(episodes):
        T = len(ep["actions"])
        hi = max(1, T - max_h)  # t0 in [1, hi]; shorter episodes only reach their shorter horizons
        cand = np.arange(1, hi + 1)
        pick = np.sort(rng.choice(cand, min(per_episode, len(cand)), replace=False))
        ep_idx += [e] * len(pick)
        t0s += list(pick)
    return Starts(np.asarray(ep_idx), np.asarray(t0s))


def _context(ep: dict, norm_act: np.ndarray, t0: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = context_indices(t0, K)
    act = norm_act[idx].copy()
    act[: max(0, K - 1 - t0)] = 0.0
    return frames_to_tensor(ep["frames"][idx]), torch.from_numpy(act)


@torch.no_grad()
def rollout_model(model, episodes: list[dict], starts: Starts, horizons, batch_size: int = 64,
                  generator: torch.Generator | None = None, num_steps: int | None = None,
                  keep_video: int = 0, progress: bool = True, precision: str = "float32") -> dict[str, Any]:
    """Open-loop rollouts of ``model`` (the :class:`GlobalModel` contract) from every start.

    ``precision`` other than float32 is passed to ``model.step`` (``GlobalModel.step``'s argument).

    Returns ``frames`` {h: (N, 3, H, W) float cpu}, ``rew`` {h: (N, R)} (NaN at h = 0) and ``video``
    (keep_video, max_h + 1, H, W, 3) uint8: the generated frames of the first ``keep_video`` rollouts
    (index 0 = the real x_{t0}). Past the end of an episode the padded action is 0 (those horizons are
    masked out by the metrics).
    """
    from tqdm.auto import tqdm

    task, K = model.task, model.context
    max_h = max(horizons)
    norm_acts = [task.normalize_action(ep["actions"]).astype(np.float32) for ep in episodes]
    N = len(starts.t0)
    frames = {h: [] for h in horizons}
    rew = {h: [] for h in horizons}
    video = []
    step_kw = {} if precision == "float32" else {"precision": precision}
    bar = tqdm(total=N * max_h, desc="rollout", unit="step", disable=not progress)
    for lo in range(0, N, batch_size):
        sl = range(lo, min(N, lo + batch_size))
        ctx = [_context(episodes[starts.episode[i]], norm_acts[starts.episode[i]], int(starts.t0[i]), K) for i in sl]
        obs = torch.stack([c[0] for c in ctx])
        act = torch.stack([c[1] for c in ctx])
        chunk_frames = {0: obs[:, -1].clone()}
        chunk_rew = {0: torch.full((len(sl), len(task.reward_types)), float("nan"))}
        chunk_video = [obs[:, -1]]
        for h in range(1, max_h + 1):
            out = model.step(obs, act, generator=generator, num_steps=num_steps, **step_kw)
            x = out.next_obs.detach().float().cpu().clamp(-1, 1)
            if h in rew:
                chunk_frames[h], chunk_rew[h] = x, out.rew.detach().float().cpu()
            if lo < keep_video:
                chunk_video.append(x)
            nxt = np.zeros((len(sl), task.action_dim), np.float32)
            for j, i in enumerate(sl):  # action a_{t0+h} for the next step (0 past the episode end)
                t = int(starts.t0[i]) + h
                if t < len(norm_acts[starts.episode[i]]):
                    nxt[j] = norm_acts[starts.episode[i]][t]
            # feed the generated frame back as the env does (on the model's device)
            dev = out.next_obs.device
            obs = torch.cat([obs[:, 1:].to(dev), out.next_obs[:, None]], 1)
            act = torch.cat([act[:, 1:].to(dev), torch.from_numpy(nxt)[:, None].to(dev)], 1)
            bar.update(len(sl))
        for h in horizons:
            frames[h].append(chunk_frames[h])
            rew[h].append(chunk_rew[h])
        if lo < keep_video:
            video.append(tensor_to_frames(torch.stack(chunk_video, 1))[: keep_video - lo])
    bar.close()
    return {"frames": {h: torch.cat(v) for h, v in frames.items()},
            "rew": {h: torch.cat(v) for h, v in rew.items()},
            "video": np.concatenate(video) if video else None}


# ---------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------
def psnr(pred: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    """Per-frame PSNR in dB of frames in [-1, 1] (rescaled to [0, 1]), capped at ``PSNR_CAP``."""
    mse = ((pred.float() - true.float()) / 2).pow(2).flatten(1).mean(1).double().numpy()
    return np.minimum(PSNR_CAP, 10 * np.log10(1.0 / np.maximum(mse, 1e-30)))


def _frame_metrics(probe: StateProbe, pred: torch.Tensor, true: torch.Tensor, state: np.ndarray,
                   cov_rew: np.ndarray | None, batch_size: int) -> dict[str, np.ndarray]:
    read = probe.read(pred, batch_size)
    m = state_errors(read, state)
    if cov_rew is not None:
        m["coverage_frame_err"] = np.abs(coverage_reward(pusht_coverage(read[:, 2:5])) - cov_rew)
    if pred is not true:  # (the probe floor reads the true frame itself)
        m["psnr"] = psnr(pred, true)
        m["mse"] = ((pred.float() - true.float()) / 2).pow(2).flatten(1).mean(1).double().numpy()
    return m


MOVED_PX, MOVED_DEG = 4.0, 2.0


def block_moved(state0: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(N,) whether the true block moved from ``state0`` to ``state`` (by > MOVED_PX or > MOVED_DEG): the
    rollouts of the ``*_moving`` metrics."""
    err = state_errors(state0, state)
    return (err["block_px"] > MOVED_PX) | (err["angle_deg"] > MOVED_DEG)


def truth_at(episodes: list[dict], starts: Starts, ep_len: np.ndarray, h: int, key: str) -> np.ndarray:
    """``episodes[e][key]`` at t0 + h of every start (clipped to the episode's last frame)."""
    t = np.minimum(starts.t0 + h, ep_len)
    return np.stack([episodes[e][key][ti] for e, ti in zip(starts.episode, t)])


def _summary(values: dict[str, np.ndarray], mask: np.ndarray, moving: np.ndarray) -> dict[str, float]:
    def mean(v, m):
        return float(np.mean(v[m])) if m.any() else float("nan")

    out = {k: mean(v, mask) for k, v in values.items()}
    out["n"] = int(mask.sum())
    for k in ("block_px", "angle_deg"):
        out[k + "_moving"] = mean(values[k], mask & moving)
    out["n_moving"] = int((mask & moving).sum())
    return out


def evaluate_fidelity(global_model, probe: StateProbe, data_root: str | Path, horizons=(1, 4, 16, 64),
                      episodes: int | None = None, starts_per_episode: int = 4, seed: int = 0,
                      device: str | torch.device = "cpu", batch_size: int = 64, num_steps: int | None = None,
                      video_path: str | Path | None = None, video_rollouts: int = 4, video_scale: int = 4,
                      split: str = "val", progress: bool = True, precision: str = "float32") -> dict[str, Any]:
    """Open-loop fidelity of ``global_model`` on the ``split`` episodes of ``data_root`` (see module doc).

    Args:
        global_model: a :class:`~wm_gym.models.global_model.GlobalModel` (or anything with its ``step``,
            ``context``, ``task``, ``image_size``), or ``None`` for the copy-last baseline alone.
        probe: a trained :class:`StateProbe` (frames -> agent xy, block xy, angle).
        horizons: steps after the start at which frames are compared (0 = the last context frame).
        episodes: use the first ``episodes`` episodes of the split (``None``: all).
        starts_per_episode: rollouts per episode, from random start points t0 >= 1.
        seed: seeds the start points and the diffusion noise.
        batch_size: rollouts stepped together.
        num_steps: sampler steps per world-model step (``None``: the model's default).
        video_path: if given, write an mp4 of the first ``video_rollouts`` rollouts, truth | model.
        precision: the global model's arithmetic (``GlobalModel.step``): float32, bfloat16 or auto.

    Returns:
        ``{"horizons", "model", "copy_last", "mean_state", "probe_floor", "settings"}`` (no ``"model"``
        when ``global_model`` is None); each row maps ``str(h)`` to ``{metric: mean over rollouts, "n":
        count, ...}``. JSON-serialisable once NaN (an empty ``*_moving`` subset) is mapped to null.
    """
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 0:
        raise ValueError(f"horizons must be integers >= 0, got {horizons}")
    t_start = time.time()
    meta, eps = load_split(data_root, split, max_episodes=episodes)
    task = TaskSpec.from_dict(meta["task"])
    S = eps[0]["frames"].shape[1]
    device = torch.device(device)
    probe = probe.to(device).eval()
    if probe.config.image_size != S:
        raise ValueError(f"the probe was trained on {probe.config.image_size}px frames but {data_root} has {S}px "
                         f"frames; train a probe on this dataset (wm-gym train-probe --data {data_root})")
    if global_model is not None:
        if global_model.image_size != S:
            raise ValueError(f"the global model works at {global_model.image_size}px but {data_root} has {S}px frames")
        if tuple(global_model.task.reward_types) != tuple(task.reward_types):
            raise ValueError(f"the global model predicts rewards {global_model.task.reward_types} but the dataset "
                             f"labels {task.reward_types}")
        global_model = global_model.to(device)
    starts = choose_starts(eps, horizons, starts_per_episode, seed)
    N = len(starts.t0)
    ep_len = np.array([len(eps[e]["actions"]) for e in starts.episode])
    is_pusht = task.name == "pusht"

    # truth at every horizon
    def truth(h: int, key: str) -> np.ndarray:
        return truth_at(eps, starts, ep_len, h, key)

    def label(h: int, r: str) -> np.ndarray:  # reward of the step into frame t0+h (h >= 1)
        t = np.clip(starts.t0 + h - 1, 0, ep_len - 1)
        return np.array([eps[e]["reward_" + r][ti] for e, ti in zip(starts.episode, t)], np.float64)

    all_states = np.concatenate([ep["states"] for ep in eps]).astype(np.float64)
    mean_state = np.concatenate([all_states[:, :4].mean(0), [np.arctan2(np.sin(all_states[:, 4]).mean(),
                                                                         np.cos(all_states[:, 4]).mean())]])
    copy_frame = frames_to_tensor(truth(0, "frames"))
    state0 = truth(0, "states")
    copy_rew = {r: label(0, r) for r in task.reward_types}  # label of the step into x_{t0}

    rolled = None
    if global_model is not None:
        gen = torch.Generator(device=device).manual_seed(seed)
        rolled = rollout_model(global_model, eps, starts, horizons, batch_size, gen, num_steps,
                               keep_video=video_rollouts if video_path else 0, progress=progress,
                               precision=precision)

    result: dict[str, Any] = {"horizons": horizons, **{m: {} for m in METHODS}}
    if global_model is None:
        del result["model"]
    for h in horizons:
        mask = starts.t0 + h <= ep_len
        state = truth(h, "states")
        moving = block_moved(state0, state)
        true_frames = frames_to_tensor(truth(h, "frames"))
        cov_rew = coverage_reward(truth(h, "coverage")) if is_pusht else None
        preds = {"copy_last": copy_frame, "probe_floor": true_frames}
        if rolled is not None:
            preds["model"] = rolled["frames"][h]
        for name, pred in preds.items():
            m = _frame_metrics(probe, pred, true_frames, state, cov_rew, batch_size=512)
            if name != "probe_floor":
                for j, r in enumerate(task.reward_types):
                    true_r = copy_rew[r] if h == 0 else label(h, r)
                    if name == "copy_last" or h == 0:
                        guess = copy_rew[r]
                    else:
                        guess = rolled["rew"][h][:, j].double().numpy()
                    m["rew_mae_" + r] = np.abs(guess - true_r)
            result[name][str(h)] = _summary(m, mask, moving)
        m = state_errors(np.broadcast_to(mean_state, state.shape), state)
        if cov_rew is not None:
            m["coverage_frame_err"] = np.abs(coverage_reward(pusht_coverage(mean_state[None, 2:5])) - cov_rew)
        result["mean_state"][str(h)] = _summary(m, mask, moving)
    result["settings"] = {
        "data": str(data_root), "split": split, "episodes": len(eps), "rollouts": N,
        "starts_per_episode": starts_per_episode, "seed": seed, "num_steps": num_steps,
        "context": None if global_model is None else global_model.context,
        "probe_image_size": probe.config.image_size, "seconds": time.time() - t_start,
    }
    if video_path and rolled is not None and rolled["video"] is not None:
        n, T = rolled["video"].shape[:2]
        truth_video = np.stack([eps[e]["frames"][np.minimum(np.arange(t, t + T), ep_len[i])]
                                for i, (e, t) in enumerate(zip(starts.episode[:n], starts.t0[:n]))])
        write_video(video_path, truth_video, rolled["video"], fps=task.render_fps, scale=video_scale)
        result["settings"]["video"] = str(video_path)
    return result


# ---------------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------------
TABLE_METRICS = ("agent_px", "block_px", "angle_deg", "block_px_moving", "angle_deg_moving", "coverage_frame_err",
                 "rew_mae_coverage", "rew_mae_dense", "psnr")


def format_table(result: dict[str, Any]) -> str:
    """A markdown table: one row per (horizon, method), one column per metric."""
    rows = [m for m in METHODS if m in result]
    metrics = [k for k in TABLE_METRICS if any(k in result[r][str(h)] for r in rows for h in result["horizons"])]
    lines = ["| h | method | " + " | ".join(metrics) + " | n |", "|---|---|" + "---|" * (len(metrics) + 1)]
    for h in result["horizons"]:
        for r in rows:
            d = result[r][str(h)]
            cells = [f"{d[k]:.3f}" if d.get(k) is not None else "" for k in metrics]
            lines.append(f"| {h} | {r} | " + " | ".join(cells) + f" | {d['n']} ({d['n_moving']} moving) |")
    return "\n".join(lines)


def write_video(path: str | Path, truth: np.ndarray, model: np.ndarray, fps: int = 10, scale: int = 4) -> None:
    """mp4 of rollouts side by side: truth | model, each (n, T, H, W, 3) uint8, upscaled ``scale`` x."""
    import cv2

    n, T, H, W, _ = truth.shape
    h, w, gap = H * scale, W * scale, 4
    label_h = 18
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (2 * w + gap, h + label_h)
    with atomic_path(path, ".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open an mp4 writer for {path} (mp4v codec missing?)")
        try:
            for i in range(n):
                for t in range(T):
                    canvas = np.full((size[1], size[0], 3), 255, np.uint8)
                    for k, frame in enumerate((truth[i, t], model[i, t])):
                        big = cv2.resize(frame, (w, h), interpolation=cv2.INTER_NEAREST)
                        canvas[label_h:, k * (w + gap): k * (w + gap) + w] = big
                    text = f"truth | model   rollout {i}  h={t}"
                    cv2.putText(canvas, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
                    writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FidelityArgs:
    """Arguments of ``wm-gym eval-fidelity``."""

    model: str = arg("", "global model directory (GlobalModel.save_pretrained, or a world-model checkpoint "
                         "holding global_model/); empty: the copy-last baseline only")
    probe: str = arg("", "state probe directory (wm-gym train-probe)")
    data: str = arg("", "dataset directory (or several joined by commas); its val split is used")
    out: str = arg("", "output directory (fidelity.json, fidelity.md, rollouts.mp4)")
    horizons: str = arg("1,4,16,64", "comma-separated horizons (steps after the start)")
    episodes: int = arg(0, "val episodes used (0: all)")
    starts_per_episode: int = arg(4, "open-loop rollouts per episode")
    num_steps: int = arg(0, "sampler steps per world-model step (0: the model's default)")
    antithetic: str = arg("model", "antithetic noise pairs in the sampler: 'on', 'off' or 'model' (the model's setting)")
    min_change: float = arg(-1.0, "the sampler's min_change (predicted changes of at most it are set to 0; "
                                  "-1: the model's setting)")
    precision: str = arg("float32", "the global model's arithmetic: float32, bfloat16 (autocast) or auto")
    batch_size: int = arg(64, "rollouts stepped together")
    video_rollouts: int = arg(4, "rollouts shown in the video (0: no video)")
    seed: int = arg(0, "seeds the start points and the diffusion noise")
    threads: int = arg(2, "torch CPU threads")
    device: str = arg("cpu", "torch device")
    progress: bool = arg(True, "show a progress bar")


def with_sampler_settings(model, antithetic: str = "model", min_change: float = -1.0):
    """``model`` (a ``GlobalModel``) with its sampler's ``antithetic`` ("on", "off" or "model": keep the model's) and
    ``min_change`` (negative: keep the model's) replaced, as eval-fidelity's flags of the same names set them; the
    number of steps is per call (``rollout_model``'s ``num_steps``)."""
    if antithetic not in ("model", "on", "off"):
        raise ValueError(f"antithetic must be on, off or model, got {antithetic!r}")
    if antithetic != "model":
        model.sampler = model.sampler.replace(antithetic=antithetic == "on")
    if min_change >= 0:
        model.sampler = model.sampler.replace(min_change=min_change)
    return model


def _resolve_model_dir(path: Path) -> Path:
    from .models.global_model import CONFIG_NAME

    if not (path / CONFIG_NAME).exists() and (path / "global_model" / CONFIG_NAME).exists():
        return path / "global_model"
    return path


def _strict_json(x):
    """NaN -> null (strict JSON), recursively."""
    if isinstance(x, dict):
        return {k: _strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict_json(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def run_eval_fidelity(args: FidelityArgs) -> dict[str, Any]:
    """Load the model and the probe, evaluate, write ``fidelity.json`` / ``fidelity.md`` / ``rollouts.mp4``."""
    for name in ("probe", "data", "out"):
        if not getattr(args, name):
            raise SystemExit(f"wm-gym eval-fidelity: error: --{name} is required")
    try:
        horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    except ValueError:
        raise SystemExit(f"wm-gym eval-fidelity: error: --horizons expects integers like 1,4,16,64, "
                         f"got {args.horizons!r}")
    torch.set_num_threads(args.threads)
    from .models.global_model import resolve_precision

    try:
        precision = resolve_precision(args.precision, args.device)
    except ValueError as e:
        raise SystemExit(f"wm-gym eval-fidelity: error: --{e}") from e
    model = None
    if args.model:
        from .models.global_model import GlobalModel

        model = GlobalModel.from_pretrained(_resolve_model_dir(Path(args.model)), device=args.device)
        try:
            with_sampler_settings(model, args.antithetic, args.min_change)
        except ValueError as e:
            raise SystemExit(f"wm-gym eval-fidelity: error: --{e}") from e
    probe = StateProbe.from_pretrained(args.probe, low_cpu_mem_usage=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_fidelity(
        model, probe, args.data, horizons=horizons, episodes=args.episodes or None,
        starts_per_episode=args.starts_per_episode, seed=args.seed, device=args.device, batch_size=args.batch_size,
        num_steps=args.num_steps or None, video_path=out / "rollouts.mp4" if args.video_rollouts else None,
        video_rollouts=args.video_rollouts, progress=args.progress, precision=precision)
    result["settings"].update(model=args.model, probe=args.probe,
                              antithetic=None if model is None else model.sampler.antithetic,
                              min_change=None if model is None else model.sampler.min_change, precision=precision)
    probe_metrics = Path(args.probe) / "metrics.json"
    if probe_metrics.exists():
        result["probe_heldout"] = json.loads(probe_metrics.read_text())
    table = format_table(result)
    atomic_write_text(out / "fidelity.json", json.dumps(_strict_json(result), indent=2, allow_nan=False))
    atomic_write_text(out / "fidelity.md", table + "\n")
    return result


def _cmd_eval_fidelity(ns) -> int:
    args = FidelityArgs(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(FidelityArgs)})
    result = run_eval_fidelity(args)
    print(format_table(result))
    print(f"wrote {Path(args.out) / 'fidelity.json'}")
    return 0


def _cmd_train_probe(ns) -> int:
    from .models.state_probe import ProbeArgs, train_probe

    args = ProbeArgs(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(ProbeArgs)})
    for name in ("data", "out"):
        if not getattr(args, name):
            raise SystemExit(f"wm-gym train-probe: error: --{name} is required")
    _, metrics = train_probe(args)
    print(json.dumps({k: metrics[k] for k in ("agent_px", "block_px", "angle_deg", "steps", "minutes")}))
    return 0


def add_cli(subparsers) -> None:
    """Register ``eval-fidelity`` and ``train-probe`` on the ``wm-gym`` command line."""
    from .models.state_probe import ProbeArgs

    p = subparsers.add_parser("train-probe", help="train the state probe (frame -> true state) on real frames")
    add_dataclass_arguments(p, ProbeArgs)
    p.set_defaults(func=_cmd_train_probe)
    e = subparsers.add_parser("eval-fidelity", help="open-loop fidelity of a global model vs the truth and copy-last")
    add_dataclass_arguments(e, FidelityArgs)
    e.set_defaults(func=_cmd_eval_fidelity)
