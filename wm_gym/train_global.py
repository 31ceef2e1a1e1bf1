"""Train the global world model (EDM denoiser over frame changes + reward/success model).

    OMP_WAIT_POLICY=PASSIVE wm-gym train-global --data /work/data/pusht64 --out runs/global --minutes 70
    OMP_WAIT_POLICY=PASSIVE wm-gym train-global --data /work/data/pusht64 --out runs/global --minutes 30 --resume

(``OMP_WAIT_POLICY=PASSIVE``: on a CPU shared with other jobs OpenMP's spin-waiting slows multi-thread
torch by up to ~90x.)

One file, top to bottom (CleanRL style): arguments, data, validation, the loop. Writes

    OUT/checkpoint.pt     model + EMA + optimiser + step (atomic; ``--resume`` continues from it)
    OUT/global_model/     the EMA weights as a GlobalModel (``GlobalModel.from_pretrained``)
    OUT/metrics.json      the last validation
    OUT/tb/               TensorBoard scalars (losses/, charts/, val/)

The reward model trains in the same loop on the same batches (it is ~50x cheaper than the denoiser)
for ``--reward-steps`` steps. Behaviour data of Push-T holds almost no successes, so for the ``pusht``
task the reward model also sees frames rendered by the real simulator near the goal pose (labelled by
the simulator) -- ``--goal-frames`` of them, a held-out set of which measures the success F1.

``--reward-only --init-from DIR`` keeps DIR's denoiser as it is and trains only the reward model, for
``--reward-steps`` steps: how a saved world model learns a reward label added after it was trained
(its reward model starts afresh when its labels differ from the collection's).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .io import atomic_save_pretrained, atomic_torch_save, atomic_write_text
from .data import DatasetError, TransitionDataset, context_indices, frames_to_tensor
from .models.denoiser import Denoiser, changed_pixels
from .models.global_model import GlobalModel, precision_context, resolve_precision
from .models.reward_model import RewardModel
from .models.sampler import EulerSampler
from .pusht import SUCCESS_THRESHOLD, TaskSpec


@dataclass
class TrainGlobalArgs:
    data: str = field(default="", metadata={"help": "dataset directory (wm-gym collect), or several joined by commas "
                                                   "(e.g. the behaviour data plus a policy's episodes)"})
    out: str = field(default="runs/global", metadata={"help": "output directory"})
    resume: bool = field(default=False, metadata={"help": "continue from OUT/checkpoint.pt"})
    init_from: str = field(default="", metadata={
        "help": "start a new run from the weights of a saved GlobalModel directory (e.g. the shipped "
                "wm_gym/assets/pusht/global_model, fp16 weights are cast up); architecture flags are taken "
                "from it, the optimiser starts fresh"})
    minutes: float = field(default=60.0, metadata={"help": "wall-clock budget of this invocation (minutes)"})
    steps: int = field(default=0, metadata={"help": "stop at this total step count (0: only the time budget)"})
    batch_size: int = field(default=64, metadata={"help": "denoiser batch size"})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=300, metadata={"help": "linear learning-rate warm-up"})
    lr_decay_start: int = field(default=0, metadata={
        "help": "from this step on, decay the learning rate linearly to lr_final at --steps (0: constant)"})
    lr_final: float = field(default=3e-5, metadata={"help": "learning rate reached at --steps when decaying"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the saved weights"})
    reward_only: bool = field(default=False, metadata={
        "help": "with --init-from: keep its denoiser, train only the reward model for --reward-steps steps"})
    context: int = field(default=4, metadata={"help": "context frames K"})
    widths: str = field(default="32,64,64", metadata={"help": "UNet block widths"})
    layers_per_block: int = field(default=1, metadata={"help": "resnet layers per UNet block"})
    patch: int = field(default=4, metadata={"help": "space-to-depth factor"})
    action_target_planes: int = field(default=0, metadata={
        "help": "also draw the N latest actions as Gaussians at the frame position they name (Push-T: the agent's "
                "target; 0: off). With --init-from a model without them, the new stem inputs start at zero, so "
                "the run starts from that model's exact predictions (study: "
                "benchmarks/results/global_action_target/README.md)"})
    action_target_sigma: float = field(default=1.5, metadata={"help": "std of those Gaussians in frame pixels"})
    change_weight: float = field(default=10.0, metadata={"help": "extra loss weight on changing pixels"})
    pixel_loss_c: float = field(default=0.0, metadata={
        "help": "0: the squared pixel error (EDM's loss); c > 0: the pseudo-Huber error sqrt(e^2 + c^2) - c of each "
                "pixel (F units), whose optimum is the per-pixel median of the next frame's change instead of its "
                "mean (sharper where the outcome is uncertain; study: "
                "benchmarks/results/global_pixel_huber/README.md)"})
    context_noise_max: float = field(default=0.05, metadata={"help": "max std of the context noise augmentation"})
    sampler_steps: int = field(default=1, metadata={
        "help": "default Euler steps of the saved model (1 beat 3 on held-out rollouts, see the README/report)"})
    sampler_one_draw: bool = field(default=False, metadata={
        "help": "save the model with a one-draw sampler instead of the antithetic pair (eps and -eps averaged, "
                "which cancels the 1-step sampler's noise leak: benchmarks/sampler_noise.py)"})
    sampler_min_change: float = field(default=0.05, metadata={
        "help": "the saved sampler's min_change: predicted changes of at most it (every channel) are set to 0, so "
                "static pixels stay static over a rollout (EulerSampler; 0: off)"})
    sampler_sigma_frac: float = field(default=0.5, metadata={
        "help": "fraction of each batch trained at the sampler's first noise level sigma_max (the only level "
                "a 1-step sampler uses; log-normal draws put ~5%% there); the rest is log-normal"})
    reward_steps: int = field(default=6000, metadata={"help": "steps during which the reward model trains"})
    reward_lr: float = field(default=1e-3, metadata={"help": "reward model learning rate"})
    success_pos_weight: float = field(default=5.0, metadata={"help": "positive weight of the success BCE"})
    goal_frames: int = field(default=6000, metadata={"help": "near-goal frames rendered for the reward model (pusht)"})
    goal_batch: int = field(default=16, metadata={"help": "near-goal frames per reward-model step"})
    self_forcing: float = field(default=0.5, metadata={
        "help": "fraction of each batch whose last context frame(s) are the model's own predictions"})
    self_forcing_steps: int = field(default=1, metadata={
        "help": "the self-forced windows end in a rollout of the model of 1..N steps (uniform per window) from the "
                "real frames before it, so the model learns to repair the errors a rollout of that length piles "
                "up (N batched samplings per step instead of 1: 1.44x the step time at N=4, and N=8 another 1.4x "
                "without a gain; studies: benchmarks/results/global_self_forcing/README.md, "
                "benchmarks/results/global_self_forcing_8/README.md)"})
    probe_loss: str = field(default="", metadata={
        "help": "a state probe directory (wm-gym train-probe): add its error on the denoiser's predicted next frames "
                "(agent xy, block xy, angle read off them vs the true next state) to the loss, at the noise levels "
                "of --probe-loss-sigma and above; judge fidelity with a different probe (another --seed) and "
                "benchmarks/block_iou.py (study: benchmarks/results/global_probe_loss/README.md)"})
    probe_loss_weight: float = field(default=1.0, metadata={"help": "weight of the --probe-loss term"})
    probe_loss_sigma: float = field(default=0.0, metadata={
        "help": "the --probe-loss term covers the samples at noise levels of at least this (0: the sampler's "
                "sigma_max, the one level a 1-step sampler uses)"})
    eval_every: int = field(default=1000, metadata={"help": "validate every N steps"})
    eval_starts: int = field(default=48, metadata={"help": "open-loop rollouts per validation"})
    eval_horizons: str = field(default="1,4,16,64", metadata={
        "help": "open-loop horizons of the validation's pixel MSE (horizons longer than the validation episodes "
                "allow are dropped with a note); 64 steps shows the drift that 16 steps can hide"})
    save_every_minutes: float = field(default=5.0, metadata={"help": "checkpoint period"})
    val_fraction: float = field(default=0.1, metadata={"help": "validation fraction of episodes"})
    max_episodes: int = field(default=0, metadata={"help": "use at most N episodes per split (0: all)"})
    seed: int = field(default=0, metadata={"help": "seed of random, numpy and torch"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    device: str = field(default="cpu", metadata={"help": "torch device (cpu, cuda, cuda:1, ...)"})
    precision: str = field(default="float32", metadata={
        "help": "arithmetic of the training forward/backward passes: float32, bfloat16 (autocast, float32 weights "
                "and optimiser; faster on CPUs with AMX and on GPUs) or auto (bfloat16 where the hardware has it)"})
    log_every: int = field(default=50, metadata={"help": "TensorBoard scalar period (steps)"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar"})

    @property
    def horizons(self) -> tuple[int, ...]:
        try:
            hs = tuple(sorted({int(h) for h in self.eval_horizons.split(",") if h.strip()}))
        except ValueError:
            hs = ()
        if not hs or hs[0] < 1:
            raise ValueError(f"--eval-horizons must be positive integers joined by commas, e.g. 1,4,16,64 "
                             f"(got {self.eval_horizons!r})")
        return hs

    @property
    def widths_tuple(self) -> tuple[int, ...]:
        return tuple(int(w) for w in self.widths.split(","))


# the flags that shape the denoiser, which a --resume takes from its checkpoint (--init-from: from the model's config)
ARCHITECTURE_ARGS = ("context", "patch", "widths", "layers_per_block", "action_target_planes", "action_target_sigma")
HORIZONS = (1, 4, 16)  # default horizons of open_loop_eval (train-global's validation: --eval-horizons)


# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------
class WindowBatcher:
    """Random training windows, gathered in one vectorised indexing per batch.

    Yields the items of :class:`wm_gym.data.TransitionDataset` (``obs``, ``act``, ``next_obs``, ``rew``,
    ``success``, ``next_state``) batched, from the episodes concatenated in memory (per-item indexing is too slow here).
    """

    def __init__(self, episodes: list[dict], task: TaskSpec, context: int, extra: int = 0):
        lengths = np.array([len(ep["actions"]) for ep in episodes])
        self.frames = np.concatenate([ep["frames"] for ep in episodes])
        self.actions = np.concatenate([task.normalize_action(ep["actions"]).astype(np.float32) for ep in episodes])
        self.rew = np.concatenate([np.stack([ep["reward_" + r] for r in task.reward_types], -1) for ep in episodes])
        self.success = np.concatenate([ep["coverage"] > SUCCESS_THRESHOLD for ep in episodes]).astype(np.float32)
        self.states = np.concatenate([ep["states"] for ep in episodes]).astype(np.float32)  # frame-aligned
        self.frame_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        self.act_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.ep = np.repeat(np.arange(len(episodes)), lengths)
        self.t = np.concatenate([np.arange(n) for n in lengths])
        self.context = context
        self.extra = extra  # frames/actions before the context, for self-forcing

    def __len__(self) -> int:
        return len(self.t)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        e, t = self.ep[index], self.t[index]
        offs = np.arange(-self.context - self.extra + 1, 1)
        tt = t[:, None] + offs[None]  # (B, K + extra) frame / action times t-K-extra+1..t
        valid = tt >= 0
        tt = np.clip(tt, 0, None)
        act = self.actions[self.act_start[e][:, None] + tt] * valid[..., None]
        return {
            "obs": frames_to_tensor(self.frames[self.frame_start[e][:, None] + tt]),
            "act": torch.from_numpy(act.astype(np.float32)),
            "next_obs": frames_to_tensor(self.frames[self.frame_start[e] + t + 1]),
            "rew": torch.from_numpy(self.rew[self.act_start[e] + t]),
            "success": torch.from_numpy(self.success[self.frame_start[e] + t + 1]),
            "next_state": torch.from_numpy(self.states[self.frame_start[e] + t + 1]),
        }

    def __call__(self, batch_size: int, seed: int):
        """Endless shuffled batches (epochs without replacement)."""
        rng = np.random.default_rng(seed)
        while True:
            perm = rng.permutation(len(self))
            for i in range(0, len(perm) - batch_size + 1, batch_size):
                yield self.batch(perm[i: i + batch_size])


def render_goal_frames(task: TaskSpec, n: int, seed: int) -> dict[str, np.ndarray] | None:
    """Frames near the goal pose rendered by the task's real simulator, with their labels (pusht only)."""
    if task.name != "pusht" or n <= 0:
        return None
    from .pusht import GOAL_POSE, PushTGroundTruth

    gt = PushTGroundTruth(image_size=task.image_size)
    gt.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, rew, succ = [], [], []
    for _ in range(n):
        scale = math.exp(rng.uniform(0.0, math.log(60.0)))  # pose error scale, log-uniform in [1, 60] px
        block = GOAL_POSE[:2] + rng.normal(size=2) * scale * 0.5
        angle = GOAL_POSE[2] + rng.normal() * scale / 120.0
        agent = rng.uniform(40, 472, size=2)
        frame, info = gt.reset(state=np.array([*agent, *block, angle]))
        frames.append(frame)
        rew.append([info["reward_" + r] for r in task.reward_types])
        succ.append(info["is_success"])
    gt.close()
    return {"frames": np.stack(frames), "rew": np.asarray(rew, np.float32), "success": np.asarray(succ, np.float32)}


def goal_frames_cached(out: Path, task: TaskSpec, n: int, seed: int, name: str):
    path = out / f"{name}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = render_goal_frames(task, n, seed)
    if arrays is not None:
        np.savez_compressed(path, **arrays)
    return arrays


def run_goal_frames(args: TrainGlobalArgs, task: TaskSpec, out: Path):
    """The near-goal frames (train, val) of a run with ``args``, cached in ``out`` (rendered by the simulator the first
    time: a run on a machine without gym-pusht needs them copied into ``out``, see benchmarks/gpu_train_global.sh)."""
    return (goal_frames_cached(out, task, args.goal_frames, args.seed + 1, "goal_frames_train"),
            goal_frames_cached(out, task, max(200, args.goal_frames // 6), args.seed + 2, "goal_frames_val"))


def goal_batch(goal: dict[str, np.ndarray], n: int, rng: np.random.Generator, device) -> dict[str, torch.Tensor]:
    idx = rng.integers(0, len(goal["frames"]), size=n)
    return {"next_obs": frames_to_tensor(goal["frames"][idx]).to(device),
            "rew": torch.from_numpy(goal["rew"][idx]).to(device),
            "success": torch.from_numpy(goal["success"][idx]).to(device)}


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------
def open_loop_starts(episodes: list[dict], n: int, horizon: int, context: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(n):
        e = int(rng.integers(len(episodes)))
        T = len(episodes[e]["actions"])
        starts.append((e, int(rng.integers(context - 1, T - horizon))))
    return starts


@torch.no_grad()
def open_loop_eval(model: GlobalModel, episodes: list[dict], starts, num_steps: int, seed: int,
                   horizons=HORIZONS) -> dict[str, float]:
    """Roll the model open loop with the true actions; MSE / PSNR at each horizon vs copying frame t, and the
    mean frame bias (model - truth)."""
    task, K, H = model.task, model.context, max(horizons)
    dev = model.device
    obs, act, truth, last = [], [], [], []
    for e, t in starts:
        ep = episodes[e]
        idx = context_indices(t, K)
        a = task.normalize_action(ep["actions"]).astype(np.float32)
        ctx_act = a[idx].copy()
        ctx_act[: max(0, K - 1 - t)] = 0.0
        obs.append(frames_to_tensor(ep["frames"][idx]))
        act.append(np.concatenate([ctx_act, a[t + 1: t + H]]))  # K context actions, then the future ones
        truth.append(frames_to_tensor(ep["frames"][t + 1: t + 1 + H]))
        last.append(frames_to_tensor(ep["frames"][t]))
    obs, truth, last = torch.stack(obs).to(dev), torch.stack(truth).to(dev), torch.stack(last).to(dev)
    act = torch.from_numpy(np.stack(act)).to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    logs = {}
    for h in range(1, H + 1):
        nxt = model.step(obs, act[:, h - 1: h - 1 + K], generator=gen, num_steps=num_steps).next_obs
        obs = torch.cat([obs[:, 1:], nxt[:, None]], dim=1)
        if h in horizons:
            true = truth[:, h - 1]
            mse = (nxt - true).pow(2).mean().item()
            mse_copy = (last - true).pow(2).mean().item()
            changed = changed_pixels(true - last, model.denoiser.config.change_threshold)[:, 0].float()
            n_ch = max(1.0, changed.sum().item())
            logs[f"mse_h{h}"] = mse
            logs[f"mse_copy_h{h}"] = mse_copy
            logs[f"psnr_h{h}"] = 10 * math.log10(4.0 / max(mse, 1e-10))
            logs[f"psnr_copy_h{h}"] = 10 * math.log10(4.0 / max(mse_copy, 1e-10))
            logs[f"mse_changed_h{h}"] = ((nxt - true).pow(2).mean(1) * changed).sum().item() / n_ch
            logs[f"mse_changed_copy_h{h}"] = ((last - true).pow(2).mean(1) * changed).sum().item() / n_ch
            logs[f"bias_h{h}"] = (nxt - true).mean().item()  # a drifting colour (e.g. darkening) shows here
    return logs


@torch.no_grad()
def reward_eval(reward_model: RewardModel, frames: np.ndarray, rew: np.ndarray, success: np.ndarray,
                device, prefix: str) -> dict[str, float]:
    preds, logits = [], []
    for i in range(0, len(frames), 256):
        out = reward_model(frames_to_tensor(frames[i: i + 256]).to(device))
        preds.append(out.rew.cpu()); logits.append(out.success_logit.cpu())
    pred, logit = torch.cat(preds).numpy(), torch.cat(logits).numpy()
    logs = {f"{prefix}mae_{i}": float(np.abs(pred[:, i] - rew[:, i]).mean()) for i in range(rew.shape[1])}
    yhat, y = logit > 0, success > 0.5
    tp, fp, fn = float((yhat & y).sum()), float((yhat & ~y).sum()), float((~yhat & y).sum())
    logs[f"{prefix}success_f1"] = 2 * tp / max(1.0, 2 * tp + fp + fn)
    logs[f"{prefix}success_positives"] = float(y.sum())
    logs[f"{prefix}success_false_pos"] = fp
    return logs


def real_reward_pairs(episodes: list[dict], n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` random (episode, step) transitions of ``episodes``, the reward model's held-out draw."""
    rng = np.random.default_rng(seed)
    return [(int(e), int(rng.integers(len(episodes[e]["actions"])))) for e in rng.integers(len(episodes), size=n)]


def real_reward_frames(episodes: list[dict], task: TaskSpec, n: int, seed: int):
    pairs = real_reward_pairs(episodes, n, seed)
    frames = np.stack([episodes[e]["frames"][t + 1] for e, t in pairs])
    rew = np.array([[episodes[e]["reward_" + r][t] for r in task.reward_types] for e, t in pairs], np.float32)
    succ = np.array([episodes[e]["coverage"][t + 1] > 0.95 for e, t in pairs], np.float32)
    return frames, rew, succ


# ---------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------
def export_model(model: GlobalModel, out: Path) -> None:
    """Write OUT/global_model atomically (build in a temp dir, then swap)."""
    atomic_save_pretrained(model, out / "global_model")


def self_forced_context(den: Denoiser, sampler: EulerSampler, obs: torch.Tensor, act: torch.Tensor,
                        depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-forcing (scheduled sampling over a rollout): training windows whose context ends in the model's own
    predictions, so the delta target (the true next frame) also teaches it to repair its rollout errors.

    ``obs`` (B, K + N, C, H, W) and ``act`` (B, K + N, A) are windows N steps longer than the context;
    ``depths`` (F,) holds 1..N for the first F windows. Window i's last ``depths[i]`` frames are replaced by a
    1-step-sampler rollout of ``den`` from the real frames before them, on the recorded actions; the other
    windows keep the real frames. Returns the (B, K, ...) context frames and actions.
    """
    K = den.config["context"]
    N = obs.shape[1] - K
    if N < 0 or act.shape[1] != obs.shape[1]:
        raise ValueError(f"self-forcing needs windows of K + N >= {K} frames and as many actions, got "
                         f"{tuple(obs.shape)} and {tuple(act.shape)}")
    F = len(depths)
    if F == 0:
        return obs[:, N:], act[:, N:]
    if not (1 <= int(depths.min()) and int(depths.max()) <= N):
        raise ValueError(f"self-forcing depths must lie in 1..{N} (the windows' extra frames), got "
                         f"{int(depths.min())}..{int(depths.max())}")
    depths = depths.to(obs.device)
    ctx = obs[:F, :K]
    for i in range(N):  # step i predicts window frame K + i; window j joins once N - i <= depths[j]
        frame = obs[:F, K + i].clone()
        rolling = depths >= N - i
        if bool(rolling.any()):
            frame[rolling] = sampler.sample(den, ctx[rolling], act[:F][rolling, i: i + K], num_steps=1).to(obs.dtype)
        ctx = torch.cat([ctx[:, 1:], frame[:, None]], 1)
    return torch.cat([ctx, obs[F:, N:]]), act[:, N:]


def grown_stem(state: dict[str, torch.Tensor], den: Denoiser) -> dict[str, torch.Tensor]:
    """A denoiser state dict whose stem gets zero weights for the inputs ``den`` has beyond it (action-target
    planes added to a model trained without them: the stem's inputs are appended last), so that ``den`` then
    predicts exactly what the saved model did."""
    w, want = state["stem.weight"], den.stem.weight.shape
    if w.shape == want:
        return state
    if w.shape[0] != want[0] or w.shape[1] > want[1] or w.shape[2:] != want[2:]:
        raise ValueError(f"the saved denoiser's stem {tuple(w.shape)} does not fit this run's {tuple(want)}: "
                         "only inputs (action-target planes) can be added to a saved model")
    return {**state, "stem.weight": torch.cat([w, w.new_zeros(want[0], want[1] - w.shape[1], *want[2:])], dim=1)}


def learning_rate(args: TrainGlobalArgs, step: int) -> float:
    """Linear warm-up, constant, then (with ``lr_decay_start``) linear decay to ``lr_final`` at ``steps``."""
    lr = args.lr * min(1.0, (step + 1) / args.warmup_steps)
    if args.lr_decay_start and step >= args.lr_decay_start:
        frac = min(1.0, (step - args.lr_decay_start) / max(1, args.steps - args.lr_decay_start))
        lr = args.lr + frac * (args.lr_final - args.lr)
    return lr


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)


def make_probe_loss(args: TrainGlobalArgs, task: TaskSpec, sampler: EulerSampler, device):
    """The ``--probe-loss`` term: ``frame_loss(frame, sigma, next_state)`` for :meth:`Denoiser.loss`.

    A frozen :class:`~wm_gym.models.state_probe.StateProbe` reads agent xy, block xy and angle off the predicted
    frames; its loss against the true next state (positions in [-1, 1] units, cos/sin of the angle) weights
    the few pixels that say where the T is and how it is turned, which the pixel loss spreads thin.
    """
    from .models.state_probe import StateProbe

    try:
        probe = StateProbe.from_pretrained(args.probe_loss).to(device).eval().requires_grad_(False)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"--probe-loss {args.probe_loss}: not a state probe directory ({e}); train one with "
                                "`wm-gym train-probe --data DIR --out DIR --seed 1`") from e
    if probe.config.image_size != task.image_size:
        raise ValueError(f"--probe-loss {args.probe_loss} reads {probe.config.image_size}x{probe.config.image_size} "
                         f"frames, the data has {task.image_size}x{task.image_size}: train a probe on this dataset")
    level = args.probe_loss_sigma or sampler.sigma_max

    def frame_loss(frame, sigma, next_state):
        sel = sigma >= level * (1 - 1e-6)
        if not bool(sel.any()):
            return frame.new_zeros(()), {}
        loss, logs = probe.loss(frame[sel], next_state[sel])
        return args.probe_loss_weight * loss, {"loss_probe": logs["loss"]}

    return frame_loss


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
def train(args: TrainGlobalArgs) -> dict[str, float]:
    """Train (or resume) and return the last validation metrics."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not args.resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    torch.set_num_threads(args.threads)
    if args.threads > 1 and args.device == "cpu" and "OMP_WAIT_POLICY" not in os.environ:
        warnings.warn("OMP_WAIT_POLICY is unset: on a CPU shared with other jobs, OpenMP's spin-waiting made a "
                      "2-thread training step ~90x slower on the dev machine (27 s vs 0.3 s); launch with "
                      "OMP_WAIT_POLICY=PASSIVE, or --threads 1")
    random.seed(args.seed); np.random.seed(args.seed); torch.manual_seed(args.seed)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)

    if args.reward_only and not args.init_from:
        raise ValueError("--reward-only trains the reward model of a saved global model: pass --init-from DIR")
    if args.lr_decay_start and args.steps <= args.lr_decay_start:
        raise ValueError(f"--lr-decay-start {args.lr_decay_start} needs --steps above it (got --steps {args.steps})")
    # -- a run started from a saved model takes its architecture (before the data: K sets the windows)
    init = None
    if args.init_from:
        if args.resume and ckpt_path.exists():
            raise ValueError("--init-from starts a new run; drop it to --resume an existing one")
        init = GlobalModel.from_pretrained(args.init_from, device="cpu")
        den_cfg = init.denoiser.config
        args.context, args.patch = den_cfg["context"], den_cfg["patch"]
        args.widths = ",".join(str(w) for w in den_cfg["block_out_channels"])
        args.layers_per_block = den_cfg["layers_per_block"]
        if not args.action_target_planes:  # kept from the model unless the run adds them
            args.action_target_planes = den_cfg.get("action_target_planes", 0)
            args.action_target_sigma = den_cfg.get("action_target_sigma", args.action_target_sigma)
        args.sampler_steps = init.sampler.num_steps
        args.sampler_min_change = init.sampler.min_change
    ck = None  # the checkpoint a --resume continues, read once
    if args.resume and ckpt_path.exists():  # a resumed run keeps its architecture, whatever flags come with it
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        for name in ARCHITECTURE_ARGS:
            setattr(args, name, ck.get("args", {}).get(name, getattr(args, name)))
    # -- data ---------------------------------------------------------------------------------------
    max_ep = args.max_episodes or None
    train_set = TransitionDataset(args.data, "train", args.context, args.val_fraction, args.seed, max_episodes=max_ep)
    val_set = TransitionDataset(args.data, "val", args.context, args.val_fraction, args.seed, max_episodes=max_ep)
    task = train_set.task
    if init is not None and (init.task.name != task.name or init.task.image_size != task.image_size):
        raise DatasetError(f"--init-from {args.init_from} is a {init.task.name} model at {init.task.image_size}px, "
                           f"the data is {task.name} at {task.image_size}px: use a matching model or dataset")
    longest = min(len(ep["actions"]) for ep in val_set.episodes) - args.context - 1
    horizons = tuple(h for h in args.horizons if h <= longest)
    if not horizons:
        raise DatasetError(f"validation episodes must be longer than {args.horizons[0] + args.context} steps "
                           f"(the shortest has {longest + args.context + 1}): collect longer episodes or lower "
                           "--eval-horizons")
    if horizons != args.horizons:
        tqdm.write(f"validation horizons {list(args.horizons)} -> {list(horizons)}: the shortest validation "
                   f"episode allows {longest} open-loop steps")
    H = max(horizons)
    goal_train, goal_val = run_goal_frames(args, task, out)
    real_val = real_reward_frames(val_set.episodes, task, 3000, args.seed)
    starts = open_loop_starts(val_set.episodes, args.eval_starts, H, args.context, args.seed)

    # -- models -------------------------------------------------------------------------------------
    den = Denoiser(image_size=task.image_size, context=args.context, action_dim=task.action_dim, patch=args.patch,
                   block_out_channels=args.widths_tuple, layers_per_block=args.layers_per_block,
                   action_target_planes=args.action_target_planes, action_target_sigma=args.action_target_sigma,
                   change_weight=args.change_weight, context_noise_max=args.context_noise_max).to(device)
    rm = RewardModel(image_size=task.image_size, num_rewards=len(task.reward_types),
                     success_pos_weight=args.success_pos_weight).to(device)
    ema_den, ema_rm = copy.deepcopy(den).eval(), copy.deepcopy(rm).eval()
    opt = torch.optim.AdamW(den.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    opt_r = torch.optim.AdamW(rm.parameters(), lr=args.reward_lr, weight_decay=args.weight_decay)
    step, samples = 0, 0
    fine_tune = init is not None  # started from a trained model (kept when resumed: see the EMA below)
    if init is not None:
        pairs = [(den, init.denoiser), (ema_den, init.denoiser)]
        if tuple(init.task.reward_types) == tuple(task.reward_types):
            pairs += [(rm, init.reward_model), (ema_rm, init.reward_model)]
        elif not args.reward_only:
            raise DatasetError(f"--init-from {args.init_from} predicts the reward labels {list(init.task.reward_types)}, "
                               f"the data has {list(task.reward_types)}: add --reward-only to train a new reward "
                               "model for it first")
        else:
            tqdm.write(f"reward labels {list(init.task.reward_types)} -> {list(task.reward_types)}: "
                       "the reward model starts afresh")
        for mod, src in pairs:
            state = {k: v.float() for k, v in src.state_dict().items()}
            if isinstance(mod, Denoiser):
                state = grown_stem(state, mod)
            mod.load_state_dict(state)
    if ck is not None:
        for mod, key in ((den, "denoiser"), (rm, "reward_model"), (ema_den, "ema_denoiser"),
                         (ema_rm, "ema_reward_model"), (opt, "opt"), (opt_r, "opt_reward")):
            mod.load_state_dict(ck[key])
        step, samples = ck["step"], ck["samples"]
        fine_tune = bool(ck.get("fine_tune", False))
    sampler = EulerSampler(num_steps=args.sampler_steps, antithetic=not args.sampler_one_draw,
                           min_change=args.sampler_min_change)
    ema_model = GlobalModel(ema_den, ema_rm, task, sampler)
    probe_frame_loss = make_probe_loss(args, task, sampler, device) if args.probe_loss and not args.reward_only else None
    writer = SummaryWriter(str(out / "tb"))
    (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))

    def save() -> None:
        atomic_torch_save({"step": step, "samples": samples, "args": dataclasses.asdict(args), "fine_tune": fine_tune,
                           "denoiser": den.state_dict(), "reward_model": rm.state_dict(),
                           "ema_denoiser": ema_den.state_dict(), "ema_reward_model": ema_rm.state_dict(),
                           "opt": opt.state_dict(), "opt_reward": opt_r.state_dict()}, ckpt_path)
        export_model(ema_model, out)

    train_time = [0.0, 0]  # seconds and steps of this invocation's training steps (no validation, saving, start-up)

    def validate() -> dict[str, float]:
        logs = open_loop_eval(ema_model, val_set.episodes, starts, args.sampler_steps, args.seed, horizons=horizons)
        alt = 3 if args.sampler_steps == 1 else 1  # the other sampler setting, for comparison
        alt_logs = open_loop_eval(ema_model, val_set.episodes, starts, alt, args.seed, horizons=(1, 4))
        logs.update({f"{k}_{alt}step": v for k, v in alt_logs.items() if "copy" not in k})
        logs.update(reward_eval(ema_rm, *real_val, device, "reward_real_"))
        if goal_val is not None:
            logs.update(reward_eval(ema_rm, goal_val["frames"], goal_val["rew"], goal_val["success"], device,
                                    "reward_goal_"))
        for k, v in logs.items():
            writer.add_scalar("val/" + k, v, step)
        logs["step"], logs["samples"] = step, samples
        if train_time[1]:  # the training steps' own speed, e.g. to size a timed run (benchmarks/gpu_train_global.sh)
            logs["train_steps_per_s"] = train_time[1] / train_time[0]
        atomic_write_text(out / "metrics.json", json.dumps(logs, indent=2))
        summary = " ".join(f"h{h}: mse {logs[f'mse_h{h}']:.5f} (copy {logs[f'mse_copy_h{h}']:.5f})" for h in horizons)
        tqdm.write(f"[val step {step}] {summary} | reward MAE {logs['reward_real_mae_0']:.4f} "
                   f"success F1 {logs.get('reward_goal_success_f1', float('nan')):.3f}")
        return logs

    # -- loop ---------------------------------------------------------------------------------------
    if args.self_forcing_steps < 1:
        raise ValueError(f"--self-forcing-steps must be at least 1, got {args.self_forcing_steps}")
    if args.pixel_loss_c < 0:
        raise ValueError(f"--pixel-loss-c must be >= 0 (0: squared error), got {args.pixel_loss_c}")
    extra = args.self_forcing_steps if args.self_forcing > 0 and not args.reward_only else 0
    if args.reward_only:
        args.steps = args.reward_steps
    batches = WindowBatcher(train_set.episodes, task, args.context, extra)(args.batch_size, args.seed + step)
    n_forced = int(round(args.self_forcing * args.batch_size))
    rng = np.random.default_rng(args.seed + step)
    deadline = t_start + 60 * args.minutes
    last_save, t_log, samples_log = time.time(), time.time(), samples
    bar = tqdm(initial=step, total=args.steps or None, desc="train-global", disable=args.quiet, mininterval=5)
    logs: dict[str, float] = {}
    den.train(); rm.train()
    while time.time() < deadline and not (args.steps and step >= args.steps):
        t_step = time.time()
        batch = {k: v.to(device) for k, v in next(batches).items()}
        train_logs: dict[str, float] = {}
        if extra:
            depths = torch.from_numpy(rng.integers(1, extra + 1, size=n_forced))  # all 1 for N = 1: no draw
            with torch.no_grad(), precision_context(precision, device):
                batch["obs"], batch["act"] = self_forced_context(den, sampler, batch["obs"], batch["act"], depths)
        if not args.reward_only:
            for g in opt.param_groups:
                g["lr"] = learning_rate(args, step)
            sigma = None
            if args.sampler_sigma_frac > 0:
                sigma = den.sample_training_sigma(args.batch_size, device)
                sigma[: int(round(args.sampler_sigma_frac * args.batch_size))] = sampler.sigma_max
            frame_loss = None  # (Denoiser.loss hands it the noise levels it draws when sigma is None)
            if probe_frame_loss is not None:
                frame_loss = functools.partial(probe_frame_loss, next_state=batch["next_state"])
            with precision_context(precision, device):
                loss, train_logs = den.loss(batch, sigma, frame_loss=frame_loss, huber_c=args.pixel_loss_c)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(den.parameters(), args.grad_clip)
            opt.step()
            # EMA warm-up from random weights; a run started from a trained model keeps the full decay (its
            # EMA starts as that model, and a short average of fine-tuning steps drifted over 64-step rollouts)
            decay = args.ema_decay if fine_tune else min(args.ema_decay, (1 + step) / (10 + step))
            ema_update(ema_den, den, decay)
            train_logs["grad_norm"] = float(gnorm)

        if step < args.reward_steps:
            rbatch = {k: batch[k] for k in ("next_obs", "rew", "success")}
            if goal_train is not None and args.goal_batch > 0:
                gb = goal_batch(goal_train, args.goal_batch, rng, device)
                rbatch = {k: torch.cat([rbatch[k], gb[k]]) for k in rbatch}
            with precision_context(precision, device):
                r_loss, r_logs = rm.loss(rbatch)
            opt_r.zero_grad(set_to_none=True)
            r_loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.parameters(), args.grad_clip)
            opt_r.step()
            ema_update(ema_rm, rm, 0.995)
            train_logs.update(r_logs)

        step += 1
        samples += args.batch_size
        bar.update(1)
        train_time[0] += time.time() - t_step
        train_time[1] += 1
        if step % args.log_every == 0:
            now = time.time()
            for k, v in train_logs.items():
                writer.add_scalar("losses/" + k, v, step)
            writer.add_scalar("charts/samples_per_s", (samples - samples_log) / (now - t_log), step)
            writer.add_scalar("charts/lr", opt.param_groups[0]["lr"], step)
            t_log, samples_log = now, samples
            bar.set_postfix(loss=f"{train_logs.get('loss_denoising', train_logs.get('loss_reward', 0.0)):.4f}")
        if step % args.eval_every == 0:
            logs = validate()
        if time.time() - last_save > 60 * args.save_every_minutes:
            save()
            last_save = time.time()
    bar.close()
    if not logs or logs.get("step") != step:
        logs = validate()
    save()
    writer.close()
    return logs


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------
def add_cli(subparsers) -> None:
    """Add ``train-global`` to the ``wm-gym`` command line (arguments from :class:`TrainGlobalArgs`)."""
    p = subparsers.add_parser("train-global", help="train the global world model (denoiser + reward model)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainGlobalArgs):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__)
            p.add_argument(flag, type=kind, default=f.default, required=f.name == "data",
                           help=f"{f.metadata['help']} (default: {f.default})")
    p.set_defaults(func=_cmd_train_global)


def _cmd_train_global(ns) -> int:
    args = TrainGlobalArgs(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainGlobalArgs)})
    logs = train(args)
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}))
    return 0


__all__ = ["TrainGlobalArgs", "train", "add_cli", "open_loop_eval"]
