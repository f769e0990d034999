"""FID_inf and IS_inf (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and where to
find them", CVPR 2020; docs/METRICS.md, "FID_inf and IS_inf").

FID computed from N samples is biased upward, and the bias is, to first order, linear in 1/N:
FID_N = FID_inf + c / N. Chong and Forsyth therefore compute FID on subsets of several sizes n,
fit a least-squares line of FID against 1/n and report its intercept, the value at N = infinity.
IS likewise (IS_N is biased downward, also linearly in 1/N to first order; the score of each subset
is one split, as in their `calculate_IS_infinity`).

The schedule (constants in :mod:`diffit_eval.protocol`): FID_INF_POINTS = 15
sizes spaced linearly from ceil(N / 10) to N, truncated to integers (their defaults, 5,000 to
50,000 in 15 points, are this schedule at N = 50,000); for each size, in increasing order, the
first n of a fresh permutation of the N samples from numpy's PCG64(FID_INF_SEED). Their code
shuffles one array in place before each size, which draws the same kind of subsets.

The standard error is the intercept's from ordinary least squares, s * sqrt(1/m + xbar^2 / Sxx)
with s^2 = RSS / (m - 2) over the m = 15 points (what scipy's `linregress` reports as
`intercept_stderr`). With `--bootstrap B`, an interval from B refits, each on fresh subsets (the
permutations drawn from PCG64([bootstrap seed, b])): it measures how much the value depends on
which subsets were drawn, without the line's assumption of independent, equal-variance points.
It does not resample the N samples themselves (the FID interval does that for FID).

Each subset's FID is the eigenvalue route of the bootstrap (:class:`FrechetToReference`): the rows
rotated once by the reference's square root, then one Gram matrix and one `eigvalsh` per subset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from diffit_eval.metrics.bootstrap import FrechetToReference, percentile_interval
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.protocol import (
    BOOTSTRAP_CONFIDENCE,
    FID_INF_MIN_FRACTION,
    FID_INF_MIN_SAMPLES,
    FID_INF_POINTS,
    FID_INF_SEED,
)

__all__ = ["Extrapolation", "fid_infinity", "fit_inverse_n", "inception_score_infinity", "schedule", "subsets"]


def schedule(n: int) -> np.ndarray:
    """The subset sizes for N = `n` samples: FID_INF_POINTS sizes from ceil(n / 10) to n (int64)."""
    if n < FID_INF_MIN_SAMPLES:
        raise ValueError(
            f"FID_inf/IS_inf need at least {FID_INF_MIN_SAMPLES} samples for their schedule "
            f"({FID_INF_POINTS} subset sizes from N/10 to N), got {n}"
        )
    return np.linspace(math.ceil(n * FID_INF_MIN_FRACTION), n, FID_INF_POINTS).astype(np.int64)


def subsets(n: int, seed) -> list[np.ndarray]:
    """The index subsets of the schedule: for each size, the first n of a fresh permutation."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n)[:size] for size in schedule(n)]


def fit_inverse_n(sizes, values) -> tuple[float, float, float]:
    """(intercept, its standard error, slope) of the least-squares line values ~ a + b / sizes."""
    x = 1.0 / np.asarray(sizes, np.float64)
    y = np.asarray(values, np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ np.array([a, b])
    s2 = float(resid @ resid) / (len(x) - 2)
    sxx = float(((x - x.mean()) ** 2).sum())
    se = math.sqrt(s2 * (1.0 / len(x) + x.mean() ** 2 / sxx))
    return float(a), se, float(b)


@dataclass
class Extrapolation:
    """One FID_inf or IS_inf: the intercept, its standard error, the slope (the c of c / N), the
    schedule's points and, with a bootstrap, the interval of the refits."""

    value: float
    stderr: float
    slope: float
    sizes: list[int]
    values: list[float]
    interval: list[float] | None = None
    replicates: list[float] = field(default_factory=list)

    def record(self) -> dict:
        """The JSON's `<metric>_fit`: the points behind the value, so anyone can refit them."""
        return {"sizes": self.sizes, "values": self.values, "slope": self.slope}


def _extrapolate(n: int, value_of, seed: int, bootstrap: int | None, bootstrap_seed: int) -> Extrapolation:
    sizes = schedule(n)
    values = [value_of(idx) for idx in subsets(n, seed)]
    a, se, b = fit_inverse_n(sizes, values)
    out = Extrapolation(a, se, b, [int(s) for s in sizes], [float(v) for v in values])
    if bootstrap:
        out.replicates = [
            fit_inverse_n(sizes, [value_of(idx) for idx in subsets(n, [bootstrap_seed, r])])[0]
            for r in range(bootstrap)
        ]
        out.interval = percentile_interval(out.replicates, BOOTSTRAP_CONFIDENCE, estimate=a)
    return out


def fid_infinity(
    rows,
    mu_ref,
    sigma_ref,
    *,
    seed: int = FID_INF_SEED,
    bootstrap: int | None = None,
    bootstrap_seed: int = 0,
    device: str | torch.device | None = None,
) -> Extrapolation:
    """FID_inf of the sample rows [N, d] against a reference Gaussian (mu, sigma)."""
    rows = np.asarray(rows)
    schedule(len(rows))  # refuse too few samples before the rotation
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fd = FrechetToReference(rows, mu_ref, sigma_ref, device=device)
    return _extrapolate(len(rows), fd.subset_value, seed, bootstrap, bootstrap_seed)


def inception_score_infinity(
    logits, *, seed: int = FID_INF_SEED, bootstrap: int | None = None, bootstrap_seed: int = 0
) -> Extrapolation:
    """IS_inf of the sample logits [N, C]: each subset's score as one split."""
    logits = np.asarray(logits)
    return _extrapolate(
        len(logits),
        lambda idx: inception_score(logits[idx], split_size=len(idx))[0],
        seed,
        bootstrap,
        bootstrap_seed,
    )
