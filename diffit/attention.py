"""TMSA: time-dependent multi-head self-attention over windows of tokens, and the attention kernel switch.

Hatamizadeh et al., "DiffiT" (ECCV 2024), Eq. 3-6: the query, key and value of every token are
linear functions of both the token and the time token, q = x W_qs + x_t W_qt (likewise k, v), and
attention adds a relative position bias B: softmax(q k^T / sqrt(d) + B) v (docs/PROTOCOL.md,
"TMSA"). Global attention (latent DiffiT) is windowed attention whose window is the whole grid,
so the bias table and the kernel exist once.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "TMSA",
    "attention",
    "get_attention_impl",
    "relative_position_index",
    "set_attention_impl",
    "window_merge",
    "window_partition",
]

_ATTENTION_IMPLS = ("sdpa", "math")
_attention_impl = "sdpa"


def set_attention_impl(impl: str) -> None:
    """Select the attention kernel for every TMSA: "sdpa" (fused, default) or "math" (reference)."""
    global _attention_impl
    if impl not in _ATTENTION_IMPLS:
        raise ValueError(f"attention impl must be one of {_ATTENTION_IMPLS}, got {impl!r}")
    _attention_impl = impl


def get_attention_impl() -> str:
    """The attention kernel in use: "sdpa" or "math"."""
    return _attention_impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for q, k, v of shape (B, heads, N, d) and bias (heads, N, N)."""
    scale = q.shape[-1] ** -0.5
    if _attention_impl == "sdpa":
        # SDPA wants the additive mask in the query's dtype (bf16/fp16 under autocast).
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype), scale=scale)
    attn = (q * scale) @ k.transpose(-2, -1) + bias.unsqueeze(0).to(q.dtype)
    return attn.softmax(dim=-1).to(v.dtype) @ v


def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin table row per (query, key) pair in a window: (dh + G - 1)(2G - 1) + (dw + G - 1), int64 [G^2, G^2]."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # (2, G^2), row-major
    rel = (coords[:, :, None] - coords[:, None, :]) + (window_size - 1)  # query minus key, shifted >= 0
    return rel[0] * (2 * window_size - 1) + rel[1]


def window_partition(x: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """(B, H*W, C) row-major tokens -> (B * windows, window^2, C), each window row-major."""
    B, _, C = x.shape
    H, W = grid
    x = x.view(B, H // window, window, W // window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, C)


def window_merge(x: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    H, W = grid
    C = x.shape[-1]
    x = x.view(-1, H // window, W // window, window, window, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H * W, C)


class TMSA(nn.Module):
    """Time-dependent multi-head self-attention with a Swin relative position bias over each window.

    qkv = Linear(x) + Linear_t(c), the time projection broadcast over all tokens; the 3*dim
    outputs are [q | k | v], each holding the heads as contiguous blocks. Attention is computed
    within non-overlapping (unshifted) windows of `window_size`^2 tokens; the latent model sets
    the window to the whole token grid, which makes it global attention. Image space uses the
    same bias, Swin-style, within each local window.
    """

    def __init__(self, dim: int, num_heads: int, temb_dim: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.qkv_temb = nn.Linear(temb_dim, 3 * dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=True)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self) -> torch.Tensor:
        """B as (heads, N, N); it depends only on parameters, so it is gathered once per forward."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x) + self.qkv_temb(c).unsqueeze(1).to(x.dtype)
        qkv = window_partition(qkv, grid, self.window_size)
        q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, self.relative_position_bias())
        out = out.transpose(1, 2).reshape(-1, self.window_size**2, C)
        return self.proj(window_merge(out, grid, self.window_size))
