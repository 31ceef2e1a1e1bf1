"""Global world model: EDM preconditioning, sampler, reward model, save/load, errors, training smoke test."""

import dataclasses
import math
import json

import pytest
import torch

from wm_gym.data import DatasetError, TransitionDataset
from wm_gym.models.denoiser import Denoiser
from wm_gym.models.global_model import CheckpointError, GlobalModel, GlobalStep, cpu_bf16_hardware, resolve_precision
from wm_gym.models.reward_model import RewardModel
from wm_gym.models.sampler import EulerSampler, karras_sigmas
from wm_gym.pusht import PUSHT

S, K = 32, 2


def tiny_denoiser(**kw) -> Denoiser:
    return Denoiser(image_size=S, context=K, block_out_channels=(8, 16), norm_num_groups=4, **kw)


def tiny_model() -> GlobalModel:
    torch.manual_seed(0)
    den = tiny_denoiser()
    for p in den.unet.conv_out.parameters():  # not zero: make outputs depend on the weights
        torch.nn.init.normal_(p, std=0.02)
    task = dataclasses.replace(PUSHT, image_size=S)
    rm = RewardModel(image_size=S, channels=(8, 16), hidden=16)
    return GlobalModel(den, rm, task, EulerSampler(num_steps=2))


def context_batch(B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, K, 3, S, S, generator=g) * 2 - 1, torch.rand(B, K, 2, generator=g) * 2 - 1


def test_edm_preconditioning_identities():
    den = tiny_denoiser(sigma_data=0.7)
    sd = 0.7
    sigma = torch.tensor([1e-3, 0.1, 0.7, 3.0, 50.0])
    p = den.precondition(sigma)
    s = sigma.reshape(-1, 1, 1, 1)
    # Karras et al. 2022, table 1
    torch.testing.assert_close(p.c_skip * (s**2 + sd**2), torch.full_like(s, sd**2))
    torch.testing.assert_close(p.c_out**2, s**2 * p.c_skip)
    torch.testing.assert_close(p.c_skip + p.c_out**2 / sd**2, torch.ones_like(s))
    torch.testing.assert_close(p.c_in**2 * (s**2 + sd**2), torch.ones_like(s))
    torch.testing.assert_close(p.c_noise, sigma.log() / 4)
    # the effective training target (y - c_skip * (y + sigma n)) / c_out has unit variance
    torch.testing.assert_close(((1 - p.c_skip) ** 2 * sd**2 + p.c_skip**2 * s**2) / p.c_out**2, torch.ones_like(s))


def test_space_to_depth_is_pixel_unshuffle():
    from wm_gym.models.denoiser import depth_to_space, space_to_depth

    x = torch.randn(2, 6, 16, 16)
    assert torch.equal(space_to_depth(x, 4), torch.nn.functional.pixel_unshuffle(x, 4))
    assert torch.equal(depth_to_space(space_to_depth(x, 4), 4), x)
    y = torch.randn(2, 48, 4, 4)
    assert torch.equal(depth_to_space(y, 4), torch.nn.functional.pixel_shuffle(y, 4))


def test_denoiser_returns_input_at_zero_noise():
    den = tiny_denoiser()
    for p in den.unet.conv_out.parameters():
        torch.nn.init.normal_(p, std=0.1)
    obs, act = context_batch()
    x = torch.randn(3, 3, S, S) * 0.1
    with torch.no_grad():
        out = den(x, torch.tensor(1e-6), obs, act)
    torch.testing.assert_close(out, x, atol=1e-4, rtol=0)


def test_karras_schedule():
    sig = karras_sigmas(3, 2e-3, 5.0)
    assert sig.shape == (4,)
    assert sig[0].item() == pytest.approx(5.0, rel=1e-5) and sig[2].item() == pytest.approx(2e-3, rel=1e-5)
    assert sig[-1] == 0 and torch.all(sig[:-1] > sig[1:])
    assert karras_sigmas(1, 2e-3, 5.0).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match="num_steps"):
        karras_sigmas(0, 2e-3, 5.0)


def test_step_shapes_determinism_and_seeds():
    model = tiny_model()
    obs, act = context_batch()
    out = model.step(obs, act, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, GlobalStep)
    assert out.next_obs.shape == (3, 3, S, S) and out.next_obs.dtype == torch.float32
    assert out.next_obs.min() >= -1 and out.next_obs.max() <= 1
    assert out.rew.shape == (3, len(PUSHT.reward_types)) and out.success_prob.shape == (3,) and out.success.dtype == torch.bool
    same = model.step(obs, act, generator=torch.Generator().manual_seed(1))
    other = model.step(obs, act, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out.next_obs, same.next_obs)
    assert not torch.equal(out.next_obs, other.next_obs)
    one = model.step(obs, act, generator=torch.Generator().manual_seed(1), num_steps=1)
    assert one.next_obs.shape == out.next_obs.shape


def test_bfloat16_step_is_close_to_float32_and_returns_float32():
    model = tiny_model()
    obs, act = context_batch()
    noise = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(3))
    ref = model.step(obs, act, noise=noise)
    low = model.step(obs, act, noise=noise, precision="bfloat16")
    for name in ("next_obs", "rew", "success_prob"):
        assert getattr(low, name).dtype == torch.float32, name
    # the frame is obs[:, -1] (float32, exact) + the denoised change (bfloat16 products): close, not equal
    torch.testing.assert_close(low.next_obs, ref.next_obs, atol=0.05, rtol=0)
    assert (low.next_obs - ref.next_obs).abs().mean() < 5e-3
    torch.testing.assert_close(low.rew, ref.rew, atol=0.05, rtol=0)
    again = model.step(obs, act, noise=noise, precision="bfloat16")
    assert torch.equal(low.next_obs, again.next_obs)  # deterministic
    assert resolve_precision("auto", "cpu") in ("float32", "bfloat16")
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        model.step(obs, act, noise=noise, precision="fp16")


def test_cpu_bf16_hardware_reads_the_model_name_and_bfloat16_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    core = "processor\t: {}\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx512f {}\n\n"
    info.write_text(core.format(0, "avx512_bf16") + core.format(1, "avx512_bf16"))
    assert cpu_bf16_hardware(str(info)) == ("AMD EPYC 9R14", ("avx512_bf16",))
    info.write_text(core.format(0, "avx2"))
    assert cpu_bf16_hardware(str(info))[1] == ()
    name, flags = cpu_bf16_hardware(str(tmp_path / "missing"))  # not Linux: a name from platform, no flags
    assert isinstance(name, str) and flags == ()


@pytest.mark.parametrize("num_steps", [1, 2])
def test_antithetic_sampler_is_the_mean_of_the_eps_and_minus_eps_samples(num_steps):
    model = tiny_model()
    obs, act = context_batch()
    obs = 0.5 * obs  # frames away from the [-1, 1] clamp, so the mean of the frames is the mean of the deltas
    noise = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(4))
    one = EulerSampler(num_steps=num_steps)
    pair = EulerSampler(num_steps=num_steps, antithetic=True)
    plus = one.sample(model.denoiser, obs, act, noise=noise) - obs[:, -1]
    minus = one.sample(model.denoiser, obs, act, noise=-noise) - obs[:, -1]
    want = model.denoiser.frame_of(obs, 0.5 * (plus + minus))
    got = pair.sample(model.denoiser, obs, act, noise=noise)
    assert got.abs().max() < 0.99
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # even in the noise, and deterministic under a seeded generator
    torch.testing.assert_close(pair.sample(model.denoiser, obs, act, noise=-noise), got, atol=1e-5, rtol=0)
    a = pair.sample(model.denoiser, obs, act, generator=torch.Generator().manual_seed(5))
    b = pair.sample(model.denoiser, obs, act, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_min_change_keeps_static_pixels_exactly_and_moving_ones_as_they_were():
    model = tiny_model()
    obs, act = context_batch()
    obs = 0.5 * obs  # away from the clamp
    noise = torch.randn(3, 3, S, S, generator=torch.Generator().manual_seed(6))
    free = EulerSampler(num_steps=1, antithetic=True).sample(model.denoiser, obs, act, noise=noise)
    change = (free - obs[:, -1]).abs().amax(1, keepdim=True)  # (B, 1, H, W): a pixel's largest channel change
    threshold = change.median().item()
    kept = EulerSampler(num_steps=1, antithetic=True, min_change=threshold).sample(model.denoiser, obs, act,
                                                                                   noise=noise)
    clear = ((change - threshold).abs() > 1e-4).expand_as(free)  # (free - obs recomputes the change, rounded)
    static = (change < threshold).expand_as(free) & clear
    moving = (change > threshold).expand_as(free) & clear
    assert static.any() and moving.any()
    assert torch.equal(kept[static], obs[:, -1][static])  # static pixels copied exactly: no drift
    torch.testing.assert_close(kept[moving], free[moving], atol=1e-6, rtol=0)
    for bad in (-0.1, 2.0):
        with pytest.raises(ValueError, match="min_change"):
            EulerSampler(min_change=bad)


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "gm")
    assert (tmp_path / "gm" / "global_model.json").exists()
    loaded = GlobalModel.from_pretrained(tmp_path / "gm", device="cpu")
    assert loaded.context == K and loaded.image_size == S and loaded.sampler.num_steps == 2
    assert loaded.sampler.config() == model.sampler.config()
    sampler, model.sampler = model.sampler, EulerSampler(num_steps=1, min_change=0.05)
    model.save_pretrained(tmp_path / "gm2")
    assert GlobalModel.from_pretrained(tmp_path / "gm2", device="cpu").sampler.min_change == 0.05
    model.sampler = sampler
    assert loaded.task == model.task
    obs, act = context_batch()
    a = model.step(obs, act, generator=torch.Generator().manual_seed(3))
    b = loaded.step(obs, act, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.next_obs, b.next_obs, atol=0, rtol=0)
    torch.testing.assert_close(a.rew, b.rew, atol=0, rtol=0)
    # the sampler setting travels with the model; a file written before the antithetic option loads as one draw
    model.sampler = EulerSampler(num_steps=1, antithetic=True)
    model.save_pretrained(tmp_path / "gm_pair")
    assert GlobalModel.from_pretrained(tmp_path / "gm_pair").sampler.antithetic
    cfg = json.loads((tmp_path / "gm_pair" / "global_model.json").read_text())
    del cfg["sampler"]["antithetic"]
    (tmp_path / "gm_pair" / "global_model.json").write_text(json.dumps(cfg))
    assert not GlobalModel.from_pretrained(tmp_path / "gm_pair").sampler.antithetic


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        GlobalModel.from_pretrained(tmp_path / "nothing")
    model = tiny_model()
    model.save_pretrained(tmp_path / "gm")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "global_model.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing"):
        GlobalModel.from_pretrained(tmp_path / "partial")
    weights = next((tmp_path / "gm" / "denoiser").glob("*.safetensors"))
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        GlobalModel.from_pretrained(tmp_path / "gm")
    # resolution mismatch between the json and the parts, and at step time
    model.save_pretrained(tmp_path / "gm2")
    cfg = json.loads((tmp_path / "gm2" / "global_model.json").read_text())
    cfg["image_size"] = 64
    (tmp_path / "gm2" / "global_model.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="32x32"):
        GlobalModel.from_pretrained(tmp_path / "gm2")
    with pytest.raises(ValueError, match=r"\(B, 2, 3, 32, 32\)"):
        model.step(torch.zeros(2, K, 3, 64, 64), torch.zeros(2, K, 2))
    with pytest.raises(ValueError, match="act must be"):
        model.step(torch.zeros(2, K, 3, S, S), torch.zeros(2, K + 1, 2))
    with pytest.raises(ValueError, match="divisible"):
        Denoiser(image_size=30, patch=4)


def test_state_reader_rewards_are_the_state_formulas_of_what_it_reads(tmp_path):
    """With a state reader the dense/push labels are the task's formulas of the read state (differentiable);
    coverage and success stay the reward model's; the reader travels with save/load."""
    from wm_gym.models.state_probe import StateProbe
    from wm_gym.pusht import STATE_REWARDS

    base = tiny_model()
    torch.manual_seed(1)
    reader = StateProbe(image_size=S, widths=(8, 8, 8), hidden=16)
    model = GlobalModel(base.denoiser, base.reward_model, base.task, base.sampler, state_reader=reader)
    obs, act = context_batch()
    frame = obs[:, -1].clone().requires_grad_(True)
    out = model.rewards(frame)
    state = reader(frame).state.detach()
    for i, name in enumerate(model.task.reward_types):
        want = STATE_REWARDS[name](state.double()).float() if name in STATE_REWARDS \
            else base.reward_model(frame).rew[:, i].detach()
        torch.testing.assert_close(out.rew[:, i].detach(), want)
    torch.testing.assert_close(out.success_logit, base.reward_model(frame).success_logit)
    (g,) = torch.autograd.grad(out.rew[:, model.task.reward_types.index("dense")].sum(), frame)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    a = model.step(obs, act, generator=torch.Generator().manual_seed(3))
    b = base.step(obs, act, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.next_obs, b.next_obs, atol=0, rtol=0)  # the frames do not depend on the reader
    torch.testing.assert_close(a.rew, model.rewards(a.next_obs).rew)
    model.save_pretrained(tmp_path / "gm")
    loaded = GlobalModel.from_pretrained(tmp_path / "gm")
    assert loaded.state_reader is not None and GlobalModel.from_pretrained(_saved(base, tmp_path)).state_reader is None
    torch.testing.assert_close(loaded.step(obs, act, generator=torch.Generator().manual_seed(3)).rew, a.rew)
    import shutil

    shutil.rmtree(tmp_path / "gm" / "state_reader")
    with pytest.raises(CheckpointError, match="state_reader"):
        GlobalModel.from_pretrained(tmp_path / "gm")
    with pytest.raises(ValueError, match="state_reader reads 64x64"):
        GlobalModel(base.denoiser, base.reward_model, base.task, state_reader=StateProbe(image_size=64))


def _saved(model, tmp_path):
    model.save_pretrained(tmp_path / "plain")
    return tmp_path / "plain"


def test_reward_model_shapes_and_loss():
    rm = RewardModel(image_size=S, num_rewards=2, channels=(8, 16), hidden=16)
    out = rm(torch.zeros(5, 3, S, S))
    assert out.rew.shape == (5, 2) and out.success_logit.shape == (5,)
    loss, logs = rm.loss({"next_obs": torch.zeros(5, 3, S, S), "rew": torch.zeros(5, 2), "success": torch.ones(5)})
    assert loss.ndim == 0 and {"loss_reward", "loss_success", "mae_reward_0"} <= logs.keys()
    with pytest.raises(ValueError, match="RewardModel expects"):
        rm(torch.zeros(5, 3, 64, 64))


def test_tiny_model_overfits_tiny_batch(tiny_dataset):
    torch.manual_seed(0)
    ds = TransitionDataset(tiny_dataset, "all", context=K)
    # a batch where the frame changes, with a fixed noise draw so the loss is comparable over steps
    idx = [i for i in range(len(ds)) if (ds[i]["next_obs"] - ds[i]["obs"][-1]).abs().max() > 0.1][:8]
    batch = torch.utils.data.default_collate([ds[i] for i in idx])
    den = tiny_denoiser(context_noise_max=0.0, train_sigma_loc=1.6, train_sigma_scale=0.0)  # sigma = 5
    opt = torch.optim.Adam(den.parameters(), lr=3e-3)

    def fixed_loss():
        torch.manual_seed(123)
        return den.loss(batch)

    first = fixed_loss()[0].item()
    for _ in range(150):
        loss, logs = fixed_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"loss_denoising", "mse_delta"} <= logs.keys()
    assert fixed_loss()[0].item() < first / 10


def test_train_global_smoke(tiny_dataset, tmp_path):
    from wm_gym.train_global import TrainGlobalArgs, train

    args = TrainGlobalArgs(data=str(tiny_dataset), out=str(tmp_path / "run"), steps=4, batch_size=4, context=K,
                           widths="8,16", eval_every=4, eval_starts=2, goal_frames=12, goal_batch=2,
                           val_fraction=0.34, quiet=True, threads=1)
    logs = train(args)
    assert {"mse_h1", "mse_copy_h4", "psnr_h16", "reward_real_mae_0"} <= logs.keys()
    assert "mse_h64" not in logs  # the default horizons 1,4,16,64: 64 does not fit in 24-step episodes
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["step"] == 4 and saved["train_steps_per_s"] > 0  # the training steps' own speed, to size timed runs
    model = GlobalModel.from_pretrained(tmp_path / "run" / "global_model")
    assert model.image_size == 32
    with pytest.raises(FileExistsError, match="--resume"):
        train(args)
    logs = train(TrainGlobalArgs(**{**vars(args), "steps": 6, "resume": True}))
    assert logs["step"] == 6
    # a new run started from the saved model takes its architecture and weights (lr 0: nothing moves)
    init = tmp_path / "run" / "global_model"
    fine = TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "fine"), "init_from": str(init), "widths": "16,32",
                              "steps": 2, "lr": 0.0, "reward_lr": 0.0, "warmup_steps": 1})
    train(fine)
    before, after = GlobalModel.from_pretrained(init), GlobalModel.from_pretrained(tmp_path / "fine" / "global_model")
    assert after.denoiser.config.block_out_channels == before.denoiser.config.block_out_channels
    for k, v in before.state_dict().items():
        torch.testing.assert_close(after.state_dict()[k], v)
    # the run remembers that it fine-tunes a trained model (its EMA keeps the full decay, also when resumed)
    load = lambda d: torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)  # noqa: E731
    assert load("fine")["fine_tune"] and not load("run")["fine_tune"]
    assert after.sampler.min_change == before.sampler.min_change  # sampler settings come with --init-from
    with pytest.raises(ValueError, match="--init-from starts a new run"):
        train(TrainGlobalArgs(**{**vars(fine), "resume": True}))
    # --reward-only: a model saved with fewer reward labels gets a new reward model, its denoiser unchanged
    with pytest.raises(ValueError, match="--init-from"):
        train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "r0"), "reward_only": True}))
    before.task = dataclasses.replace(before.task, reward_types=("coverage", "dense"))
    before.reward_model = RewardModel(image_size=32, num_rewards=2)
    before.save_pretrained(tmp_path / "two_labels")
    with pytest.raises(DatasetError, match="--reward-only"):
        train(TrainGlobalArgs(**{**vars(fine), "out": str(tmp_path / "r1"), "init_from": str(tmp_path / "two_labels")}))
    logs = train(TrainGlobalArgs(**{**vars(fine), "out": str(tmp_path / "r2"), "init_from": str(tmp_path / "two_labels"),
                                    "reward_only": True, "reward_steps": 3, "reward_lr": 1e-3}))
    assert logs["step"] == 3 and "reward_real_mae_2" in logs
    after = GlobalModel.from_pretrained(tmp_path / "r2" / "global_model")
    assert after.task.reward_types == ("coverage", "dense", "push") and after.reward_model.config.num_rewards == 3
    for k, v in before.denoiser.state_dict().items():
        torch.testing.assert_close(after.denoiser.state_dict()[k], v)
    # bfloat16 autocast training keeps float32 (master) weights and optimiser state, all finite
    logs = train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "bf16"), "precision": "bfloat16", "steps": 2}))
    assert logs["step"] == 2 and math.isfinite(logs["mse_h1"])
    trained = GlobalModel.from_pretrained(tmp_path / "bf16" / "global_model")
    assert all(torch.isfinite(v).all() for v in trained.state_dict().values())
    ck = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=False)
    assert all(v.dtype == torch.float32 for v in ck["denoiser"].values() if v.is_floating_point())


def test_loss_takes_given_noise_levels():
    """The trainer puts part of each batch at the sampler's sigma_max: the loss must use given levels."""
    den = tiny_denoiser(context_noise_max=0.0)
    obs, act = context_batch(B=4)
    batch = {"obs": obs, "act": act, "next_obs": obs[:, -1].roll(1, dims=-1)}
    torch.manual_seed(0)
    at_max = den.loss(batch, torch.full((4,), 5.0))[0]
    torch.manual_seed(0)
    at_max_again = den.loss(batch, torch.full((4,), 5.0))[0]
    torch.manual_seed(0)
    low = den.loss(batch, torch.full((4,), 0.01))[0]
    assert at_max == at_max_again and at_max != low
    with pytest.raises(ValueError, match=r"sigma must have shape \(4,\)"):
        den.loss(batch, torch.ones(3))
    sig = den.sample_training_sigma(1000)
    assert sig.min() >= den.config.train_sigma_min and sig.max() <= den.config.train_sigma_max


def test_pseudo_huber_pixel_loss_is_quadratic_for_small_errors_and_linear_for_large_ones():
    """``huber_c`` swaps each pixel's squared error e^2 for sqrt(e^2 + c^2) - c: ~e^2 / (2c) when c is large, and
    ~|e| when c is small (the per-pixel median's loss); 0 is the squared error itself."""
    den = tiny_denoiser(context_noise_max=0.0)
    obs, act = context_batch(B=4)
    batch = {"obs": obs, "act": act, "next_obs": obs[:, -1].roll(1, dims=-1)}
    sigma = torch.full((4,), 5.0)

    def loss(c):
        torch.manual_seed(0)
        return den.loss(batch, sigma, huber_c=c)[0].item()

    mse = loss(0.0)
    assert loss(0.0) == mse and 2e3 * loss(1e3) == pytest.approx(mse, rel=1e-4)
    small = loss(1e-6)  # mean of weight * |e|: between mean(weight * e^2) / max|e| and sqrt(mean(weight^2 e^2))
    assert 0 < small and small != pytest.approx(mse, rel=0.05)
    assert loss(0.05) < small  # sqrt(e^2 + c^2) - c < |e|
    with pytest.raises(ValueError, match="huber_c must be >= 0"):
        den.loss(batch, sigma, huber_c=-0.1)


def test_frame_loss_sees_the_predicted_frame_and_its_gradient_reaches_the_denoiser():
    den = tiny_denoiser(context_noise_max=0.0)
    obs, act = context_batch(B=4)
    batch = {"obs": obs, "act": act, "next_obs": obs[:, -1].roll(1, dims=-1)}
    seen = {}

    def frame_loss(frame, sigma):
        seen["frame"], seen["sigma"] = frame, sigma
        return (frame - batch["next_obs"]).pow(2).mean(), {"loss_extra": 1.0}

    sigma = torch.full((4,), 5.0)
    torch.manual_seed(0)
    plain = den.loss(batch, sigma)[0]
    torch.manual_seed(0)
    loss, logs = den.loss(batch, sigma, frame_loss=frame_loss)
    assert seen["frame"].shape == (4, 3, S, S) and seen["frame"].abs().max() <= 1 and seen["sigma"] is sigma
    assert logs["loss_extra"] == 1.0 and loss > plain
    (g,) = torch.autograd.grad(loss - plain, den.unet.conv_out.weight)
    assert g.abs().sum() > 0


def test_train_global_probe_loss(tiny_dataset, tmp_path):
    from wm_gym.models.state_probe import StateProbe
    from wm_gym.train_global import TrainGlobalArgs, train

    StateProbe(image_size=S, widths=(8, 8, 8), hidden=16).save_pretrained(tmp_path / "probe")
    args = TrainGlobalArgs(data=str(tiny_dataset), out=str(tmp_path / "run"), steps=3, batch_size=4, context=K,
                           widths="8,16", eval_every=3, eval_starts=2, goal_frames=12, goal_batch=2,
                           val_fraction=0.34, quiet=True, threads=1, eval_horizons="1,4",
                           probe_loss=str(tmp_path / "probe"), sampler_sigma_frac=0.5)
    logs = train(args)
    assert logs["step"] == 3
    with pytest.raises(FileNotFoundError, match="train-probe"):
        train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "bad"), "probe_loss": str(tmp_path / "none")}))
    StateProbe(image_size=64, widths=(8, 8, 8), hidden=16).save_pretrained(tmp_path / "probe64")
    with pytest.raises(ValueError, match="64x64 frames, the data has 32x32"):
        train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "bad64"), "probe_loss": str(tmp_path / "probe64")}))


def test_learning_rate_schedule():
    from wm_gym.train_global import TrainGlobalArgs, learning_rate

    args = TrainGlobalArgs(lr=1e-3, warmup_steps=10, steps=100, lr_decay_start=50, lr_final=1e-4)
    assert learning_rate(args, 0) == pytest.approx(1e-4)
    assert learning_rate(args, 30) == pytest.approx(1e-3)
    assert learning_rate(args, 75) == pytest.approx(5.5e-4)
    assert learning_rate(args, 100) == pytest.approx(1e-4)
    assert learning_rate(TrainGlobalArgs(lr=1e-3, warmup_steps=10), 10**6) == pytest.approx(1e-3)


def test_eval_horizons_parse():
    from wm_gym.train_global import TrainGlobalArgs

    assert TrainGlobalArgs().horizons == (1, 4, 16, 64)
    assert TrainGlobalArgs(eval_horizons="16, 1,4").horizons == (1, 4, 16)
    for bad in ("", "a,b", "0,4"):
        with pytest.raises(ValueError, match="--eval-horizons"):
            TrainGlobalArgs(eval_horizons=bad).horizons


def test_self_forced_context_ends_in_the_models_own_rollout():
    """Window j's last depths[j] frames are the model's rollout from the real frames before them, on the recorded
    actions; windows past the forced ones keep the real frames; the context is the last K frames and actions."""
    from wm_gym.train_global import self_forced_context

    model, N, B = tiny_model(), 3, 5
    g = torch.Generator().manual_seed(1)
    obs = torch.rand(B, K + N, 3, S, S, generator=g) * 2 - 1
    act = torch.rand(B, K + N, 2, generator=g) * 2 - 1
    sampler = EulerSampler(num_steps=1, antithetic=True)  # deterministic: the mean of eps and -eps is 0-noise
    sampler.sample = lambda den, o, a, num_steps=None: sampler.integrate(den, o, a, torch.zeros_like(o[:, 0]), 1)
    depths = torch.tensor([1, 3, 2])
    ctx, ctx_act = self_forced_context(model.denoiser, sampler, obs, act, depths)
    assert ctx.shape == (B, K, 3, S, S) and torch.equal(ctx_act, act[:, N:])
    torch.testing.assert_close(ctx[3:], obs[3:, N:], rtol=0, atol=0)
    for j, d in enumerate(depths.tolist()):
        frames = list(obs[j, : K + N - d])  # real up to the rollout's start
        for t in range(K + N - d, K + N):
            o = torch.stack(frames[-K:])[None]
            frames.append(sampler.sample(model.denoiser, o, act[j, t - K: t][None])[0])
        torch.testing.assert_close(ctx[j], torch.stack(frames[-K:]))
        assert not torch.allclose(ctx[j, -1], obs[j, -1])
        if d < K:
            torch.testing.assert_close(ctx[j, : K - d], obs[j, N: N + K - d], rtol=0, atol=0)
    with pytest.raises(ValueError, match="depths must lie in 1..3"):
        self_forced_context(model.denoiser, sampler, obs, act, torch.tensor([4]))


def test_train_global_multi_step_self_forcing(tiny_dataset, tmp_path):
    from wm_gym.train_global import TrainGlobalArgs, train

    args = TrainGlobalArgs(data=str(tiny_dataset), out=str(tmp_path / "run"), steps=3, batch_size=4, context=K,
                           widths="8,16", eval_every=3, eval_starts=2, goal_frames=12, goal_batch=2,
                           val_fraction=0.34, quiet=True, threads=1, eval_horizons="1,4", self_forcing_steps=3,
                           pixel_loss_c=0.05)
    assert train(args)["step"] == 3
    with pytest.raises(ValueError, match="--self-forcing-steps must be at least 1"):
        train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "bad"), "self_forcing_steps": 0}))
    with pytest.raises(ValueError, match="--pixel-loss-c must be >= 0"):
        train(TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "bad_c"), "pixel_loss_c": -1.0}))


def test_action_targets_are_drawn_where_gym_pusht_draws_the_agent(tiny_dataset):
    """An action equal to the agent's position is a Gaussian centred on the agent's pixels in the real frames."""
    import numpy as np

    den = tiny_denoiser(action_target_planes=K, action_target_sigma=1.0)
    ep = np.load(sorted(tiny_dataset.glob("episode_*.npz"))[0])
    rows, cols = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    for t in range(0, 24, 6):
        frame, agent = ep["frames"][t].astype(int), ep["states"][t, :2]
        blue = torch.from_numpy((frame[..., 2] > 180) & (frame[..., 0] < 120)).float()
        act = torch.tensor(PUSHT.normalize_action(agent), dtype=torch.float32).expand(1, K, 2)
        g = den.action_targets(act)
        assert g.shape == (1, K, S, S) and g.dtype == torch.float32
        assert 0.77 < g.max() <= 1.0  # the peak pixel lies within half a pixel of the centre (sigma 1 px)
        w = g[0, -1] / g[0, -1].sum()
        drawn = torch.stack([(w * rows).sum(), (w * cols).sum()])
        seen = torch.stack([(blue * rows).sum(), (blue * cols).sum()]) / blue.sum()
        assert (drawn - seen).abs().max() < 0.5, (t, drawn, seen)  # pixels of the 32x32 frame
    with pytest.raises(ValueError, match="action_target_planes"):
        tiny_denoiser(action_target_planes=K + 1)
    with pytest.raises(ValueError, match="action_target_sigma"):
        tiny_denoiser(action_target_planes=1, action_target_sigma=0.0)


def test_action_target_planes_condition_the_prediction_and_round_trip(tmp_path):
    torch.manual_seed(0)
    den = tiny_denoiser(action_target_planes=1)
    torch.nn.init.normal_(den.stem.weight, std=0.1)
    for p in den.unet.conv_out.parameters():
        torch.nn.init.normal_(p, std=0.02)
    obs, act = context_batch(B=2)
    x = torch.randn(2, 3, S, S)
    # the target plane sees the latest action alone; zeroing its stem weights must change the output
    out = den(x, torch.tensor(1.0), obs, act)
    den2 = Denoiser.from_config(den.config)
    den2.load_state_dict(den.state_dict())
    with torch.no_grad():
        den2.stem.weight[:, -den.config.patch ** 2:] = 0
    assert not torch.allclose(out, den2(x, torch.tensor(1.0), obs, act))
    den.save_pretrained(tmp_path / "den")
    back = Denoiser.from_pretrained(tmp_path / "den")
    assert back.config.action_target_planes == 1
    torch.testing.assert_close(back(x, torch.tensor(1.0), obs, act), out)


def test_train_global_adds_action_target_planes_to_a_saved_model(tiny_dataset, tmp_path):
    """--action-target-planes with --init-from a model without them starts from its exact predictions, and
    --resume keeps the architecture of the checkpoint whatever flags come with it."""
    from wm_gym.train_global import TrainGlobalArgs, grown_stem, train

    args = TrainGlobalArgs(data=str(tiny_dataset), out=str(tmp_path / "run"), steps=2, batch_size=4, context=K,
                           widths="8,16", eval_every=2, eval_starts=2, goal_frames=12, goal_batch=2,
                           val_fraction=0.34, quiet=True, threads=1, eval_horizons="1,4")
    train(args)
    base = GlobalModel.from_pretrained(tmp_path / "run" / "global_model")
    grown = TrainGlobalArgs(**{**vars(args), "out": str(tmp_path / "grown"), "init_from": str(tmp_path / "run" / "global_model"),
                               "action_target_planes": 2, "lr": 0.0, "reward_lr": 0.0, "warmup_steps": 1})
    train(grown)
    after = GlobalModel.from_pretrained(tmp_path / "grown" / "global_model")
    assert after.denoiser.config.action_target_planes == 2
    assert after.denoiser.stem.weight.shape[1] == base.denoiser.stem.weight.shape[1] + 2 * 4**2
    obs, act = context_batch()
    x = torch.randn(3, 3, S, S)
    with torch.no_grad():
        torch.testing.assert_close(after.denoiser(x, torch.tensor(0.7), obs, act),
                                   base.denoiser(x, torch.tensor(0.7), obs, act))
    logs = train(TrainGlobalArgs(**{**vars(grown), "init_from": "", "action_target_planes": 0, "steps": 3, "resume": True}))
    assert logs["step"] == 3
    assert GlobalModel.from_pretrained(tmp_path / "grown" / "global_model").denoiser.config.action_target_planes == 2
    with pytest.raises(ValueError, match="only inputs"):
        grown_stem(after.denoiser.state_dict(), base.denoiser)
