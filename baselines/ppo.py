"""Stable-Baselines3 PPO on ``WM-PushT-v0`` -- the baseline FoG is compared with.

``CnnPolicy`` on pixels (``obs_type="pixels"``) or ``MlpPolicy`` on the surrogate latent
(``obs_type="latent"``), through :class:`~baselines.vec_env.SB3VecEnvAdapter` so every step is one batched
denoiser call. Hyper-parameters follow RL-Zoo's continuous-control defaults (normalised actions,
GAE 0.95, clip 0.2, 10 epochs); the env-step budget counts every world-model step.

With ``env="gym-pusht"`` the same PPO trains on the real simulator instead (:mod:`baselines.ground_truth`,
``obs_type`` ``"state"`` or ``"pixels"``), for reference: the budget then counts real env steps.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from wm_gym.cliargs import arg


@dataclasses.dataclass
class PPOArgs:
    """Arguments of a PPO run (each one is a ``ppo-train`` flag)."""

    env: str = arg("WM-PushT-v0", '"WM-PushT-v0" (the world model) or "gym-pusht" (the real simulator, for reference)')
    obs_type: str = arg("latent", '"latent" (MlpPolicy on the surrogate latent) or "pixels" (CnnPolicy on 64x64 frames); '
                        'with env="gym-pusht": "state" (MlpPolicy on the true state) or "pixels"')
    reward_type: str = arg("dense", '"dense" or "push" (shaped) or "coverage" (gym-pusht\'s reward)')
    total_timesteps: int = arg(200_000, 'world-model env steps')
    num_envs: int = arg(64, 'parallel envs, stepped by one batched denoiser call')
    n_steps: int = arg(32, 'steps per env per rollout (rollout = num_envs * n_steps)')
    batch_size: int = arg(512, 'minibatch size')
    n_epochs: int = arg(10, 'epochs per update')
    learning_rate: float = arg(3e-4, 'Adam learning rate')
    gamma: float = arg(0.99, 'discount')
    gae_lambda: float = arg(0.95, 'GAE lambda')
    ent_coef: float = arg(0.0, 'entropy bonus')
    clip_range: float = arg(0.2, 'PPO clip')
    log_std_init: float = arg(0.0, "initial log std of the Gaussian policy over normalised actions (SB3's default 0: "
                              "std 1: about a third of the samples clipped at the action box)")
    normalize_reward: bool = arg(False, "scale rewards by a running std of the discounted return (SB3 VecNormalize, "
                                 "norm_reward only, as RL-Zoo does for continuous control); evaluation and the "
                                 "recorded returns stay raw")
    action_offset: float = arg(0.0, "0: absolute targets; > 0 (latent only): target = the surrogate's agent-position "
                               "read-out + action * this (env units), as FoGConfig.action_offset (gym-pusht: the "
                               "true agent position, any obs_type)")
    checkpoint: str | None = arg(None, 'world-model checkpoint directory (default: the shipped Push-T model)')
    device: str = arg("cpu", 'torch device for the world model and the policy')
    precision: str = arg("float32", "the world model's arithmetic: float32, bfloat16 (autocast) or auto")
    seed: int = arg(0, 'seeds numpy, torch and the env')
    out: str = arg("runs/ppo", 'output directory (model, TensorBoard logs, curve CSV)')
    eval_freq: int = arg(0, 'EvalCallback every this many env steps on a separate 8-env world model (0: off)')
    progress_bar: bool = arg(True, "show SB3's progress bar")
    run_name: str = arg("", 'run name (default: env, experiment, seed, time)')


OBS_TYPES = {"WM-PushT-v0": ("latent", "pixels"), "gym-pusht": ("state", "pixels")}


def check_args(args: PPOArgs) -> None:
    """Clear errors for an env / observation combination that does not exist."""
    if args.env not in OBS_TYPES:
        raise ValueError(f"env must be one of {tuple(OBS_TYPES)}, got {args.env!r}")
    if args.obs_type not in OBS_TYPES[args.env]:
        raise ValueError(f"obs_type for env={args.env!r} must be one of {OBS_TYPES[args.env]}, got {args.obs_type!r}")
    if args.env == "WM-PushT-v0" and args.action_offset > 0 and args.obs_type != "latent":
        raise ValueError("action_offset > 0 in WM-PushT-v0 reads the agent from the surrogate latent: obs_type='latent' "
                         "only (in gym-pusht it is read from the true state, any obs_type)")


def make_vec_env(args: PPOArgs, num_envs: int | None = None, training: bool = True):
    """The SB3 VecEnv (with episode statistics): over the native batched ``WM-PushT-v0``, or ``num_envs``
    copies of the real gym-pusht (:class:`~baselines.ground_truth.PushTTruthEnv`) stepped in turn.

    With ``args.normalize_reward`` it is wrapped in ``VecNormalize`` (rewards only) outside ``VecMonitor``, so the
    episode returns SB3 logs are the raw ones; with ``training=False`` (an evaluation env) the wrapper neither
    updates nor applies its statistics, and is there so that SB3 can sync it with the training env's."""
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    check_args(args)
    env = VecMonitor(_raw_vec_env(args, num_envs or args.num_envs))
    if args.normalize_reward:
        env = VecNormalize(env, training=training, norm_obs=False, norm_reward=training, gamma=args.gamma)
    return env


def _raw_vec_env(args: PPOArgs, num_envs: int):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    if args.env == "gym-pusht":
        from .ground_truth import PushTTruthEnv

        return DummyVecEnv([lambda: PushTTruthEnv(args.obs_type, args.reward_type, action_offset=args.action_offset)
                            for _ in range(num_envs)])

    import wm_gym  # noqa: F401  (registers the env)

    from .vec_env import SB3VecEnvAdapter

    venv = gym.make_vec("WM-PushT-v0", num_envs=num_envs, obs_type=args.obs_type, reward_type=args.reward_type,
                        checkpoint=args.checkpoint, device=args.device, precision=args.precision)
    return SB3VecEnvAdapter(venv, action_offset=args.action_offset)


class CurveCallback:
    """Records (env steps, mean episode return over the last 100 episodes) after every rollout."""

    def __init__(self):
        from stable_baselines3.common.callbacks import BaseCallback

        outer = self

        class _CB(BaseCallback):
            def _on_step(self) -> bool:
                return True

            def _on_rollout_end(self) -> None:
                buf = self.model.ep_info_buffer
                if buf:
                    outer.rows.append((self.num_timesteps, float(np.mean([e["r"] for e in buf])),
                                       float(np.mean([e["l"] for e in buf])), time.time() - outer.t0, len(buf)))

        self.rows: list[tuple[int, float, float, float, int]] = []
        self.t0 = time.time()
        self.callback = _CB()


def train_ppo(args: PPOArgs, callback=None):
    """Train PPO; returns (model, curve rows [(env_steps, ep_rew_mean, ep_len_mean, seconds, episodes in the mean)],
    run directory). ``callback``: an extra SB3 callback (or list of them) run beside the curve recorder."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList, EvalCallback
    from stable_baselines3.common.utils import set_random_seed

    check_args(args)
    set_random_seed(args.seed)
    name = args.run_name or f"{args.env}__ppo_{args.obs_type}__{args.seed}__{int(time.time())}"
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    env = make_vec_env(args)
    env.seed(args.seed)
    policy = "CnnPolicy" if args.obs_type == "pixels" else "MlpPolicy"
    model = PPO(policy, env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                learning_rate=args.learning_rate, gamma=args.gamma, gae_lambda=args.gae_lambda,
                ent_coef=args.ent_coef, clip_range=args.clip_range, seed=args.seed, device=args.device,
                policy_kwargs={"log_std_init": args.log_std_init}, tensorboard_log=str(out / "tb"), verbose=0)
    curve = CurveCallback()
    callbacks = [curve.callback]
    if args.eval_freq > 0:
        eval_env = make_vec_env(args, num_envs=8, training=False)
        eval_env.seed(args.seed + 10_000)
        callbacks.append(EvalCallback(eval_env, eval_freq=max(1, args.eval_freq // args.num_envs),
                                      n_eval_episodes=8, best_model_save_path=str(out), log_path=str(out)))
    if callback is not None:
        callbacks += list(callback) if isinstance(callback, (list, tuple)) else [callback]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model.learn(args.total_timesteps, callback=CallbackList(callbacks), progress_bar=args.progress_bar,
                tb_log_name="ppo")
    model.save(out / "model.zip")
    if args.normalize_reward:
        env.save(str(out / "vec_normalize.pkl"))  # the return statistics, to resume training
    (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    with open(out / "curve.csv", "w") as f:
        f.write("env_steps,ep_rew_mean,ep_len_mean,seconds,episodes_in_mean\n")
        for r in curve.rows:
            f.write(",".join(str(x) for x in r) + "\n")
    env.close()
    return model, curve.rows, out


class PPOFramePolicy:
    """Runs a trained PPO model on raw frames, e.g. in the ground-truth gym-pusht.

    For ``obs_type="latent"`` it keeps the last K frames (first frame repeated at the start; see
    docs/CONTRACTS.md) and encodes them with the world model's surrogate.
    """

    def __init__(self, model, obs_type: str, checkpoint=None, device: str = "cpu", deterministic: bool = True,
                 action_offset: float = 0.0):
        from wm_gym.data import FrameHistory
        from wm_gym.envs.core import WorldModel
        from .vec_env import AnchoredActions

        if action_offset > 0 and obs_type != "latent":
            raise ValueError("action_offset > 0 needs obs_type='latent' (the anchor is read from the latent)")
        self.model, self.obs_type, self.deterministic = model, obs_type, deterministic
        self.wm = WorldModel.load(checkpoint, device)
        self.history = FrameHistory(self.wm.context)
        self.anchored = None
        if action_offset > 0:
            m = int(self.wm.surrogate.config.action_dim)
            self.anchored = AnchoredActions(self.wm.surrogate, np.full(m, self.wm.task.action_low),
                                            np.full(m, self.wm.task.action_high), action_offset)

    def reset(self) -> None:
        self.history.reset()

    def act_obs(self, obs: np.ndarray) -> np.ndarray:
        """Env-unit actions (B, m) for a batch of the observations the model was trained on: latents (B, d) or
        uint8 frames (B, H, W, 3), e.g. for ``fog_trainer.evaluate.WorldModelEvaluator``."""
        a, _ = self.model.predict(np.asarray(obs), deterministic=self.deterministic)
        return self._to_env_units(obs, a)

    def act_latent(self, latents: np.ndarray) -> np.ndarray:
        """:meth:`act_obs` for latent observations (B, d) (``obs_type="latent"`` only)."""
        if self.obs_type != "latent":
            raise ValueError("act_latent needs a PPO model trained on obs_type='latent'; use act_obs for pixels")
        return self.act_obs(np.asarray(latents, dtype=np.float32))

    def _to_env_units(self, obs: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.anchored is not None:
            return self.anchored(obs, a)
        return self.wm.task.unnormalize_action(np.clip(a, -1, 1))

    def act(self, frame: np.ndarray) -> np.ndarray:
        import torch

        from wm_gym.data import frames_to_tensor

        if self.obs_type == "pixels":
            obs = frame
        else:
            with torch.no_grad():
                x = frames_to_tensor(self.history.push(frame))[None].to(self.wm.device)
                obs = self.wm.surrogate.encode(x)[0].cpu().numpy()
        a, _ = self.model.predict(obs, deterministic=self.deterministic)
        return self._to_env_units(obs, a)
