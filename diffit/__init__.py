"""diffit: the DiffiT models and the diffusion maths that sample them.

Importable on its own (no CLI, no evaluation code):

- models: :func:`create_model`, :data:`MODEL_PRESETS`, :func:`load_checkpoint` (local files);
- errors: :class:`DiffitError` and its subclasses, for the caller to map (the CLI: exit codes);
- EDM (image space): :class:`EDMPrecond`, :func:`edm_sampler`, :func:`edm_loss`;
- DDPM (latent): :func:`ddpm_sampler`, :func:`ddim_sampler`, guidance via :func:`guided_ddpm_sample`;
- randomness, decoding and pixels: :class:`StackedRandomGenerator`, :func:`load_local_vae`,
  :func:`decode_latents`, :func:`to_uint8`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from diffit.errors import AssetUnavailableError, CheckpointMismatchError, CheckpointNotFoundError, DiffitError

# Importing `diffit` (or `diffit.errors`) must not load torch: the CLI imports the error types
# before it can turn Ctrl-C into one line. Every other name loads its module on first use.
_LAZY = {
    "CHECKPOINTS": "diffit.checkpoint",
    "load_checkpoint": "diffit.checkpoint",
    "ddim_sampler": "diffit.ddpm",
    "ddpm_sampler": "diffit.ddpm",
    "EDMPrecond": "diffit.edm",
    "edm_loss": "diffit.edm",
    "edm_sampler": "diffit.edm",
    "cfg_scale_at": "diffit.guidance",
    "guided_ddpm_sample": "diffit.guidance",
    "to_uint8": "diffit.quantize",
    "MODEL_PRESETS": "diffit.presets",
    "create_model": "diffit.presets",
    "preset_info": "diffit.presets",
    "StackedRandomGenerator": "diffit.random",
    "decode_latents": "diffit.vae",
    "load_local_vae": "diffit.vae",
}

if TYPE_CHECKING:
    from diffit.checkpoint import CHECKPOINTS, load_checkpoint
    from diffit.ddpm import ddim_sampler, ddpm_sampler
    from diffit.edm import EDMPrecond, edm_loss, edm_sampler
    from diffit.guidance import cfg_scale_at, guided_ddpm_sample
    from diffit.presets import MODEL_PRESETS, create_model, preset_info
    from diffit.quantize import to_uint8
    from diffit.random import StackedRandomGenerator
    from diffit.vae import decode_latents, load_local_vae


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diffit' has no attribute {name!r}")


__all__ = [
    "AssetUnavailableError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "DiffitError",
    "CHECKPOINTS",
    "MODEL_PRESETS",
    "EDMPrecond",
    "StackedRandomGenerator",
    "cfg_scale_at",
    "create_model",
    "ddim_sampler",
    "ddpm_sampler",
    "decode_latents",
    "edm_loss",
    "edm_sampler",
    "guided_ddpm_sample",
    "load_checkpoint",
    "load_local_vae",
    "preset_info",
    "to_uint8",
]
