"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models").

Preconditioning (Table 1, "Ours"), the training loss (Eq. 2 with the log-normal sigma density, :class:`EDMLoss`)
and the deterministic 2nd-order sampler (Algorithm 2, with Algorithm 2's optional churn). Used
for the image-space DiffiT models (docs/PROTOCOL.md, "EDM"; Karras et al. 2022). The sampler's signature is the one of
EDM's `generate.py`, so a network written for EDM can be passed in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from diffit.random import BatchRandom

# ----------------------------------------------------------------------------
# Preconditioning and loss.


class EDMPrecond(torch.nn.Module):
    """Turns a raw network F(x, noise_labels) into the denoiser D(x; sigma) of EDM Table 1."""

    def __init__(
        self,
        model: torch.nn.Module,  # Raw network F, called as model(x, noise_labels).
        sigma_data: float = 0.5,  # Expected standard deviation of the training data.
        sigma_min: float = 0.0,  # Lowest supported noise level.
        sigma_max: float = float("inf"),  # Highest supported noise level.
    ) -> None:
        super().__init__()
        self.model = model
        self.sigma_data = sigma_data
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None, **model_kwargs
    ) -> torch.Tensor:
        # The inner network runs in float32 whatever the sampler's state precision (EDM does the same).
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, *[1] * (x.ndim - 1))
        sigma_data = self.sigma_data

        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
        c_in = 1 / (sigma**2 + sigma_data**2).sqrt()
        c_noise = sigma.log() / 4

        # The raw network takes one noise label per sample, also when the sampler passes one sigma.
        noise_labels = c_noise.reshape(-1).expand(x.shape[0])
        if class_labels is not None:
            model_kwargs["class_labels"] = class_labels
        F_x = self.model(c_in * x, noise_labels, **model_kwargs)
        D_x = c_skip * x + c_out * F_x.to(torch.float32)
        return D_x

    def round_sigma(self, sigma: torch.Tensor | float) -> torch.Tensor:
        # Continuous-time network: every sigma is representable.
        return torch.as_tensor(sigma)


class EDMLoss:
    """EDM's training loss (Karras et al. 2022, Eq. 2 and Table 1; NVlabs/edm `training/loss.py`), per element.

    ln(sigma) ~ N(P_mean, P_std^2), lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
    loss = lambda(sigma) |D(y + n; sigma) - y|^2 with n ~ N(0, sigma^2 I), where y is the image
    after the (optional) augmentation pipe, whose labels condition D. The caller reduces it.
    """

    def __init__(
        self,
        P_mean: float = -1.2,  # Mean of ln(sigma) during training.
        P_std: float = 1.2,  # Standard deviation of ln(sigma) during training.
        sigma_data: float = 0.5,  # Expected standard deviation of the training data.
    ) -> None:
        self.P_mean = P_mean
        self.P_std = P_std
        self.sigma_data = sigma_data

    def __call__(
        self,
        net: Callable[..., torch.Tensor],
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        augment_pipe: Callable | None = None,
        rnd: BatchRandom | None = None,
    ) -> torch.Tensor:
        rnd = rnd if rnd is not None else BatchRandom(device=images.device)
        # One sigma per image (drawn first, as in EDM), then the augmentation, then the noise.
        rnd_normal = rnd.randn([images.shape[0], 1, 1, 1], device=images.device)
        sigma = (rnd_normal * self.P_std + self.P_mean).exp()
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        y, augment_labels = augment_pipe(images, rnd) if augment_pipe is not None else (images, None)
        n = rnd.randn_like(y) * sigma
        kwargs = {} if augment_labels is None else {"augment_labels": augment_labels}
        D_yn = net(y + n, sigma, labels, **kwargs)
        loss = weight * ((D_yn - y) ** 2)
        return loss


class _FromRandnLike(BatchRandom):
    """A BatchRandom whose normal draws come from a `randn_like` function (per-sample generators)."""

    def __init__(self, randn_like: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self._randn_like = randn_like

    def randn(self, size, dtype=None, device=None, **kwargs) -> torch.Tensor:
        return self._randn_like(torch.empty(list(size), dtype=dtype or torch.float32, device=device))


def edm_loss(
    D: Callable[..., torch.Tensor],  # Denoiser D(x, sigma, class_labels), e.g. an EDMPrecond.
    images: torch.Tensor,  # Clean training images, NCHW, scaled to [-1, 1].
    class_labels: torch.Tensor | None = None,
    P_mean: float = -1.2,  # Mean of ln(sigma) during training.
    P_std: float = 1.2,  # Standard deviation of ln(sigma) during training.
    sigma_data: float = 0.5,  # Expected standard deviation of the training data.
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
) -> torch.Tensor:
    """:class:`EDMLoss` without augmentation, its draws through `randn_like` (per-sample generators)."""
    return EDMLoss(P_mean, P_std, sigma_data)(D, images, class_labels, rnd=_FromRandnLike(randn_like))


# ----------------------------------------------------------------------------
# Sampler.


def edm_sigma_steps(
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80,
    rho: float = 7,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The N+1 noise levels of EDM Eq. 5, float64: sigma_0 = sigma_max, ..., sigma_{N-1} = sigma_min, sigma_N = 0."""
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}")
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    sigmas = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros_like(sigmas[:1])])


@torch.no_grad()
def edm_sampler(
    net: Callable[..., torch.Tensor],  # Denoiser D(x, sigma, class_labels).
    latents: torch.Tensor,  # Unit-variance initial noise, NCHW.
    class_labels: torch.Tensor | None = None,
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
    num_steps: int = 18,  # N: 2N-1 network evaluations.
    sigma_min: float = 0.002,  # Lowest noise level before the final step to 0.
    sigma_max: float = 80,  # Highest noise level.
    rho: float = 7,  # Time step exponent.
    S_churn: float = 0,  # Stochasticity strength; 0 gives the deterministic sampler.
    S_min: float = 0,  # Churn only for sigma in [S_min, S_max].
    S_max: float = float("inf"),
    S_noise: float = 1,  # Noise inflation for the churn.
) -> torch.Tensor:
    """EDM Algorithm 2 (Heun, 2nd order); returns float64 samples. Deterministic when S_churn = 0."""
    # Networks that only support part of the noise range say so (EDM's VP/VE wrappers do).
    sigma_min = max(sigma_min, getattr(net, "sigma_min", 0))
    sigma_max = min(sigma_max, getattr(net, "sigma_max", float("inf")))
    round_sigma = getattr(net, "round_sigma", torch.as_tensor)

    # Time step discretization (Eq. 5), t_N = 0.
    t_steps = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho, device=latents.device)
    t_steps = torch.cat([torch.as_tensor(round_sigma(t_steps[:-1]), dtype=torch.float64), t_steps[-1:]])

    # Main sampling loop; the state stays in float64 between network calls.
    x_next = latents.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):  # i = 0, ..., N-1
        x_cur = x_next

        # Increase noise temporarily. The draw is made even when gamma = 0, as in EDM's
        # generate.py, so a seed's stream stays the same as the reference's.
        gamma = min(S_churn / num_steps, np.sqrt(2) - 1) if S_min <= t_cur <= S_max else 0
        t_hat = torch.as_tensor(round_sigma(t_cur + gamma * t_cur), dtype=torch.float64)
        x_hat = x_cur + (t_hat**2 - t_cur**2).sqrt() * S_noise * randn_like(x_cur)

        # Euler step.
        denoised = net(x_hat, t_hat, class_labels).to(torch.float64)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur

        # Apply 2nd order correction, except on the last step (t_next = 0).
        if i < num_steps - 1:
            denoised = net(x_next, t_next, class_labels).to(torch.float64)
            d_prime = (x_next - denoised) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)

    return x_next
