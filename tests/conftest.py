"""Shared fixtures: a tiny real Push-T dataset collected once per test session."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("WM_GYM_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """6 real gym-pusht episodes of 24 steps at 32x32 (about a second to collect)."""
    from wm_gym.data import collect

    root = tmp_path_factory.mktemp("tiny_pusht")
    collect(root, episodes=6, seed=0, workers=1, image_size=32, max_steps=24, progress=False)
    return root
