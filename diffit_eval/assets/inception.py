"""The InceptionV3 weights of the ADM evaluation protocol: torch-fidelity's port of the 2015-12-05
TensorFlow graph (docs/PROTOCOL.md, "Feature network"), found locally or downloaded once."""

from __future__ import annotations

import os
from pathlib import Path

from diffit_eval.assets.cache import cache_dir, download
from diffit_eval.errors import MissingAssetError, UserError

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
    return cache_dir() / "weights" / INCEPTION_URL.rsplit("/", 1)[1]


def resolve_inception_weights(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Path:
    """Find the Inception weights: `path`, else `$DIFFIT_EVAL_INCEPTION_WEIGHTS`, else the cache, else download."""
    explicit = path or os.environ.get(INCEPTION_ENV)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise UserError(f"Inception weights file not found: {p}")
        return p
    p = default_weights_path()
    if p.is_file():
        return p
    if not allow_download:
        raise MissingAssetError(
            f"Inception weights are not cached at {p} and downloads are off; run "
            f"`diffit-eval weights fetch inception` or pass --inception-weights PATH"
        )
    return download(
        INCEPTION_URL,
        p,
        what="Inception weights",
        alternative="--inception-weights PATH",
        md5_prefix=INCEPTION_MD5_PREFIX,
    )
