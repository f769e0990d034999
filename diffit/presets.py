"""Model presets: every model name, how to build it and how it is meant to be sampled.

A preset is data (:class:`ModelPreset`); :func:`create_model` builds one with fresh weights and
:func:`diffit.checkpoint.load_checkpoint` fills in trained ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from diffit.guidance import Guidance
from diffit.image import DiffiT_CIFAR10, DiffiT_FFHQ64, DiffiT_image_tiny, ImageDiffiT
from diffit.latent import DiffiT_tiny, DiffiT_XL_2

__all__ = [
    "MODEL_PRESETS",
    "PRESET_ALIASES",
    "ModelPreset",
    "create_model",
    "parameter_count",
    "preset_info",
    "resolve_preset",
]


@dataclass(frozen=True)
class ModelPreset:
    """A model name: how to build it and how it is meant to be sampled."""

    kind: Literal["latent", "image"]
    factory: Callable[..., nn.Module]
    config: dict[str, Any]  # Arguments passed to the factory before any override.
    latent_size: int | None  # Latent side (pixels = latent_size * 8); None in image space.
    img_resolution: int | None  # Image side for image-space models; None for latent ones.
    num_classes: int  # 0 = unconditional; latent models add a null class.
    sampler: Literal["ddpm", "edm"]
    steps: int
    guidance: Guidance | None  # Default classifier-free guidance; None = unguided.
    checkpoint: str | None  # Name in diffit.checkpoint.CHECKPOINTS, or None.
    licence: str
    description: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def image_channels(self) -> int:
        """Channels an image-space model denoises: 3 (RGB), or 1 for a grey model shown as RGB."""
        return int(self.config.get("in_channels", 3))

    @property
    def resolution(self) -> int:
        """Generated image side in pixels (a latent model's VAE up-samples by 8)."""
        return self.latent_size * 8 if self.kind == "latent" else self.img_resolution


# Weights are downloaded at the user's request and never shipped (docs/PROTOCOL.md, "Checkpoints").
_RELEASE_LICENCE = "CC-BY-NC-SA-4.0 (README) / NSCLv1 (model card)"
_NO_WEIGHTS = "no released weights"
_TEST_ONLY = "test model, random weights"

MODEL_PRESETS: dict[str, ModelPreset] = {
    "latent-256": ModelPreset(
        kind="latent",
        factory=DiffiT_XL_2,
        config=dict(input_size=32),
        latent_size=32,
        img_resolution=None,
        num_classes=1000,
        sampler="ddpm",
        steps=250,
        guidance=Guidance(scale=4.4, ramp="power-cosine", power=4.0),
        checkpoint="diffit-256",
        licence=_RELEASE_LICENCE,
        aliases=("latent",),
        description="Latent DiffiT, ImageNet 256x256 (FID 1.73), power-cosine guidance ramp, s = 4.4",
    ),
    "latent-512": ModelPreset(
        kind="latent",
        factory=DiffiT_XL_2,
        config=dict(input_size=64),
        latent_size=64,
        img_resolution=None,
        num_classes=1000,
        sampler="ddpm",
        steps=250,
        guidance=Guidance(scale=1.49, ramp="constant"),
        checkpoint="diffit-512",
        licence=_RELEASE_LICENCE,
        description="Latent DiffiT, ImageNet 512x512 (FID 2.67), constant guidance s = 1.49",
    ),
    "cifar10": ModelPreset(
        kind="image",
        factory=DiffiT_CIFAR10,
        config={},
        latent_size=None,
        img_resolution=32,
        num_classes=0,
        sampler="edm",
        steps=18,
        guidance=None,
        checkpoint=None,
        licence=_NO_WEIGHTS,
        description="Image-space DiffiT, CIFAR-10 32x32 unconditional (paper FID 1.95), EDM sampler",
    ),
    "ffhq64": ModelPreset(
        kind="image",
        factory=DiffiT_FFHQ64,
        config={},
        latent_size=None,
        img_resolution=64,
        num_classes=0,
        sampler="edm",
        steps=40,
        guidance=None,
        checkpoint=None,
        licence=_NO_WEIGHTS,
        description="Image-space DiffiT, FFHQ 64x64 unconditional (paper FID 2.22), EDM sampler",
    ),
    "latent-tiny": ModelPreset(
        kind="latent",
        factory=DiffiT_tiny,
        config={},
        latent_size=8,
        img_resolution=None,
        num_classes=1000,
        sampler="ddpm",
        steps=250,
        guidance=Guidance(scale=4.4, ramp="power-cosine", power=4.0),
        checkpoint=None,
        licence=_TEST_ONLY,
        description="Tiny latent DiffiT (8x8x4 latents, width 32, depth 2) for tests and demos",
    ),
    "cifar10-tiny": ModelPreset(
        kind="image",
        factory=DiffiT_image_tiny,
        config={},
        latent_size=None,
        img_resolution=32,
        num_classes=0,
        sampler="edm",
        steps=18,
        guidance=None,
        checkpoint=None,
        licence=_TEST_ONLY,
        description="Tiny image-space DiffiT (32x32, channels 32/64/64) for tests and demos",
    ),
}

# The demo model (docs/DEMO.md): trained on scikit-learn's digits with `diffit-eval train`, weights shipped
# in the package as diffit/weights/digits.safetensors (the checkpoint name "digits").
MODEL_PRESETS["digits"] = ModelPreset(
    kind="image",
    factory=ImageDiffiT,
    config=dict(img_resolution=16, channels=(32, 64, 64), blocks=(1, 1, 1), window_size=4, head_channels=16),
    latent_size=None,
    img_resolution=16,
    num_classes=0,
    sampler="edm",
    steps=18,
    guidance=None,
    checkpoint="digits",
    licence="BSD-3-Clause (scikit-learn digits; weights trained by this project, shipped)",
    description="Small image-space DiffiT (16x16, channels 32/64/64) trained on scikit-learn digits; the demo",
)

# The class-conditional demo model (docs/DEMO.md, "The conditional model"): the digits network with a
# class embedding for the 10 digits, trained with label dropout; guided in pixel space on the EDM
# sampler (docs/PROTOCOL.md, "Guidance in image space"). Shipped as diffit/weights/digits-cond.safetensors.
MODEL_PRESETS["digits-cond"] = ModelPreset(
    kind="image",
    factory=ImageDiffiT,
    config=dict(
        img_resolution=16,
        in_channels=1,  # grey digits: one channel, so no colour can leak in (docs/DEMO.md, "The conditional model")
        out_channels=1,
        channels=(32, 64, 64),
        blocks=(1, 1, 1),
        window_size=4,
        head_channels=16,
        label_dim=10,
    ),
    latent_size=None,
    img_resolution=16,
    num_classes=10,
    sampler="edm",
    steps=18,
    guidance=Guidance(scale=1.0, ramp="constant", channels=1),  # the lowest-FID point of its sweep (docs/DEMO.md)
    checkpoint="digits-cond",
    licence="BSD-3-Clause (scikit-learn digits; weights trained by this project, shipped)",
    description="Class-conditional digits DiffiT (16x16 grey, 10 classes, label dropout 0.1) with pixel-space guidance",
)

PRESET_ALIASES: dict[str, str] = {alias: name for name, p in MODEL_PRESETS.items() for alias in p.aliases}


def resolve_preset(name: str) -> str:
    """The canonical preset name for a name or alias; ValueError listing the choices otherwise."""
    name = PRESET_ALIASES.get(name, name)
    if name not in MODEL_PRESETS:
        choices = ", ".join([*MODEL_PRESETS, *PRESET_ALIASES])
        raise ValueError(f"unknown model {name!r}; choose one of: {choices}")
    return name


def preset_info(name: str) -> dict[str, Any]:
    """Everything a sampler or a listing needs about a preset, as plain data (no model is built)."""
    name = resolve_preset(name)
    p = MODEL_PRESETS[name]
    info = {
        "name": name,
        "kind": p.kind,
        "resolution": p.resolution,
        "latent_size": p.latent_size,
        "num_classes": p.num_classes,
        "sampler": p.sampler,
        "steps": p.steps,
        "guidance": asdict(p.guidance) if p.guidance is not None else None,
        "checkpoint": p.checkpoint,
        "licence": p.licence,
        "description": p.description,
        "aliases": list(p.aliases),
        "config": dict(p.config),
    }
    return info


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a preset by name; `overrides` replace constructor arguments (latent: the released ones, guidance).

    Image presets also take `blocks` ("I.1", "H.1" or a tuple) and `resample` ("conv" | "bilinear").
    Weights are freshly initialised; use :func:`diffit.checkpoint.load_checkpoint` for trained ones.
    """
    p = MODEL_PRESETS[resolve_preset(name)]
    kwargs = dict(p.config)
    if p.kind == "latent":
        kwargs["guidance"] = p.guidance
    kwargs.update(overrides)
    return p.factory(**kwargs)


def parameter_count(model_or_name: nn.Module | str) -> tuple[int, int]:
    """(trainable, frozen) parameter counts; a preset name is built on the meta device, instantly."""
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            model_or_name = create_model(model_or_name)
    trainable = sum(p.numel() for p in model_or_name.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model_or_name.parameters() if not p.requires_grad)
    return trainable, frozen
