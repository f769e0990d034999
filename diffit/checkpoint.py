"""Checkpoints: a local file or a state_dict, loaded strictly; the released DiffiT weights by name.

A source is a path (`.safetensors`, `.pt`, `.pth`; a plain state_dict or one wrapped under
`ema`, `model` or `state_dict`, docs/PROTOCOL.md "Checkpoints") or a state_dict. :data:`CHECKPOINTS`
says where the released weights are published; `diffit` never downloads them (`diffit_eval.assets`
does, then passes the local path here). Loading is strict: any missing, unexpected or wrongly shaped
key is one error naming the first few of each, never a silent partial load.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from diffit.errors import CheckpointMismatchError, CheckpointNotFoundError
from diffit.weights import SHIPPED_WEIGHTS, shipped_weights

__all__ = [
    "CHECKPOINTS",
    "CheckpointSource",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "load_checkpoint",
    "local_checkpoint",
    "read_state_dict",
]


@dataclass(frozen=True)
class CheckpointSource:
    """A released checkpoint: where it lives and under what terms."""

    url: str
    filename: str
    preset: str
    licence: str


_HF = "https://huggingface.co/nvidia/DiffiT/resolve/main"
_LICENCE = "CC-BY-NC-SA-4.0 (README) / NSCLv1 (model card); downloaded at the user's request, never shipped"

CHECKPOINTS: dict[str, CheckpointSource] = {
    "diffit-256": CheckpointSource(f"{_HF}/diffit_256.safetensors", "diffit_256.safetensors", "latent-256", _LICENCE),
    "diffit-512": CheckpointSource(f"{_HF}/diffit_512.safetensors", "diffit_512.safetensors", "latent-512", _LICENCE),
}

# Wrappers used by training scripts (DiT saves {"model", "ema", "opt", "args"}); EMA weights win.
_WRAPPER_KEYS = ("ema", "model", "state_dict")
_SHOW = 3  # keys named per category in a mismatch message


def local_checkpoint(source: str | os.PathLike) -> Path:
    """`source` as an existing file; a released name or a missing path is CheckpointNotFoundError."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    name = str(source)
    shipped = shipped_weights(name)
    if shipped is not None and shipped.is_file():  # weights inside the package (diffit/weights)
        return shipped
    if name in CHECKPOINTS:
        raise CheckpointNotFoundError(
            f"checkpoint {name} is a released name, not a file: download "
            f"{CHECKPOINTS[name].url} (diffit-eval weights fetch {name}) and pass its path"
        )
    raise CheckpointNotFoundError(
        f"checkpoint not found: {name} (not a file, nor one of {', '.join([*CHECKPOINTS, *SHIPPED_WEIGHTS])})"
    )


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(
            f"{path} holds no state_dict (expected tensors, possibly under one of {_WRAPPER_KEYS})"
        )
    sd = dict(obj)
    # DDP and torch.compile prefixes say nothing about the weights.
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a `.safetensors`, `.pt` or `.pth` file into a plain CPU state_dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return _unwrap(load_file(str(path), device="cpu"), path)
        if suffix in (".pt", ".pth", ".bin", ".ckpt"):
            # weights_only refuses arbitrary pickles; DiT-style files also carry argparse args.
            with torch.serialization.safe_globals([argparse.Namespace]):
                return _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    except (CheckpointMismatchError, CheckpointNotFoundError):
        raise
    except Exception as e:  # a corrupt or foreign file: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointNotFoundError(f"cannot read checkpoint {path}: {first}") from None
    raise CheckpointNotFoundError(
        f"cannot read checkpoint {path}: unknown suffix {suffix!r} (use .safetensors, .pt or .pth)"
    )


def _mismatch(model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> str | None:
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    shaped = [
        f"{k} (checkpoint {list(sd[k].shape)}, model {list(v.shape)})"
        for k, v in model_sd.items()
        if k in sd and sd[k].shape != v.shape
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped)):
        if keys:
            more = f", ... {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOW])}{more}")
    return "; ".join(parts) if parts else None


def load_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load weights strictly into `model` from a local path or a state_dict; returns `model`.

    Raises :class:`CheckpointMismatchError` naming the first missing, unexpected and wrongly shaped
    keys, and :class:`CheckpointNotFoundError` for a path that does not exist (a released name must
    be downloaded first: :func:`diffit_eval.assets.checkpoints.resolve_checkpoint`).
    """
    if isinstance(source, Mapping):
        where, sd = "state_dict", _unwrap(source, Path("state_dict"))
    else:
        path = local_checkpoint(source)
        where, sd = str(path), read_state_dict(path)
    problem = _mismatch(model.state_dict(), sd)
    if problem:
        raise CheckpointMismatchError(
            f"checkpoint {where} does not match the model ({type(model).__name__}): {problem}"
        )
    model.load_state_dict(sd, strict=True)
    return model
