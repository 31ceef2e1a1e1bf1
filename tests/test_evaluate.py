"""The shared ground-truth evaluator: policy kinds, baselines, determinism and the episode video."""

import numpy as np
import pytest

from fog_trainer.evaluate import (GroundTruthPolicy, RandomPolicy, ScriptedPusher, evaluate_in_ground_truth,
                                  write_video)

KEYS = {"mean_max_coverage", "mean_final_coverage", "success_rate", "seeds", "max_coverage", "final_coverage",
        "success", "length", "mean_return_coverage", "mean_return_dense", "return_coverage", "return_dense",
        "mean_return_push", "return_push"}


def check_result(res, n, max_steps):
    assert set(res) == KEYS
    assert len(res["max_coverage"]) == len(res["final_coverage"]) == len(res["success"]) == n
    assert all(0 <= c <= 1 for c in res["max_coverage"] + res["final_coverage"])
    assert all(1 <= n_steps <= max_steps for n_steps in res["length"])
    assert np.isclose(res["mean_max_coverage"], np.mean(res["max_coverage"]))
    assert all(m >= f for m, f in zip(res["max_coverage"], res["final_coverage"]))
    # returns are the truth's reward labels summed over the episode: coverage reward in [0, 1] per step,
    # the shaped dense and push rewards in about [-2.5, 0]
    assert len(res["return_dense"]) == len(res["return_coverage"]) == len(res["return_push"]) == n
    assert all(0 <= r <= steps for r, steps in zip(res["return_coverage"], res["length"]))
    assert all(-2.5 * steps <= r <= 0 for r, steps in zip(res["return_dense"] + res["return_push"], res["length"] * 2))
    assert np.isclose(res["mean_return_dense"], np.mean(res["return_dense"]))


def test_baselines_are_deterministic_and_write_a_video(tmp_path):
    video = tmp_path / "ep.mp4"
    res = evaluate_in_ground_truth(RandomPolicy(), seeds=[0, 1], image_size=32, max_steps=12, video_path=video)
    check_result(res, 2, 12)
    assert video.stat().st_size > 0
    again = evaluate_in_ground_truth(RandomPolicy(), seeds=[0, 1], image_size=32, max_steps=12)
    for key in ("max_coverage", "final_coverage"):  # gym-pusht's coverage differs in the last bit between runs
        np.testing.assert_allclose(again[key], res[key], rtol=1e-9)
    assert again["success"] == res["success"] and again["length"] == res["length"]
    scripted = evaluate_in_ground_truth(ScriptedPusher(), seeds=[0], image_size=32, max_steps=12)
    check_result(scripted, 1, 12)
    assert ScriptedPusher.privileged and not RandomPolicy.privileged


def test_frames_only_and_callable_policies(tmp_path):
    class Hold:  # reset()/act(frame): frames only
        def reset(self):
            self.n = 0

        def act(self, frame):
            assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
            self.n += 1
            return np.array([256.0, 256.0])

    hold = Hold()
    res = evaluate_in_ground_truth(hold, seeds=[3], image_size=32, max_steps=5)
    check_result(res, 1, 5)
    assert hold.n == 5

    seen = []

    def on_history(frames):
        seen.append(len(frames))
        return np.array([100.0, 100.0])

    evaluate_in_ground_truth(on_history, seeds=[3], image_size=32, max_steps=4)
    assert seen == [1, 2, 3, 4]


def test_privileged_policy_gets_the_true_state():
    class ReadsState(GroundTruthPolicy):
        privileged = True

        def act(self, frame, info):
            assert info["state"].shape == (5,)
            return info["state"][:2]

    check_result(evaluate_in_ground_truth(ReadsState(), seeds=[0], image_size=32, max_steps=3), 1, 3)


def test_errors_and_gif(tmp_path):
    with pytest.raises(TypeError, match="reset"):
        evaluate_in_ground_truth(object(), seeds=[0], image_size=32, max_steps=2)
    with pytest.raises(ValueError, match="seeds"):
        evaluate_in_ground_truth(RandomPolicy(), seeds=[], image_size=32)
    gif = write_video([np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)], tmp_path / "a.gif")
    assert gif.stat().st_size > 0


def test_world_model_evaluator_is_deterministic_and_separates_policies(tiny_checkpoint):
    from fog_trainer.evaluate import WorldModelEvaluator

    ev = WorldModelEvaluator(num_envs=3, seed=5, reward_type="dense", checkpoint=tiny_checkpoint, max_steps=4)
    middle = lambda z: np.full((len(z), 2), 256.0, np.float32)  # noqa: E731
    corner = lambda z: np.full((len(z), 2), 0.0, np.float32)  # noqa: E731
    res = ev(middle)
    assert set(res) == {"mean_return", "std_return", "success_rate", "mean_length", "returns"}
    assert len(res["returns"]) == 3 and 1 <= res["mean_length"] <= 4
    assert np.isclose(res["mean_return"], np.mean(res["returns"]))
    assert ev(middle)["returns"] == res["returns"]  # same starts, same diffusion noise at every call
    seen = []
    ev(lambda z: seen.append(z.shape) or corner(z))  # the policy sees the batch of latents at every step
    assert seen == [(3, ev.venv.single_observation_space.shape[0])] * 4
    with pytest.raises(ValueError, match="actions of shape"):
        ev(lambda z: np.zeros((len(z), 3), np.float32))
    with pytest.raises(ValueError, match="num_envs"):
        WorldModelEvaluator(num_envs=0, checkpoint=tiny_checkpoint)
    # a pixel policy sees frames, and the world model steps the same way whatever the observation type
    pixels = WorldModelEvaluator(num_envs=3, seed=5, reward_type="dense", checkpoint=tiny_checkpoint, max_steps=4,
                                 obs_type="pixels")
    frames = []
    assert pixels(lambda x: frames.append((x.shape, x.dtype)) or middle(x))["returns"] == res["returns"]
    assert frames[0] == ((3, *pixels.venv.single_observation_space.shape), np.uint8)
    pixels.close()
    ev.close()
