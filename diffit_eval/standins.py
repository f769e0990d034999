"""The one door from diffit_eval to the model stand-ins of :mod:`diffit.testing`.

A user may ask for a stand-in by name: `--ckpt random` / `random:SEED` (DiffiT with seeded random
weights, :func:`randomize_weights`) or `--vae tiny` (a random 8x decoder, :func:`tiny_vae`); the
golden suite samples from random weights too. Those requests reach :mod:`diffit.testing` through
this module only, so one file shows every way the package can produce a STAND-IN model, and an
import contract in pyproject.toml ("diffit's stand-ins reach diffit_eval through one seam") keeps it
so. It belongs to no layer of the data path, so the assets and the sampler below may import it.
The evaluation-side stand-ins (a seeded random InceptionV3 or DINOv2) are :mod:`diffit_eval.testing`.
"""

from __future__ import annotations

from diffit.testing import STANDIN, randomize_weights, tiny_vae

__all__ = ["STANDIN", "randomize_weights", "tiny_vae"]
