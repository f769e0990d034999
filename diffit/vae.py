"""The Stable Diffusion VAE decoder used by latent DiffiT and DiT (docs/PROTOCOL.md, "Decoding").

Latents are divided by LATENT_SCALE exactly once, in `decode_latents`, before the diffusers
`AutoencoderKL` decodes them; nothing else in the toolkit rescales latents. :func:`load_local_vae`
reads a local folder or the local Hugging Face cache only; fetching from the hub is the caller's
job (`diffit_eval.assets.vae.load_or_fetch_vae`), so this module never touches the network.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from diffit.errors import AssetUnavailableError

if TYPE_CHECKING:  # diffusers is imported lazily: importing it takes seconds.
    from diffusers import AutoencoderKL

__all__ = [
    "LATENT_SCALE",
    "LOCAL_HINT",
    "VAE_SOURCES",
    "decode_latents",
    "load_local_vae",
    "prepare_vae",
    "vae_repo",
    "vae_url",
]

LATENT_SCALE = 0.18215  # Scale of SD VAE latents: the diffusion runs on z * 0.18215.

# Name -> Hugging Face repo id of the released decoders.
VAE_SOURCES: dict[str, str] = {
    "ema": "stabilityai/sd-vae-ft-ema",
    "mse": "stabilityai/sd-vae-ft-mse",
}

LOCAL_HINT = "pass --vae PATH to a local diffusers folder (with config.json and diffusion_pytorch_model.safetensors)"


def vae_repo(source: str) -> str:
    """The Hugging Face repo id of a name in VAE_SOURCES, or `source` itself."""
    return VAE_SOURCES.get(source, source)


def vae_url(source: str) -> str:
    """Where a hub VAE is published."""
    return f"https://huggingface.co/{vae_repo(source)}"


def load_local_vae(
    source: str = "ema",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> AutoencoderKL:
    """An `AutoencoderKL` in eval mode from a local diffusers folder, or a VAE_SOURCES name / repo id
    already in the local Hugging Face cache.

    Raises :class:`AssetUnavailableError` (one line, with the URL and `--vae PATH`) when a hub model
    is not cached; nothing is downloaded here.
    """
    from diffusers import AutoencoderKL

    with _quiet_diffusers():
        if Path(source).is_dir():
            vae = AutoencoderKL.from_pretrained(source, torch_dtype=dtype)
        else:
            repo = vae_repo(source)
            try:
                vae = AutoencoderKL.from_pretrained(repo, torch_dtype=dtype, cache_dir=cache_dir, local_files_only=True)
            except Exception as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise AssetUnavailableError(
                    f"cannot load VAE {repo!r}: not in the local cache ({reason}); {LOCAL_HINT}",
                    url=vae_url(source),
                    alternative="--vae PATH",
                ) from error
    return prepare_vae(vae, dtype, device)


def prepare_vae(
    vae: AutoencoderKL, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> AutoencoderKL:
    """`vae` in `dtype` on `device`, in eval mode, frozen."""
    if vae.dtype != dtype:  # Only cast when needed: diffusers warns on every dtype cast.
        vae = vae.to(dtype=dtype)
    return vae.to(device=device).eval().requires_grad_(False)


@contextlib.contextmanager
def _quiet_diffusers():
    """diffusers and huggingface_hub warn about optional packages and deprecated arguments on every
    load; a failed load must end in one line, so their chatter is muted while loading."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """Images NCHW float32, nominally in [-1, 1] (not clamped: `to_uint8` clamps), from diffusion latents.

    The decoder runs in the VAE's dtype (fp16/bf16 if loaded so); the output is returned as float32.
    """
    x = vae.decode((z / LATENT_SCALE).to(device=vae.device, dtype=vae.dtype)).sample
    return x.float()
