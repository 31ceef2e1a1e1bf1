"""WM-PushT-v0: registration, checkers, determinism, batched == single, fast path, bad input."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import wm_gym  # noqa: F401
from wm_gym.envs import CheckpointError, WMPushTVectorEnv, WorldModel


@pytest.fixture()
def make(tiny_checkpoint):
    def _make(**kw):
        return gym.make("WM-PushT-v0", checkpoint=tiny_checkpoint, **kw)
    return _make


# Warnings that are expected by design: the action space keeps gym-pusht's [0, 512] semantics (the SB3
# adapter normalises it), and the tiny test model renders 32x32 frames (the shipped model uses 64x64).
EXPECTED_WARNINGS = ("symmetric and normalized", "normalized Box action space", "minimal resolution")


def test_gymnasium_and_sb3_checkers_pass(make):
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for obs_type in ("pixels", "latent"):
        env = make(obs_type=obs_type, render_mode="rgb_array")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=False)
            sb3_check_env(env.unwrapped, warn=True)
        unexpected = [str(w.message) for w in caught
                      if not any(e in str(w.message) for e in EXPECTED_WARNINGS)
                      and w.category is not DeprecationWarning]
        assert not unexpected, unexpected


def test_make_without_import_and_spaces(tiny_checkpoint):
    env = gym.make("wm_gym:WM-PushT-v0", checkpoint=tiny_checkpoint)
    assert env.spec.max_episode_steps == 300
    assert env.action_space == gym.spaces.Box(0, 512, (2,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    obs, r, term, trunc, info = env.step(np.array([100.0, 200.0], np.float32))
    assert isinstance(r, float) and {"coverage", "is_success", "success_prob"} <= set(info)
    img = gym.make("WM-PushT-v0", checkpoint=tiny_checkpoint, render_mode="rgb_array")
    img.reset(seed=0)
    assert img.render().shape == (256, 256, 3)


def test_seeded_reset_makes_steps_deterministic(make):
    actions = np.random.default_rng(0).uniform(0, 512, size=(5, 2)).astype(np.float32)
    runs = []
    for _ in range(2):
        env = make()
        frames = [env.reset(seed=123)[0]]
        frames += [env.step(a)[0] for a in actions]
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])
    env = make()
    other = np.stack([env.reset(seed=124)[0]] + [env.step(a)[0] for a in actions])
    assert not np.array_equal(other[1:], runs[0][1:])


def test_precision_argument(make, tiny_checkpoint):
    actions = np.random.default_rng(1).uniform(0, 512, size=(4, 2)).astype(np.float32)
    runs = {}
    for precision in ("float32", "bfloat16"):
        env = make(precision=precision)
        frames = [env.reset(seed=5)[0]] + [env.step(a)[0] for a in actions]
        runs[precision] = np.stack(frames).astype(np.int16)
    # bfloat16 products change a few uint8 levels, not the picture
    assert np.abs(runs["float32"] - runs["bfloat16"]).mean() < 2.0
    venv = gym.make_vec("WM-PushT-v0", num_envs=2, checkpoint=tiny_checkpoint, precision="bfloat16")
    assert venv.unwrapped.sim.precision == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        make(precision="half")


def test_batched_equals_single(make, tiny_checkpoint):
    N, seed = 3, 7
    actions = np.random.default_rng(1).uniform(0, 512, size=(4, N, 2)).astype(np.float32)
    venv = gym.make_vec("WM-PushT-v0", num_envs=N, checkpoint=tiny_checkpoint)
    assert isinstance(venv.unwrapped, WMPushTVectorEnv)
    batched = [venv.reset(seed=seed)[0]] + [venv.step(a)[0] for a in actions]
    for i in range(N):
        env = make()
        single = [env.reset(seed=seed + i)[0]] + [env.step(a[i])[0] for a in actions]
        for b, s in zip(batched, single):
            assert np.abs(b[i].astype(int) - s.astype(int)).max() <= 1  # batch-size rounding only


def test_latent_obs_and_start_frames(make, tiny_dataset):
    from wm_gym.data import list_episodes, load_episode

    frames = load_episode(list_episodes(tiny_dataset)[0])["frames"]
    env = make(obs_type="latent")
    z, _ = env.reset(seed=0, options={"start_frames": frames[:2]})
    assert z.dtype == np.float32 and z.shape == env.observation_space.shape
    pix = make()
    obs, _ = pix.reset(seed=0, options={"start_frames": frames[0]})
    np.testing.assert_array_equal(obs, frames[0])
    with pytest.raises(ValueError, match="start_frames"):
        pix.reset(options={"start_frames": frames[0][:10]})


def test_fast_path_jacobians_equal_the_surrogates(tiny_checkpoint):
    venv = gym.make_vec("WM-PushT-v0", num_envs=4, obs_type="latent", reward_type="dense",
                        checkpoint=tiny_checkpoint).unwrapped
    z0 = venv.reset_tensor(seed=0).clone()
    a = torch.tensor([[100.0, 100.0], [200.0, 300.0], [400.0, 50.0], [256.0, 256.0]])
    out = venv.step_tensor(a)
    sur, task = venv.surrogate, venv.wm.task
    ref = sur.jacobians(z0, task.normalize_action(a), reward_index=task.reward_types.index("dense"))
    torch.testing.assert_close(out.lin.z, z0)
    torch.testing.assert_close(out.lin.dfdz, ref.dfdz)
    torch.testing.assert_close(out.lin.dfda, ref.dfda * (2 / 512))
    torch.testing.assert_close(out.lin.drda, ref.drda * (2 / 512))
    # finite differences in env units agree with the returned action derivative
    eps = 1e-2
    fd = (sur.next(z0, task.normalize_action(a + torch.tensor([eps, 0.0])))
          - sur.next(z0, task.normalize_action(a - torch.tensor([eps, 0.0])))) / (2 * eps)
    torch.testing.assert_close(out.lin.dfda[:, :, 0], fd, atol=1e-4, rtol=1e-2)
    assert out.latent.shape == (4, venv.latent_dim) and out.reward.shape == (4,)
    assert out.terminated.dtype == torch.bool and out.truncated.dtype == torch.bool


def test_vector_env_truncates_and_autoresets_same_step(tiny_checkpoint):
    venv = gym.make_vec("WM-PushT-v0", num_envs=2, checkpoint=tiny_checkpoint, max_episode_steps=3)
    venv.reset(seed=0)
    a = np.full((2, 2), 256.0, np.float32)
    for t in range(3):
        obs, r, term, trunc, info = venv.step(a)
    assert trunc.all() or (term | trunc).all()
    assert info["_final_obs"].all() and info["final_obs"][0].shape == (32, 32, 3)
    assert (venv.unwrapped.sim.t == 0).all()


def test_bad_actions_raise_and_out_of_range_is_clipped(make):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 1.0], np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.float32))
    env.step(np.array([1e6, -5.0], np.float32))
    np.testing.assert_array_equal(env.unwrapped.sim.last_action[0], [512.0, 0.0])


def test_bad_checkpoints_give_clear_errors(tmp_path, tiny_checkpoint):
    import shutil

    with pytest.raises(CheckpointError, match="does not exist"):
        WorldModel.load(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    shutil.rmtree(broken / "surrogate")
    with pytest.raises(CheckpointError, match="lacks surrogate"):
        WorldModel.load(broken)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, corrupt)
    w = corrupt / "surrogate" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="could not load"):
        WorldModel.load(corrupt)
    mixed = tmp_path / "mixed"  # a surrogate trained for other reward labels than the global model's
    shutil.copytree(tiny_checkpoint, mixed)
    from wm_gym.models.surrogate import Surrogate

    cfg = {k: v for k, v in Surrogate.load_config(mixed / "surrogate").items() if not k.startswith("_")}
    shutil.rmtree(mixed / "surrogate")
    Surrogate(**{**cfg, "reward_types": ("coverage", "dense")}).save_pretrained(mixed / "surrogate")
    with pytest.raises(CheckpointError, match="reward labels"):
        WorldModel.load(mixed)
    with pytest.raises(ValueError, match="obs_type"):
        gym.make("WM-PushT-v0", checkpoint=tiny_checkpoint, obs_type="rgb")


def test_termination_requires_reset_and_vector_env_autoresets(tmp_path, tiny_dataset):
    from conftest import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path, tiny_dataset, success_bias=8.0)
    env = gym.make("WM-PushT-v0", checkpoint=ckpt)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(np.array([10.0, 10.0], np.float32))
    assert term and not trunc and info["is_success"]
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(np.array([10.0, 10.0], np.float32))
    venv = gym.make_vec("WM-PushT-v0", num_envs=2, checkpoint=ckpt)
    venv.reset(seed=0)
    obs, r, term, trunc, info = venv.step(np.full((2, 2), 10.0, np.float32))
    assert term.all() and not trunc.any() and info["_final_obs"].all()


def test_checkpoint_exported_with_a_state_reader_gives_the_formula_rewards(tmp_path, tiny_dataset, tiny_checkpoint):
    """`wm-gym export --state-reader`: the env's dense reward is the formula of the state the reader reads."""
    from wm_gym.export import export_checkpoint
    from wm_gym.models.global_model import GlobalModel
    from wm_gym.models.state_probe import StateProbe
    from wm_gym.pusht import dense_reward

    torch.manual_seed(0)
    StateProbe(image_size=32, widths=(8, 8, 8), hidden=16).save_pretrained(tmp_path / "reader")
    parts = tiny_checkpoint
    ckpt = export_checkpoint(parts / "global_model", parts / "surrogate", tiny_dataset, tmp_path / "ckpt",
                             state_reader_dir=tmp_path / "reader")
    gm = GlobalModel.from_pretrained(ckpt / "global_model").float()
    assert gm.state_reader is not None
    env = gym.make("WM-PushT-v0", checkpoint=ckpt, reward_type="dense")
    env.reset(seed=0)
    obs, r, *_ = env.step(np.array([100.0, 300.0], np.float32))
    frame = torch.from_numpy(obs).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        want = float(dense_reward(gm.state_reader(frame).state.double()))
    assert r == pytest.approx(want, abs=0.02)  # the env's frame is uint8-rounded, the reward read before rounding
