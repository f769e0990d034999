"""The feature networks by `--network` name: each name -> the factory that builds it.

torch-fidelity keeps its feature extractors the same way (a registry of names -> classes); here a
factory also resolves the network's weights. Every network satisfies
:class:`~diffit_eval.features.base.FeatureNetwork` and declares its own widths, so nothing
downstream asks which one it got. The names and what records call each network are
:data:`diffit_eval.protocol.FEATURE_NETWORKS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from diffit_eval.assets.inception import resolve_inception_weights
from diffit_eval.errors import UserError
from diffit_eval.features.base import FeatureNetwork
from diffit_eval.features.device import default_device
from diffit_eval.features.digits import DigitFeatures
from diffit_eval.features.network import InceptionFeatures
from diffit_eval.protocol import DEFAULT_NETWORK, DEFAULT_RESIZE, FEATURE_NETWORKS

__all__ = ["NETWORK_FACTORIES", "load_feature_network"]


def _inception(weights: str | os.PathLike | None, resize: str, allow_download: bool) -> InceptionFeatures:
    path = resolve_inception_weights(weights, allow_download=allow_download)
    return InceptionFeatures(path, resize=resize)


def _digits(weights: str | os.PathLike | None, resize: str, allow_download: bool) -> DigitFeatures:
    # Its own resize (DIGITS_RESIZE) and weights that ship with the package: nothing to resolve.
    if weights is not None:
        raise UserError("--inception-weights applies to --network inception; the digits network ships with the package")
    return DigitFeatures()


# `--network` -> factory(weights, resize, allow_download); the keys are FEATURE_NETWORKS'.
NETWORK_FACTORIES: dict[str, Callable[[str | os.PathLike | None, str, bool], FeatureNetwork]] = {
    "inception": _inception,
    "digits": _digits,
}


def load_feature_network(
    weights: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    resize: str = DEFAULT_RESIZE,
    allow_download: bool = True,
    network: str = DEFAULT_NETWORK,
) -> FeatureNetwork:
    """The `network` feature network on `device`: InceptionV3 from `weights` (resolved by
    :func:`~diffit_eval.assets.inception.resolve_inception_weights`), or the demo's shipped digit
    classifier for `network="digits"` (:mod:`diffit_eval.features.digits`)."""
    if network not in FEATURE_NETWORKS:
        raise UserError(f"unknown --network {network!r}; choose one of {', '.join(FEATURE_NETWORKS)}")
    net = NETWORK_FACTORIES[network](weights, resize, allow_download)
    net.to(device or default_device())  # in place, as Module.to is
    return net
