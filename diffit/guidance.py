"""Classifier-free guidance (Ho & Salimans 2021) as released for latent DiffiT (docs/PROTOCOL.md, "Guidance").

The guided model is a wrapper, `model.forward_with_cfg(x, t, y, cfg_scale)` in DiT's layout: it
takes the doubled batch [x; x] with labels [y; null], and returns the guided output for both
halves. The samplers stay agnostic of guidance; `guided_ddpm_sample` is the one place that builds
the doubled batch and drops the unconditional half.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from diffit.ddpm import ddpm_sampler

NULL_CLASS = 1000  # Class index reserved for the unconditional branch (table row 1001).


def cfg_scale_at(t: torch.Tensor | float, scale: float, ramp: bool = True, power: float = 4) -> torch.Tensor | float:
    """Guidance scale at original timestep t in [0, 999].

    ramp=True: the release's power-cosine ramp at 256, s_t = 1 + (s - 1) (1 - cos(pi (1 - t/1000)^power)) / 2,
    which is 1 near t = 1000 (pure noise) and reaches s at t = 0. ramp=False: the constant s (the 512 preset).
    """
    if not ramp:
        return scale
    cos = torch.cos if isinstance(t, torch.Tensor) else math.cos
    return 1 + (scale - 1) * (1 - cos(math.pi * (1 - t / 1000) ** power)) / 2


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance as released (docs/PROTOCOL.md, "Guidance"), an explicit preset setting, not a size threshold."""

    scale: float = 1.0  # Default guidance scale s.
    ramp: Literal["constant", "power-cosine"] = "constant"  # How s_t depends on the original timestep t.
    power: float = 4.0  # Exponent of the power-cosine ramp.
    channels: int = 3  # Output channels guided: 0-2 in the release.

    def __post_init__(self) -> None:
        if self.ramp not in ("constant", "power-cosine"):
            raise ValueError(f"guidance ramp must be 'constant' or 'power-cosine', got {self.ramp!r}")

    def scale_at(self, t: torch.Tensor, scale: float | None = None) -> torch.Tensor | float:
        """s_t at original timestep t: the power-cosine ramp or the constant s (diffit.guidance.cfg_scale_at)."""
        s = self.scale if scale is None else scale
        return cfg_scale_at(t, s, ramp=self.ramp == "power-cosine", power=self.power)


def _duplicated(randn_like: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    # Per-step noise for [x; x] is [n; n] with n drawn for the real half only, so a per-sample
    # generator sees one draw per step whatever the guidance, and the two halves stay equal.
    def draw(x: torch.Tensor) -> torch.Tensor:
        n = randn_like(x[: x.shape[0] // 2])
        return torch.cat([n, n])

    return draw


def guided_ddpm_sample(
    model: torch.nn.Module,  # Latent model with forward(x, t, y) and forward_with_cfg(x, t, y, cfg_scale).
    noise: torch.Tensor,  # x_T for the real samples, NCHW.
    labels: torch.Tensor,  # Class labels, int64 [N].
    cfg_scale: float,  # Guidance scale s; 1 means no guidance (no doubled batch).
    num_steps: int = 250,
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
    null_class: int = NULL_CLASS,
    sampler: Callable[..., torch.Tensor] = ddpm_sampler,  # ddpm_sampler or ddim_sampler.
    model_kwargs: dict | None = None,  # Further arguments for the model call (the ramp lives in model.guidance).
    **sampler_kwargs,  # clip_denoised, progress, eta (DDIM) ...
) -> torch.Tensor:
    """Sample with classifier-free guidance: doubles the batch, runs `sampler`, keeps the first half."""
    if cfg_scale == 1:
        # No guidance: the plain conditional model, as DiT's sample.py does.
        kwargs = {"y": labels, **(model_kwargs or {})}
        return sampler(model, noise, num_steps=num_steps, model_kwargs=kwargs, randn_like=randn_like, **sampler_kwargs)
    z = torch.cat([noise, noise])
    y = torch.cat([labels, torch.full_like(labels, null_class)])
    kwargs = {"y": y, "cfg_scale": cfg_scale, **(model_kwargs or {})}
    out = sampler(
        model.forward_with_cfg,
        z,
        num_steps=num_steps,
        model_kwargs=kwargs,
        randn_like=_duplicated(randn_like),
        **sampler_kwargs,
    )
    return out[: noise.shape[0]]


class GuidedDenoiser(torch.nn.Module):
    """Classifier-free guidance for an image-space EDM denoiser (docs/PROTOCOL.md, "Guidance in image space").

    D_s(x; sigma, y) = D(x; sigma, 0) + s (D(x; sigma, y) - D(x; sigma, 0)): the zero label vector is
    the unconditional model that EDM's label dropout trains, every pixel channel is guided
    and the scale is constant over sigma. Both halves run as one doubled batch [x; x] with labels
    [y; 0], so one call of the sampler costs one network call at twice the batch. This wrapper has
    no noise of its own, so a sample's randomness does not depend on guidance.
    """

    def __init__(self, denoiser: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.denoiser, self.scale = denoiser, float(scale)
        self.sigma_min = getattr(denoiser, "sigma_min", 0)
        self.sigma_max = getattr(denoiser, "sigma_max", float("inf"))

    def round_sigma(self, sigma):
        return getattr(self.denoiser, "round_sigma", torch.as_tensor)(sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return self.denoiser(x, sigma, class_labels)
        y = torch.cat([class_labels, torch.zeros_like(class_labels)])
        both = self.denoiser(torch.cat([x, x]), sigma, y)
        cond, uncond = both.chunk(2)
        return uncond + self.scale * (cond - uncond)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 class indices [N] -> float32 one-hot rows [N, num_classes] (EDM's `class_labels`)."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)
