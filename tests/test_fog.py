"""FoG: gradient paths, TD(lambda), episode ends, persistence and the non-finite guard, on a tiny torch env.

The fixture env is a random tanh-MLP latent dynamics + reward that serves both as the "global" model
(forward values) and as its own surrogate (Jacobians), with the env fast path of docs/CONTRACTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

import fog_trainer.trainer as trainer_module
from fog_trainer import FoGConfig, FoGPolicy, FoGTrainer, fog_step, swap_step, td_lambda_targets
from wm_gym.models.surrogate import Linearization

LOW, HIGH = 0.0, 512.0


# ---------------------------------------------------------------------------------------------------
# fixtures: a tiny differentiable world model and an env with the torch fast path
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TensorStep:
    obs: torch.Tensor
    latent: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_latent: torch.Tensor
    lin: Linearization


class ToySurrogate(ModelMixin, ConfigMixin):
    """Encoder (flattened K frames -> z), dynamics f(z, a) and reward r(z, a); actions in env units."""

    @register_to_config
    def __init__(self, latent_dim: int = 6, action_dim: int = 2, hidden: int = 32, image_size: int = 8,
                 context: int = 2):
        super().__init__()
        self.enc = nn.Linear(context * 3 * image_size * image_size, latent_dim)
        self.dyn = nn.Sequential(nn.Linear(latent_dim + action_dim, hidden), nn.Tanh(), nn.Linear(hidden, latent_dim))
        self.rew = nn.Sequential(nn.Linear(latent_dim + action_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def encode(self, obs):
        return torch.tanh(self.enc(obs.flatten(1)))

    def _in(self, z, a):
        return torch.cat([z, (a - LOW) / (HIGH - LOW) * 2 - 1], -1)

    def next(self, z, a):
        return z + 0.3 * torch.tanh(self.dyn(self._in(z, a)))

    def reward(self, z, a):
        return self.rew(self._in(z, a)).squeeze(-1)

    def step(self, z, a):
        return self.next(z, a), self.reward(z, a)

    def jacobians(self, z, a) -> Linearization:
        jac = torch.func.vmap(torch.func.jacrev(lambda z1, a1: self.step(z1[None], a1[None]), argnums=(0, 1)))
        (dfdz, dfda), (drdz, drda) = jac(z, a)
        with torch.no_grad():
            next_z, reward = self.step(z, a)
        return Linearization(z, a, next_z, reward, dfdz[:, 0], dfda[:, 0], drdz[:, 0], drda[:, 0])


class ToyVecEnv:
    """N envs of ``max_steps`` steps on a ToySurrogate; ``terminate_at[i] = k`` terminates env i at global step k.

    ``nan_at_step`` puts NaNs into the action Jacobian of that (global) step, to test the guard.
    """

    def __init__(self, num_envs=4, latent_dim=6, max_steps=50, surrogate=None, global_model=None,
                 terminate_at=None, nan_at_step=None, seed=0):
        torch.manual_seed(seed)
        self.surrogate = surrogate or ToySurrogate(latent_dim=latent_dim)
        self.global_model = global_model or self.surrogate
        self.context = self.surrogate.config.context
        self.num_envs, self.latent_dim, self.max_steps = num_envs, latent_dim, max_steps
        self.single_action_space = gym.spaces.Box(LOW, HIGH, (2,), np.float32)
        self.terminate_at, self.nan_at_step = terminate_at or {}, nan_at_step
        self.global_steps = 0

    def _start(self, n):
        return torch.randn(n, self.latent_dim, generator=self.gen) * 0.5

    def reset_tensor(self, seed=None):
        self.gen = torch.Generator().manual_seed(0 if seed is None else seed)
        self.latent, self.t = self._start(self.num_envs), torch.zeros(self.num_envs, dtype=torch.long)
        return self.latent

    def step_tensor(self, action):
        lin = self.surrogate.jacobians(self.latent, action)
        with torch.no_grad():
            next_z, reward = self.global_model.step(self.latent, action)
        if self.global_steps == self.nan_at_step:
            lin.dfda = torch.full_like(lin.dfda, float("nan"))
        terminated = torch.tensor([self.terminate_at.get(i) == self.global_steps for i in range(self.num_envs)])
        self.global_steps += 1
        self.t += 1
        truncated = ~terminated & (self.t >= self.max_steps)
        done = terminated | truncated
        latent = torch.where(done[:, None], self._start(self.num_envs), next_z)
        self.t[done] = 0
        self.latent = latent
        return TensorStep(None, latent, reward, terminated, truncated, next_z, lin)


def small_config(tmp_path, **kw):
    base = dict(num_envs=4, horizon=4, critic_iters=2, critic_minibatches=2, actor_hidden=(16,),
                critic_hidden=(16,), run_dir=str(tmp_path / "run"), progress_bar=False, tensorboard=False,
                checkpoint_every=0, action_offset=0.0)  # the toy surrogate has no state head to anchor at
    base.update(kw)
    return FoGConfig(**base)


def policy_net(d=6):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 2), nn.Sigmoid())


def unroll(policy, z, H, step_fn, gamma=0.9):
    """Discounted return of H steps; ``step_fn(z, a) -> (next_z, r)`` (a in env units)."""
    ret = 0.0
    for t in range(H):
        a = LOW + policy(z) * (HIGH - LOW)
        z, r = step_fn(z, a)
        ret = ret + gamma ** t * r.sum()
    return ret


def grads(policy, loss):
    policy.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters()])


# ---------------------------------------------------------------------------------------------------
# gradient paths
# ---------------------------------------------------------------------------------------------------
def test_explicit_jacobians_equal_gradient_swap():
    torch.manual_seed(0)
    surrogate, global_model = ToySurrogate(), ToySurrogate()  # two different models
    z0, policy = torch.randn(5, 6), policy_net()

    def with_jacobians(z, a):
        with torch.no_grad():
            next_z, r = global_model.step(z, a)
        return fog_step(z, a, next_z, r, surrogate.jacobians(z.detach(), a.detach()))

    def with_swap(z, a):
        with torch.no_grad():
            next_z, r = global_model.step(z, a)
        return swap_step(surrogate.step, z, a, next_z, r)

    ret_a, ret_b = unroll(policy, z0, 6, with_jacobians), unroll(policy, z0, 6, with_swap)
    assert torch.allclose(ret_a, ret_b)
    g_a, g_b = grads(policy, ret_a), grads(policy, ret_b)
    assert g_a.norm() > 0
    torch.testing.assert_close(g_a, g_b, rtol=1e-4, atol=1e-6)
    # and the forward values are the global model's, not the surrogate's
    with torch.no_grad():
        assert not torch.allclose(ret_a, unroll(policy, z0, 6, surrogate.step))


def test_fog_equals_bptt_when_models_coincide():
    torch.manual_seed(0)
    model, z0, policy = ToySurrogate(), torch.randn(5, 6), policy_net()

    def fog(z, a):
        with torch.no_grad():
            next_z, r = model.step(z, a)
        return fog_step(z, a, next_z, r, model.jacobians(z.detach(), a.detach()))

    ret_fog, ret_bptt = unroll(policy, z0, 8, fog), unroll(policy, z0, 8, model.step)
    torch.testing.assert_close(ret_fog, ret_bptt)
    torch.testing.assert_close(grads(policy, ret_fog), grads(policy, ret_bptt), rtol=1e-4, atol=1e-6)


def test_fog_step_rejects_mismatched_jacobians():
    lin = ToySurrogate().jacobians(torch.zeros(2, 6), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dfdz"):
        fog_step(torch.zeros(2, 5), torch.zeros(2, 2), torch.zeros(2, 5), torch.zeros(2), lin)


# ---------------------------------------------------------------------------------------------------
# critic targets and episode ends
# ---------------------------------------------------------------------------------------------------
def test_td_lambda_targets_hand_computed():
    g, lam = 0.9, 0.5
    rew = torch.tensor([[1.0], [2.0], [3.0]])
    nv = torch.tensor([[10.0], [0.0], [30.0]])  # step 1 terminated: its next value is zeroed
    done = torch.tensor([[False], [True], [False]])
    g2 = 3 + g * 30  # horizon end: bootstrap only
    g1 = 2 + g * 0  # episode end (terminated): no lambda mixing across it
    g0 = 1 + g * ((1 - lam) * 10 + lam * g1)
    torch.testing.assert_close(td_lambda_targets(rew, nv, done, g, lam), torch.tensor([[g0], [g1], [g2]]))
    # lambda = 1 without episode ends is the discounted return bootstrapped at H; lambda = 0 is TD(0)
    done = torch.zeros_like(done)
    mc = 1 + g * 2 + g ** 2 * 3 + g ** 3 * 30
    assert math.isclose(float(td_lambda_targets(rew, nv, done, g, 1.0)[0, 0]), mc, rel_tol=1e-6)
    torch.testing.assert_close(td_lambda_targets(rew, nv, done, g, 0.0), rew + g * nv)


def test_termination_zeroes_bootstrap_truncation_keeps_it_and_gradients_are_cut(tmp_path, monkeypatch):
    # env 0 terminates at step 0, env 1 truncates at step 0, env 2 runs on
    env = ToyVecEnv(num_envs=3, max_steps=100, terminate_at={0: 0})
    cfg = small_config(tmp_path, num_envs=3, horizon=3, alpha=0.0, reward_norm=False, obs_norm=False, gamma=0.9)
    trainer = FoGTrainer(env, cfg)
    env.t[1] = env.max_steps - 1  # env 1 truncates at step 0

    record = []

    def recording_fog_step(z, a, next_z, reward, lin):
        a.retain_grad()
        out = fog_step(z, a, next_z, reward, lin)
        record.append((a, lin, next_z))
        return out

    monkeypatch.setattr(trainer_module, "fog_step", recording_fog_step)
    reward_loss, critic_loss, buf, _ = trainer._rollout()
    assert buf["term"][0].tolist() == [True, False, False] and buf["done"][0].tolist() == [True, True, False]
    (reward_loss + critic_loss).backward()
    a0, lin0, final0 = record[0]
    NH = 3 * 3
    # terminated env 0: only r_0 reaches a_0 (no bootstrap, nothing from the next episode)
    torch.testing.assert_close(a0.grad[0], -lin0.drda[0] / NH)
    # truncated env 1: r_0 and gamma * V(final latent) through the surrogate's dfda
    zf = final0[1:2].clone().requires_grad_(True)
    (dv,) = torch.autograd.grad(trainer.target_critic(zf).sum(), zf)
    expected = -(lin0.drda[1] + cfg.gamma * dv[0] @ lin0.dfda[1]) / NH
    torch.testing.assert_close(a0.grad[1], expected)
    # the critic term: bootstrap of env 1 at step 0 (kept), none for env 0, all three at the horizon
    with torch.no_grad():
        v = trainer.target_critic
        z_end = buf["next_z"][-1]
        want = cfg.gamma * v(buf["next_z"][0][1:2]).sum() + (cfg.gamma ** 2 * v(z_end[:2])).sum() \
            + cfg.gamma ** 3 * v(z_end[2:3]).sum()
    torch.testing.assert_close(critic_loss.detach(), -want / NH)


# ---------------------------------------------------------------------------------------------------
# the loop: learning, guard, persistence
# ---------------------------------------------------------------------------------------------------
def test_learn_counts_steps_logs_and_checkpoints(tmp_path):
    env = ToyVecEnv(num_envs=4, max_steps=6)
    cfg = small_config(tmp_path, tensorboard=True, checkpoint_every=2, grad_split=True)
    trainer = FoGTrainer(env, cfg).learn(48)
    assert trainer.num_timesteps == 48 == env.global_steps * env.num_envs and trainer.num_updates == 3
    logs = trainer.history[-1]
    for key in ("actor_loss", "critic_loss", "grad_norm", "fps", "ep_rew_mean", "ep_len_mean", "rollout_s",
                "env_s", "gradient_s", "critic_s", "grad_norm_reward_term", "grad_norm_critic_term", "explained_variance"):
        assert np.isfinite(logs[key]), key
    assert logs["ep_len_mean"] == 6
    assert list(trainer.run_dir.glob("events.out.tfevents*")) and trainer.checkpoint_path.exists()
    assert not list(trainer.run_dir.glob("*.tmp")) and not list(trainer.run_dir.glob(".tmp_*"))

    # resume: a fresh trainer picks the run up and trains to the requested total
    resumed = FoGTrainer(ToyVecEnv(num_envs=4, max_steps=6), cfg)
    resumed.load_checkpoint(trainer.checkpoint_path)
    for p, q in zip(trainer.actor.parameters(), resumed.actor.parameters()):
        assert torch.equal(p, q)
    resumed = FoGTrainer(ToyVecEnv(num_envs=4, max_steps=6), cfg).learn(80, resume=True)
    assert resumed.num_timesteps == 80 and resumed.num_updates == 5 and len(resumed.history) == 5


def test_same_seed_same_run(tmp_path):
    runs = [FoGTrainer(ToyVecEnv(), small_config(tmp_path)).learn(32) for _ in range(2)]
    for p, q in zip(runs[0].actor.parameters(), runs[1].actor.parameters()):
        assert torch.equal(p, q)


def test_non_finite_gradient_is_skipped_and_counted(tmp_path):
    env = ToyVecEnv(nan_at_step=5)  # inside the second update (steps 4..7)
    trainer = FoGTrainer(env, small_config(tmp_path)).learn(16)
    before = [p.detach().clone() for p in trainer.actor.parameters()]
    logs = trainer.update()
    assert trainer.skipped_updates == 1 and logs["skipped_updates"] == 1
    assert not math.isfinite(logs["grad_norm"])
    assert all(torch.equal(p, q) for p, q in zip(before, trainer.actor.parameters()))
    trainer.learn(16)  # and training goes on
    assert trainer.skipped_updates == 1
    assert all(torch.isfinite(p).all() for p in trainer.actor.parameters())


class ScaledRewardSurrogate(ToySurrogate):
    """The toy model with its reward in other units (times ``scale``)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def reward(self, z, a):
        return self.scale * super().reward(z, a)


def test_reward_units_do_not_change_training_from_the_first_update(tmp_path):
    # the rewards are divided by the std of the discounted return, so their units must not matter; that needs
    # the statistics to include the first rollout's returns before its update (their initial std of 1 would
    # make the first gradient 100x larger in one unit than the other, and Adam remembers it)
    actors = []
    for scale in (1.0, 100.0):
        torch.manual_seed(0)
        surrogate = ScaledRewardSurrogate(scale=scale)
        env = ToyVecEnv(num_envs=4, max_steps=6, surrogate=surrogate)
        trainer = FoGTrainer(env, small_config(tmp_path / str(scale), alpha=0.0)).learn(160)
        actors.append([p.detach().clone() for p in trainer.actor.parameters()])
        scales = [h["reward_scale"] for h in trainer.history]
    for p, q in zip(*actors):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert scales[0] > 1.0  # (100x units) from this rollout's returns, not the statistics' initial 1


def test_critic_weight_zero_removes_the_critic_gradient(tmp_path):
    trainer = FoGTrainer(ToyVecEnv(), small_config(tmp_path, critic_weight=0.0, grad_split=True))
    logs = trainer.update()
    assert logs["grad_norm_critic_term"] > 0  # measured apart ...
    assert math.isclose(logs["actor_loss"], logs["reward_term"], rel_tol=1e-6)  # ... but not in the loss


def test_value_norm_keeps_critic_output(tmp_path):
    trainer = FoGTrainer(ToyVecEnv(), small_config(tmp_path))
    z = torch.randn(7, 6)
    before = trainer.critic(z)
    trainer.critic.set_stats(torch.tensor(-40.0), torch.tensor(12.0))
    torch.testing.assert_close(trainer.critic(z), before, rtol=1e-5, atol=1e-4)


def test_policy_save_load_round_trip_acts_on_frames(tmp_path):
    env = ToyVecEnv()
    trainer = FoGTrainer(env, small_config(tmp_path)).learn(16)
    trainer.save(tmp_path / "policy")
    loaded = FoGPolicy.load(tmp_path / "policy")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, env.context, 8, 8, 3), dtype=np.uint8)
    expected = trainer.policy.predict(frames)
    assert expected.shape == (3, 2) and np.all((expected >= LOW) & (expected <= HIGH))
    np.testing.assert_allclose(loaded.predict(frames), expected, rtol=1e-5)
    # the stateful form repeats the first frame K times and then slides its context
    loaded.reset()
    first = loaded.act(frames[0, 0])
    np.testing.assert_allclose(first, loaded.predict(np.stack([frames[0, 0]] * env.context)), rtol=1e-5)
    second = loaded.act(frames[0, 1])
    np.testing.assert_allclose(second, loaded.predict(np.stack([frames[0, 0], frames[0, 1]])), rtol=1e-5)
    # the policy acts as the actor does on the env's latent
    z = env.surrogate.encode(torch.as_tensor(frames).movedim(-1, -3).float().div(127.5).sub(1))
    with torch.no_grad():
        latent_action = trainer.actor(trainer.obs_rms.normalize(z), deterministic=True)[0].numpy()
    np.testing.assert_allclose(expected, latent_action, rtol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        loaded.predict(frames.astype(np.float32))
    with pytest.raises(FileNotFoundError, match="policy.json"):
        FoGPolicy.load(tmp_path)
    # the untrained baseline: same encoder, fresh actor (seeded), acting near the middle of the action box
    base = loaded.untrained(seed=0)
    assert base.surrogate is loaded.surrogate
    np.testing.assert_array_equal(base.predict(frames), loaded.untrained(seed=0).predict(frames))
    np.testing.assert_allclose(base.predict(frames), np.broadcast_to((LOW + HIGH) / 2, (3, 2)),
                               atol=0.01 * (HIGH - LOW))


def test_rejects_env_without_fast_path(tmp_path):
    with pytest.raises(TypeError, match="reset_tensor"):
        FoGTrainer(object(), small_config(tmp_path))


# ---------------------------------------------------------------------------------------------------
# the real env class on a tiny untrained world-model checkpoint: CLI and example entry points
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_world_model(tmp_path_factory):
    """A complete WM-PushT-v0 checkpoint (docs/CONTRACTS.md layout) of tiny random models at 32x32."""
    try:
        from wm_gym.models.denoiser import Denoiser
        from wm_gym.models.global_model import GlobalModel
        from wm_gym.models.reward_model import RewardModel
        from wm_gym.models.surrogate import Surrogate
    except ImportError as e:  # the world-model package is not there yet
        pytest.skip(f"world-model classes unavailable: {e}")
    from wm_gym.pusht import PUSHT, TaskSpec

    root = tmp_path_factory.mktemp("tiny_wm")
    torch.manual_seed(0)
    task = TaskSpec(**{**PUSHT.to_dict(), "image_size": 32})
    den = Denoiser(image_size=32, context=2, patch=4, block_out_channels=(8, 16), norm_num_groups=8)
    rew = RewardModel(image_size=32, channels=(8, 8, 16, 16), hidden=16)
    GlobalModel(den, rew, task).save_pretrained(root / "global_model")
    Surrogate(image_size=32, context=2, latent_dim=16, encoder_channels=(8, 8), dynamics_hidden=32, reward_hidden=32,
              task=task.to_dict()).save_pretrained(root / "surrogate")
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.savez_compressed(root / "start_frames.npz", frames=frames)
    return root


def test_cli_trains_on_the_world_model_env(tiny_world_model, tmp_path, capsys):
    from fog_trainer.cli import main

    run = tmp_path / "run"
    args = ["--checkpoint", str(tiny_world_model), "--num-envs", "2", "--horizon", "3", "--critic-iters", "1",
            "--actor-hidden", "16,16", "--run-dir", str(run), "--progress-bar", "false"]
    assert main(args + ["--total-env-steps", "12"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["env_steps"] == 12 and (run / "checkpoint.pt").exists()
    policy = FoGPolicy.load(summary["policy"])
    policy.reset()
    action = policy.act(np.zeros((32, 32, 3), np.uint8))
    assert action.shape == (2,) and np.all((action >= 0) & (action <= 512))
    # the before/after benchmark rebuilds the run from its checkpoint (env, seed) and evaluates both actors
    import runpy

    bench = runpy.run_path(str(Path(__file__).resolve().parent.parent / "benchmarks" / "fog_before_after.py"))
    capsys.readouterr()
    bench["main"](["--checkpoint", str(run / "checkpoint.pt"), "--steps", "3"])
    res = json.loads(capsys.readouterr().out)
    assert {"untrained_deterministic", "untrained_stochastic", "trained_deterministic",
            "trained_stochastic"} <= set(res) and res["settings"]["num_envs"] == 2


def test_example_smoke(tiny_world_model, tmp_path):
    import runpy

    example = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "fog_pusht.py"))
    out = tmp_path / "example"
    assert example["main"](["--smoke", "--no-baselines", "--checkpoint", str(tiny_world_model), "--out", str(out)]) == 0
    for name in ("policy/policy.json", "learning_curve.png", "episode.mp4", "summary.json"):
        assert (out / name).exists(), name


# ---------------------------------------------------------------------------------------------------
# anchored actions, sampled acting and collecting data with a trained policy
# ---------------------------------------------------------------------------------------------------
def test_anchored_actor_is_an_offset_of_the_anchor_clipped_to_the_box():
    from fog_trainer import Actor

    torch.manual_seed(0)
    actor = Actor(6, [LOW, LOW], [HIGH, HIGH], (16,), max_offset=40.0)
    weight, bias = torch.randn(2, 6) * 30, torch.tensor([100.0, 500.0])
    actor.set_anchor(weight, bias)
    raw = torch.randn(64, 6, requires_grad=True)
    a, log_prob = actor(torch.randn(64, 6), raw_z=raw)
    anchor = raw @ weight.T + bias
    free = anchor.detach().clamp(LOW, HIGH)
    assert torch.all((a >= LOW) & (a <= HIGH)) and log_prob.shape == (64,)
    assert torch.all((a - free).abs() <= 40.0 + 1e-4)
    # deterministic and untrained: the anchor itself (clipped); the anchor carries the gradient to raw_z
    a0, _ = actor(torch.zeros(5, 6), deterministic=True, raw_z=raw[:5])
    torch.testing.assert_close(a0, free[:5], atol=0.5, rtol=0)  # the last layer starts near 0
    a[:, 0].sum().backward()
    inside = (a[:, 0] > LOW) & (a[:, 0] < HIGH)
    torch.testing.assert_close(raw.grad[inside], weight[0].expand(int(inside.sum()), 6))
    with pytest.raises(ValueError, match="raw_z"):
        actor(torch.zeros(1, 6))
    with pytest.raises(ValueError, match="set_anchor needs an anchored actor"):
        Actor(6, [LOW, LOW], [HIGH, HIGH], (16,)).set_anchor(weight, bias)
    with pytest.raises(ValueError, match="action_offset"):
        FoGConfig(action_offset=-1.0)


def test_anchored_policy_trains_saves_and_acts_near_the_surrogates_agent_estimate(tiny_world_model, tmp_path):
    from wm_gym.models.surrogate import agent_position_readout
    from wm_gym.data import frames_to_tensor

    cfg = FoGConfig(checkpoint=str(tiny_world_model), num_envs=2, horizon=3, critic_iters=1, actor_hidden=(16,),
                    critic_hidden=(16,), run_dir=str(tmp_path / "run"), progress_bar=False, tensorboard=False,
                    checkpoint_every=0, action_offset=24.0)
    trainer = FoGTrainer("WM-PushT-v0", cfg).learn(12)
    policy = FoGPolicy.load(trainer.save(tmp_path / "policy"))
    assert policy.actor.max_offset == 24.0
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        z = policy.surrogate.encode(frames_to_tensor(torch.as_tensor(frames)))
        weight, bias = agent_position_readout(policy.surrogate, [LOW, LOW], [HIGH, HIGH])
        # the anchor is the surrogate's state read-out of the agent position, in env units
        torch.testing.assert_close((policy.surrogate.state(z)[:, :2] + 1) * HIGH / 2, z @ weight.T + bias)
        anchor = (z @ weight.T + bias).clamp(LOW, HIGH).numpy()
    action = policy.predict(frames)
    assert np.all(np.abs(action - anchor) <= 24.0 + 1e-3)
    np.testing.assert_allclose(policy.untrained(seed=0).predict(frames), anchor, atol=0.5)
    with pytest.raises(ValueError, match="no state head"):
        agent_position_readout(object(), [LOW, LOW], [HIGH, HIGH])


def test_sampled_policy_is_seeded_and_collect_records_a_policys_episodes(tiny_world_model, tmp_path):
    from fog_trainer import SampledPolicy
    from wm_gym.data import DatasetError, collect, load_episode, read_meta

    cfg = FoGConfig(checkpoint=str(tiny_world_model), num_envs=2, horizon=3, critic_iters=1, actor_hidden=(16,),
                    critic_hidden=(16,), run_dir=str(tmp_path / "run"), progress_bar=False, tensorboard=False,
                    checkpoint_every=0)
    path = FoGTrainer("WM-PushT-v0", cfg).learn(6).save(tmp_path / "policy")
    policy = FoGPolicy.load(path)
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    sampled = SampledPolicy(policy)
    runs = []
    for seed in (3, 3, 4):
        sampled.reset(seed)
        runs.append(np.stack([sampled.act(frame, {}) for _ in range(3)]))
    np.testing.assert_array_equal(runs[0], runs[1])  # same seed, same noise
    assert not np.allclose(runs[0], runs[2])
    policy.reset()
    assert not np.allclose(runs[0][0], policy.act(frame))  # sampled, not the tanh of the mean

    out = tmp_path / "data"
    summary = collect(out, episodes=2, seed=0, image_size=32, max_steps=5, progress=False, policy=path)
    assert summary["written"] == 2 and read_meta(out)["behaviour_policy"]["sampled"] is True
    ep = load_episode(out / "episode_000000.npz")
    assert ep["frames"].shape == (6, 32, 32, 3) and str(ep["behaviour"]) == "policy"
    again = tmp_path / "again"
    collect(again, episodes=1, seed=0, image_size=32, max_steps=5, progress=False, policy=path)
    np.testing.assert_array_equal(load_episode(again / "episode_000000.npz")["actions"], ep["actions"])
    with pytest.raises(DatasetError, match="behaviour"):  # a collection keeps one behaviour
        collect(out, episodes=3, seed=0, image_size=32, max_steps=5, progress=False)
    with pytest.raises(DatasetError, match="policy.json"):
        collect(tmp_path / "x", episodes=1, image_size=32, progress=False, policy=tmp_path)
