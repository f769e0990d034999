"""Model-side stand-ins: random DiffiT weights and a tiny random VAE, always labelled STAND-IN.

Tests, the demo, benchmarks and the golden suite use these where real weights would be; a
network here measures nothing. The draws come from numpy's PCG64 (:mod:`diffit.seeded`), so a
seed gives the same bytes on every CPU. Library code never imports this module to do its work;
a user who asks for a stand-in by name (`--ckpt random`, `--vae tiny`) gets it from here, through
`diffit_eval/standins.py`, the one module of diffit_eval that imports it (an import contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from diffit import seeded

if TYPE_CHECKING:  # diffusers is imported lazily: importing it takes seconds.
    from diffusers import AutoencoderKL

__all__ = ["STANDIN", "randomize_weights", "tiny_vae"]

STANDIN = "STAND-IN"  # the label every report of a stand-in's output carries


@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Fill every trainable parameter with N(0, std^2) from `seed` (tests, demos, benchmarks).

    The draws are machine-independent (:mod:`diffit.seeded`), in `model.parameters()` order.

    Frozen tensors (the latent sin-cos table, the position index) keep their values, so the
    result is a valid, non-degenerate network whose outputs depend on every trained weight.
    """
    # numpy's PCG64, not torch.randn: the same bits on every CPU (see diffit/seeded.py).
    gen = seeded.rng(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.copy_(seeded.normal(gen, p.shape, std).to(p.dtype))
    return model


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A randomly initialised AutoencoderKL with the real one's layout rules: 4 -> 3 channels, 8x upsampling."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):  # diffusers' own init must not touch the caller's stream
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,  # 4 blocks -> 3 downsamplings -> 8x, as sd-vae.
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=32,
        )
    # Re-drawn from PCG64 so the weights are the same bits on every CPU (diffit/seeded.py).
    return seeded.init_like_torch_(vae, seed).eval()
