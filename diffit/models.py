"""DiffiT models in one import: the latent DiffiT as released (ImageNet-256/512) and the image-space
U-shaped DiffiT, their layers and presets.

Hatamizadeh et al., "DiffiT: Diffusion Vision Transformers for Image Generation" (ECCV 2024).
Each idea has its own module; this one only gathers them for callers that want one name:

- :mod:`diffit.attention` TMSA and the attention kernel switch;
- :mod:`diffit.layers` embeddings, DiffiT block, DiffiT ResBlock, final layer, resampling;
- :mod:`diffit.guidance` the classifier-free guidance ramp and the :class:`Guidance` setting;
- :mod:`diffit.latent` :class:`LatentDiffiT`; :mod:`diffit.image` :class:`ImageDiffiT`;
- :mod:`diffit.presets` model names, :func:`create_model`, :func:`parameter_count`;

Random weights (stand-ins for tests and demos) are in :mod:`diffit.testing`, not here.
"""

from diffit.attention import TMSA, get_attention_impl, relative_position_index, set_attention_impl
from diffit.guidance import Guidance
from diffit.image import ImageDiffiT
from diffit.latent import LatentDiffiT
from diffit.layers import DiffiTBlock, DiffiTResBlock
from diffit.presets import (
    MODEL_PRESETS,
    PRESET_ALIASES,
    ModelPreset,
    create_model,
    parameter_count,
    preset_info,
    resolve_preset,
)

__all__ = [
    "TMSA",
    "DiffiTBlock",
    "DiffiTResBlock",
    "LatentDiffiT",
    "ImageDiffiT",
    "Guidance",
    "ModelPreset",
    "MODEL_PRESETS",
    "PRESET_ALIASES",
    "create_model",
    "preset_info",
    "resolve_preset",
    "parameter_count",
    "set_attention_impl",
    "get_attention_impl",
    "relative_position_index",
]
