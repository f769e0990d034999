"""DINOv2 features for FD_DINOv2 (docs/PROTOCOL.md, "FD_DINOv2").

Stein et al. ("Exposing flaws of generative model evaluation metrics and their unfair treatment
of diffusion models", NeurIPS 2023) replace Inception by DINOv2 ViT-L/14 (Oquab et al. 2023) and
compute the Frechet distance on its 1024-d CLS token; EDM2 and later papers report it as
FD_DINOv2. Their dgm-eval code feeds the network through torchvision:
`Resize((224, 224), BICUBIC)` on the PIL image, `ToTensor` (/255) and `Normalize` with ImageNet's
mean and std (:func:`preprocess`, tested against torchvision's transform in `tests/test_dinov2.py`).

The network is the DINOv2 `DinoVisionTransformer` as its hub entry builds it (no registers, MLP
feed-forward, LayerScale, LayerNorm eps 1e-6, no block chunks), written out here because the
official code is fetched from GitHub by torch.hub, which offline machines cannot reach. Module
and parameter names are the official state dict's, so Meta's `dinov2_vitl14_pretrain.pth` loads
with `strict=True`; the sizes (width, depth, patch, position grid, MLP width) are read from the
state dict, so a tiny seeded stand-in goes through the same loader. DINOv2 uses 64-d attention
heads in every size (S 384/6, B 768/12, L 1024/16, g 1536/24): heads = width / 64 (at least 1).

The 518-px pretraining grid of 37 x 37 position embeddings is resampled to the 16 x 16 patches of
a 224 input as DINOv2 does: bicubic `interpolate` with scale factor (16 + 0.1) / 37, no antialias.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffit_eval.assets.cache import sha256_file
from diffit_eval.assets.dinov2 import resolve_dinov2_weights
from diffit_eval.errors import UserError
from diffit_eval.features.device import default_device
from diffit_eval.features.inference import full_fp32
from diffit_eval.protocol import (
    DINOV2_DIM,
    DINOV2_FEATURE_NETWORK,
    DINOV2_INPUT_SIZE,
    DINOV2_INTERPOLATE_OFFSET,
    DINOV2_MEAN,
    DINOV2_STD,
)

__all__ = [
    "DINOV2_STANDIN_LABEL",
    "DINOv2Features",
    "DinoViT",
    "STANDIN_MARKER",
    "load_dinov2_network",
    "preprocess",
]

DINOV2_STANDIN_LABEL = "STAND-IN (random weights, not DINOv2)"
# A state_dict entry a stand-in file carries (removed before the strict load): it is what labels
# the file a stand-in, beside any architecture other than ViT-L/14.
STANDIN_MARKER = "__diffit_eval_standin__"
HEAD_DIM = 64
LN_EPS = 1e-6


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    """DINOv2's vision transformer, inference only; `forward` returns the normalised CLS token."""

    def __init__(self, dim: int, depth: int, patch: int, grid: int, hidden: int) -> None:
        super().__init__()
        self.dim, self.depth, self.patch, self.grid = dim, depth, patch, grid
        heads = max(1, dim // HEAD_DIM)
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training only; kept so the file loads strictly
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> DinoViT:
        """Sizes read from the tensors' shapes; then a strict load (a missing or extra key is an error)."""
        dim = state["cls_token"].shape[-1]
        patch = state["patch_embed.proj.weight"].shape[-1]
        grid = math.isqrt(state["pos_embed"].shape[1] - 1)
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        net = cls(dim, depth, patch, grid, hidden)
        net.load_state_dict(state, strict=True)
        return net

    def interpolate_pos_encoding(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an h x w input: DINOv2's bicubic resampling with the 0.1 offset."""
        h0, w0 = h // self.patch, w // self.patch
        if h0 == w0 == self.grid:
            return self.pos_embed
        pos = self.pos_embed.float()
        grid = pos[:, 1:].reshape(1, self.grid, self.grid, self.dim).permute(0, 3, 1, 2)
        scale = ((h0 + DINOV2_INTERPOLATE_OFFSET) / self.grid, (w0 + DINOV2_INTERPOLATE_OFFSET) / self.grid)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        if grid.shape[-2:] != (h0, w0):
            raise ValueError(f"position grid resampled to {tuple(grid.shape[-2:])}, expected {(h0, w0)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, self.dim)
        return torch.cat([pos[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float [N, 3, H, W], normalised; returns the CLS token after the final norm, [N, dim]."""
        h, w = x.shape[-2:]
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], dim=1)
        t = t + self.interpolate_pos_encoding(h, w)
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)[:, 0]


def preprocess(images_nhwc: np.ndarray, size: int = DINOV2_INPUT_SIZE) -> torch.Tensor:
    """dgm-eval's DINOv2 input: PIL bicubic resize of each uint8 image to size x size, /255, then
    (x - mean) / std with ImageNet's statistics. Returns float32 [N, 3, size, size]."""
    from PIL import Image

    images = np.asarray(images_nhwc)
    out = np.empty((len(images), size, size, 3), np.float32)
    for i, im in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(im, dtype=np.uint8))
        out[i] = np.asarray(pil.resize((size, size), Image.BICUBIC), np.float32) / 255.0
    out = (out - np.asarray(DINOV2_MEAN, np.float32)) / np.asarray(DINOV2_STD, np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class DINOv2Features(nn.Module):
    """The FD_DINOv2 feature network: preprocessing + ViT, uint8 NHWC images in, [N, dim] float32 out."""

    def __init__(self, weights_path: str | os.PathLike) -> None:
        super().__init__()
        self.weights_path = Path(weights_path)
        try:
            state: dict[str, Any] = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            marked = bool(state.pop(STANDIN_MARKER, False))
            self.net = DinoViT.from_state_dict(state)
        except Exception as e:  # a file of another layout: one line, not a traceback
            raise UserError(
                f"{self.weights_path} is not DINOv2 weights in the official state-dict layout ({type(e).__name__})"
            ) from None
        self.net.eval().requires_grad_(False)
        self.weights_sha256 = sha256_file(self.weights_path)
        n = self.net
        self.is_standin = marked or (n.dim, n.depth, n.patch) != (DINOV2_DIM, 24, 14)

    @property
    def dim(self) -> int:
        return self.net.dim

    @property
    def label(self) -> str:
        return DINOV2_STANDIN_LABEL if self.is_standin else DINOV2_FEATURE_NETWORK

    def describe(self) -> dict:
        return {
            "name": DINOV2_FEATURE_NETWORK,
            "label": self.label,
            "weights": str(self.weights_path),
            "sha256": self.weights_sha256,
            "standin": self.is_standin,
            "dim": self.dim,
        }

    @torch.no_grad()
    def forward(self, images_nhwc: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(images_nhwc, torch.Tensor):
            images_nhwc = images_nhwc.cpu().numpy()
        device = self.net.cls_token.device
        with full_fp32():  # no TF32 in a feature network (docs/PROTOCOL.md)
            return self.net(preprocess(images_nhwc).to(device)).float()


def load_dinov2_network(
    weights: str | os.PathLike | None = None, *, device: str | None = None, allow_download: bool = True
) -> DINOv2Features:
    """Resolve the weights (:func:`~diffit_eval.assets.dinov2.resolve_dinov2_weights`) and build the network."""
    path = resolve_dinov2_weights(weights, allow_download=allow_download)
    return DINOv2Features(path).to(device or default_device())
