"""SB3 VecEnv adapter over the native batched env, and PPO on a tiny world model."""

import gymnasium as gym
import numpy as np
import pytest

import wm_gym  # noqa: F401
from baselines import PPOArgs, PPOFramePolicy, SB3VecEnvAdapter, train_ppo


def test_adapter_follows_sb3_vecenv_conventions(tiny_checkpoint):
    venv = gym.make_vec("WM-PushT-v0", num_envs=3, checkpoint=tiny_checkpoint, max_episode_steps=3)
    env = SB3VecEnvAdapter(venv)
    assert env.action_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    env.seed(5)
    obs = env.reset()
    assert obs.shape == (3, 32, 32, 3) and obs.dtype == np.uint8
    env.step_async(np.zeros((3, 2), np.float32))
    obs, rew, dones, infos = env.step_wait()
    assert not dones.any() and rew.dtype == np.float32 and len(infos) == 3
    # action -1..1 maps onto the 0..512 workspace
    np.testing.assert_allclose(venv.unwrapped.sim.last_action, 256.0)
    obs, rew, dones, infos = env.step(np.ones((3, 2), np.float32))
    np.testing.assert_allclose(venv.unwrapped.sim.last_action, 512.0)
    obs, rew, dones, infos = env.step(np.ones((3, 2), np.float32))
    assert dones.all()
    for info in infos:
        assert info["terminal_observation"].shape == (32, 32, 3) and info["TimeLimit.truncated"]
    # seeding makes resets reproducible
    np.testing.assert_array_equal(_reset_with_seed(tiny_checkpoint, 5), _reset_with_seed(tiny_checkpoint, 5))


def test_adapter_anchored_actions_offset_the_agent_estimate(tiny_checkpoint):
    from wm_gym.models.surrogate import agent_position_readout

    venv = gym.make_vec("WM-PushT-v0", num_envs=3, checkpoint=tiny_checkpoint, obs_type="latent")
    env = SB3VecEnvAdapter(venv, action_offset=20.0)
    env.seed(0)
    obs = env.reset()
    weight, bias = agent_position_readout(venv.unwrapped.surrogate, [0.0, 0.0], [512.0, 512.0])
    anchor = np.clip(obs @ weight.numpy().T + bias.numpy(), 0, 512)
    env.step(np.zeros((3, 2), np.float32))  # offset 0: the target is the agent estimate itself
    np.testing.assert_allclose(venv.unwrapped.sim.last_action, anchor, atol=1e-3)
    obs = env.step(np.ones((3, 2), np.float32))[0]
    expected = np.clip(obs @ weight.numpy().T + bias.numpy() + 20.0, 0, 512)
    env.step(np.ones((3, 2), np.float32))
    np.testing.assert_allclose(venv.unwrapped.sim.last_action, expected, atol=1e-3)
    with pytest.raises(ValueError, match="obs_type='latent'"):
        SB3VecEnvAdapter(gym.make_vec("WM-PushT-v0", num_envs=2, checkpoint=tiny_checkpoint), action_offset=20.0)


def _reset_with_seed(ckpt, seed):
    e = SB3VecEnvAdapter(gym.make_vec("WM-PushT-v0", num_envs=3, checkpoint=ckpt))
    e.seed(seed)
    return e.reset()


def test_adapter_refuses_next_step_autoreset():
    from gymnasium.vector import AutoresetMode

    venv = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP})
    with pytest.raises(ValueError, match="same-step"):
        SB3VecEnvAdapter(venv)


@pytest.mark.parametrize("obs_type", ["latent", "pixels"])
def test_ppo_learns_a_few_hundred_steps_and_acts_on_frames(obs_type, request, tmp_path):
    from wm_gym.envs import WorldModel

    tiny_checkpoint = request.getfixturevalue("tiny_checkpoint64" if obs_type == "pixels" else "tiny_checkpoint")

    offset = 30.0 if obs_type == "latent" else 0.0  # anchored actions need the latent
    args = PPOArgs(obs_type=obs_type, total_timesteps=128, num_envs=4, n_steps=16, batch_size=32, n_epochs=1,
                   checkpoint=str(tiny_checkpoint), out=str(tmp_path), progress_bar=False, run_name="t",
                   action_offset=offset)
    model, rows, out = train_ppo(args)
    assert (out / "model.zip").exists() and (out / "curve.csv").exists()
    assert model.num_timesteps >= 128
    policy = PPOFramePolicy(model, obs_type, checkpoint=tiny_checkpoint, action_offset=offset)
    frames = WorldModel.load(tiny_checkpoint).start_frames
    for f in frames[:5]:
        a = policy.act(f)
        assert a.shape == (2,) and (a >= 0).all() and (a <= 512).all()


def test_ppo_reward_normalisation_and_initial_log_std(tiny_checkpoint, tmp_path):
    import torch
    from stable_baselines3.common.vec_env import VecNormalize

    # eval_freq: SB3's EvalCallback syncs the normalisation statistics, so the eval env must be wrapped the same way
    args = PPOArgs(total_timesteps=64, num_envs=4, n_steps=8, batch_size=16, n_epochs=1, log_std_init=-1.0,
                   normalize_reward=True, eval_freq=32, checkpoint=str(tiny_checkpoint), out=str(tmp_path),
                   progress_bar=False, run_name="t")
    model, _, out = train_ppo(args)
    assert isinstance(model.get_env(), VecNormalize)
    assert not model.get_env().norm_obs and model.get_env().norm_reward
    assert (out / "vec_normalize.pkl").exists()
    assert torch.allclose(model.policy.log_std, torch.full((2,), -1.0), atol=0.05)  # one epoch moved it little


# -- PPO on the real gym-pusht (reference) ------------------------------------------------------------------

@pytest.mark.parametrize("obs_type", ["state", "pixels"])
def test_truth_env_passes_gymnasium_and_sb3_checkers_and_pays_the_chosen_label(obs_type):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from baselines import PushTTruthEnv

    env = PushTTruthEnv(obs_type, reward_type="push", max_episode_steps=4)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    check_env(env, skip_render_check=True)
    sb3_check_env(env)
    obs, start = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, again)  # seeded resets are reproducible
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.5], np.float32))
        assert reward == info["reward_push"] and env.observation_space.contains(obs)
    assert truncated and not terminated
    # [-1, 1] maps onto the workspace: the agent heads for (384, 128)
    target = np.array([384.0, 128.0])
    assert np.linalg.norm(info["state"][:2] - target) < np.linalg.norm(start["state"][:2] - target) - 50
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="obs_type"):
        PushTTruthEnv("latent")
    with pytest.raises(ValueError, match="reward_type"):
        PushTTruthEnv("state", reward_type="sparse")


def test_state_observation_scales_positions_and_encodes_the_angle():
    from baselines.ground_truth import state_observation

    obs = state_observation(np.array([[0.0, 512.0, 256.0, 128.0, np.pi / 2]]))
    np.testing.assert_allclose(obs, [[-1.0, 1.0, 0.0, -0.5, 0.0, 1.0]], atol=1e-6)
    assert obs.dtype == np.float32


def test_ppo_trains_on_gym_pusht_and_its_policy_is_evaluated_there(tmp_path):
    from baselines import PPOTruthPolicy
    from fog_trainer.evaluate import evaluate_in_ground_truth

    args = PPOArgs(env="gym-pusht", obs_type="state", total_timesteps=128, num_envs=4, n_steps=16, batch_size=32,
                   n_epochs=1, out=str(tmp_path), progress_bar=False, run_name="t")
    model, rows, out = train_ppo(args)
    assert (out / "model.zip").exists() and model.num_timesteps >= 128
    res = evaluate_in_ground_truth(PPOTruthPolicy(model, "state"), seeds=[0], max_steps=5)
    assert res["length"] == [5] and np.isfinite(res["mean_return_dense"])


@pytest.mark.parametrize("env,obs_type,offset,match", [
    ("gym-pusht", "latent", 0.0, "obs_type"), ("WM-PushT-v0", "state", 0.0, "obs_type"),
    ("WM-PushT-v0", "pixels", 30.0, "action_offset"), ("PushT-v9", "state", 0.0, "env must be")])
def test_ppo_rejects_an_env_and_observation_that_do_not_go_together(env, obs_type, offset, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        train_ppo(PPOArgs(env=env, obs_type=obs_type, action_offset=offset, out=str(tmp_path), progress_bar=False))


def test_truth_env_anchored_actions_offset_the_true_agent_position():
    from baselines import PushTTruthEnv
    from baselines.ground_truth import truth_action
    from wm_gym.pusht import TaskSpec

    task = TaskSpec()
    state = np.array([500.0, 100.0, 0, 0, 0])
    np.testing.assert_allclose(truth_action(np.array([1.0, -0.5]), state, task, 48.0), [512.0, 76.0])  # clipped
    np.testing.assert_allclose(truth_action(np.array([3.0, 0.0]), state, task), [512.0, 256.0])  # absolute
    env = PushTTruthEnv("state", action_offset=48.0)
    _, info = env.reset(seed=0)
    start = info["state"][:2]
    for _ in range(3):  # holding still: the target is the agent itself
        _, _, _, _, info = env.step(np.zeros(2, np.float32))
    assert np.linalg.norm(info["state"][:2] - start) < 1.0
    with pytest.raises(ValueError, match="action_offset"):
        PushTTruthEnv("state", action_offset=-1.0)
