"""Ground-truth adapter, behaviour policies, episode files and the window dataset."""

import json
import os

import numpy as np
import pytest
import torch

from wm_gym import data as D
from wm_gym.pusht import GOAL_POSE, PushTGroundTruth, coverage_reward, dense_reward, push_point, push_reward
from wm_gym.policies import Pusher, RandomWalk, make_behaviour_policy


@pytest.fixture(scope="module")
def gt():
    env = PushTGroundTruth(image_size=32)
    yield env
    env.close()


def test_reset_to_state_gives_the_pose_asked_for(gt):
    _, info = gt.reset(seed=0, state=[100.0, 100.0, *GOAL_POSE])
    np.testing.assert_allclose(info["state"][2:], GOAL_POSE, atol=1e-6)
    assert info["coverage"] > 0.99 and info["is_success"]


def test_gym_pusht_reset_to_state_is_off_and_ours_is_not(gt):
    # gym-pusht sets position before angle, so the block lands elsewhere (the reason set_state exists)
    gt.env.reset(options={"reset_to_state": [100.0, 100.0, *GOAL_POSE]})
    assert gt.coverage() < 0.5


def test_reward_labels_equal_gym_pusht_reward(gt):
    frame, info = gt.reset(seed=3)
    policy = Pusher()
    policy.reset(np.random.default_rng(0))
    for _ in range(20):
        _, r, _, _, info = gt.step(policy(info["state"]))
        assert r == pytest.approx(float(coverage_reward(info["coverage"])))
        assert info["reward_dense"] == pytest.approx(float(dense_reward(info["state"])))
        assert info["reward_push"] == pytest.approx(float(push_reward(info["state"])))
        assert r == pytest.approx(np.clip(gt.coverage() / 0.95, 0, 1))


def test_dense_reward_is_zero_at_goal_with_agent_near():
    s = np.array([256.0, 300.0, *GOAL_POSE])
    assert dense_reward(s) == pytest.approx(0.0)
    far = np.array([10.0, 10.0, 100.0, 100.0, 0.0])
    assert dense_reward(far) < -0.5


def test_state_rewards_take_torch_tensors_and_are_differentiable():
    import torch

    rng = np.random.default_rng(0)
    states = np.c_[rng.uniform(0, 512, (50, 4)), rng.uniform(-7, 7, 50)]
    for fn in (dense_reward, push_reward):
        t = torch.tensor(states, requires_grad=True)
        r = fn(t)
        np.testing.assert_allclose(r.detach().numpy(), fn(states), rtol=0, atol=1e-12)
        (g,) = torch.autograd.grad(r.sum(), t)
        assert torch.isfinite(g).all()
        # the agent-to-block term: moving the agent 1 px towards the block where it is > 60 px away pays 0.5/256
        s = np.array([100.0, 100.0, 300.0, 300.0, GOAL_POSE[2]])
        t = torch.tensor(s, requires_grad=True)
        (g,) = torch.autograd.grad(fn(t), t)
        if fn is dense_reward:
            np.testing.assert_allclose(g[:2].numpy(), 0.5 / 256 * np.array([1, 1]) / np.sqrt(2), rtol=1e-9)


def test_push_reward_asks_for_the_agent_behind_the_block():
    block = np.array([356.0, 256.0, GOAL_POSE[2]])  # 100 px right of the goal, at the goal angle
    behind, in_front = np.array([416.0, 256.0]), np.array([296.0, 256.0])  # away from / towards the goal
    np.testing.assert_allclose(push_point(np.r_[behind, block]), [356 + 60 * 100 / np.hypot(100, 20), 256])
    r_behind, r_front = push_reward(np.r_[behind, block]), push_reward(np.r_[in_front, block])
    assert r_behind == pytest.approx(-100 / 256)  # only the position error: the agent is where it pushes from
    assert r_front < r_behind - 0.1
    # dense pays the same for both sides: what lets a block-chasing policy push the block away
    assert dense_reward(np.r_[behind, block]) == pytest.approx(dense_reward(np.r_[in_front, block]))
    # at the goal the push point is the block itself, so push = dense = 0 with the agent near
    at_goal = np.array([256.0, 280.0, *GOAL_POSE])
    assert push_reward(at_goal) == pytest.approx(0.0) and dense_reward(at_goal) == pytest.approx(0.0)
    batch = np.stack([np.r_[behind, block], at_goal])
    np.testing.assert_allclose(push_reward(batch), [r_behind, 0.0])


def test_state_reward_labels_are_derived_for_older_collections(tmp_path, tiny_dataset):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_dataset, old)
    meta = json.loads((old / "meta.json").read_text())
    meta["task"]["reward_types"] = ["coverage", "dense"]  # written before "push" existed
    (old / "meta.json").write_text(json.dumps(meta))
    path = D.list_episodes(old)[0]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "reward_push"}
    np.savez(path, **arrays)
    assert D.read_meta(old)["task"]["reward_types"] == ["coverage", "dense", "push"]
    derived, recorded = D.load_episode(path), D.load_episode(D.list_episodes(tiny_dataset)[0])
    np.testing.assert_allclose(derived["reward_push"], recorded["reward_push"], atol=1e-6)
    assert D.TransitionDataset(old, split="all")[0]["rew"].shape == (3,)


def test_step_rejects_bad_actions(gt):
    gt.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        gt.step([np.nan, 1.0])
    with pytest.raises(ValueError, match="2 finite"):
        gt.step([1.0, 2.0, 3.0])


def test_behaviour_policies_are_deterministic_and_in_bounds():
    state = np.array([100.0, 100.0, 250.0, 250.0, 0.3])
    for cls in (Pusher, RandomWalk):
        outs = []
        for _ in range(2):
            p = cls()
            p.reset(np.random.default_rng(7))
            outs.append(np.stack([p(state) for _ in range(30)]))
        np.testing.assert_array_equal(outs[0], outs[1])
        assert outs[0].dtype == np.float32 and (outs[0] >= 0).all() and (outs[0] <= 512).all()
    with pytest.raises(ValueError, match="unknown behaviour"):
        make_behaviour_policy({"teleport": 1.0})


def test_dataset_round_trip_and_windows(tiny_dataset):
    meta = json.loads((tiny_dataset / "meta.json").read_text())
    assert meta["resolution"] == [32, 32] and meta["format_version"] == D.FORMAT_VERSION
    eps = D.list_episodes(tiny_dataset)
    assert len(eps) == 6
    ep = D.load_episode(eps[0])
    T = len(ep["actions"])
    assert ep["frames"].shape == (T + 1, 32, 32, 3) and ep["frames"].dtype == np.uint8
    assert ep["actions"].dtype == np.float32 and ep["states"].shape == (T + 1, 5)
    ds = D.TransitionDataset(tiny_dataset, split="all", context=4)
    item = ds[0]
    assert item["obs"].shape == (4, 3, 32, 32) and item["obs"].dtype == torch.float32
    assert item["act"].shape == (4, 2) and item["next_obs"].shape == (3, 32, 32)
    assert item["rew"].shape == (len(meta["task"]["reward_types"]),) and "push" in meta["task"]["reward_types"]
    # at t=0 the context repeats frame 0 and pads the past actions with zeros
    assert torch.equal(item["obs"][0], item["obs"][-1])
    assert torch.all(item["act"][:-1] == 0)
    assert item["obs"].min() >= -1 and item["obs"].max() <= 1
    # the action of item t is the recorded action, normalised
    np.testing.assert_allclose(item["act"][-1].numpy(), ep["actions"][0] / 256 - 1, atol=1e-6)


def test_split_is_deterministic_and_disjoint(tiny_dataset):
    paths = D.list_episodes(tiny_dataset)
    train = D.split_episodes(paths, "train", val_fraction=0.5)
    val = D.split_episodes(paths, "val", val_fraction=0.5)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(paths)
    assert D.split_episodes(list(reversed(paths)), "val", val_fraction=0.5) == list(reversed(val))


def test_collection_is_deterministic_and_resumes(tmp_path, tiny_dataset):
    root = tmp_path / "d"
    D.collect(root, episodes=2, seed=0, image_size=32, max_steps=24, progress=False)
    first = D.load_episode(D.episode_path(root, 0))
    mtime = os.path.getmtime(D.episode_path(root, 0))
    # a killed run leaves a temp file at most; re-running completes without touching finished episodes
    (root / ".tmp_partial.npz").write_bytes(b"garbage")
    summary = D.collect(root, episodes=3, seed=0, image_size=32, max_steps=24, progress=False)
    assert summary["written"] == 1 and summary["total"] == 3
    assert os.path.getmtime(D.episode_path(root, 0)) == mtime
    # same seed, same episode as the fixture's collection
    np.testing.assert_array_equal(first["frames"], D.load_episode(D.episode_path(tiny_dataset, 0))["frames"])


def test_several_collections_train_together(tmp_path, tiny_dataset):
    other = tmp_path / "other"
    D.collect(other, episodes=2, seed=1, image_size=32, max_steps=24, progress=False)
    _, a = D.load_split(tiny_dataset, "all")
    _, b = D.load_split(other, "all")
    meta, both = D.load_split(f"{tiny_dataset},{other}", "all")
    assert len(both) == len(a) + len(b) and meta["resolution"] == [32, 32]
    np.testing.assert_array_equal(both[len(a)]["frames"], b[0]["frames"])
    assert len(D.TransitionDataset([tiny_dataset, other], "all", context=2)) == sum(len(e["actions"]) for e in both)
    wrong = tmp_path / "wrong"
    D.collect(wrong, episodes=1, seed=0, image_size=16, max_steps=5, progress=False)
    with pytest.raises(D.DatasetError, match="one task and resolution"):
        D.load_split(f"{tiny_dataset},{wrong}", "all")


def test_action_noise_perturbs_the_behaviour_seeded_and_is_part_of_the_dataset(tmp_path, tiny_dataset):
    root = tmp_path / "noisy"
    D.collect(root, episodes=1, seed=0, image_size=32, max_steps=24, progress=False, action_noise=25.0)
    noisy, clean = D.load_episode(D.episode_path(root, 0)), D.load_episode(D.episode_path(tiny_dataset, 0))
    np.testing.assert_array_equal(noisy["states"][0], clean["states"][0])  # same start, same behaviour draws
    diff = np.abs(noisy["actions"] - clean["actions"])
    assert diff[0].max() > 0 and diff.max() > 10 and np.all(noisy["actions"] >= 0) and np.all(noisy["actions"] <= 512)
    again = tmp_path / "again"
    D.collect(again, episodes=1, seed=0, image_size=32, max_steps=24, progress=False, action_noise=25.0)
    np.testing.assert_array_equal(noisy["actions"], D.load_episode(D.episode_path(again, 0))["actions"])
    assert D.read_meta(root)["action_noise"] == 25.0
    with pytest.raises(D.DatasetError, match="action_noise"):  # extending with another noise is refused
        D.collect(root, episodes=2, seed=0, image_size=32, max_steps=24, progress=False)
    with pytest.raises(ValueError, match="action_noise"):
        D.collect(tmp_path / "bad", episodes=1, image_size=32, progress=False, action_noise=float("nan"))


def test_appending_with_other_resolution_is_refused(tmp_path):
    root = tmp_path / "d"
    D.collect(root, episodes=1, seed=0, image_size=32, max_steps=5, progress=False)
    with pytest.raises(D.DatasetError, match="resolution"):
        D.collect(root, episodes=2, seed=0, image_size=48, max_steps=5, progress=False)
    assert len(D.list_episodes(root)) == 1


def test_corrupt_episode_is_named_and_can_be_skipped(tmp_path, tiny_dataset):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(tiny_dataset, root)
    bad = D.list_episodes(root)[0]
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(D.DatasetError, match=bad.name):
        D.TransitionDataset(root, split="all")
    with pytest.warns(UserWarning, match="skipping"):
        ds = D.TransitionDataset(root, split="all", skip_corrupt=True)
    assert len(ds.episodes) == 5


def test_wrong_format_version_is_refused(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(D.DatasetError, match="format version"):
        D.read_meta(tmp_path)


def test_cli_rejects_nonsense(capsys):
    from wm_gym.cli import main

    with pytest.raises(SystemExit):
        main(["collect", "--episodes", "-3", "--out", "x"])
    assert "must be > 0" in capsys.readouterr().err
    for noise in ("-1", "nan"):
        with pytest.raises(SystemExit):
            main(["collect", "--episodes", "1", "--out", "x", "--action-noise", noise])
        assert "--action-noise: must be >= 0" in capsys.readouterr().err
