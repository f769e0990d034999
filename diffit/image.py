"""Image-space DiffiT: the U-shaped encoder/decoder of DiffiT ResBlocks with windowed TMSA, sampled
with EDM (docs/PROTOCOL.md, "Image-space DiffiT"; no code or weights were released, so the layout
follows the paper's Table S.3 and EDM's SongUNet conventions)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn

from diffit.attention import TMSA
from diffit.layers import DiffiTResBlock, Resample, TimestepEmbedder, timestep_embedding


class ImageDiffiT(nn.Module):
    """Image-space DiffiT: a U-shaped stack of DiffiT ResBlocks with windowed TMSA (docs/PROTOCOL.md, "Image-space DiffiT").

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
        img_resolution: int = 32,  # Image side in pixels.
        in_channels: int = 3,  # Image channels in.
        out_channels: int = 3,  # Image channels out.
        channels: tuple[int, ...] = (128, 256, 256),  # Channels per stage (one stage per resolution).
        blocks: tuple[int, ...] = (2, 2, 2),  # DiffiT ResBlocks per stage.
        window_size: int = 4,  # TMSA window side (4 CIFAR-10, 8 FFHQ-64).
        head_channels: int = 64,  # Channels per attention head.
        mlp_ratio: float = 4.0,
        temb_dim: int | None = None,  # Time-token width; default 4 * channels[0].
        resample: Literal["conv", "bilinear"] = "conv",  # Down/up-sampling between stages.
        label_dim: int = 0,  # Class-conditioning width; 0 = unconditional.
        augment_dim: int = 0,  # Augmentation labels (EDM's non-leaky augmentation); 0 = none.
        dropout: float = 0.0,  # Dropout probability in every ResBlock (training only).
        label_dropout: float = 0.0,  # Probability of zeroing a sample's class labels in training (classifier-free guidance).
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
        self.label_dropout = label_dropout
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
        self.augment_embedder = (
            nn.Linear(augment_dim, self.t_embedder.frequency_embedding_size, bias=False) if augment_dim else None
        )
        self.tokenizer = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)

        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        cin = channels[0]
        for i, (cout, n) in enumerate(zip(channels, blocks)):
            resolution = img_resolution >> i
            if i > 0:
                self.down.append(Resample(cin, "down", resample))
            self.encoder.append(nn.ModuleList([res_block(cin if j == 0 else cout, cout, resolution) for j in range(n)]))
            cin = cout

        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(len(blocks) - 1)):
            resolution, cout = img_resolution >> i, channels[i]
            self.up.append(Resample(cin, "up", resample))
            self.decoder.append(
                nn.ModuleList([res_block(cin + cout if j == 0 else cout, cout, resolution) for j in range(blocks[i])])
            )
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
        if self.label_embedder is not None:
            # DiT's init of its class table: small, so a class enters as a nudge to the time token
            # (and a network transferred from an unconditional one starts close to where it was).
            nn.init.normal_(self.label_embedder.weight, std=0.02)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (N, C, H, W), noise_labels: (N,) EDM c_noise; class_labels (N, label_dim) when label_dim > 0;
        augment_labels (N, augment_dim) during augmented training, None (= zeros) when sampling."""
        freq = timestep_embedding(noise_labels.flatten(), self.t_embedder.frequency_embedding_size)
        if self.augment_embedder is not None and augment_labels is not None:
            freq = freq + self.augment_embedder(augment_labels.to(freq.dtype))
        temb = self.t_embedder.mlp(freq)
        if self.label_embedder is not None:
            if class_labels is None:
                raise ValueError(f"this model is class-conditional (label_dim={self.label_dim}): pass class_labels")
            y = class_labels.to(temb.dtype)
            if self.training and self.label_dropout:
                # EDM's label dropout (SongUNet.map_label): a zeroed label vector is the unconditional
                # model that classifier-free guidance subtracts (diffit.guidance.GuidedDenoiser).
                y = y * (torch.rand([y.shape[0], 1], device=y.device) >= self.label_dropout).to(y.dtype)
            temb = temb + self.label_embedder(y)
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


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **overrides}


def _stage_blocks(blocks: str | tuple[int, ...], named: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    if isinstance(blocks, str):
        if blocks not in named:
            raise ValueError(f"blocks must be one of {sorted(named)} or a tuple of ints, got {blocks!r}")
        return named[blocks]
    return tuple(int(b) for b in blocks)


def DiffiT_CIFAR10(blocks: str | tuple[int, ...] = "I.1", **kwargs: Any) -> ImageDiffiT:
    """CIFAR-10 32x32: stages 32/16/8, channels 128/256/256, window 4; blocks "I.1" (2,2,2) or "H.1" (4,4,4)."""
    blocks = _stage_blocks(blocks, {"I.1": (2, 2, 2), "H.1": (4, 4, 4)})
    return ImageDiffiT(
        **_merge(dict(img_resolution=32, channels=(128, 256, 256), window_size=4, blocks=blocks), kwargs)
    )


def DiffiT_FFHQ64(blocks: str | tuple[int, ...] = "I.1", **kwargs: Any) -> ImageDiffiT:
    """FFHQ-64: stages 64/32/16/8, channels 128/256/256/256, window 8; blocks "I.1" (1,2,2,2) or "H.1" (4,4,4,4)."""
    blocks = _stage_blocks(blocks, {"I.1": (1, 2, 2, 2), "H.1": (4, 4, 4, 4)})
    return ImageDiffiT(
        **_merge(dict(img_resolution=64, channels=(128, 256, 256, 256), window_size=8, blocks=blocks), kwargs)
    )


def DiffiT_image_tiny(blocks: str | tuple[int, ...] = (1, 1, 1), **kwargs: Any) -> ImageDiffiT:
    """A small CIFAR-shaped image DiffiT for tests: 32x32, channels 32/64/64, one block per stage."""
    blocks = _stage_blocks(blocks, {})
    return ImageDiffiT(
        **_merge(dict(img_resolution=32, channels=(32, 64, 64), window_size=4, head_channels=16, blocks=blocks), kwargs)
    )
