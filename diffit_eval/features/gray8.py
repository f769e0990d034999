"""Images -> the 8x8 grey digits the digits network was fitted on (`--network digits`'s resize).

scikit-learn's handwritten digits are 8x8 grey images on a 0-16 scale; the demo renders them as
uint8 RGB at 16x16 (:func:`diffit_eval.io.sources.sklearn_digits`) and DiffiT generates at that
size. The way back is the same for real and generated images: channel mean, block mean to 8x8,
scaled to 0-16, which returns each rendered digit up to the bilinear filter's blur
(`tests/test_demo.py`). It is the one path by which images reach the digits network
(:mod:`diffit_eval.features.digits`), its fitting recipe and the demo's independent classifier.
"""

from __future__ import annotations

import numpy as np

from diffit_eval.errors import UserError

__all__ = ["DIGITS_RESIZE", "to_gray8"]

DIGITS_RESIZE = "block-mean-8x8"  # how images reach the network; recorded like Inception's resize mode


def to_gray8(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, H, 3] (H a multiple of 8) -> float64 [N, 64] in scikit-learn's 0-16 scale."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] % 8 or images.shape[1] != images.shape[2]:
        raise UserError(
            f"the digits network takes square images whose size is a multiple of 8, got {list(images.shape[1:])}"
        )
    f = images.shape[1] // 8
    gray = images.astype(np.float64).mean(axis=-1)
    gray = gray.reshape(len(gray), 8, f, 8, f).mean(axis=(2, 4))
    return gray.reshape(len(gray), 64) * (16 / 255)
