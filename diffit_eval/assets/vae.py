"""The Stable Diffusion VAE for latent DiffiT: a local folder, the local Hugging Face cache, or a
download from the hub when it answers (a short socket probe first, so offline fails in seconds)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

from diffit.errors import AssetUnavailableError
from diffit.vae import LOCAL_HINT, load_local_vae, prepare_vae, vae_repo

from diffit_eval.errors import MissingAssetError, diffit_errors

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

__all__ = ["STANDIN_VAE", "hub_reachable", "load_or_fetch_vae"]

# `--vae tiny`: the random 8x decoder of diffit.testing (the latent-tiny preset's), via diffit_eval.standins
STANDIN_VAE = "tiny"

# The files `AutoencoderKL.from_pretrained` reads (safetensors preferred, as diffusers does).
_VAE_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection within `timeout` seconds."""
    # huggingface_hub retries an unreachable host for ~30 s; a short probe fails fast instead.
    if os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # Through a proxy a direct probe says nothing; let the download try.
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
        return True
    except OSError:
        return False


def load_or_fetch_vae(
    source: str = "ema",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
) -> AutoencoderKL:
    """An `AutoencoderKL` in eval mode: `tiny` (STAND-IN), a local folder, a cached or downloaded hub model.

    Raises MissingAssetError (one line, `--vae PATH`) when a hub model is neither cached nor reachable.
    """
    if source == STANDIN_VAE:
        from diffit_eval.standins import tiny_vae

        return prepare_vae(tiny_vae(), dtype, device)
    try:
        return load_local_vae(source, dtype, device, cache_dir)
    except AssetUnavailableError as cached_error:
        repo = vae_repo(source)
        if not hub_reachable():
            raise MissingAssetError(
                f"cannot load VAE {repo!r}: not cached and Hugging Face is unreachable; {LOCAL_HINT}"
            ) from cached_error
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(repo, cache_dir=cache_dir, allow_patterns=_VAE_FILES)
        except Exception as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise MissingAssetError(f"cannot load VAE {repo!r} ({reason}); {LOCAL_HINT}") from error
    with diffit_errors():
        return load_local_vae(source, dtype, device, cache_dir)
