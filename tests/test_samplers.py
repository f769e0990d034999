"""Samplers, schedules, guidance helper, per-sample randomness, VAE decoding and uint8 quantisation.

The reference values here are computed independently from docs/PROTOCOL.md, "Samplers", in NumPy, or in
closed form for Gaussian data, where the optimal denoiser and the exact sampling maps are known.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from diffit.ddpm import RespacedSchedule, ddim_sampler, ddpm_sampler, space_timesteps
from diffit.edm import EDMPrecond, edm_loss, edm_sampler, edm_sigma_steps
from diffit.guidance import cfg_scale_at, guided_ddpm_sample
from diffit.quantize import to_uint8
from diffit.random import StackedRandomGenerator
from diffit.vae import LATENT_SCALE, decode_latents

from diffit_eval.assets.vae import load_or_fetch_vae


@pytest.fixture(autouse=True)
def one_thread():
    # The tensors here are small: OpenMP threads only add overhead, badly so on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------
# Independent NumPy schedule (docs/PROTOCOL.md, "DDPM").


def spec_alphas_cumprod() -> np.ndarray:
    return np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))


def spec_respaced(num_steps: int) -> dict[str, np.ndarray]:
    idx = np.array([round(k * 999 / (num_steps - 1)) for k in range(num_steps)])
    abar = spec_alphas_cumprod()[idx]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    beta = 1 - abar / abar_prev
    post_var = beta * (1 - abar_prev) / (1 - abar)
    return dict(
        idx=idx,
        abar=abar,
        abar_prev=abar_prev,
        beta=beta,
        post_var=post_var,
        coef1=beta * np.sqrt(abar_prev) / (1 - abar),
        coef2=(1 - abar_prev) * np.sqrt(1 - beta) / (1 - abar),
    )


# Gaussian data: per-dimension mean and standard deviation.
DIMS, COUNT = 16, 4000
MU = torch.linspace(-0.5, 0.5, DIMS, dtype=torch.float64)
STD = torch.linspace(0.3, 0.9, DIMS, dtype=torch.float64)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, class_labels=None) -> torch.Tensor:
    """Exact D(x; sigma) = E[x0 | x0 + sigma n = x] for x0 ~ N(MU, STD^2)."""
    return MU + STD**2 / (STD**2 + sigma**2) * (x - MU)


def gaussian_eps_model(variance: str):
    """Exact eps(x_t, t) for the Gaussian data, with v = -1 (posterior variance) or the exact reverse variance."""
    abar_all = torch.from_numpy(spec_alphas_cumprod())

    def model(x, t, **kwargs):
        assert t.dtype == torch.int64 and t.shape == (x.shape[0],)
        a = abar_all[t].reshape(-1, 1)
        denom = a * STD**2 + 1 - a
        eps = torch.sqrt(1 - a) * (x - torch.sqrt(a) * MU) / denom
        if variance == "posterior":
            v = -torch.ones_like(x)
        else:
            # p(x_{k-1} | x_k) is exactly Gaussian with variance posterior + coef1^2 Var(x0 | x_k); express it as v.
            s = model.schedule
            k = torch.from_numpy(np.searchsorted(s["idx"], t.numpy()))
            var_x0 = STD**2 * (1 - a) / denom
            var = torch.from_numpy(s["post_var"])[k, None] + torch.from_numpy(s["coef1"])[k, None] ** 2 * var_x0
            lo = torch.from_numpy(np.log(np.append(s["post_var"][1], s["post_var"][1:])))[k, None]
            hi = torch.from_numpy(np.log(s["beta"]))[k, None]
            v = 2 * (var.log() - lo) / (hi - lo) - 1
        return torch.cat([eps, v.expand_as(x)], dim=1)

    return model


def moments_close(samples: torch.Tensor) -> tuple[float, float]:
    """Largest mean error in units of STD and largest relative std error."""
    mean_err = ((samples.mean(0) - MU).abs() / STD).max().item()
    std_err = ((samples.std(0) / STD) - 1).abs().max().item()
    return mean_err, std_err


# ----------------------------------------------------------------------------
# 1. EDM closed form.


def test_edm_matches_exact_ode_solution_for_gaussian_data():
    noise = torch.randn(COUNT, DIMS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # PF-ODE for Gaussian data: x(s) - mu is proportional to sqrt(std^2 + s^2).
    exact = MU + STD / torch.sqrt(STD**2 + 80.0**2) * (noise * 80 - MU)
    errors = []
    for steps in (5, 10, 18, 40):
        out = edm_sampler(gaussian_denoiser, noise, num_steps=steps)
        assert out.dtype == torch.float64 and out.shape == noise.shape
        errors.append((out - exact).abs().max().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # Second order: going from 18 to 40 steps (2.2x) cuts the error by about 2.2^2.
    assert errors[2] / errors[3] > 4 and errors[3] < 0.05, errors

    # The exact map reproduces the data moments (up to sampling error), and 40 steps reproduce the map's.
    mean_err, std_err = moments_close(exact)
    assert mean_err < 5 / math.sqrt(COUNT) and std_err < 0.06, (mean_err, std_err)
    out = edm_sampler(gaussian_denoiser, noise, num_steps=40)
    assert ((out.mean(0) - exact.mean(0)).abs() / STD).max() < 0.01
    assert ((out.std(0) / exact.std(0)) - 1).abs().max() < 0.015


def test_edm_precond_formulas_and_dtypes():
    seen = {}

    def F(x, noise_labels):
        seen["x"], seen["labels"] = x, noise_labels
        return torch.tanh(x)

    D = EDMPrecond(F, sigma_data=0.5)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    s = 1.7
    out = D(x, torch.tensor(s, dtype=torch.float64))
    assert out.dtype == torch.float32
    c_skip = 0.25 / (s**2 + 0.25)
    c_out = s * 0.5 / math.sqrt(s**2 + 0.25)
    c_in = 1 / math.sqrt(s**2 + 0.25)
    expected = c_skip * x + c_out * torch.tanh(c_in * x)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    assert seen["x"].dtype == torch.float32
    torch.testing.assert_close(seen["labels"], torch.full((3,), math.log(s) / 4))
    # Per-sample sigmas are accepted too.
    sig = torch.tensor([0.1, 1.0, 10.0])
    out = D(x.float(), sig)
    torch.testing.assert_close(seen["labels"], sig.log() / 4)


def test_edm_loss_weight():
    images = torch.randn(4, 3, 8, 8)
    # With all draws 0: sigma = exp(-1.2), no noise; a zero denoiser leaves weight * y^2.
    loss = edm_loss(lambda x, s, c: torch.zeros_like(x), images, randn_like=torch.zeros_like)
    s = math.exp(-1.2)
    weight = (s**2 + 0.25) / (s * 0.5) ** 2
    torch.testing.assert_close(loss, weight * images**2)
    assert edm_loss(lambda x, s, c: images, images).abs().max() == 0


# ----------------------------------------------------------------------------
# 2. DDPM closed form.


def test_ddpm_exact_reverse_variance_reproduces_data():
    # Each reverse step is then the exact conditional, so samples follow the data distribution exactly.
    count = 3 * COUNT
    noise = torch.randn(count, DIMS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = gaussian_eps_model("exact")
    model.schedule = spec_respaced(250)
    gen = torch.Generator().manual_seed(2)
    out = ddpm_sampler(
        model, noise, num_steps=250, randn_like=lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype)
    )
    mean_err, std_err = moments_close(out)
    assert mean_err < 5 / math.sqrt(count) and std_err < 0.035, (mean_err, std_err)


def test_ddpm_posterior_variance_250_and_1000_agree():
    noise = torch.randn(COUNT, DIMS, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = gaussian_eps_model("posterior")
    results = {}
    for steps in (250, 1000):
        gen = torch.Generator().manual_seed(4)
        out = ddpm_sampler(
            model, noise, num_steps=steps, randn_like=lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype)
        )
        results[steps] = moments_close(out)
        assert results[steps][0] < 5 / math.sqrt(COUNT) and results[steps][1] < 0.07, results
        results[steps] = (out.mean(0), out.std(0))
    assert ((results[250][0] - results[1000][0]).abs() / STD).max() < 5 / math.sqrt(COUNT)
    assert ((results[250][1] / results[1000][1]) - 1).abs().max() < 0.05


def test_ddim_converges_to_exact_ode_map():
    noise = torch.randn(COUNT, DIMS, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    model = gaussian_eps_model("posterior")
    abar = spec_alphas_cumprod()
    a_T, a_0 = abar[999], abar[0]
    s_T2, s_02 = 1 / a_T - 1, 1 / a_0 - 1  # EDM sigma^2 at t = 999 and t = 0
    # In y = x / sqrt(abar) the ODE is EDM's; DDIM's last step returns the x0 prediction at t = 0.
    exact = MU + STD**2 / (torch.sqrt(STD**2 + s_02) * torch.sqrt(STD**2 + s_T2)) * (noise / math.sqrt(a_T) - MU)
    errors = [(ddim_sampler(model, noise, num_steps=n) - exact).abs().max().item() for n in (50, 250, 1000)]
    assert errors[0] > errors[1] > errors[2] and errors[1] < 0.05, errors


# ----------------------------------------------------------------------------
# 3. Schedule facts.


def test_respaced_schedule_against_spec():
    ref = spec_respaced(250)
    s = RespacedSchedule(250)
    assert len(s.timesteps) == 250 and s.timesteps[0] == 0 and s.timesteps[-1] == 999
    np.testing.assert_array_equal(s.timesteps, ref["idx"])
    assert np.all(np.diff(s.timesteps) > 0) and set(np.diff(s.timesteps)) == {4, 5}
    assert space_timesteps(1000, 1000) == list(range(1000))
    np.testing.assert_allclose(s.betas, ref["beta"], rtol=1e-12)
    np.testing.assert_allclose(s.alphas_cumprod, ref["abar"], rtol=1e-12)
    np.testing.assert_allclose(s.posterior_variance, ref["post_var"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(s.posterior_mean_coef1, ref["coef1"], rtol=1e-9)
    np.testing.assert_allclose(s.posterior_mean_coef2, ref["coef2"], rtol=1e-9)
    np.testing.assert_allclose(s.sqrt_recip_alphas_cumprod, 1 / np.sqrt(ref["abar"]), rtol=1e-12)
    np.testing.assert_allclose(s.sqrt_recipm1_alphas_cumprod, np.sqrt(1 / ref["abar"] - 1), rtol=1e-9)
    # Posterior variance is 0 at k = 0; its log is clipped there by the k = 1 value.
    assert s.posterior_variance[0] == 0
    assert s.posterior_log_variance_clipped[0] == pytest.approx(np.log(ref["post_var"][1]), rel=1e-12)
    np.testing.assert_allclose(s.posterior_log_variance_clipped[1:], np.log(ref["post_var"][1:]), rtol=1e-9)
    # Without respacing the schedule is the original linear one.
    np.testing.assert_allclose(RespacedSchedule(1000).betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-9)


def test_edm_sigma_steps():
    t = edm_sigma_steps(18, 0.002, 80, 7)
    assert t.dtype == torch.float64 and len(t) == 19
    assert (
        t[0].item() == pytest.approx(80, rel=1e-12) and t[17].item() == pytest.approx(0.002, rel=1e-12) and t[18] == 0
    )
    i = np.arange(18)
    ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(t[:-1].numpy(), ref, rtol=1e-12)


def test_cfg_scale_ramp():
    assert cfg_scale_at(0, 4.4) == pytest.approx(4.4, rel=1e-12)
    assert cfg_scale_at(1000, 4.4) == pytest.approx(1.0)
    assert cfg_scale_at(500, 4.4) == pytest.approx(1 + 3.4 * (1 - math.cos(math.pi * 0.5**4)) / 2)
    assert cfg_scale_at(500, 1.49, ramp=False) == 1.49
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(cfg_scale_at(t, 4.4), torch.tensor([cfg_scale_at(int(v), 4.4) for v in t]))


# ----------------------------------------------------------------------------
# 4. Model-call counts.


def test_model_call_counts():
    calls = []

    def D(x, sigma, class_labels=None):
        calls.append(float(sigma))
        return torch.zeros_like(x)

    for n in (2, 18, 40):
        calls.clear()
        edm_sampler(D, torch.randn(2, 3), num_steps=n)
        assert len(calls) == 2 * n - 1

    def eps_model(x, t, **kw):
        calls.append(t[0].item())
        return torch.zeros(x.shape[0], 2 * x.shape[1])

    for sampler in (ddpm_sampler, ddim_sampler):
        calls.clear()
        sampler(eps_model, torch.randn(2, 3), num_steps=250)
        assert len(calls) == 250 and calls[0] == 999 and calls[-1] == 0


# ----------------------------------------------------------------------------
# 5. Per-sample determinism.


class ToyNet(torch.nn.Module):
    """A tiny per-sample conv net: time and class enter as per-sample biases."""

    def __init__(self, out_channels: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(4, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, out_channels, 3, padding=1)
        self.emb = torch.nn.Embedding(1001, 16)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.guided_inputs = []

    def forward(self, x, t, y=None):
        h = self.conv1(x.float()) + torch.sin(t.float() / 100)[:, None, None, None]
        if y is not None:
            h = h + self.emb(y)[:, :, None, None]
        return torch.tanh(self.conv2(torch.nn.functional.silu(h))).to(x.dtype)

    def forward_with_cfg(self, x, t, y, cfg_scale):
        # DiT's layout: guide the first 3 channels from the first half, return both halves.
        self.guided_inputs.append(x)
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half]), t, y)
        eps, rest = out[:, :3], out[:, 3:]
        cond, uncond = torch.split(eps, len(eps) // 2)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)


def run_seeds(seeds, sample):
    gen = StackedRandomGenerator("cpu", seeds)
    labels = gen.randint(0, 1000, size=[len(seeds)])
    noise = gen.randn([len(seeds), 4, 8, 8])
    return sample(noise, labels, gen.randn_like)


@pytest.mark.parametrize("kind", ["edm", "ddpm", "ddim", "guided"])
def test_per_sample_determinism(kind):
    net = ToyNet()
    if kind == "edm":
        D = EDMPrecond(ToyNet(out_channels=4))
        sample = lambda z, y, rl: edm_sampler(D, z, randn_like=rl, num_steps=6, S_churn=20)
    elif kind == "ddpm":
        sample = lambda z, y, rl: ddpm_sampler(net, z, num_steps=20, model_kwargs={"y": y}, randn_like=rl)
    elif kind == "ddim":
        sample = lambda z, y, rl: ddim_sampler(net, z, num_steps=20, model_kwargs={"y": y}, randn_like=rl, eta=1.0)
    else:
        sample = lambda z, y, rl: guided_ddpm_sample(net, z, y, cfg_scale=3.0, num_steps=20, randn_like=rl)
    full = run_seeds(range(6), sample)
    part = run_seeds([4, 1], sample)
    single = run_seeds([5], sample)
    tol = dict(rtol=1e-4, atol=1e-3)  # float32 convs may differ in the last bits across batch sizes
    torch.testing.assert_close(part, full[[4, 1]], **tol)
    torch.testing.assert_close(single, full[[5]], **tol)
    # The per-step noise matters, so equality above is not trivial.
    other = run_seeds([7, 1], sample)
    assert (other[0] - part[0]).abs().max() > 1e-2
    if kind == "guided":
        assert full.shape == (6, 4, 8, 8)
        # The model sees the doubled batch; the caller's randn_like only ever draws for the real half.
        assert {len(x) for x in net.guided_inputs} == {12, 4, 2}
        shapes = []
        gen = StackedRandomGenerator("cpu", range(6))
        record = lambda x: (shapes.append(x.shape[0]), gen.randn_like(x))[1]
        guided_ddpm_sample(
            net, gen.randn([6, 4, 8, 8]), torch.arange(6), cfg_scale=3.0, num_steps=20, randn_like=record
        )
        assert shapes == [6] * 20
        unguided = run_seeds(
            range(6), lambda z, y, rl: guided_ddpm_sample(net, z, y, cfg_scale=1.0, num_steps=20, randn_like=rl)
        )
        assert (unguided - full).abs().max() > 1e-2


# ----------------------------------------------------------------------------
# 6. VAE decoding.


def test_decode_latents_tiny_vae():
    vae = load_or_fetch_vae("tiny")
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = []
    decode = vae.decode
    vae.decode = lambda latents, *a, **k: (seen.append(latents), decode(latents, *a, **k))[1]
    img = decode_latents(vae, z)
    assert img.shape == (2, 3, 32, 32) and img.dtype == torch.float32 and torch.isfinite(img).all()
    assert len(seen) == 1 and torch.equal(seen[0], z / LATENT_SCALE)
    u8 = to_uint8(img)
    assert u8.shape == (2, 32, 32, 3) and u8.dtype == torch.uint8
    # Same weights in bfloat16: float32 output, close to the float32 decode.
    img16 = decode_latents(load_or_fetch_vae("tiny", dtype=torch.bfloat16), z)
    assert img16.dtype == torch.float32 and (img16 - img).abs().max() < 0.1


def test_load_vae_from_local_folder(tmp_path):
    load_or_fetch_vae("tiny").save_pretrained(tmp_path / "vae")
    vae = load_or_fetch_vae(str(tmp_path / "vae"))
    z = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(decode_latents(vae, z), decode_latents(load_or_fetch_vae("tiny"), z))


@pytest.mark.filterwarnings("ignore::UserWarning")  # huggingface_hub deprecation noise
def test_load_vae_offline_fails_fast(monkeypatch, tmp_path):
    from diffit.errors import AssetUnavailableError
    from diffit.vae import load_local_vae

    from diffit_eval.errors import MissingAssetError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(MissingAssetError) as info:
        load_or_fetch_vae("diffit-eval-test/no-such-vae", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "\n" not in message and "--vae" in message and "diffit-eval-test/no-such-vae" in message
    # diffit alone never goes online: an uncached repo is AssetUnavailableError with the URL and the flag.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(AssetUnavailableError) as info:
        load_local_vae("diffit-eval-test/no-such-vae", cache_dir=str(tmp_path))
    assert info.value.url == "https://huggingface.co/diffit-eval-test/no-such-vae"
    assert info.value.alternative == "--vae PATH" and "\n" not in str(info.value)


# ----------------------------------------------------------------------------
# 7. uint8 quantisation.


def test_to_uint8_rules():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 10.6 / 127.5 - 1, 1.0, 1.2])
    img = x.reshape(1, 1, 1, -1).expand(1, 3, 1, -1)
    truncate = to_uint8(img, "truncate")
    rounded = to_uint8(img, "round")
    assert truncate.shape == (1, 1, 8, 3) and truncate.dtype == torch.uint8
    assert truncate[0, 0, :, 0].tolist() == [0, 0, 0, 127, 191, 10, 255, 255]
    assert rounded[0, 0, :, 0].tolist() == [0, 0, 0, 128, 191, 11, 255, 255]
    # NCHW -> NHWC keeps each channel in place.
    rgb = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    assert to_uint8(rgb, "truncate")[0, 0, 0].tolist() == [0, 127, 255]
    with pytest.raises(ValueError):
        to_uint8(img, "nearest")
