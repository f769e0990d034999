"""Seeded random tensors that are the same bits on every machine (stand-in and test weights).

`torch.randn` with a seeded generator is not portable: its vectorised Box-Muller path differs in
the last bits between CPU kernel levels (`ATEN_CPU_CAPABILITY=default` vs `avx2`), so weights
drawn from it, and every golden number computed with them, depend on the machine. numpy's PCG64
bit generator and its float64 transforms are specified independently of the CPU, so weights drawn
here and cast to float32 are byte-identical everywhere; this is the only place seeded weights
come from (random DiffiT weights, the tiny VAE, the stand-in Inception network).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = ["rng", "normal", "uniform", "init_like_torch_"]


def rng(seed: int, *stream: int) -> np.random.Generator:
    """A PCG64 generator for `seed`; `stream` keys independent sub-streams (e.g. one per tensor)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, stream)])))


def normal(gen: np.random.Generator, shape: Sequence[int], std: float = 1.0) -> torch.Tensor:
    """float32 N(0, std^2) drawn in float64 and rounded once (the rounding is the same everywhere)."""
    return torch.from_numpy((gen.standard_normal(tuple(shape)) * std).astype(np.float32))


def uniform(gen: np.random.Generator, shape: Sequence[int], bound: float) -> torch.Tensor:
    """float32 U(-bound, bound): 53 random bits per value, one multiply, one rounding."""
    return torch.from_numpy(((gen.random(tuple(shape)) * 2 - 1) * bound).astype(np.float32))


@torch.no_grad()
def init_like_torch_(module: nn.Module, seed: int) -> nn.Module:
    """Re-draw every Conv/Linear weight and bias with torch's default bounds, from PCG64.

    torch's default init of `nn.Linear` and `nn.ConvNd` is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
    the weight (kaiming_uniform with a = sqrt(5)) and for the bias; normalisation layers start at
    ones and zeros, which are already the same everywhere. Layers are visited in `named_modules`
    order, so the result depends on the seed and the architecture only.
    """
    gen = rng(seed)
    for _, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if not isinstance(m, nn.ConvTranspose2d) else m.weight[:, 0].numel()
            bound = 1.0 / fan_in**0.5
            m.weight.copy_(uniform(gen, m.weight.shape, bound))
            if m.bias is not None:
                m.bias.copy_(uniform(gen, m.bias.shape, bound))
    return module
