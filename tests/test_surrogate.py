"""Local surrogate: Jacobians (vs autograd and finite differences), shapes, persistence, errors, training."""

from __future__ import annotations

import dataclasses
import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wm_gym.models.surrogate import Linearization, Surrogate
from wm_gym.pusht import TaskSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: with 2 threads on a shared 2-core machine, thread hand-offs cost 10-100x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw) -> Surrogate:
    cfg = dict(image_size=16, context=2, latent_dim=12, encoder_channels=(8, 8), dynamics_hidden=24,
               reward_hidden=20, success_hidden=8)
    cfg.update(kw)
    return Surrogate(**cfg)


def random_point(model: Surrogate, batch: int = 5, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = model._norm(torch.randn(batch, model.latent_dim, generator=g, dtype=dtype))
    a = torch.rand(batch, model.action_dim, generator=g, dtype=dtype) * 2 - 1
    return z, a


def perturbed(model: Surrogate, std: float = 0.3) -> Surrogate:
    """The dynamics output layer starts at zero (f = identity + norm); give it weight so tests bite."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.dynamics.out.weight.normal_(0, std)
        for ln in list(model.dynamics.norms) + list(model.reward_head.norms):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_(0, 0.1)
    return model


# ---------------------------------------------------------------------------------------------------
# Jacobians
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["layernorm", "simnorm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_jacobians_equal_autograd_and_finite_differences(norm, layers):
    model = perturbed(tiny(latent_norm=norm, latent_dim=16, dynamics_layers=layers, simnorm_dim=4)).double()
    z, a = random_point(model)
    for k in range(model.num_rewards):
        lin = model.jacobians(z, a, reward_index=k)
        # autograd, one sample at a time
        for b in range(z.shape[0]):
            jz, ja = torch.autograd.functional.jacobian(lambda zz, aa: model.next(zz[None], aa[None])[0], (z[b], a[b]))
            rz, ra = torch.autograd.functional.jacobian(lambda zz, aa: model.reward(zz[None], aa[None])[0, k],
                                                        (z[b], a[b]))
            torch.testing.assert_close(lin.dfdz[b], jz, atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(lin.dfda[b], ja, atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(lin.drdz[b], rz, atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(lin.drda[b], ra, atol=1e-12, rtol=1e-10)
        # central finite differences, all samples at once
        eps = 1e-6
        x = torch.cat([z, a], -1)
        d = z.shape[1]
        fd_f, fd_r = [], []
        for i in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[:, i] = eps
            (zp, ap), (zm, am) = (x + e).split([d, 2], -1), (x - e).split([d, 2], -1)
            fd_f.append((model.next(zp, ap) - model.next(zm, am)) / (2 * eps))
            fd_r.append((model.reward(zp, ap)[:, k] - model.reward(zm, am)[:, k]) / (2 * eps))
        fd_f, fd_r = torch.stack(fd_f, -1), torch.stack(fd_r, -1)
        torch.testing.assert_close(torch.cat([lin.dfdz, lin.dfda], -1), fd_f, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(torch.cat([lin.drdz, lin.drda], -1), fd_r, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(lin.next_z, model.next(z, a))
        torch.testing.assert_close(lin.reward, model.reward(z, a)[:, k])


def test_cached_outer_products_follow_weight_updates():
    model = perturbed(tiny()).double()
    z, a = random_point(model)
    with torch.no_grad():
        before = model.jacobians(z, a).dfdz
        model.dynamics.out.weight.mul_(2.0)  # in place, as an optimiser step
        after = model.jacobians(z, a).dfdz
    torch.testing.assert_close(after, model.jacobians(z, a, method="vmap-jacrev").dfdz)
    assert not torch.allclose(before, after)
    lin = model.jacobians(z, a)  # with grad enabled the Jacobians carry a graph to the weights
    lin.dfdz.sum().backward()
    assert model.dynamics.out.weight.grad is not None


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_analytic_jacobians_agree_with_torch_func(dtype, tol):
    model = perturbed(tiny()).to(dtype)
    z, a = random_point(model, batch=7, dtype=dtype)
    ref = model.jacobians(z, a, 1)
    for method in ("analytic-generic", "vmap-jacrev", "vmap-jacfwd"):
        other = model.jacobians(z, a, 1, method=method)
        for f in dataclasses.fields(Linearization):
            torch.testing.assert_close(getattr(other, f.name), getattr(ref, f.name), atol=tol, rtol=tol)


@pytest.mark.parametrize("norm", ["layernorm", "simnorm"])
def test_bfloat16_jacobian_product_is_close_and_values_exact(norm):
    kw = {} if norm == "layernorm" else {"latent_norm": "simnorm", "latent_dim": 16, "simnorm_dim": 4}
    model = perturbed(tiny(**kw))
    z, a = random_point(model, batch=9, dtype=torch.float32)
    with torch.no_grad():
        ref, low = model.jacobians(z, a, 1), model.jacobians(z, a, 1, precision="bfloat16")
    for name in ("next_z", "reward", "drdz", "drda"):  # untouched by the product's precision
        torch.testing.assert_close(getattr(low, name), getattr(ref, name))
    for name in ("dfdz", "dfda"):
        got, want = getattr(low, name), getattr(ref, name)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=2e-2 * float(want.abs().max()), rtol=0)
        assert torch.nn.functional.cosine_similarity(got.flatten(1), want.flatten(1)).min() > 0.999
    with pytest.raises(ValueError, match="precision"):
        model.jacobians(z, a, precision="float16")


def test_shapes_and_linearize():
    model = tiny()
    B, d = 3, model.latent_dim
    obs = torch.rand(B, 2, 3, 16, 16) * 2 - 1
    a = torch.rand(B, 2) * 2 - 1
    z = model.encode(obs)
    assert z.shape == (B, d)
    torch.testing.assert_close(z.mean(-1), torch.zeros(B), atol=1e-5, rtol=0)  # LayerNorm latent
    assert model.next(z, a).shape == (B, d)
    assert model.reward(z, a).shape == (B, model.num_rewards) == (B, 3)
    assert model.success_logit(z).shape == (B,)
    assert model.state(z).shape == (B, 6)
    lin = model.linearize(obs, a, reward_index=1)
    shapes = {"z": (B, d), "a": (B, 2), "next_z": (B, d), "reward": (B,), "dfdz": (B, d, d), "dfda": (B, d, 2),
              "drdz": (B, d), "drda": (B, 2)}
    assert {k: tuple(getattr(lin, k).shape) for k in shapes} == shapes
    torch.testing.assert_close(lin.reward, model.reward(z, a)[:, 1])
    simnorm = tiny(latent_norm="simnorm", latent_dim=16, simnorm_dim=4)
    zs = simnorm.encode(obs)
    torch.testing.assert_close(zs.view(B, 4, 4).sum(-1), torch.ones(B, 4))


def test_save_load_round_trip(tmp_path):
    task = TaskSpec(image_size=16)
    model = perturbed(tiny(latent_norm="simnorm", latent_dim=16, simnorm_dim=4, task=task.to_dict()))
    model.save_pretrained(tmp_path / "sur")
    loaded = Surrogate.from_pretrained(tmp_path / "sur")
    public = lambda cfg: json.loads(json.dumps({k: v for k, v in cfg.items() if not k.startswith("_")}))  # noqa: E731
    assert public(loaded.config) == public(model.config)
    assert loaded.task == task
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    obs, a = torch.rand(2, 2, 3, 16, 16) * 2 - 1, torch.zeros(2, 2)
    with torch.no_grad():
        l1, l2 = model.eval().linearize(obs, a), loaded.linearize(obs, a)
    torch.testing.assert_close(l1.dfdz, l2.dfdz, rtol=0, atol=0)
    torch.testing.assert_close(l1.drda, l2.drda, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------
def test_clear_errors_on_bad_inputs():
    model = tiny()
    z, a = torch.zeros(4, 12), torch.zeros(4, 2)
    cases = [
        (lambda: model.encode(torch.zeros(4, 3, 3, 16, 16)), r"obs must have shape \(B, 2, 3, 16, 16\), got \(4, 3, 3, 16, 16\)"),
        (lambda: model.encode(torch.zeros(4, 6, 16, 16)), r"obs must have shape .*got \(4, 6, 16, 16\)"),
        (lambda: model.next(torch.zeros(4, 10), a), r"z must have shape \(B, 12\), got \(4, 10\)"),
        (lambda: model.next(z, torch.zeros(3, 2)), r"a must have shape \(4, 2\), got \(3, 2\)"),
        (lambda: model.reward(z, torch.zeros(4, 3)), r"a must have shape \(4, 2\), got \(4, 3\)"),
        (lambda: model.jacobians(z, a, reward_index=3), r"reward_index must be in \[0, 3\).*got 3"),
        (lambda: model.jacobians(z, a, method="magic"), r"method must be one of"),
        (lambda: model.jacobians(z.double(), a.double()), r"z is torch.float64 .* parameters are torch.float32"),
        (lambda: model.linearize(torch.zeros(4, 2, 3, 16, 16), torch.zeros(5, 2)), r"a must have shape \(4, 2\), got \(5, 2\)"),
        (lambda: model.success_logit([1.0]), r"z must be a torch.Tensor"),
        (lambda: tiny(image_size=18), r"image_size \(18\) must be divisible by 2 \*\* len\(encoder_channels\) = 4"),
        (lambda: tiny(latent_norm="batchnorm"), r"latent_norm must be 'layernorm' or 'simnorm', got 'batchnorm'"),
        (lambda: tiny(latent_norm="simnorm", simnorm_dim=5), r"latent_dim \(12\) must be divisible by simnorm_dim \(5\)"),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
class ToyGlobalModel(torch.nn.Module):
    """A tiny stand-in with GlobalModel's ``step`` contract (random conv, seeded noise)."""

    def __init__(self, image_size=32, context=3, num_rewards=3):
        super().__init__()
        self.context, self.image_size, self.task = context, image_size, TaskSpec(image_size=image_size)
        self.conv = torch.nn.Conv2d(3 * context + 2, 3, 3, padding=1)
        self.head = torch.nn.Linear(3, num_rewards + 1)

    @property
    def device(self):
        return self.conv.weight.device

    def transition(self, obs, act, noise):
        B, K, C, H, W = obs.shape
        assert K == self.context and act.shape == (B, K, 2)
        x = torch.cat([obs.flatten(1, 2), act[:, -1, :, None, None].expand(B, 2, H, W)], 1)
        nxt = torch.tanh(obs[:, -1] + 0.1 * self.conv(x) + 0.01 * noise)
        out = self.head(nxt.mean((2, 3)))
        return nxt, out

    @torch.no_grad()
    def step(self, obs, act, generator=None, num_steps=None, noise=None):
        if noise is None:
            noise = torch.randn(obs[:, -1].shape, generator=generator)
        nxt, out = self.transition(obs, act, noise)
        p = torch.sigmoid(out[:, -1])
        return SimpleNamespace(next_obs=nxt, rew=out[:, :-1], success_prob=p, success=p > 0.5)


def tiny_args(tiny_dataset, out, **kw):
    from wm_gym.train_surrogate import TrainSurrogateArgs

    base = dict(data=str(tiny_dataset), out=str(out), context=2, latent_dim=16, encoder_channels="8,16",
                dynamics_hidden=32, reward_hidden=32, batch_size=8, horizon=3, val_fraction=0.34, eval_every=1000,
                eval_windows=16, threads=1, quiet=True, minutes=5.0, gm_horizon=6, gm_rollouts=4,
                gm_refresh_every=2, gm_buffer=8)
    base.update(kw)
    return TrainSurrogateArgs(**base)


def test_tiny_surrogate_fits_tiny_dataset(tiny_dataset):
    from wm_gym.data import load_split
    from wm_gym.train_surrogate import WindowBank, surrogate_loss

    torch.manual_seed(0)
    args = tiny_args(tiny_dataset, "unused", horizon=3, lr=3e-3, warmup_steps=1)
    meta, eps = load_split(tiny_dataset, "all")
    task = TaskSpec.from_dict(meta["task"])
    bank = WindowBank.from_episodes(eps, task, pad=1)
    model = Surrogate(image_size=32, context=2, latent_dim=16, encoder_channels=(8, 16), dynamics_hidden=32,
                      reward_hidden=32, task=task.to_dict())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    batch = bank.windows(*bank.sample_starts(24, args.horizon, rng), 2, args.horizon)
    losses = []
    for _ in range(80):
        loss, logs = surrogate_loss(model, batch, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs)
    first, last = losses[0], losses[-1]
    assert last["loss"] < 0.1 * first["loss"], (first, last)
    assert last["state"] < 0.05 * first["state"]
    assert last["reward"] < 0.1 * first["reward"]
    assert last["latent_std"] > 0.2  # no collapse


def test_train_is_deterministic_and_resumes(tiny_dataset, tmp_path):
    from wm_gym.train_surrogate import train

    logs1 = train(tiny_args(tiny_dataset, tmp_path / "a", steps=3))
    logs2 = train(tiny_args(tiny_dataset, tmp_path / "b", steps=3))
    assert logs1["loss"] == logs2["loss"]
    s1 = Surrogate.from_pretrained(tmp_path / "a" / "surrogate").state_dict()
    s2 = Surrogate.from_pretrained(tmp_path / "b" / "surrogate").state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    logs3 = train(tiny_args(tiny_dataset, tmp_path / "a", steps=5, resume=True))
    assert logs3["step"] == 5 and (tmp_path / "a" / "metrics.json").exists() and (tmp_path / "a" / "tb").is_dir()


def test_contact_windows_and_contact_fraction(tiny_dataset, tmp_path):
    from wm_gym.data import load_split
    from wm_gym.train_surrogate import WindowBank, train

    meta, eps = load_split(tiny_dataset, "all")
    bank = WindowBank.from_episodes(eps, TaskSpec.from_dict(meta["task"]), pad=1)
    H = 3
    item, t = bank.contact_starts(H)
    # exactly the windows that fit the episode and have contact at some step, by brute force
    expected = {(i, s) for i, ep in enumerate(eps) for s in range(len(ep["actions"]) - H + 1)
                if ep["contact"][s:s + H].any()}
    assert set(zip(item.tolist(), t.tolist())) == expected and expected  # the tiny episodes do touch the block
    assert len(bank.contact_starts(bank.steps + 1)[0]) == 0  # longer than any episode: no window, no error
    logs = train(tiny_args(tiny_dataset, tmp_path / "c", steps=3, contact_fraction=0.5))
    assert np.isfinite(logs["loss"])
    with pytest.raises(ValueError, match="contact_fraction"):
        train(tiny_args(tiny_dataset, tmp_path / "bad", steps=1, contact_fraction=1.5))
    no_contact = [{**ep, "contact": np.zeros_like(ep["contact"])} for ep in eps]
    assert len(WindowBank.from_episodes(no_contact, TaskSpec.from_dict(meta["task"]), pad=1).contact_starts(H)[0]) == 0


def test_train_mixes_global_model_rollouts(tiny_dataset, tmp_path):
    from wm_gym.train_surrogate import WindowBank, train

    seen = []
    gm = ToyGlobalModel(context=3)
    orig = WindowBank.add

    def spy(self, frames, act, rew, succ):
        seen.append((frames.shape, act.shape, rew.shape))
        orig(self, frames, act, rew, succ)

    WindowBank.add = spy
    try:
        logs = train(tiny_args(tiny_dataset, tmp_path / "gm", steps=4, gm_fraction=0.5), global_model=gm)
    finally:
        WindowBank.add = orig
    # refresh at steps 0 and 2; context padding = max(K=2, Kg=3) - 1 = 2 frames before each rollout
    assert len(seen) == 2 and seen[0] == ((4, 2 + 6 + 1, 3, 32, 32), (4, 2 + 6, 2), (4, 6, 3))  # 3 reward labels
    assert np.isfinite(logs["loss"])


def test_global_derivatives_equal_autograd_of_the_global_step():
    from wm_gym.train_surrogate import global_derivatives

    torch.manual_seed(0)
    gm = ToyGlobalModel(context=3).double()
    sur = Surrogate(image_size=32, context=2, latent_dim=8, encoder_channels=(8, 8), dynamics_hidden=16,
                    reward_hidden=16).double()
    obs = torch.rand(4, 3, 3, 32, 32, dtype=torch.float64) * 2 - 1
    act = torch.rand(4, 3, 2, dtype=torch.float64) * 2 - 1
    drda, dzda = global_derivatives(gm, sur, obs, act, 1e-5, torch.Generator().manual_seed(3))
    noise = torch.randn(obs[:, -1].shape, generator=torch.Generator().manual_seed(3)).double()  # the same draw

    def f(a_last):
        a = torch.cat([act[:, :-1], a_last[:, None]], 1)
        nxt, out = gm.transition(obs, a, noise)
        return out[:, :-1], sur.encode(torch.cat([obs[:, -1:], nxt[:, None]], 1))

    a0 = act[:, -1].clone().requires_grad_(True)
    rew, z = f(a0)
    ref_r = torch.stack([torch.stack([torch.autograd.grad(rew[:, k].sum(), a0, retain_graph=True)[0]
                                      for k in range(3)], -1)], 0)[0]  # (B, m, R)
    ref_z = torch.stack([torch.autograd.grad(z[:, i].sum(), a0, retain_graph=True)[0] for i in range(8)], 1)
    assert drda.shape == (4, 2, 3) and dzda.shape == (4, 8, 2)
    torch.testing.assert_close(drda, ref_r, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(dzda, ref_z, rtol=1e-5, atol=1e-8)


def test_derivative_matching_fits_the_global_derivatives():
    """Sobolev training: the surrogate's drda / dfda can be fitted to given targets (loss falls by 10x)."""
    from wm_gym.train_surrogate import derivative_loss

    torch.manual_seed(0)
    sur = Surrogate(image_size=32, context=2, latent_dim=8, encoder_channels=(8, 8), dynamics_hidden=32,
                    reward_hidden=32)
    torch.nn.init.normal_(sur.dynamics.out.weight, std=0.1)
    obs = torch.rand(16, 2, 3, 32, 32) * 2 - 1
    act = torch.rand(16, 2) * 2 - 1
    drda_ref, dzda_ref = torch.randn(16, 2, 3) * 0.3, torch.randn(16, 8, 2) * 0.3
    opt = torch.optim.Adam(sur.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        g_r, g_z = derivative_loss(sur, obs, act, drda_ref, dzda_ref)
        loss = g_r + g_z
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first, (first, float(loss.detach()))


def test_train_matches_global_derivatives(tiny_dataset, tmp_path):
    from wm_gym.train_surrogate import train

    gm = ToyGlobalModel(context=3)
    logs = train(tiny_args(tiny_dataset, tmp_path / "g", steps=3, gm_fraction=0.5, gradient_coef=1.0,
                           gradient_batch=4), global_model=gm)
    assert np.isfinite(logs["loss"]) and {"grad_cos_dense", "grad_rel_err_latent"} <= set(logs)
    # fine-tuning from a saved surrogate keeps its architecture
    logs2 = train(tiny_args(tiny_dataset, tmp_path / "g2", steps=2, gm_fraction=0.5, gradient_coef=1.0,
                            gradient_batch=4, init_from=str(tmp_path / "g" / "surrogate"), latent_dim=4),
                  global_model=gm)
    assert Surrogate.from_pretrained(tmp_path / "g2" / "surrogate").config.latent_dim == 16
    assert np.isfinite(logs2["loss"])
    # a surrogate that sees more frames (4) than the global model (3)
    logs3 = train(tiny_args(tiny_dataset, tmp_path / "g4", steps=2, gm_fraction=0.5, gradient_coef=1.0,
                            gradient_batch=4, context=4), global_model=gm)
    assert np.isfinite(logs3["loss"]) and np.isfinite(logs3["grad_cos_dense"])
    with pytest.raises(ValueError, match="--global-model"):
        train(tiny_args(tiny_dataset, tmp_path / "g3", steps=1, gradient_coef=1.0))


def test_cli_lists_and_runs_train_surrogate(tiny_dataset, tmp_path, capsys):
    from wm_gym.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train-surrogate" in capsys.readouterr().out
    main(["train-surrogate", "--data", str(tiny_dataset), "--out", str(tmp_path / "cli"), "--steps", "2",
          "--context", "2", "--latent-dim", "8", "--encoder-channels", "8,8", "--dynamics-hidden", "16",
          "--reward-hidden", "16", "--batch-size", "4", "--horizon", "2", "--eval-windows", "8",
          "--val-fraction", "0.34", "--threads", "1", "--quiet"])
    assert '"step": 2' in capsys.readouterr().out
    assert (tmp_path / "cli" / "surrogate" / "config.json").exists()
    with pytest.raises(SystemExit):
        main(["train-surrogate", "--out", str(tmp_path / "x")])
    assert "--data is required" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["jacobian_speed.py", "gradient_fidelity.py"])
def test_benchmarks_smoke(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--smoke", "--threads", "1"])
    runpy.run_path(str(REPO / "benchmarks" / script), run_name="__main__")
    expected = "| analytic |" if script == "jacobian_speed.py" else "FD reference vs autograd"
    assert expected in capsys.readouterr().out


def test_from_pretrained_refuses_weights_that_do_not_fit(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny().save_pretrained(tmp_path / "sur")
    f = tmp_path / "sur" / "diffusion_pytorch_model.safetensors"
    state = load_file(f)
    state["encoder.renamed.weight"] = state.pop("encoder.proj.weight")
    save_file(state, f)
    with pytest.raises(ValueError, match=r"do not fit .*missing_keys: \['encoder.proj.weight'\]"):
        Surrogate.from_pretrained(tmp_path / "sur")


def test_gradient_fidelity_against_the_real_simulator_runs(tiny_dataset, tmp_path, monkeypatch, capsys):
    tiny(image_size=32).save_pretrained(tmp_path / "sur")
    monkeypatch.setattr(sys, "argv", ["gradient_fidelity.py", "--surrogate", str(tmp_path / "sur"), "--data",
                                      str(tiny_dataset), "--truth", "--starts", "2", "--horizons", "1,2",
                                      "--val-fraction", "0.5", "--threads", "1"])
    runpy.run_path(str(REPO / "benchmarks" / "gradient_fidelity.py"), run_name="__main__")
    assert "| truth | dense | 2 | fog |" in capsys.readouterr().out


def test_state_from_features_inverts_state_features():
    from wm_gym.pusht import TaskSpec
    from wm_gym.train_surrogate import state_features, state_from_features

    task = TaskSpec()
    states = np.array([[10.0, 500.0, 256.0, 30.0, 3.0], [256.0, 0.0, 400.0, 100.0, -1.2]])
    assert np.allclose(state_from_features(state_features(states, task), task), states, atol=1e-3)
    with pytest.raises(ValueError, match="Push-T"):
        state_from_features(np.zeros((1, 6)), dataclasses.replace(task, name="cube"))
