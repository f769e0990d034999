"""Released DiffiT checkpoints by name: downloaded once into `<cache>/checkpoints/`, then read by
:func:`diffit.checkpoint.load_checkpoint` like any local file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from diffit.checkpoint import CHECKPOINTS, load_checkpoint, local_checkpoint

from diffit_eval.errors import diffit_errors

__all__ = ["load_released", "resolve_checkpoint"]


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local path as is, or a released name downloaded (with a progress bar) into the cache.

    Offline, a name raises MissingAssetError with the URL and `--ckpt PATH`; an unknown name or a
    missing path is a UserError (exit 1).
    """
    from diffit_eval.assets.cache import cache_dir, download

    name = str(source)
    if name in CHECKPOINTS and not Path(source).expanduser().is_file():
        entry = CHECKPOINTS[name]
        dest = cache_dir() / "checkpoints" / entry.filename
        if dest.is_file():
            return dest
        return download(entry.url, dest, what=f"DiffiT checkpoint {name}", alternative="--ckpt PATH")
    with diffit_errors():
        return local_checkpoint(source)


def load_released(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """:func:`diffit.checkpoint.load_checkpoint` after resolving a released name; errors as UserError."""
    if not isinstance(source, Mapping):
        source = resolve_checkpoint(source)
    with diffit_errors():
        return load_checkpoint(model, source)
