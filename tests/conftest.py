"""Shared fixtures: a tiny real Push-T dataset collected once per test session."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see wm_gym/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("WM_GYM_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """6 real gym-pusht episodes of 24 steps at 32x32 (about a second to collect)."""
    from wm_gym.data import collect

    root = tmp_path_factory.mktemp("tiny_pusht")
    collect(root, episodes=6, seed=0, workers=1, image_size=32, max_steps=24, progress=False)
    return root


def build_tiny_checkpoint(out, data_root, image_size=32, seed=0, success_bias=-8.0):
    """A complete (untrained) world-model checkpoint with tiny networks, written by `export_checkpoint`.

    ``success_bias`` sets the reward model's success logit bias: -8 never terminates (episodes run to the
    time limit, as with a trained model from most states), +8 always terminates.
    """
    from wm_gym.data import read_meta
    from wm_gym.export import export_checkpoint
    from wm_gym.models.denoiser import Denoiser
    from wm_gym.models.global_model import GlobalModel
    from wm_gym.models.reward_model import RewardModel
    from wm_gym.models.surrogate import Surrogate
    from wm_gym.pusht import TaskSpec

    torch.manual_seed(seed)
    task = TaskSpec.from_dict(read_meta(data_root)["task"])
    gm = GlobalModel(
        Denoiser(image_size=image_size, block_out_channels=(8, 16), norm_num_groups=4),
        RewardModel(image_size=image_size, channels=(8, 8, 16), hidden=32),
        task,
    )
    with torch.no_grad():
        gm.reward_model.head[-1].bias[-1] = success_bias
    sur = Surrogate(image_size=image_size, latent_dim=8, encoder_channels=(8, 8, 16), dynamics_hidden=32,
                    reward_hidden=32, success_hidden=16, task=task.to_dict())
    gm_dir, sur_dir = out / "parts" / "global_model", out / "parts" / "surrogate"
    gm.save_pretrained(gm_dir)
    sur.save_pretrained(sur_dir)
    return export_checkpoint(gm_dir, sur_dir, data_root, out / "checkpoint", commands=["(tiny test model)"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset, tmp_path_factory):
    """A tiny untrained world-model checkpoint at 32x32 (global model + surrogate + start frames)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_wm"), tiny_dataset)


@pytest.fixture(scope="session")
def tiny_checkpoint64(tmp_path_factory):
    """Like ``tiny_checkpoint`` at 64x64 (SB3's default CnnPolicy needs frames of at least 36x36)."""
    from wm_gym.data import collect

    root = tmp_path_factory.mktemp("tiny_wm64")
    collect(root / "data", episodes=2, seed=0, workers=1, image_size=64, max_steps=8, progress=False)
    return build_tiny_checkpoint(root, root / "data", image_size=64)
