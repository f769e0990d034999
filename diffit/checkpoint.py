"""Checkpoints: the released DiffiT weights by name, or a local file, loaded strictly.

A source is a path (`.safetensors`, `.pt`, `.pth`; a plain state_dict or one wrapped under
`ema`, `model` or `state_dict`) or a name from :data:`CHECKPOINTS`, downloaded once into
`<cache>/checkpoints/` through :func:`diffit_eval.cache.download`. Loading is strict: any missing,
unexpected or wrongly shaped key is one error naming the first few of each, never a silent
partial load.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "CHECKPOINTS", "CheckpointSource", "CheckpointMismatchError", "CheckpointNotFoundError",
    "load_checkpoint", "resolve_checkpoint", "read_state_dict",
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


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes differ from the model's."""


class CheckpointNotFoundError(FileNotFoundError):
    """A local checkpoint path does not exist, or a file cannot be read as a checkpoint."""


@functools.cache
def _with_user_error(cls: type[Exception]) -> type[Exception]:
    # diffit never imports diffit_eval at module level; when the CLI's package is present the
    # error is also a UserError, so the CLI prints it as one line instead of a traceback.
    try:
        from diffit_eval.errors import UserError
    except ImportError:
        return cls
    return type(cls.__name__, (cls, UserError), {"__module__": __name__, "__doc__": cls.__doc__})


def _error(cls: type[Exception], message: str) -> Exception:
    return _with_user_error(cls)(message)


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """A local path as is, or a released name downloaded (with a progress bar) into the cache."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    name = str(source)
    if name in CHECKPOINTS:
        from diffit_eval.cache import cache_dir, download

        entry = CHECKPOINTS[name]
        dest = cache_dir() / "checkpoints" / entry.filename
        if dest.is_file():
            return dest
        return download(entry.url, dest, what=f"DiffiT checkpoint {name}", alternative="--ckpt PATH")
    raise _error(CheckpointNotFoundError,
                 f"checkpoint not found: {name} (not a file, nor one of {', '.join(CHECKPOINTS)})")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise _error(CheckpointMismatchError,
                     f"{path} holds no state_dict (expected tensors, possibly under one of {_WRAPPER_KEYS})")
    sd = dict(obj)
    # DDP and torch.compile prefixes say nothing about the weights.
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
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
        raise _error(CheckpointNotFoundError, f"cannot read checkpoint {path}: {first}") from None
    raise _error(CheckpointNotFoundError,
                 f"cannot read checkpoint {path}: unknown suffix {suffix!r} (use .safetensors, .pt or .pth)")


def _mismatch(model_sd: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> str | None:
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    shaped = [f"{k} (checkpoint {list(sd[k].shape)}, model {list(v.shape)})"
              for k, v in model_sd.items() if k in sd and sd[k].shape != v.shape]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped)):
        if keys:
            more = f", ... {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOW])}{more}")
    return "; ".join(parts) if parts else None


def load_checkpoint(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load weights strictly into `model` from a path, a released name or a state_dict; returns `model`.

    Raises :class:`CheckpointMismatchError` (also a `diffit_eval` UserError) naming the first
    missing, unexpected and wrongly shaped keys, and :class:`CheckpointNotFoundError` for a path
    that does not exist. Offline, a name raises `MissingAssetError` with the URL and `--ckpt`.
    """
    if isinstance(source, Mapping):
        where, sd = "state_dict", _unwrap(source, Path("state_dict"))
    else:
        path = resolve_checkpoint(source)
        where, sd = str(path), read_state_dict(path)
    problem = _mismatch(model.state_dict(), sd)
    if problem:
        raise _error(CheckpointMismatchError,
                     f"checkpoint {where} does not match the model ({type(model).__name__}): {problem}")
    model.load_state_dict(sd, strict=True)
    return model
