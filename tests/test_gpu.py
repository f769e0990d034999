"""GPU agreement with the CPU, run where CUDA is present (benchmarks/gpu_suite.sh); skipped elsewhere.

- precision/recall: ADM's float16 products accumulated in float32 (docs/METRICS.md), so the CUDA
  indicators equal the CPU ones;
- the bootstrap's FID replicate (float64 eigenvalue route) on CUDA equals the CPU one to 1e-9;
- the EDM sampler on a seeded random cifar10-tiny, fp32 without TF32, agrees with the CPU to 1e-4
  relative (kernels differ; the seeded noise comes from the same per-sample generators);
- the DINOv2 stand-in's features agree to 1e-4;
- the prepared Inception (folded, channels-last, no TF32 even inside a TF32 region) agrees to 1e-4 of scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_precision_recall_indicators_are_the_same_on_cuda():
    from diffit_eval.metrics.prc import membership

    rng = np.random.default_rng(0)
    ref, samples = rng.normal(size=(300, 64)).astype(np.float32), rng.normal(size=(200, 64)).astype(np.float32)
    cpu, gpu = membership(ref, samples, device="cpu"), membership(ref, samples, device="cuda")
    assert (cpu.precision, cpu.recall) == (gpu.precision, gpu.recall)
    np.testing.assert_array_equal(np.asarray(cpu.sample_in), np.asarray(gpu.sample_in))


def test_bootstrap_fid_replicate_is_the_same_on_cuda():
    from diffit_eval.metrics.bootstrap import FrechetToReference

    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 32))
    mu, sigma = np.zeros(32), np.eye(32) * 1.5
    counts = np.bincount(rng.integers(0, 500, size=500), minlength=500)
    cpu = FrechetToReference(x, mu, sigma, device="cpu").value(counts)
    gpu = FrechetToReference(x, mu, sigma, device="cuda").value(counts)
    assert abs(cpu - gpu) <= 1e-9 * max(1.0, abs(cpu))


def test_edm_sampler_agrees_with_the_cpu():
    from diffit.edm import EDMPrecond, edm_sampler
    from diffit.presets import create_model
    from diffit.random import StackedRandomGenerator
    from diffit.testing import randomize_weights

    from diffit_eval.generate.sample import matmul_precision

    # The same initial noise on both (a CUDA generator draws another stream); S_churn = 0 draws no more.
    noise = StackedRandomGenerator("cpu", [0, 1, 2, 3]).randn([4, 3, 32, 32])
    outs = []
    for device in ("cpu", "cuda"):
        net = randomize_weights(create_model("cifar10-tiny"), seed=0).eval().to(device)
        with torch.no_grad(), matmul_precision("fp32"):
            x = edm_sampler(EDMPrecond(net), noise.to(device), num_steps=4)
        outs.append(x.double().cpu())
    scale = outs[0].abs().max()
    assert (outs[0] - outs[1]).abs().max() <= 1e-4 * scale


def test_dinov2_standin_features_agree_with_the_cpu(tmp_path):
    from diffit_eval.features.dinov2 import DINOv2Features
    from diffit_eval.generate.sample import matmul_precision
    from diffit_eval.testing import make_dinov2_standin_weights

    w = make_dinov2_standin_weights(tmp_path / "d.pth", dim=32)
    images = np.random.default_rng(2).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    with matmul_precision("fp32"):  # no TF32 in the patch-embedding convolution
        cpu = DINOv2Features(w)(images).double()
        gpu = DINOv2Features(w).to("cuda")(images).double().cpu()
    assert (cpu - gpu).abs().max() <= 1e-4 * max(1.0, float(cpu.abs().max()))


def test_inception_features_on_cuda_are_full_fp32_and_agree_with_the_cpu(standin_weights):
    """The prepared Inception (folded, channels-last) on CUDA, with TF32 switched on around it as
    the sampler's `tf32` precision does: full fp32 inside (docs/PROTOCOL.md), so its pool_3 is as
    close to a float64 forward as the CPU's (TF32 would be ~100x further off)."""
    from helpers import torch_fidelity_pool

    from diffit_eval.features.extract import batch_features
    from diffit_eval.features.network import InceptionFeatures

    images = np.random.default_rng(2).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    exact = torch_fidelity_pool(standin_weights, images, torch.float64, device="cuda").double()
    cpu = batch_features(InceptionFeatures(standin_weights), images).pool.double()
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        gpu = batch_features(InceptionFeatures(standin_weights).to("cuda"), images).pool.cpu().double()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    def error(x):
        return float((x - exact).abs().max() / exact.abs().max())

    assert error(gpu) <= 2 * error(cpu) + 1e-6, (error(gpu), error(cpu))
