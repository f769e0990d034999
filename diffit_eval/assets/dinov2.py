"""The DINOv2 ViT-L/14 weights of FD_DINOv2 (docs/PROTOCOL.md, "FD_DINOv2"): Meta's released
pretraining checkpoint (Oquab et al., "DINOv2: Learning Robust Visual Features without
Supervision", 2023), found locally or downloaded once into the project cache.

The file is a plain state_dict (no code): torch-fidelity and dgm-eval fetch the model's code from
GitHub through torch.hub, which offline machines cannot reach, so the network itself is written
out in :mod:`diffit_eval.features.dinov2`.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffit_eval.assets.cache import cache_dir, download
from diffit_eval.errors import MissingAssetError, UserError

__all__ = ["DINOV2_ENV", "DINOV2_URL", "default_dinov2_path", "resolve_dinov2_weights"]

DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
DINOV2_ENV = "DIFFIT_EVAL_DINOV2_WEIGHTS"
DINOV2_FLAG = "--dinov2-weights PATH"


def default_dinov2_path() -> Path:
    return cache_dir() / "weights" / DINOV2_URL.rsplit("/", 1)[1]


def cached_or_explicit(path: str | os.PathLike | None = None) -> Path | None:
    """The weights file when it needs no download (`path`, the env variable, the cache), else None."""
    explicit = path or os.environ.get(DINOV2_ENV)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UserError(f"DINOv2 weights file not found: {p}")
        return p
    p = default_dinov2_path()
    return p if p.is_file() else None


def resolve_dinov2_weights(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Path:
    """`path`, else `$DIFFIT_EVAL_DINOV2_WEIGHTS`, else the cache, else a download (1.2 GB)."""
    found = cached_or_explicit(path)
    if found is not None:
        return found
    p = default_dinov2_path()
    if not allow_download:
        raise MissingAssetError(
            f"DINOv2 weights are not cached at {p} and downloads are off; run "
            f"`diffit-eval weights fetch dinov2-vitl14` (downloads {DINOV2_URL}) or pass {DINOV2_FLAG}"
        )
    return download(DINOV2_URL, p, what="DINOv2 ViT-L/14 weights", alternative=DINOV2_FLAG)
