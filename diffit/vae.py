"""The Stable Diffusion VAE decoder used by latent DiffiT and DiT (SPEC.md section 2, "Decoding").

Latents are divided by LATENT_SCALE exactly once, in `decode_latents`, before the diffusers
`AutoencoderKL` decodes them; nothing else in the toolkit rescales latents.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

if TYPE_CHECKING:  # diffusers is imported lazily: importing it takes seconds.
    from diffusers import AutoencoderKL

LATENT_SCALE = 0.18215  # Scale of SD VAE latents: the diffusion runs on z * 0.18215.

# Name -> Hugging Face repo id. "tiny" is a small random model for tests (no download).
VAE_SOURCES: dict[str, str] = {
    "ema": "stabilityai/sd-vae-ft-ema",
    "mse": "stabilityai/sd-vae-ft-mse",
    "tiny": "tiny",
}

_LOCAL_HINT = "pass --vae PATH to a local diffusers folder (with config.json and diffusion_pytorch_model.safetensors)"


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A randomly initialised AutoencoderKL with the real one's layout rules: 4 -> 3 channels, 8x upsampling."""
    from diffusers import AutoencoderKL

    from diffit.seeded import init_like_torch_

    with torch.random.fork_rng(devices=[]):  # diffusers' own init must not touch the caller's stream
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,  # 4 blocks -> 3 downsamplings -> 8x, as sd-vae.
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=32,
        )
    # Re-drawn from PCG64 so the weights are the same bits on every CPU (diffit/seeded.py).
    return init_like_torch_(vae, seed).eval()


def _hub_reachable(timeout: float = 3.0) -> bool:
    # huggingface_hub retries an unreachable host for ~30 s; a short probe fails fast instead.
    if os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # Through a proxy a direct probe says nothing; let the download try.
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_vae(source: str = "ema", dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
             cache_dir: str | None = None) -> AutoencoderKL:
    """An `AutoencoderKL` in eval mode from a name in VAE_SOURCES, a Hugging Face repo id or a local folder.

    Raises `diffit_eval.errors.MissingAssetError` (one line) when a hub model is neither cached nor reachable.
    """
    from diffusers import AutoencoderKL

    with _quiet_diffusers():
        return _load_vae(AutoencoderKL, source, dtype, device, cache_dir)


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


def _load_vae(AutoencoderKL, source: str, dtype: torch.dtype, device: torch.device | str,
              cache_dir: str | None) -> AutoencoderKL:
    if source == "tiny":
        vae = tiny_vae()
    elif Path(source).is_dir():
        vae = AutoencoderKL.from_pretrained(source, torch_dtype=dtype)
    else:
        repo = VAE_SOURCES.get(source, source)
        try:
            # A cached copy needs no network; only then try the hub, and only if it answers.
            vae = AutoencoderKL.from_pretrained(repo, torch_dtype=dtype, cache_dir=cache_dir, local_files_only=True)
        except Exception as cached_error:
            if not _hub_reachable():
                from diffit_eval.errors import MissingAssetError

                message = f"cannot load VAE {repo!r}: not cached and Hugging Face is unreachable; {_LOCAL_HINT}"
                raise MissingAssetError(message) from cached_error
            try:
                vae = AutoencoderKL.from_pretrained(repo, torch_dtype=dtype, cache_dir=cache_dir)
            except Exception as error:
                from diffit_eval.errors import MissingAssetError

                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise MissingAssetError(f"cannot load VAE {repo!r} ({reason}); {_LOCAL_HINT}") from error
    if vae.dtype != dtype:  # Only cast when needed: diffusers warns on every dtype cast.
        vae = vae.to(dtype=dtype)
    return vae.to(device=device).eval().requires_grad_(False)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """Images NCHW float32, nominally in [-1, 1] (not clamped: `to_uint8` clamps), from diffusion latents.

    The decoder runs in the VAE's dtype (fp16/bf16 if loaded so); the output is returned as float32.
    """
    x = vae.decode((z / LATENT_SCALE).to(device=vae.device, dtype=vae.dtype)).sample
    return x.float()
