"""Density and coverage (Naeem, Oh, Uh, Choi & Yoo, "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML 2020; docs/METRICS.md, "Density and coverage").

With reference rows X_1..X_N, sample rows Y_1..Y_M and NND_k(X_i) the distance from X_i to its k-th
nearest neighbour among the other reference rows (k = 5, the paper's default, DENSITY_K):

    density  = 1 / (k M) * sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
    coverage = 1 / N * sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]

B(x, r) is the open ball, d < r, as the authors' reference code (clovaai's `prdc`) tests it.
Only the reference rows make the manifold: a sample outlier has no ball of its own, which is what
makes both robust where precision/recall are not. Density is not bounded by 1 (a sample in a dense
region of the reference lies in more than k balls); coverage is in [0, 1].

The counts come from the blocks of D(reference, samples) that precision/recall already compute
(:func:`diffit_eval.metrics.prc.membership` with `ball_k`): in float64 (`exact`), so they equal
a float64 brute force of the formulas; the reference's k-NN radii share P/R's top-(k+1) pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffit_eval.metrics.prc import BLOCK, Balls, membership
from diffit_eval.protocol import DENSITY_K

__all__ = ["DensityCoverage", "density_coverage", "from_balls"]


@dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float


def from_balls(balls: Balls, k: int = DENSITY_K) -> DensityCoverage:
    """The two numbers from the counts gathered in P/R's pass (float64 shares, as P/R's)."""
    counts = balls.counts.cpu().numpy()
    return DensityCoverage(
        density=float(counts.sum()) / (k * len(counts)),
        coverage=int(balls.covered.sum()) / len(balls.covered),
    )


def density_coverage(
    ref_feats,
    sample_feats,
    *,
    k: int = DENSITY_K,
    block: int = BLOCK,
    device: str | torch.device | None = None,
) -> DensityCoverage:
    """Density and coverage of `sample_feats` against `ref_feats` ([N, D] and [M, D] arrays), float64
    distances. Skips the sample radii (P/R's recall side): only the reference balls are needed."""
    ref = np.asarray(ref_feats)
    if len(ref) <= k:
        raise ValueError(
            f"density/coverage need more than {k} reference rows (k-th neighbour, k = {k}), got {len(ref)}"
        )
    m = membership(ref, sample_feats, arith="exact", ball_k=k, block=block, device=device, recall=False)
    return from_balls(m.balls, k)
