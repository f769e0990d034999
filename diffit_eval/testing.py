"""Evaluation-side stand-ins: a seeded random InceptionV3 for tests, the demo and the golden suite.

Whatever these produce is labelled STAND-IN (:data:`diffit_eval.features.network.STANDIN_LABEL`), never
InceptionV3: a network with random weights measures nothing about image quality, it only lets
the whole evaluation path run offline, byte for byte the same on every CPU. The model-side
stand-ins (random DiffiT weights, the tiny VAE) are in :mod:`diffit.testing`.

Only code that is about stand-ins imports this module: the test suite, the benchmarks and the
golden regression suite (:mod:`diffit_eval.report.golden`); library code that measures never does
(an import contract). diffit's stand-ins reach diffit_eval through :mod:`diffit_eval.standins`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from diffit_eval.assets.nvidia_inception import bare_layout

__all__ = ["STANDIN_GRID_BITS", "STANDIN_LOGIT_STD", "STANDIN_PROBE_IMAGES", "make_standin_weights"]


# The stand-in's recipe. Every number it computes from data is rounded to a grid this many bits
# finer than the number's own scale: float64 results differ between CPUs in the last ~10 of 53 bits,
# so after rounding the weights are the same bytes on any machine (a flip needs a value within
# ~1e-13 of a grid edge).
STANDIN_GRID_BITS = 12
STANDIN_PROBE_IMAGES = 4
STANDIN_LOGIT_STD = 2.0  # between-image spread of the logits on the probe, per class


def make_standin_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write an InceptionV3 state_dict with seeded random weights, for tests and offline demos.

    The same seed gives the same file bytes on any CPU and any `ATEN_CPU_CAPABILITY`:

    1. Conv weights are Kaiming-uniform (fan-in, ReLU gain, so activations keep their scale
       through 94 layers; torch's default init makes pool_3 vanish), fc weights U(+-sqrt(3/2048))
       and biases U(+-0.1 sqrt 3), all from numpy's PCG64 (:mod:`diffit.seeded`), rounded once to
       float32.
    2. A random ReLU net this deep maps every image to nearly one direction (IS ~1.0). So the
       BatchNorm running statistics are set from one float64 forward of a few seeded synthetic
       images, and the fc rows are made orthogonal to the probe's mean pool_3 feature and scaled
       so the logits spread by `STANDIN_LOGIT_STD` between images (see :func:`_calibrate_standin`).
       Features then differ between images and IS is informative.
    3. Every data-dependent number of step 2 is rounded to a grid `STANDIN_GRID_BITS` finer than
       its scale (:func:`_on_grid`), which removes the last-bit differences between kernel paths.

    Whatever it produces is labelled a stand-in, never InceptionV3.
    """
    from diffit import seeded

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = bare_layout(path.parent).double()
    net.feature_extractor_internal_dtype = torch.float64  # the forward casts its input to this
    gen = seeded.rng(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                bound = (3 * 2.0 / m.weight[0].numel()) ** 0.5  # U(-b, b) has variance b^2 / 3
                m.weight.copy_(seeded.uniform(gen, m.weight.shape, bound).double())
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(seeded.uniform(gen, m.weight.shape, (3 / m.in_features) ** 0.5).double())
                m.bias.copy_(seeded.uniform(gen, m.bias.shape, 0.1 * 3**0.5).double())
        _calibrate_standin(net, seed)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    from diffit_eval.assets.cache import atomic_path

    # Through a buffer: torch.save names its zip records after the file, and the temporary
    # file's name is random, so saving to it directly would change the bytes run to run.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def _on_grid(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """`x` rounded to multiples of 2^(floor(log2 scale) - STANDIN_GRID_BITS) (per element of `scale`).

    Exact arithmetic only: frexp reads the exponent, and dividing by, rounding to and multiplying
    by a power of two are exact, so the grid itself never depends on the machine.
    """
    _, exponent = np.frexp(np.maximum(np.asarray(torch.as_tensor(scale, dtype=torch.float64)), 1e-30))
    q = np.ldexp(1.0, exponent - 1 - STANDIN_GRID_BITS)
    return torch.from_numpy(np.asarray(np.round(x.double().numpy() / q) * q))


def _probe_images(seed: int) -> torch.Tensor:
    """STANDIN_PROBE_IMAGES smooth-ish uint8 64x64 images from PCG64: 5x5 blocks plus noise."""
    from diffit import seeded

    gen = seeded.rng(seed, 1)
    lo = gen.integers(0, 256, size=(STANDIN_PROBE_IMAGES, 3, 5, 5)).astype(np.float64)
    up = np.repeat(np.repeat(lo, 13, axis=2), 13, axis=3)[:, :, :64, :64]
    probe = np.clip(np.round(up + gen.standard_normal(up.shape) * 16), 0, 255).astype(np.uint8)
    return torch.from_numpy(probe)


def _calibrate_standin(net: torch.nn.Module, seed: int) -> None:
    """Data-dependent init on a seeded probe batch, in float64, every result put on a grid."""
    probe = _probe_images(seed)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch the running stats are that batch's
    net.train()
    try:
        net(probe)  # features_list is ["2048"]
    finally:
        net.eval()
        for m in bns:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
    for m in bns:
        # The variance on its own scale; the mean on the grid of its channel's std, since a mean
        # near zero has no scale of its own.
        var = _on_grid(m.running_var, m.running_var)
        m.running_var.copy_(var)
        m.running_mean.copy_(_on_grid(m.running_mean, var.sqrt()))
    (pool,) = net(probe)
    pool = pool.double()  # torch-fidelity returns float32 features
    mu = _on_grid(pool.mean(0), pool.mean(0).abs().max())
    w = net.fc.weight
    # Project the common direction out of every fc row: w -= c mu^T, with c on a grid, so the
    # float64 products below are the same on every machine (elementwise, correctly rounded).
    c = (w @ mu) / mu.dot(mu)
    w -= torch.outer(_on_grid(c, c.abs().max()), mu)
    w.copy_(w.float().double())
    spread = (pool @ w.T).std(0).mean()
    w *= _on_grid(STANDIN_LOGIT_STD / spread, STANDIN_LOGIT_STD / spread)


def make_dinov2_standin_weights(
    path: str | os.PathLike, seed: int = 0, *, dim: int = 32, depth: int = 2, patch: int = 14, grid: int = 37
) -> Path:
    """A seeded random DINOv2-layout state_dict (the official key names, tiny sizes), for tests.

    Every tensor is drawn from numpy's PCG64 (:mod:`diffit.seeded`) in `named_parameters` order:
    linear and patch weights N(0, 1 / fan_in) (so features vary between images; DINOv2's own init
    is std 0.02), biases 0, LayerNorm 1 / 0, LayerScale gammas 1, tokens and position embeddings
    N(0, 0.02^2). The file
    carries :data:`~diffit_eval.features.dinov2.STANDIN_MARKER`, so everything computed with it is
    labelled STAND-IN. `grid` 37 is the real checkpoint's 518 / 14 grid, so the stand-in also
    exercises the position-embedding resampling to 224 / 14 = 16.
    """
    from diffit import seeded

    from diffit_eval.assets.cache import atomic_path
    from diffit_eval.features.dinov2 import STANDIN_MARKER, DinoViT

    net = DinoViT(dim, depth, patch, grid, 4 * dim)
    gen = seeded.rng(seed, 2)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".bias") or name.startswith("norm") or ".norm" in name:
                continue  # biases 0, LayerNorm weights 1 (as constructed)
            if name.endswith("gamma"):
                continue
            fan_in = p[0].numel() if p.dim() > 1 and "token" not in name and "pos_embed" not in name else 0
            p.copy_(seeded.normal(gen, p.shape, fan_in**-0.5 if fan_in else 0.02))
    state = {k: v.float() for k, v in net.state_dict().items()}
    state[STANDIN_MARKER] = torch.tensor(True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path
