"""Latent DiffiT as released for ImageNet-256/512: patch tokens, DiffiT blocks with global TMSA,
class-conditional with classifier-free guidance (docs/PROTOCOL.md, "Latent DiffiT"; its state_dict
keys are the released checkpoints' keys)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from diffit.guidance import Guidance
from diffit.layers import DiffiTBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table (1, G^2, D) in DiT's layout: first half the column, second half the row."""

    def one_axis(dim: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.reshape(-1, 1) * omega
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    rows, cols = torch.meshgrid(
        torch.arange(grid_size, dtype=torch.float64), torch.arange(grid_size, dtype=torch.float64), indexing="ij"
    )
    table = torch.cat([one_axis(embed_dim // 2, cols), one_axis(embed_dim // 2, rows)], dim=1)
    return table.float().unsqueeze(0)


class LatentDiffiT(nn.Module):
    """Latent DiffiT: patch tokens, DiffiT blocks with global TMSA, class-conditional (docs/PROTOCOL.md, "Latent DiffiT")."""

    def __init__(
        self,
        input_size: int = 32,  # Latent side (image side / 8).
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,  # The release's factory and 561M count; the appendix says 30.
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,  # > 0 adds the null class row used for guidance.
        num_classes: int = 1000,
        learn_sigma: bool = True,  # Doubles the output channels (eps + variance values).
        guidance: Guidance | None = None,  # Guidance schedule used by forward_with_cfg.
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
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size**2, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(
            [
                DiffiTBlock(
                    hidden_size, num_heads, temb_dim=hidden_size, window_size=self.grid_size, mlp_ratio=mlp_ratio
                )
                for _ in range(depth)
            ]
        )
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

    def forward_with_cfg(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float | None = None
    ) -> torch.Tensor:
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


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **overrides}


def DiffiT_XL_2(**kwargs: Any) -> LatentDiffiT:
    """The released latent DiffiT (depth 28, width 1152, patch 2, 16 heads); input_size 32 or 64."""
    return LatentDiffiT(**_merge(dict(depth=28, hidden_size=1152, patch_size=2, num_heads=16), kwargs))


def DiffiT_tiny(**kwargs: Any) -> LatentDiffiT:
    """A 75K-parameter latent DiffiT for tests: 8x8x4 latents, width 32, 2 blocks, 2 heads."""
    return LatentDiffiT(**_merge(dict(input_size=8, depth=2, hidden_size=32, patch_size=2, num_heads=2), kwargs))
