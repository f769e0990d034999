"""The InceptionV3 weights of the ADM evaluation protocol: torch-fidelity's port of the 2015-12-05
TensorFlow graph (docs/PROTOCOL.md, "Feature network"), found locally or downloaded once."""

from __future__ import annotations

import os
from pathlib import Path

from diffit_eval.assets.cache import cached_weights_path, resolve_weights_file

__all__ = [
    "INCEPTION_ENV",
    "INCEPTION_MD5_PREFIX",
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


def default_weights_path() -> Path:
    return cached_weights_path(INCEPTION_URL)


def resolve_inception_weights(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Path:
    """Find the Inception weights: `path`, else `$DIFFIT_EVAL_INCEPTION_WEIGHTS`, else the cache, else download."""
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
