"""DiffiT models: the latent DiffiT as released (ImageNet-256/512) and the image-space U-shaped DiffiT.

Hatamizadeh et al., "DiffiT: Diffusion Vision Transformers for Image Generation" (ECCV 2024).
SPEC.md section 2 is the contract for :class:`LatentDiffiT` (state_dict keys, forward pass,
guidance); section 3 describes :class:`ImageDiffiT`, for which no code or weights were released.

Both families share one TMSA, one DiffiT transformer block and one DiffiT ResBlock. Global
attention (latent) is windowed attention whose window is the whole token grid, so the relative
position bias and the attention kernel exist once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffit.guidance import cfg_scale_at

__all__ = [
    "TMSA", "DiffiTBlock", "DiffiTResBlock", "LatentDiffiT", "ImageDiffiT", "Guidance",
    "ModelPreset", "MODEL_PRESETS", "PRESET_ALIASES", "create_model", "preset_info",
    "resolve_preset", "parameter_count", "set_attention_impl", "get_attention_impl",
    "randomize_weights", "relative_position_index",
]


#################################################################################
#                               Attention kernel                                #
#################################################################################

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


#################################################################################
#                     Embedding layers for timesteps, labels, patches           #
#################################################################################

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoid of t, cos half first, f_i = exp(-ln(max_period) * i / (dim/2)); float32 (SPEC 2)."""
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


#################################################################################
#                                 Core DiffiT layers                            #
#################################################################################

def relative_position_index(window_size: int) -> torch.Tensor:
    """Swin table row per (query, key) pair in a window: (dh + G - 1)(2G - 1) + (dw + G - 1), int64 [G^2, G^2]."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)                                   # (2, G^2), row-major
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
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x) + self.qkv_temb(c).unsqueeze(1).to(x.dtype)
        qkv = window_partition(qkv, grid, self.window_size)
        q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, self.relative_position_bias())
        out = out.transpose(1, 2).reshape(-1, self.window_size ** 2, C)
        return self.proj(window_merge(out, grid, self.window_size))


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

    def __init__(self, in_channels: int, out_channels: int, num_heads: int, temb_dim: int, window_size: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32 if in_channels % 32 == 0 else math.gcd(in_channels, 32), in_channels, eps=1e-6)
        # Training-time dropout before the conv, where EDM's UNet block drops before its last conv (no parameters).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.block = DiffiTBlock(out_channels, num_heads, temb_dim, window_size, mlp_ratio)
        # A channel change (first block of a stage, or after a skip concat) needs a projected residual.
        self.skip = (nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels
                     else nn.Identity())

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


#################################################################################
#                               Classifier-free guidance                        #
#################################################################################

@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance as released (SPEC 2), an explicit preset setting, not a size threshold."""

    scale: float = 1.0                                      # Default guidance scale s.
    ramp: Literal["constant", "power-cosine"] = "constant"  # How s_t depends on the original timestep t.
    power: float = 4.0                                      # Exponent of the power-cosine ramp.
    channels: int = 3                                       # Output channels guided: 0-2 in the release.

    def __post_init__(self) -> None:
        if self.ramp not in ("constant", "power-cosine"):
            raise ValueError(f"guidance ramp must be 'constant' or 'power-cosine', got {self.ramp!r}")

    def scale_at(self, t: torch.Tensor, scale: float | None = None) -> torch.Tensor | float:
        """s_t at original timestep t: the power-cosine ramp or the constant s (diffit.guidance.cfg_scale_at)."""
        s = self.scale if scale is None else scale
        return cfg_scale_at(t, s, ramp=self.ramp == "power-cosine", power=self.power)


#################################################################################
#                                  Latent DiffiT                                #
#################################################################################

def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table (1, G^2, D) in DiT's layout: first half the column, second half the row."""
    def one_axis(dim: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.reshape(-1, 1) * omega
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    rows, cols = torch.meshgrid(torch.arange(grid_size, dtype=torch.float64),
                                torch.arange(grid_size, dtype=torch.float64), indexing="ij")
    table = torch.cat([one_axis(embed_dim // 2, cols), one_axis(embed_dim // 2, rows)], dim=1)
    return table.float().unsqueeze(0)


class LatentDiffiT(nn.Module):
    """Latent DiffiT: patch tokens, DiffiT blocks with global TMSA, class-conditional (SPEC 2)."""

    def __init__(
        self,
        input_size: int = 32,                 # Latent side (image side / 8).
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,                      # The release's factory and 561M count; the appendix says 30.
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,      # > 0 adds the null class row used for guidance.
        num_classes: int = 1000,
        learn_sigma: bool = True,             # Doubles the output channels (eps + variance values).
        guidance: Guidance | None = None,     # Guidance schedule used by forward_with_cfg.
    ) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.num_classes = num_classes
        self.learn_sigma = learn_sigma
        self.guidance = guidance if guidance is not None else Guidance()
        self.grid_size = input_size // patch_size

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        # Stored in the released state_dict but never trained.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size ** 2, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([
            DiffiTBlock(hidden_size, num_heads, temb_dim=hidden_size, window_size=self.grid_size, mlp_ratio=mlp_ratio)
            for _ in range(depth)
        ])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Training-time init (DiT's): xavier linears, fixed sin-cos table, zeroed output layer."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid_size))
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, G*G, p*p*C) -> (N, C, G*p, G*p): out[n, c, p*h+i, p*w+j] = x[n, h*G+w, (i*p+j)*C + c]."""
        p, c, g = self.patch_size, self.out_channels, self.grid_size
        x = x.reshape(x.shape[0], g, g, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, g * p, g * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) latents, t: (N,) original timestep indices, y: (N,) labels (num_classes = null)."""
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        grid = (self.grid_size, self.grid_size)
        for block in self.blocks:
            x = block(x, c, grid)
        return self.unpatchify(self.final_layer(x))

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                         cfg_scale: float | None = None) -> torch.Tensor:
        """Guided output on the doubled batch [cond; uncond] (y = [labels; null]), as released.

        Only the first `guidance.channels` output channels are guided; the rest (eps channel 3 and
        the variance values) pass through unguided. Both halves of the result carry the guided eps.
        """
        if cfg_scale is None:
            return self.forward(x, t, y)
        half = x[: len(x) // 2]
        model_out = self.forward(torch.cat([half, half], dim=0), t, y)
        k = self.guidance.channels
        eps, rest = model_out[:, :k], model_out[:, k:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        s = self.guidance.scale_at(t[: len(x) // 2], cfg_scale)
        if isinstance(s, torch.Tensor):
            s = s.view(-1, 1, 1, 1)
        half_eps = uncond_eps + s * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


#################################################################################
#                               Image-space DiffiT                              #
#################################################################################

class ImageDiffiT(nn.Module):
    """Image-space DiffiT: a U-shaped stack of DiffiT ResBlocks with windowed TMSA (SPEC 3).

    The raw network F(x, c_noise) of EDM: the preconditioning lives in :mod:`diffit.edm`.
    Layout (appendix Tables S.2/S.3): Conv3x3 tokenizer to channels[0]; encoder stage i runs
    blocks[i] ResBlocks at resolution / 2^i (stages after the first are entered by a
    down-sampler); the last stage is the bottleneck; the decoder revisits the other stages from
    the bottom up, each entered by an up-sampler whose output is concatenated with the encoder
    output of that stage (skip connections by concatenation), then blocks[i] ResBlocks; a head
    (GroupNorm, Swish, Conv3x3) maps back to out_channels. Channel changes happen in the first
    ResBlock of a stage (1x1 conv on the residual path). Windows are clamped to the feature map.
    """

    def __init__(
        self,
        img_resolution: int = 32,                       # Image side in pixels.
        in_channels: int = 3,                           # Image channels in.
        out_channels: int = 3,                          # Image channels out.
        channels: tuple[int, ...] = (128, 256, 256),    # Channels per stage (one stage per resolution).
        blocks: tuple[int, ...] = (2, 2, 2),            # DiffiT ResBlocks per stage.
        window_size: int = 4,                           # TMSA window side (4 CIFAR-10, 8 FFHQ-64).
        head_channels: int = 64,                        # Channels per attention head.
        mlp_ratio: float = 4.0,
        temb_dim: int | None = None,                    # Time-token width; default 4 * channels[0].
        resample: Literal["conv", "bilinear"] = "conv",  # Down/up-sampling between stages.
        label_dim: int = 0,                             # Class-conditioning width; 0 = unconditional.
        augment_dim: int = 0,                           # Augmentation labels (EDM's non-leaky augmentation); 0 = none.
        dropout: float = 0.0,                           # Dropout probability in every ResBlock (training only).
    ) -> None:
        super().__init__()
        if len(channels) != len(blocks):
            raise ValueError(f"channels {channels} and blocks {blocks} must have one entry per stage")
        if img_resolution % 2 ** (len(blocks) - 1):
            raise ValueError(f"img_resolution {img_resolution} cannot be halved {len(blocks) - 1} times")
        self.img_resolution = img_resolution
        self.img_channels = in_channels
        self.out_channels = out_channels
        self.label_dim = label_dim
        self.augment_dim = augment_dim
        self.channels, self.blocks, self.window_size = tuple(channels), tuple(blocks), window_size
        temb_dim = temb_dim or 4 * channels[0]

        def res_block(cin: int, cout: int, resolution: int) -> DiffiTResBlock:
            window = min(window_size, resolution)
            if resolution % window:
                raise ValueError(f"window {window} does not tile a {resolution}x{resolution} feature map")
            return DiffiTResBlock(cin, cout, max(cout // head_channels, 1), temb_dim, window, mlp_ratio, dropout)

        self.t_embedder = TimestepEmbedder(temb_dim)
        self.label_embedder = nn.Linear(label_dim, temb_dim, bias=False) if label_dim else None
        # EDM's map_augment: augmentation labels enter the time MLP beside the noise-level sinusoid.
        self.augment_embedder = (nn.Linear(augment_dim, self.t_embedder.frequency_embedding_size, bias=False)
                                 if augment_dim else None)
        self.tokenizer = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)

        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        cin = channels[0]
        for i, (cout, n) in enumerate(zip(channels, blocks)):
            resolution = img_resolution >> i
            if i > 0:
                self.down.append(Resample(cin, "down", resample))
            self.encoder.append(nn.ModuleList(
                [res_block(cin if j == 0 else cout, cout, resolution) for j in range(n)]))
            cin = cout

        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(blocks) - 1)):
            resolution, cout = img_resolution >> i, channels[i]
            self.up.append(Resample(cin, "up", resample))
            self.decoder.append(nn.ModuleList(
                [res_block(cin + cout if j == 0 else cout, cout, resolution) for j in range(blocks[i])]))
            cin = cout

        self.head = nn.Sequential(
            nn.GroupNorm(32 if cin % 32 == 0 else math.gcd(cin, 32), cin, eps=1e-6),
            nn.SiLU(),
            nn.Conv2d(cin, out_channels, kernel_size=3, padding=1),
        )
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Training-time init: xavier linears, small relative position bias, zeroed head conv."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, TMSA):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """x: (N, C, H, W), noise_labels: (N,) EDM c_noise; class_labels (N, label_dim) when label_dim > 0;
        augment_labels (N, augment_dim) during augmented training, None (= zeros) when sampling."""
        freq = timestep_embedding(noise_labels.flatten(), self.t_embedder.frequency_embedding_size)
        if self.augment_embedder is not None and augment_labels is not None:
            freq = freq + self.augment_embedder(augment_labels.to(freq.dtype))
        temb = self.t_embedder.mlp(freq)
        if self.label_embedder is not None:
            if class_labels is None:
                raise ValueError(f"this model is class-conditional (label_dim={self.label_dim}): pass class_labels")
            temb = temb + self.label_embedder(class_labels.to(temb.dtype))
        h = self.tokenizer(x)
        skips = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = self.down[i - 1](h)
            for block in stage:
                h = block(h, temb)
            skips.append(h)
        skips.pop()  # the bottleneck's output is h itself
        for up, stage in zip(self.up, self.decoder):
            h = torch.cat([up(h), skips.pop()], dim=1)
            for block in stage:
                h = block(h, temb)
        return self.head(h)


#################################################################################
#                                 Weight helpers                                #
#################################################################################

@torch.no_grad()
def randomize_weights(model: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Fill every trainable parameter with N(0, std^2) from `seed` (tests, demos, benchmarks).

    The draws are machine-independent (:mod:`diffit.seeded`), in `model.parameters()` order.

    Frozen tensors (the latent sin-cos table, the position index) keep their values, so the
    result is a valid, non-degenerate network whose outputs depend on every trained weight.
    """
    from diffit import seeded

    # numpy's PCG64, not torch.randn: the same bits on every CPU (see diffit/seeded.py).
    gen = seeded.rng(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.copy_(seeded.normal(gen, p.shape, std).to(p.dtype))
    return model


def parameter_count(model_or_name: nn.Module | str) -> tuple[int, int]:
    """(trainable, frozen) parameter counts; a preset name is built on the meta device, instantly."""
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            model_or_name = create_model(model_or_name)
    trainable = sum(p.numel() for p in model_or_name.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model_or_name.parameters() if not p.requires_grad)
    return trainable, frozen


#################################################################################
#                                  DiffiT configs                               #
#################################################################################

def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **overrides}


def DiffiT_XL_2(**kwargs: Any) -> LatentDiffiT:
    """The released latent DiffiT (depth 28, width 1152, patch 2, 16 heads); input_size 32 or 64."""
    return LatentDiffiT(**_merge(dict(depth=28, hidden_size=1152, patch_size=2, num_heads=16), kwargs))


def DiffiT_tiny(**kwargs: Any) -> LatentDiffiT:
    """A 75K-parameter latent DiffiT for tests: 8x8x4 latents, width 32, 2 blocks, 2 heads."""
    return LatentDiffiT(**_merge(dict(input_size=8, depth=2, hidden_size=32, patch_size=2, num_heads=2), kwargs))


def _stage_blocks(blocks: str | tuple[int, ...], named: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    if isinstance(blocks, str):
        if blocks not in named:
            raise ValueError(f"blocks must be one of {sorted(named)} or a tuple of ints, got {blocks!r}")
        return named[blocks]
    return tuple(int(b) for b in blocks)


def DiffiT_CIFAR10(blocks: str | tuple[int, ...] = "I.1", **kwargs: Any) -> ImageDiffiT:
    """CIFAR-10 32x32: stages 32/16/8, channels 128/256/256, window 4; blocks "I.1" (2,2,2) or "H.1" (4,4,4)."""
    blocks = _stage_blocks(blocks, {"I.1": (2, 2, 2), "H.1": (4, 4, 4)})
    return ImageDiffiT(**_merge(dict(img_resolution=32, channels=(128, 256, 256), window_size=4, blocks=blocks),
                                kwargs))


def DiffiT_FFHQ64(blocks: str | tuple[int, ...] = "I.1", **kwargs: Any) -> ImageDiffiT:
    """FFHQ-64: stages 64/32/16/8, channels 128/256/256/256, window 8; blocks "I.1" (1,2,2,2) or "H.1" (4,4,4,4)."""
    blocks = _stage_blocks(blocks, {"I.1": (1, 2, 2, 2), "H.1": (4, 4, 4, 4)})
    return ImageDiffiT(**_merge(dict(img_resolution=64, channels=(128, 256, 256, 256), window_size=8, blocks=blocks),
                                kwargs))


def DiffiT_image_tiny(blocks: str | tuple[int, ...] = (1, 1, 1), **kwargs: Any) -> ImageDiffiT:
    """A small CIFAR-shaped image DiffiT for tests: 32x32, channels 32/64/64, one block per stage."""
    blocks = _stage_blocks(blocks, {})
    return ImageDiffiT(**_merge(dict(img_resolution=32, channels=(32, 64, 64), window_size=4, head_channels=16,
                                     blocks=blocks), kwargs))


@dataclass(frozen=True)
class ModelPreset:
    """A model name: how to build it and how it is meant to be sampled."""

    kind: Literal["latent", "image"]
    factory: Callable[..., nn.Module]
    config: dict[str, Any]                  # Arguments passed to the factory before any override.
    latent_size: int | None                 # Latent side (pixels = latent_size * 8); None in image space.
    img_resolution: int | None              # Image side for image-space models; None for latent ones.
    num_classes: int                        # 0 = unconditional; latent models add a null class.
    sampler: Literal["ddpm", "edm"]
    steps: int
    guidance: Guidance | None               # Default classifier-free guidance; None = unguided.
    checkpoint: str | None                  # Name in diffit.checkpoint.CHECKPOINTS, or None.
    licence: str
    description: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def resolution(self) -> int:
        """Generated image side in pixels (a latent model's VAE up-samples by 8)."""
        return self.latent_size * 8 if self.kind == "latent" else self.img_resolution


# Weights are downloaded at the user's request and never shipped (SPEC 2).
_RELEASE_LICENCE = "CC-BY-NC-SA-4.0 (README) / NSCLv1 (model card)"
_NO_WEIGHTS = "no released weights"
_TEST_ONLY = "test model, random weights"

MODEL_PRESETS: dict[str, ModelPreset] = {
    "latent-256": ModelPreset(
        kind="latent", factory=DiffiT_XL_2, config=dict(input_size=32), latent_size=32, img_resolution=None,
        num_classes=1000, sampler="ddpm", steps=250,
        guidance=Guidance(scale=4.4, ramp="power-cosine", power=4.0), checkpoint="diffit-256",
        licence=_RELEASE_LICENCE, aliases=("latent",),
        description="Latent DiffiT, ImageNet 256x256 (FID 1.73), power-cosine guidance ramp, s = 4.4",
    ),
    "latent-512": ModelPreset(
        kind="latent", factory=DiffiT_XL_2, config=dict(input_size=64), latent_size=64, img_resolution=None,
        num_classes=1000, sampler="ddpm", steps=250,
        guidance=Guidance(scale=1.49, ramp="constant"), checkpoint="diffit-512",
        licence=_RELEASE_LICENCE,
        description="Latent DiffiT, ImageNet 512x512 (FID 2.67), constant guidance s = 1.49",
    ),
    "cifar10": ModelPreset(
        kind="image", factory=DiffiT_CIFAR10, config={}, latent_size=None, img_resolution=32,
        num_classes=0, sampler="edm", steps=18, guidance=None, checkpoint=None, licence=_NO_WEIGHTS,
        description="Image-space DiffiT, CIFAR-10 32x32 unconditional (paper FID 1.95), EDM sampler",
    ),
    "ffhq64": ModelPreset(
        kind="image", factory=DiffiT_FFHQ64, config={}, latent_size=None, img_resolution=64,
        num_classes=0, sampler="edm", steps=40, guidance=None, checkpoint=None, licence=_NO_WEIGHTS,
        description="Image-space DiffiT, FFHQ 64x64 unconditional (paper FID 2.22), EDM sampler",
    ),
    "latent-tiny": ModelPreset(
        kind="latent", factory=DiffiT_tiny, config={}, latent_size=8, img_resolution=None,
        num_classes=1000, sampler="ddpm", steps=250,
        guidance=Guidance(scale=4.4, ramp="power-cosine", power=4.0), checkpoint=None, licence=_TEST_ONLY,
        description="Tiny latent DiffiT (8x8x4 latents, width 32, depth 2) for tests and demos",
    ),
    "cifar10-tiny": ModelPreset(
        kind="image", factory=DiffiT_image_tiny, config={}, latent_size=None, img_resolution=32,
        num_classes=0, sampler="edm", steps=18, guidance=None, checkpoint=None, licence=_TEST_ONLY,
        description="Tiny image-space DiffiT (32x32, channels 32/64/64) for tests and demos",
    ),
}

PRESET_ALIASES: dict[str, str] = {alias: name for name, p in MODEL_PRESETS.items() for alias in p.aliases}


def resolve_preset(name: str) -> str:
    """The canonical preset name for a name or alias; ValueError listing the choices otherwise."""
    name = PRESET_ALIASES.get(name, name)
    if name not in MODEL_PRESETS:
        choices = ", ".join([*MODEL_PRESETS, *PRESET_ALIASES])
        raise ValueError(f"unknown model {name!r}; choose one of: {choices}")
    return name


def preset_info(name: str) -> dict[str, Any]:
    """Everything a sampler or a listing needs about a preset, as plain data (no model is built)."""
    name = resolve_preset(name)
    p = MODEL_PRESETS[name]
    info = {
        "name": name, "kind": p.kind, "resolution": p.resolution, "latent_size": p.latent_size,
        "num_classes": p.num_classes, "sampler": p.sampler, "steps": p.steps,
        "guidance": asdict(p.guidance) if p.guidance is not None else None,
        "checkpoint": p.checkpoint, "licence": p.licence, "description": p.description,
        "aliases": list(p.aliases), "config": dict(p.config),
    }
    return info


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a preset by name; `overrides` replace constructor arguments (latent: the released ones, guidance).

    Image presets also take `blocks` ("I.1", "H.1" or a tuple) and `resample` ("conv" | "bilinear").
    Weights are freshly initialised; use :func:`diffit.checkpoint.load_checkpoint` for trained ones.
    """
    p = MODEL_PRESETS[resolve_preset(name)]
    kwargs = dict(p.config)
    if p.kind == "latent":
        kwargs["guidance"] = p.guidance
    kwargs.update(overrides)
    return p.factory(**kwargs)
