"""The layers both DiffiT families are built from: embeddings, the DiffiT transformer block, the
DiffiT ResBlock, the final layer and resampling (docs/PROTOCOL.md, "Model layout")."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffit.attention import TMSA


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoid of t, cos half first, f_i = exp(-ln(max_period) * i / (dim/2)); float32 (docs/PROTOCOL.md, "Model layout")."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Time token: sinusoidal embedding through Linear, Swish (SiLU), Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size))


class LabelEmbedder(nn.Module):
    """Class token: a table of num_classes rows plus the null class used for guidance."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        # The null class (index num_classes) exists only when labels can be dropped.
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, self.num_classes, labels)
        return self.embedding_table(labels)


class PatchEmbed(nn.Module):
    """Patch tokens: a conv with kernel = stride = patch, flattened row-major over the patch grid."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Transformer MLP: Linear, GELU (tanh approximation), Linear."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiffiTBlock(nn.Module):
    """DiffiT transformer block: x + TMSA(LN(x), c), then x + MLP(LN(x)); LayerNorms without affine."""

    def __init__(self, dim: int, num_heads: int, temb_dim: int, window_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = TMSA(dim, num_heads, temb_dim, window_size)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), c, grid)
        x = x + self.mlp(self.norm2(x))
        return x


class DiffiTResBlock(nn.Module):
    """DiffiT ResBlock: x_hat = Conv3x3(Swish(GroupNorm(x))); x = DiffiTBlock(x_hat, t) + x."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_heads: int,
        temb_dim: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32 if in_channels % 32 == 0 else math.gcd(in_channels, 32), in_channels, eps=1e-6)
        # Training-time dropout before the conv, where EDM's UNet block drops before its last conv (no parameters).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.block = DiffiTBlock(out_channels, num_heads, temb_dim, window_size, mlp_ratio)
        # A channel change (first block of a stage, or after a skip concat) needs a projected residual.
        self.skip = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.dropout(F.silu(self.norm(x))))
        B, C, H, W = h.shape
        h = self.block(h.flatten(2).transpose(1, 2), temb, (H, W))
        return h.transpose(1, 2).reshape(B, C, H, W) + self.skip(x)


class FinalLayer(nn.Module):
    """Latent output head: LN (no affine), SiLU, Linear to patch*patch*out_channels; not conditioned on c."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(F.silu(self.norm_final(x)))


class Resample(nn.Module):
    """Halve or double a feature map: strided / nearest-then-3x3 conv, or parameter-free bilinear."""

    def __init__(self, channels: int, direction: Literal["down", "up"], mode: Literal["conv", "bilinear"]) -> None:
        super().__init__()
        if mode not in ("conv", "bilinear"):
            raise ValueError(f"resample must be 'conv' or 'bilinear', got {mode!r}")
        self.direction, self.mode = direction, mode
        if mode == "conv":
            stride = 2 if direction == "down" else 1
            self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.5 if self.direction == "down" else 2.0
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        if self.direction == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)
