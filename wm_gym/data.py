"""Episodes on disk and torch datasets of training windows.

A dataset is a directory::

    DIR/meta.json            format version, task spec, resolution, control rate, behaviour mix (and action
                             noise, if any), seed
    DIR/episode_000000.npz   one episode each, written atomically (temp file, then rename)

Each episode holds ``frames`` uint8 (T+1, H, W, 3), ``actions`` float32 (T, 2) in env units,
``states`` float32 (T+1, 5) (agent xy, block xy, block angle), ``reward_<label>`` float32 (T,) for every
label of ``task.reward_types`` (labels that are functions of the state, ``pusht.STATE_REWARDS``, are
derived from ``states`` when a file recorded before the label existed lacks them), ``coverage`` float32 (T+1,), ``contact`` bool (T,), ``terminated`` / ``truncated`` bool
scalars and ``seed``. Episode ``i`` is fully determined by the dataset seed and ``i``, so a collection
that is interrupted and re-run resumes where it stopped and gives the same data.
"""

from __future__ import annotations

import collections
import json
import multiprocessing as mp
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_save_npz, atomic_write_text
from .pusht import PUSHT, STATE_REWARDS, WORKSPACE, TaskSpec

FORMAT_VERSION = 1
EPISODE_KEYS = {
    "frames": np.uint8,
    "actions": np.float32,
    "states": np.float32,
    "reward_coverage": np.float32,
    "reward_dense": np.float32,
    "coverage": np.float32,
    "contact": np.bool_,
}


class DatasetError(ValueError):
    """A dataset directory or episode file that cannot be used (the message says why and what to do)."""


# ---------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------
def episode_path(root: Path, index: int) -> Path:
    return Path(root) / f"episode_{index:06d}.npz"


def load_episode(path: Path) -> dict[str, np.ndarray]:
    """Load and validate one episode file; raise :class:`DatasetError` naming the file if it is bad."""
    path = Path(path)
    try:
        with np.load(path) as z:
            ep = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(
            f"episode file {path} is corrupt or truncated ({type(e).__name__}: {e}). Delete it and re-run "
            "`wm-gym collect` with the same arguments to re-create it, or pass skip_corrupt=True / "
            "--skip-corrupt to ignore it."
        ) from e
    missing = [k for k in EPISODE_KEYS if k not in ep]
    if missing:
        raise DatasetError(f"episode file {path} lacks arrays {missing}; is it a wm-gym episode?")
    T = len(ep["actions"])
    if ep["frames"].shape[0] != T + 1 or ep["states"].shape != (T + 1, 5) or ep["frames"].dtype != np.uint8:
        raise DatasetError(
            f"episode file {path} has inconsistent shapes: frames {ep['frames'].shape} {ep['frames'].dtype}, "
            f"actions {ep['actions'].shape}, states {ep['states'].shape}"
        )
    for name, fn in STATE_REWARDS.items():  # a label of the state reached, t+1
        if "reward_" + name not in ep:
            ep["reward_" + name] = fn(ep["states"][1:]).astype(np.float32)
    return ep


def _with_state_rewards(task: dict[str, Any]) -> dict[str, Any]:
    """A Push-T task of an older collection, with the state-derived labels it lacks appended (in the
    library's order), since :func:`load_episode` derives them."""
    if task.get("name") != PUSHT.name:
        return task
    have = list(task.get("reward_types", []))
    extra = [r for r in PUSHT.reward_types if r in STATE_REWARDS and r not in have]
    return {**task, "reward_types": have + extra}


def read_meta(root: Path) -> dict[str, Any]:
    p = Path(root) / "meta.json"
    if not p.exists():
        raise DatasetError(f"{root} has no meta.json: it is not a wm-gym dataset (create one with `wm-gym collect`)")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p} is not valid JSON ({e})") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{root} has dataset format version {meta.get('format_version')}, this wm-gym reads version "
            f"{FORMAT_VERSION}; collect a new dataset into another directory"
        )
    if isinstance(meta.get("task"), dict):
        meta["task"] = _with_state_rewards(meta["task"])
    return meta


def list_episodes(root: Path) -> list[Path]:
    return sorted(Path(root).glob("episode_*.npz"))


# ---------------------------------------------------------------------------------------------------
# collection
# ---------------------------------------------------------------------------------------------------
def episode_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class _SavedFramePolicy:
    """A saved frame policy (``FoGPolicy.save``) as a collection behaviour: it sees frames only, its action
    noise (``sampled``) seeded by the episode seed, so an episode is a function of (dataset seed, index)."""

    current = "policy"
    _cache: dict[str, Any] = {}  # one load per process and path

    def __init__(self, path: str, sampled: bool):
        if path not in self._cache:
            from fog_trainer import FoGPolicy  # the policy format lives with the trainer

            torch.set_num_threads(1)  # collection parallelises over processes
            self._cache[path] = FoGPolicy.load(path)
        self.policy, self.sampled = self._cache[path], sampled

    def reset(self, rng: np.random.Generator) -> None:
        self.policy.reset()
        self.generator = torch.Generator().manual_seed(int(rng.integers(2**31)))

    def act(self, frame: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return self.policy.act(frame, deterministic=not self.sampled, generator=self.generator)


def collect_episode(index: int, seed: int, image_size: int, mix: dict[str, float] | None,
                    max_steps: int = 300, policy: dict[str, Any] | None = None,
                    action_noise: float = 0.0) -> dict[str, np.ndarray]:
    """Roll one episode in the ground-truth Push-T and return its arrays.

    The behaviour is the scripted ``mix`` (it reads the true state), or, when ``policy`` is given
    (``{"path": DIR, "sampled": bool}``), a saved frame policy acting on the frames it is shown.
    ``action_noise`` (env px, std) adds independent Gaussian noise to every action the behaviour picks
    (clipped to the action space; the recorded action is the one taken), so that the action is not
    predictable from the frames and past actions. The scripted behaviour's action is predictable to ~9 px
    (``benchmarks/collection.py --stats``), which leaves the effect of larger action changes to extrapolation.
    """
    from .policies import make_behaviour_policy
    from .pusht import PushTGroundTruth

    s = episode_seed(seed, index)
    rng = np.random.default_rng(s)
    gt = PushTGroundTruth(image_size=image_size, max_episode_steps=max_steps)
    if policy is None:
        scripted = make_behaviour_policy(mix)
        behaviour, act = scripted, lambda frame, info: scripted(info["state"])
    else:
        behaviour = _SavedFramePolicy(policy["path"], policy["sampled"])
        act = behaviour.act
    behaviour.reset(rng)
    noise_rng = np.random.default_rng([s, 1])  # its own stream: the behaviour's draws do not change with it
    frame, info = gt.reset(seed=s % (2**31))
    frames, states, coverage = [frame], [info["state"]], [info["coverage"]]
    actions, rewards, contact = [], {r: [] for r in PUSHT.reward_types}, []
    terminated = truncated = False
    while not (terminated or truncated):
        a = np.asarray(act(frame, info), dtype=np.float32).reshape(2)
        if action_noise > 0:
            a = np.clip(a + noise_rng.normal(scale=action_noise, size=2), 0.0, WORKSPACE).astype(np.float32)
        frame, _, terminated, truncated, info = gt.step(a)
        frames.append(frame); states.append(info["state"]); coverage.append(info["coverage"])
        actions.append(a); contact.append(info["contact"])
        for name, values in rewards.items():
            values.append(info["reward_" + name])
    gt.close()
    return {
        "frames": np.stack(frames).astype(np.uint8),
        "actions": np.stack(actions).astype(np.float32),
        "states": np.stack(states).astype(np.float32),
        **{"reward_" + name: np.asarray(values, np.float32) for name, values in rewards.items()},
        "coverage": np.asarray(coverage, np.float32),
        "contact": np.asarray(contact, bool),
        "terminated": np.asarray(terminated),
        "truncated": np.asarray(truncated),
        "seed": np.asarray(s, np.int64),
        "behaviour": np.asarray(behaviour.current),
    }


def _collect_job(args):
    index, root, seed, image_size, mix, max_steps, policy, action_noise = args
    ep = collect_episode(index, seed, image_size, mix, max_steps, policy, action_noise)
    atomic_save_npz(episode_path(root, index), **ep)
    return index, len(ep["actions"])


def collect(out: str | Path, episodes: int, seed: int = 0, workers: int = 1, image_size: int = 64,
            mix: dict[str, float] | None = None, max_steps: int = 300, progress: bool = True,
            policy: str | Path | None = None, sampled: bool = True, action_noise: float = 0.0) -> dict[str, Any]:
    """Collect ``episodes`` ground-truth episodes into ``out`` (resumes; never overwrites an episode).

    The behaviour is the scripted ``mix``, or the saved frame policy in directory ``policy``
    (``FoGPolicy.save``; sampled actions unless ``sampled=False``): data from the states a trained policy
    visits, to evaluate or fine-tune the world model there (``wm-gym eval-fidelity`` / ``train-global``).
    ``action_noise`` > 0 perturbs every action with Gaussian noise of that std (env px; see
    :func:`collect_episode`), for data in which the action's effect on the next frame is identifiable.
    Returns a summary dict (episodes written now, total, steps, seconds).
    """
    import time

    from .policies import DEFAULT_MIX

    if episodes < 1 or workers < 1 or image_size < 8:
        raise ValueError(f"need episodes >= 1, workers >= 1, image_size >= 8 (got {episodes}, {workers}, {image_size})")
    if not (np.isfinite(action_noise) and action_noise >= 0):
        raise ValueError(f"action_noise is a standard deviation in env px, >= 0 (got {action_noise})")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if policy is not None:
        if mix is not None:
            raise ValueError("give either a scripted behaviour mix or a saved policy, not both")
        if not (Path(policy) / "policy.json").exists():
            raise DatasetError(f"--policy {policy} is not a saved policy directory (no policy.json); "
                               "save one with FoGTrainer.save / FoGPolicy.save")
        policy_spec = {"path": str(Path(policy).resolve()), "sampled": bool(sampled)}
        mix = {}
    else:
        policy_spec = None
        mix = dict(DEFAULT_MIX if mix is None else mix)
    try:
        import importlib.metadata as md
        gp_version = md.version("gym-pusht")
    except Exception:  # pragma: no cover
        gp_version = "unknown"
    task = TaskSpec(**{**PUSHT.to_dict(), "image_size": image_size, "reward_types": PUSHT.reward_types,
                       "max_episode_steps": max_steps})
    meta = {
        "format_version": FORMAT_VERSION,
        "task": task.to_dict(),
        "resolution": [image_size, image_size],
        "control_hz": PUSHT.render_fps,
        "behaviour_mix": mix,
        **({"behaviour_policy": policy_spec} if policy_spec else {}),
        **({"action_noise": float(action_noise)} if action_noise > 0 else {}),
        "seed": seed,
        "gym_pusht_version": gp_version,
    }
    if (root / "meta.json").exists():
        old = read_meta(root)
        for key in ("resolution", "behaviour_mix", "behaviour_policy", "action_noise", "seed", "task"):
            if old.get(key) != meta.get(key):
                raise DatasetError(
                    f"{root} already holds a dataset with {key}={old.get(key)}, but this collection asks for "
                    f"{key}={meta.get(key)}. Use the same arguments to extend it, or collect into a new directory."
                )
    else:
        atomic_write_text(root / "meta.json", json.dumps(meta, indent=2))

    todo = [i for i in range(episodes) if not episode_path(root, i).exists()]
    jobs = [(i, str(root), seed, image_size, mix, max_steps, policy_spec, float(action_noise)) for i in todo]
    t0, steps = time.time(), 0
    from tqdm.auto import tqdm

    bar = tqdm(total=episodes, initial=episodes - len(todo), desc="collect", unit="ep", disable=not progress)
    if workers == 1:
        for job in jobs:
            steps += _collect_job(job)[1]
            bar.update(1)
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            for _, n in pool.imap_unordered(_collect_job, jobs):
                steps += n
                bar.update(1)
    bar.close()
    dt = time.time() - t0
    return {"written": len(todo), "total": len(list_episodes(root)), "steps": steps, "seconds": dt,
            "steps_per_s": steps / max(dt, 1e-9)}


# ---------------------------------------------------------------------------------------------------
# torch datasets
# ---------------------------------------------------------------------------------------------------
def split_episodes(paths: list[Path], split: str, val_fraction: float = 0.1, seed: int = 0) -> list[Path]:
    """Deterministic train/val split by episode (a hash of the file name, independent of listing order)."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if split == "all":
        return list(paths)
    out = []
    for p in paths:
        u = np.random.default_rng(np.random.SeedSequence([seed, int(p.stem.split("_")[-1])])).random()
        if (u < val_fraction) == (split == "val"):
            out.append(p)
    return out


def dataset_roots(root: str | Path | list) -> list[Path]:
    """One dataset directory, or several (a list, or one string of comma-separated directories)."""
    parts = root.split(",") if isinstance(root, str) else (list(root) if isinstance(root, (list, tuple)) else [root])
    roots = [Path(str(r).strip()) for r in parts if str(r).strip()]
    if not roots:
        raise DatasetError("no dataset directory given")
    return roots


def load_split(root: str | Path | list, split: str = "train", val_fraction: float = 0.1, seed: int = 0,
               skip_corrupt: bool = False, max_episodes: int | None = None) -> tuple[dict, list[dict]]:
    """Read ``meta.json`` and the episodes of one split into memory.

    ``root`` may name several collections of one task (``"data/pusht64,data/policy_episodes"``, e.g. the
    behaviour data plus episodes of a trained policy, ``wm-gym collect --policy``): each is split on its
    own and their episodes are concatenated; the meta returned is the first one's. ``max_episodes``
    caps each collection.
    """
    roots = dataset_roots(root)
    if len(roots) > 1:
        metas, episodes = [], []
        for r in roots:
            meta, eps = load_split(r, split, val_fraction, seed, skip_corrupt, max_episodes)
            if metas and (meta["task"] != metas[0]["task"] or meta["resolution"] != metas[0]["resolution"]):
                raise DatasetError(f"{r} holds task {meta['task']} at {meta['resolution']}, {roots[0]} holds "
                                   f"{metas[0]['task']} at {metas[0]['resolution']}: collections trained on "
                                   "together must be of one task and resolution")
            metas.append(meta)
            episodes += eps
        return metas[0], episodes
    return _load_one_split(roots[0], split, val_fraction, seed, skip_corrupt, max_episodes)


def _load_one_split(root: Path, split: str, val_fraction: float, seed: int, skip_corrupt: bool,
                    max_episodes: int | None) -> tuple[dict, list[dict]]:
    import warnings

    meta = read_meta(root)
    paths = split_episodes(list_episodes(root), split, val_fraction, seed)
    if max_episodes is not None:
        paths = paths[:max_episodes]
    episodes = []
    for p in paths:
        try:
            episodes.append(load_episode(p))
        except DatasetError as e:
            if not skip_corrupt:
                raise
            warnings.warn(f"skipping {p}: {e}")
    if not episodes:
        raise DatasetError(f"no usable episodes in split {split!r} of {root} (found {len(paths)} files)")
    return meta, episodes


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]."""
    x = torch.as_tensor(frames)
    return x.movedim(-1, -3).float().div(127.5).sub(1.0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    return x.detach().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).cpu().numpy()


def context_indices(t: int, context: int) -> np.ndarray:
    """Frame indices t-K+1..t, clamped at 0 (the first frame is repeated at the start of an episode)."""
    return np.clip(np.arange(t - context + 1, t + 1), 0, None)


class FrameHistory:
    """The last K frames of an episode for a policy that acts on frames (the first frame is repeated
    before the episode start, as in :func:`context_indices`)."""

    def __init__(self, context: int):
        self.context = context
        self.reset()

    def reset(self) -> None:
        self._frames: collections.deque = collections.deque(maxlen=self.context)

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add the newest uint8 (H, W, 3) frame; return the context (K, H, W, 3), oldest first."""
        frame = np.asarray(frame)
        self._frames.extend([frame] * (self.context if not self._frames else 1))
        return np.stack(self._frames)


class TransitionDataset(torch.utils.data.Dataset):
    """Training windows ``(K context frames + actions) -> next frame, rewards, success, end``.

    Item ``t`` of an episode holds (all float32):

    * ``obs`` (K, 3, H, W) in [-1, 1]: frames t-K+1..t (frame 0 repeated before the episode start);
    * ``act`` (K, 2) in [-1, 1]: actions t-K+1..t, the last one being the action taken at t (zero padding);
    * ``next_obs`` (3, H, W): frame t+1;
    * ``rew`` (R,): reward labels of the transition (order of ``task.reward_types``);
    * ``success`` (): whether frame t+1 is a success; ``end`` (): episode terminated at t+1;
    * ``state`` (5,) / ``next_state`` (5,): true states at t and t+1 (for probes and auxiliary losses).
    """

    def __init__(self, root: str | Path, split: str = "train", context: int = 4, val_fraction: float = 0.1,
                 seed: int = 0, skip_corrupt: bool = False, max_episodes: int | None = None):
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        self.meta, self.episodes = load_split(root, split, val_fraction, seed, skip_corrupt, max_episodes)
        self.task = TaskSpec.from_dict(self.meta["task"])
        self.context = context
        self.index = np.array([(e, t) for e, ep in enumerate(self.episodes) for t in range(len(ep["actions"]))])
        self._norm_actions = [self.task.normalize_action(ep["actions"]).astype(np.float32) for ep in self.episodes]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, t = self.index[i]
        ep = self.episodes[e]
        idx = context_indices(t, self.context)
        act = self._norm_actions[e][idx].copy()
        act[: max(0, self.context - 1 - t)] = 0.0
        T = len(ep["actions"])
        cov = float(ep["coverage"][t + 1])
        return {
            "obs": frames_to_tensor(ep["frames"][idx]),
            "act": torch.from_numpy(act),
            "next_obs": frames_to_tensor(ep["frames"][t + 1]),
            "rew": torch.tensor([ep["reward_" + r][t] for r in self.task.reward_types], dtype=torch.float32),
            "success": torch.tensor(float(cov > 0.95)),
            "end": torch.tensor(float(bool(ep["terminated"]) and t + 1 == T)),
            "state": torch.from_numpy(ep["states"][t].astype(np.float32)),
            "next_state": torch.from_numpy(ep["states"][t + 1].astype(np.float32)),
        }
