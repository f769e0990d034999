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

from diffit_eval.assets.cache import cached_weights_path, resolve_weights_file

__all__ = ["DINOV2_ENV", "DINOV2_URL", "default_dinov2_path", "resolve_dinov2_weights"]

DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
DINOV2_ENV = "DIFFIT_EVAL_DINOV2_WEIGHTS"
DINOV2_FLAG = "--dinov2-weights PATH"


def default_dinov2_path() -> Path:
    return cached_weights_path(DINOV2_URL)


def resolve_dinov2_weights(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Path:
    """`path`, else `$DIFFIT_EVAL_DINOV2_WEIGHTS`, else the cache, else a download (1.2 GB)."""
    return resolve_weights_file(
        path,
        env=DINOV2_ENV,
        url=DINOV2_URL,
        what="DINOv2 weights",
        flag=DINOV2_FLAG,
        fetch_name="dinov2-vitl14",
        allow_download=allow_download,
    )
