"""What every feature network gives the feature stage: :class:`Features` out of uint8 images.

torch-fidelity keeps one base type for its feature extractors (`FeatureExtractorBase`); here it
is a protocol, because the networks share no code, only an interface. Each network declares its
own row widths as class attributes (`pool_dim`, `spatial_dim`, `logits_dim`): InceptionV3 2048 /
2023 / 1008 (docs/PROTOCOL.md, "Feature network"), the demo's digit classifier 64 / none / 10, so
a :class:`~diffit_eval.features.extract.FeatureSet` or a reference is shaped by the network that
fills it, never by Inception's numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import torch

__all__ = ["FeatureNetwork", "Features"]


class Features(NamedTuple):
    """One forward's rows, float32, one per image; the widths are the network's own."""

    pool: torch.Tensor  # [N, pool_dim]: FID, precision/recall, KID (Inception's pool_3)
    logits: torch.Tensor  # [N, logits_dim], without the bias: IS
    spatial: torch.Tensor | None  # [N, spatial_dim]: sFID; None for a network without spatial features


class FeatureNetwork(Protocol):
    """A feature network: uint8 NCHW images on its device in, :class:`Features` out, and the facts
    a record names it by (weights, digest, resize, stand-in or not)."""

    pool_dim: int
    spatial_dim: int | None  # None: no sFID features
    logits_dim: int
    has_logits: bool  # False: no IS (the NVIDIA pool_3 network has no fc layer)
    is_standin: bool
    resize: str  # how images reach the network, recorded like Inception's resize mode
    weights_path: Path
    weights_sha256: str

    @property
    def label(self) -> str: ...

    def describe(self) -> dict: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def to(self, *args, **kwargs) -> torch.nn.Module: ...

    def __call__(self, images: torch.Tensor) -> Features: ...
