"""DDPM ancestral sampling as in ADM/DiT (Ho et al. 2020; Nichol & Dhariwal 2021), plus DDIM.

Only what sampling needs (docs/PROTOCOL.md, "DDPM"; Dhariwal & Nichol 2021): the 1000-step linear beta schedule, ADM's
respacing to fewer steps, the learned-range variance, the ancestral step and the DDIM step.
Schedule terms are computed in float64 NumPy and gathered per step to float32 (float64 when the
state is float64), as ADM's `_extract_into_tensor` does, so each step's arithmetic is ADM's.

The model is called as `model(x, t, **model_kwargs)` with `t` the *original* timestep indices
(0..999, int64, shape [N]) and returns 2C channels: eps, then the variance values v in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

NUM_TIMESTEPS = 1000  # Length of the training diffusion.

# ----------------------------------------------------------------------------
# Schedule.


def linear_betas(num_timesteps: int = NUM_TIMESTEPS) -> np.ndarray:
    """ADM's linear schedule: betas from 1e-4 to 0.02 (scaled by 1000/T for other lengths), float64."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps: int, num_steps: int) -> list[int]:
    """ADM's `space_timesteps(T, str(num_steps))`: evenly strided original indices, first 0, last T-1.

    Rule: a float cursor starts at 0 and advances by (T-1)/(num_steps-1); each kept index is
    Python's round() of the cursor. For 250 of 1000 this is i_k = round(k * 999/249) of docs/PROTOCOL.md, "DDPM"
    section 4 (no k*999/249 lies within float error of a .5 tie, so both readings agree).
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"cannot take {num_steps} steps from {num_timesteps}")
    frac_stride = 1 if num_steps == 1 else (num_timesteps - 1) / (num_steps - 1)
    cur_idx = 0.0
    taken = []
    for _ in range(num_steps):
        taken.append(round(cur_idx))
        cur_idx += frac_stride
    return taken


class StepTerms(NamedTuple):
    """The schedule's terms at the current step, each broadcast against x (ADM's names)."""

    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    log_betas: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor


class RespacedSchedule:
    """The terms of a linear-beta diffusion respaced to `num_steps`, named as in ADM (float64 NumPy).

    Index k runs over the kept steps; `timesteps[k]` is the original index the network receives.
    """

    def __init__(self, num_steps: int = 250, num_timesteps: int = NUM_TIMESTEPS) -> None:
        if num_steps < 2:
            # The t = 0 log-variance is clipped by the t = 1 value, which one step does not have.
            raise ValueError(f"DDPM sampling needs at least 2 steps, got {num_steps}")
        self.num_steps = num_steps
        self.timesteps = np.asarray(space_timesteps(num_timesteps, num_steps), dtype=np.int64)

        # Betas recomputed from the kept cumulative alphas: beta_k = 1 - abar_k / abar_{k-1}.
        base_alphas_cumprod = np.cumprod(1.0 - linear_betas(num_timesteps))
        kept = base_alphas_cumprod[self.timesteps]
        self.betas = 1.0 - kept / np.append(1.0, kept[:-1])

        # From here on ADM's GaussianDiffusion terms, rebuilt from the respaced betas.
        alphas = 1.0 - self.betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.log_betas = np.log(self.betas)

        # Posterior q(x_{k-1} | x_k, x_0). Its variance is 0 at k = 0, so the log is clipped there
        # by the k = 1 value (only the learned-range interpolation reads it; no noise is added at k = 0).
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self._tables: dict[torch.device, StepTerms] = {}

    def at(self, k: torch.Tensor, x: torch.Tensor) -> StepTerms:
        """Every term at step indices k, shaped to broadcast against x: `sched.at(k, x).log_betas`.

        Float32 as ADM's `_extract_into_tensor` (`.float()`), unless x is float64.
        """
        dtype = torch.promote_types(torch.float32, x.dtype)
        if x.device not in self._tables:  # Copy the float64 tables to the device once.
            self._tables[x.device] = StepTerms(
                *(torch.from_numpy(getattr(self, name)).to(x.device) for name in StepTerms._fields)
            )
        shape = (-1, *[1] * (x.ndim - 1))
        return StepTerms(*(table[k].to(dtype).reshape(shape) for table in self._tables[x.device]))


# ----------------------------------------------------------------------------
# Samplers.


def _split_output(out: torch.Tensor, x: torch.Tensor, need_variance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    C = x.shape[1]
    if out.shape[1] == 2 * C:
        eps, var_values = torch.split(out, C, dim=1)
        return eps, var_values
    if out.shape[1] == C and not need_variance:
        return out, None
    want = "2C" if need_variance else "C or 2C"
    raise ValueError(f"model returned {out.shape[1]} channels for a {C}-channel state; expected {want}")


def _steps(num_steps: int, progress: bool):
    steps = range(num_steps - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps)
    return steps


def _predict_xstart(at: StepTerms, x: torch.Tensor, eps: torch.Tensor, clip: bool) -> torch.Tensor:
    """x_0 = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps, optionally clamped to [-1, 1]."""
    pred_xstart = at.sqrt_recip_alphas_cumprod * x - at.sqrt_recipm1_alphas_cumprod * eps
    return pred_xstart.clamp(-1, 1) if clip else pred_xstart


@torch.no_grad()
def ddpm_sampler(
    model: Callable[..., torch.Tensor],  # model(x, t, **model_kwargs) -> [eps, v] on the channel axis.
    noise: torch.Tensor,  # x_T, unit-variance noise, NCHW.
    num_steps: int = 250,  # Respaced steps out of 1000; one model call each.
    model_kwargs: dict | None = None,  # Extra model arguments, e.g. {"y": labels}.
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
    clip_denoised: bool = False,  # Clamp the x_0 prediction to [-1, 1] (DiT: off).
    progress: bool = False,
) -> torch.Tensor:
    """ADM's ancestral sampler (p_sample_loop) with learned-range variance on the respaced schedule.

    Noise is drawn at every step, the last included, and masked at k = 0, as ADM does, so a seed
    stream gives the same numbers as ADM's loop.
    """
    model_kwargs = model_kwargs or {}
    sched = RespacedSchedule(num_steps)
    timesteps = torch.from_numpy(sched.timesteps).to(noise.device)
    x = noise
    for i in _steps(num_steps, progress):
        k = torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)
        eps, var_values = _split_output(model(x, timesteps[k], **model_kwargs), x, need_variance=True)
        at = sched.at(k, x)

        # Learned range: interpolate the log variance between the posterior's and beta's.
        min_log = at.posterior_log_variance_clipped
        max_log = at.log_betas
        frac = (var_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log

        # Predict x_0 from eps, then take the posterior mean at that x_0.
        pred_xstart = _predict_xstart(at, x, eps, clip_denoised)
        model_mean = at.posterior_mean_coef1 * pred_xstart + at.posterior_mean_coef2 * x

        # Ancestral step; no noise at the last step.
        z = randn_like(x)
        nonzero_mask = (k != 0).to(min_log.dtype).reshape(-1, *[1] * (x.ndim - 1))
        x = model_mean + nonzero_mask * torch.exp(0.5 * model_log_variance) * z
    return x


@torch.no_grad()
def ddim_sampler(
    model: Callable[..., torch.Tensor],  # model(x, t, **model_kwargs) -> eps (variance channels ignored).
    noise: torch.Tensor,  # x_T, unit-variance noise, NCHW.
    num_steps: int = 250,  # Respaced steps out of 1000 (the same respacing as DDPM).
    model_kwargs: dict | None = None,
    randn_like: Callable[[torch.Tensor], torch.Tensor] = torch.randn_like,
    clip_denoised: bool = False,
    progress: bool = False,
    eta: float = 0.0,  # 0: deterministic DDIM; 1: DDPM-like noise.
) -> torch.Tensor:
    """ADM's DDIM sampler (ddim_sample_loop). Noise is drawn every step as ADM does, even for eta = 0."""
    model_kwargs = model_kwargs or {}
    sched = RespacedSchedule(num_steps)
    timesteps = torch.from_numpy(sched.timesteps).to(noise.device)
    x = noise
    for i in _steps(num_steps, progress):
        k = torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)
        eps, _ = _split_output(model(x, timesteps[k], **model_kwargs), x, need_variance=False)
        at = sched.at(k, x)

        # Predict x_0, then re-derive eps from it (they differ only when x_0 is clipped).
        pred_xstart = _predict_xstart(at, x, eps, clip_denoised)
        eps = (at.sqrt_recip_alphas_cumprod * x - pred_xstart) / at.sqrt_recipm1_alphas_cumprod

        # DDIM step (Song et al. 2021, Eq. 12).
        alpha_bar = at.alphas_cumprod
        alpha_bar_prev = at.alphas_cumprod_prev
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        z = randn_like(x)
        mean_pred = pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        nonzero_mask = (k != 0).to(alpha_bar.dtype).reshape(-1, *[1] * (x.ndim - 1))
        x = mean_pred + nonzero_mask * sigma * z
    return x
