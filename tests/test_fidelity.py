"""State probe and the open-loop fidelity evaluation (tiny real data, tiny random models)."""

import json
import math

import numpy as np
import pytest
import torch

from wm_gym.data import frames_to_tensor, load_split
from wm_gym.fidelity import (METHODS, PSNR_CAP, choose_starts, evaluate_fidelity, format_table, pusht_coverage)
from wm_gym.models.state_probe import ProbeArgs, StateProbe, angle_error_deg, state_errors, train_probe
from wm_gym.pusht import REWARD_TYPES

HORIZONS = (0, 1, 4, 8)
FRAME_METRICS = {"agent_px", "block_px", "angle_deg", "coverage_frame_err", "psnr", "mse", "n",
                 "block_px_moving", "angle_deg_moving", "n_moving"}
REWARD_METRICS = {"rew_mae_" + r for r in REWARD_TYPES}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run fastest on one thread (two threads stall when the cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_probe(seed=0):
    torch.manual_seed(seed)
    return StateProbe(image_size=32, widths=(8, 16, 16), hidden=32)


def tiny_global_model(context=3):
    from wm_gym.models.denoiser import Denoiser
    from wm_gym.models.global_model import GlobalModel
    from wm_gym.models.reward_model import RewardModel
    from wm_gym.pusht import PUSHT, TaskSpec

    torch.manual_seed(0)
    task = TaskSpec(**{**PUSHT.to_dict(), "image_size": 32, "max_episode_steps": 24})
    den = Denoiser(image_size=32, context=context, patch=4, block_out_channels=(8, 16), norm_num_groups=8)
    rew = RewardModel(image_size=32, channels=(8, 8, 16, 16), hidden=16)
    return GlobalModel(den, rew, task)


@pytest.fixture(scope="module")
def tiny_frames(tiny_dataset):
    _, eps = load_split(tiny_dataset, "all")
    frames = np.concatenate([ep["frames"] for ep in eps])
    states = np.concatenate([ep["states"] for ep in eps]).astype(np.float32)
    return frames_to_tensor(frames), torch.from_numpy(states)


# -- probe ------------------------------------------------------------------------------------------
def test_probe_shapes_and_save_load(tmp_path):
    probe = tiny_probe().eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = probe(x)
    assert out.positions.shape == (3, 2, 2) and out.angles.shape == (3, 1) and out.state.shape == (3, 5)
    assert out.cos_sin.shape == (3, 1, 2)
    assert torch.all(out.angles.abs() <= math.pi)
    probe.save_pretrained(tmp_path / "p")
    again = StateProbe.from_pretrained(tmp_path / "p").eval()
    assert tuple(again.config.widths) == tuple(probe.config.widths)
    torch.testing.assert_close(again(x).state, out.state)
    with pytest.raises(ValueError, match="frames"):
        probe(torch.zeros(2, 32, 32))


def test_probe_learns_on_tiny_data(tiny_frames):
    frames, states = tiny_frames
    gen = torch.Generator().manual_seed(0)
    held = torch.randperm(len(frames), generator=gen)[:48]
    probe = tiny_probe()
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    with torch.no_grad():
        before = probe.loss(frames[held], states[held])[0].item()
    for _ in range(40):
        idx = torch.randint(0, len(frames), (16,), generator=gen)
        loss, logs = probe.loss(frames[idx], states[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = probe.loss(frames[held], states[held])[0].item()
    assert set(logs) == {"loss", "pos_loss", "angle_loss"}
    assert after < 0.5 * before, (before, after)


def test_train_probe_saves_probe_and_metrics(tiny_dataset, tmp_path):
    args = ProbeArgs(data=str(tiny_dataset), out=str(tmp_path / "probe"), max_steps=5, batch_size=8,
                     threads=1, progress=False)
    probe, metrics = train_probe(args)
    for k in ("agent_px", "block_px", "angle_deg", "steps"):
        assert k in metrics
    assert metrics["steps"] == 5
    saved = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert saved["agent_px"] == pytest.approx(metrics["agent_px"])
    again = StateProbe.from_pretrained(tmp_path / "probe")
    x = torch.zeros(1, 3, 32, 32)
    torch.testing.assert_close(again.eval()(x).state, probe.eval()(x).state)


# -- errors -----------------------------------------------------------------------------------------
def test_angle_error_wraps():
    assert angle_error_deg(0.1, 2 * math.pi - 0.1) == pytest.approx(math.degrees(0.2))
    assert angle_error_deg(math.pi, -math.pi) == pytest.approx(0.0, abs=1e-9)
    assert angle_error_deg(0.0, math.pi) == pytest.approx(180.0)
    assert angle_error_deg(-3.0, 3.0) == pytest.approx(math.degrees(2 * math.pi - 6.0))
    assert angle_error_deg(10 * math.pi + 0.5, 0.0) == pytest.approx(math.degrees(0.5))
    e = state_errors(np.array([[3.0, 4.0, 0.0, 0.0, 6.2]]), np.array([[0.0, 0.0, 6.0, 8.0, 0.0]]))
    assert e["agent_px"][0] == pytest.approx(5.0) and e["block_px"][0] == pytest.approx(10.0)
    assert e["angle_deg"][0] == pytest.approx(math.degrees(2 * math.pi - 6.2))


def test_pusht_coverage_matches_the_labels(tiny_dataset):
    _, eps = load_split(tiny_dataset, "all")
    states = np.concatenate([ep["states"] for ep in eps])
    coverage = np.concatenate([ep["coverage"] for ep in eps])
    np.testing.assert_allclose(pusht_coverage(states[:, 2:5]), coverage, atol=1e-5)


# -- fidelity ---------------------------------------------------------------------------------------
def test_starts_leave_room_for_the_longest_horizon(tiny_dataset):
    _, eps = load_split(tiny_dataset, "all")
    s = choose_starts(eps, (1, 8), per_episode=3, seed=0)
    assert len(s.t0) == 3 * len(eps)
    assert np.all(s.t0 >= 1)
    assert all(t + 8 <= len(eps[e]["actions"]) for e, t in zip(s.episode, s.t0))


def test_evaluate_fidelity_tiny_model(tiny_dataset, tmp_path):
    pytest.importorskip("wm_gym.models.global_model")
    video = tmp_path / "rollouts.mp4"
    res = evaluate_fidelity(tiny_global_model(), tiny_probe(), tiny_dataset, horizons=HORIZONS,
                            starts_per_episode=3, seed=0, batch_size=2, video_path=video, video_rollouts=2,
                            progress=False)
    assert res["horizons"] == list(HORIZONS)
    for method in METHODS:
        for h in HORIZONS:
            row = res[method][str(h)]
            predicts_frames = method in ("model", "copy_last")
            want = FRAME_METRICS | REWARD_METRICS if predicts_frames else FRAME_METRICS - {"psnr", "mse"}
            assert set(row) == want, (method, h, set(row) ^ want)
            assert row["n"] == 3
            assert all(np.isfinite(v) for k, v in row.items() if "moving" not in k), (method, h, row)
            assert row["n_moving"] <= row["n"] and (h > 0 or row["n_moving"] == 0)
    json.dumps(res)  # serialisable
    assert video.exists() and video.stat().st_size > 1000
    assert "| 8 | model |" in format_table(res)

    # h=0 is the real last context frame: copy-last has zero error there (beyond the probe floor)
    for method in ("copy_last", "model"):
        row0 = res[method]["0"]
        assert row0["mse"] == 0.0 and row0["psnr"] == PSNR_CAP
        assert row0["rew_mae_coverage"] == 0.0 and row0["rew_mae_dense"] == 0.0
        for k in ("agent_px", "block_px", "angle_deg", "coverage_frame_err"):
            assert row0[k] == pytest.approx(res["probe_floor"]["0"][k])
    assert res["copy_last"]["8"]["mse"] > 0.0
    # the random model does not reproduce the truth
    assert res["model"]["1"]["mse"] > 0.0


def test_evaluate_fidelity_is_seeded_and_baseline_only(tiny_dataset):
    pytest.importorskip("wm_gym.models.global_model")
    kw = dict(horizons=(1, 2), starts_per_episode=1, seed=3, progress=False)
    a = evaluate_fidelity(tiny_global_model(), tiny_probe(), tiny_dataset, **kw)
    b = evaluate_fidelity(tiny_global_model(), tiny_probe(), tiny_dataset, **kw)
    assert a["model"] == b["model"]
    base = evaluate_fidelity(None, tiny_probe(), tiny_dataset, **kw)
    assert "model" not in base and base["copy_last"] == a["copy_last"]


def test_cli_train_probe_and_eval_fidelity(tiny_dataset, tmp_path):
    pytest.importorskip("wm_gym.models.global_model")
    from wm_gym.cli import build_parser, main

    help_text = build_parser().format_help()
    assert "train-probe" in help_text and "eval-fidelity" in help_text
    probe_dir, model_dir, out = tmp_path / "probe", tmp_path / "wm", tmp_path / "fid"
    assert main(["train-probe", "--data", str(tiny_dataset), "--out", str(probe_dir), "--max-steps", "2",
                 "--batch-size", "4", "--threads", "1", "--progress", "false"]) == 0
    tiny_global_model().save_pretrained(model_dir / "global_model")  # a world-model checkpoint layout
    assert main(["eval-fidelity", "--model", str(model_dir), "--probe", str(probe_dir), "--data", str(tiny_dataset),
                 "--out", str(out), "--horizons", "1,2", "--starts-per-episode", "1", "--video-rollouts", "1",
                 "--threads", "1", "--progress", "false"]) == 0
    res = json.loads((out / "fidelity.json").read_text())
    assert set(res["model"]) == {"1", "2"} and "probe_heldout" in res
    assert (out / "fidelity.md").exists() and (out / "rollouts.mp4").exists()
    # the sampler's min_change can be overridden for the evaluation (and is recorded); a bad value is an error
    assert main(["eval-fidelity", "--model", str(model_dir), "--probe", str(probe_dir), "--data", str(tiny_dataset),
                 "--out", str(out), "--horizons", "1", "--starts-per-episode", "1", "--video-rollouts", "0",
                 "--threads", "1", "--progress", "false", "--min-change", "0.05"]) == 0
    assert json.loads((out / "fidelity.json").read_text())["settings"]["min_change"] == 0.05
    with pytest.raises(SystemExit, match="min_change"):
        main(["eval-fidelity", "--model", str(model_dir), "--probe", str(probe_dir), "--data", str(tiny_dataset),
              "--out", str(out), "--horizons", "1", "--min-change", "3", "--progress", "false"])
