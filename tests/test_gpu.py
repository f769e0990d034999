"""GPU agreement with the CPU, run where CUDA is present (benchmarks/gpu_suite.sh); skipped elsewhere.

- precision/recall: ADM's float16 products accumulated in float32 (docs/METRICS.md), so the CUDA
  indicators equal the CPU ones;
- the bootstrap's FID replicate (float64 eigenvalue route) on CUDA equals the CPU one to 1e-9;
- the EDM sampler on a seeded random cifar10-tiny, fp32 without TF32, agrees with the CPU to 1e-4
  relative (kernels differ; the seeded noise comes from the same per-sample generators);
- the DINOv2 stand-in's features agree to 1e-4.
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
