"""Bootstrap confidence intervals for the metrics of one sample set (docs/PROTOCOL.md, "Bootstrap").

A FID-50K is one draw of a random quantity: another 50,000 seeds give another value. The
nonparametric bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13)
estimates that spread from the one set: each of B replicates draws N sample indices with
replacement and recomputes every metric on that multiset, the reference held fixed (its
statistics come from another, usually far larger, set and are not resampled). The interval is the
2.5th and 97.5th percentile of the B replicate values (numpy's linear interpolation), centred on
the reported value when it is given (`estimates`): the replicates are shifted by their mean's
distance from it, the bootstrap's estimate of its own bias, before the percentiles are taken.
FID is biased upward at finite N, and a replicate, a multiset of about 63% distinct samples,
adds that bias once more: at N = 5,000 x 2048 the uncentred interval lay wholly above the FID it
was meant to bracket. Centred, the interval says where the same estimator lands for another draw
of N samples, which is what a published FID-50K is; its width is the percentile interval's, except
where it meets a bound of the metric (`METRIC_BOUNDS`: recall <= 1, FID >= 0, ...), which clips it. All
metrics of one replicate see the same draw; the draws come from numpy's PCG64 with `seed`, so an
interval is reproducible.

Per metric, what a replicate computes:

- FID, FD_DINOv2 (eigenvalue route): the replicate's mean mu_b = c.X / N and unbiased covariance
  S_b = (X^T diag(c) X - N mu_b mu_b^T) / (N - 1) from the counts c of each row; with the
  reference's square root R = S_r^1/2 computed once, tr sqrt(S_b S_r) = sum sqrt(eigvalsh(R S_b R))
  (R S_b R is symmetric and similar to S_r S_b). A replicate is one weighted Gram matrix (N d^2) and
  one symmetric eigenvalue problem (d^3), no sqrtm (:class:`FrechetToReference`);
  `tests/test_bootstrap.py` checks it against scipy's sqrtm FID of the resampled rows.
- KID: torch-fidelity's subsets (:mod:`diffit_eval.metrics.kid`) with sample subset positions
  mapped through the replicate's indices, reference subsets fixed; the identity draw gives the
  point estimate exactly. A duplicated row inside a subset enters the off-diagonal kernel sum,
  as a multiset would.
- IS: :func:`~diffit_eval.metrics.inception_score.inception_score` of the resampled logits (splits
  of 5000 in the replicate's order).
- precision: the mean of the per-sample "inside some reference ball" indicators over the drawn
  indices (reference balls do not depend on the samples, so this is precision of the multiset).
- recall: the share of reference points inside the ball of at least one *drawn* sample, the
  sample radii held at their full-set values. Recomputing radii on a multiset would give a
  duplicated point a k-NN radius of 0 (its copies are its neighbours) and shrink the manifold
  for reasons that have nothing to do with the model; holding them fixed resamples only which
  samples are present. Costs one bool reference x sample matrix (n_ref N bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffit_eval.metrics.fid import numerical_zeros_to_zero, sqrt_psd
from diffit_eval.metrics.inception_score import inception_score
from diffit_eval.metrics.kid import KIDTerms, kid_subset_indices
from diffit_eval.protocol import BOOTSTRAP_CONFIDENCE, CI_SUFFIX, DEFAULT_BOOTSTRAP_SEED, KID_SEED, KID_SUBSETS

__all__ = ["BootstrapInputs", "FrechetToReference", "bootstrap_intervals", "percentile_interval", "replicate_indices"]


# Where each metric can lie: a centred interval is clipped to it (a shift by the bias can carry a
# recall of 1.0 past 1). KID is unbiased and may be negative, so it has no bound.
UNBOUNDED = (-np.inf, np.inf)
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    "fid": (0.0, np.inf),
    "fd_dinov2": (0.0, np.inf),
    "is": (1.0, np.inf),
    "precision": (0.0, 1.0),
    "recall": (0.0, 1.0),
}


def percentile_interval(
    values,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    estimate: float | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
) -> list[float]:
    """[lo, hi]: the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the replicates,
    shifted so that their mean is `estimate` when one is given (see the module docstring), then
    clipped to the metric's `bounds`."""
    a = 100 * (1 - confidence) / 2
    v = np.asarray(values, np.float64)
    if estimate is not None and np.isfinite(estimate):
        v = v - (v.mean() - estimate)
    lo, hi = np.clip(np.percentile(v, [a, 100 - a]), *bounds)
    return [float(lo), float(hi)]


def replicate_indices(n: int, replicates: int, seed: int = DEFAULT_BOOTSTRAP_SEED):
    """The replicates' draws, one int64 array of N indices in [0, N) at a time (PCG64, `seed`)."""
    gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 16])))
    for _ in range(replicates):
        yield gen.integers(0, n, size=n)


class FrechetToReference:
    """Frechet distances of weighted versions of one row set X [N, d] to one fixed reference Gaussian.

    Computed once: R = S_r^1/2 (eigh, numerical zeros dropped), tr S_r, the rotated rows XR = X R
    and the squared row norms. A replicate with counts c then needs, with m = c.XR / N (= mu_b R):

    - tr S_b = (sum_i c_i |x_i|^2 - N |mu_b|^2) / (N - 1);
    - the eigenvalues of R S_b R = ((XR)^T diag(c) XR - N m m^T) / (N - 1), a d x d symmetric matrix
      (N d^2 + d^3); or, when N <= d, those of the N x N Gram matrix Z Z^T / (N - 1) with
      Z = diag(sqrt(c)) (XR - m), which has the same nonzero eigenvalues (N^2 d);
    - FD = |mu_b - mu_r|^2 + tr S_b + tr S_r - 2 sum sqrt(lambda).
    """

    def __init__(self, rows: np.ndarray, mu_ref, sigma_ref, device: str | torch.device = "cpu") -> None:
        self.x = torch.as_tensor(np.asarray(rows, np.float64), device=device)
        self.mu_ref = torch.as_tensor(np.asarray(mu_ref, np.float64), device=device)
        sigma_ref = torch.as_tensor(np.asarray(sigma_ref, np.float64), device=device)
        if self.x.shape[1] != self.mu_ref.shape[0] or sigma_ref.shape != (self.x.shape[1],) * 2:
            raise ValueError(f"statistics differ in dimension: {self.x.shape[1]} vs {self.mu_ref.shape[0]}")
        if len(self.x) < 2:
            raise ValueError("a covariance needs at least 2 rows")
        sqrt_ref = sqrt_psd((sigma_ref + sigma_ref.T) / 2)
        self.tr_ref = float(torch.trace(sigma_ref))
        self.xr = self.x @ sqrt_ref
        self.sq_norms = (self.x * self.x).sum(1)

    def value(self, counts: np.ndarray | None = None) -> float:
        """FD of the rows weighted by `counts` (how often each row was drawn; None: each once)."""
        c = None if counts is None else torch.as_tensor(np.asarray(counts, np.float64), device=self.x.device)
        return self._fd(self.x, self.xr, self.sq_norms, c)

    def subset_value(self, index: np.ndarray) -> float:
        """FD of the rows at `index` (each once): FID_inf's subsets (:mod:`diffit_eval.metrics.fid_inf`)
        reuse the rotation X R computed once for all of them."""
        i = torch.as_tensor(np.asarray(index, np.int64), device=self.x.device)
        return self._fd(self.x[i], self.xr[i], self.sq_norms[i], None)

    def _fd(self, x: torch.Tensor, xr: torch.Tensor, sq_norms: torch.Tensor, c: torch.Tensor | None) -> float:
        n, d = x.shape
        if c is None:
            c = torch.ones(n, dtype=torch.float64, device=x.device)
        mu = (c @ x) / n
        m = (c @ xr) / n
        tr_s = float((c @ sq_norms - n * mu @ mu) / (n - 1))
        if n <= d:
            z = c.sqrt()[:, None] * (xr - m)
            g = z @ z.T / (n - 1)
        else:
            g = ((xr * c[:, None]).T @ xr - n * torch.outer(m, m)) / (n - 1)
        lam = numerical_zeros_to_zero(torch.linalg.eigvalsh((g + g.T) / 2))
        diff = mu - self.mu_ref
        return float(diff @ diff + tr_s + self.tr_ref - 2 * lam.sqrt().sum())


@dataclass
class BootstrapInputs:
    """What each metric's replicates need; a metric whose field is None gets no interval.

    fid / fd_dinov2: (sample rows [N, d], reference mu, reference sigma);
    kid: (sample pool rows [N, d], reference pool rows, subset size);
    logits: the sample logits [N, 1008] (IS);
    sample_in: bool [N] (precision); cover: bool [n_ref, N] torch tensor (recall).
    """

    fid: tuple | None = None
    fd_dinov2: tuple | None = None
    kid: tuple | None = None
    logits: np.ndarray | None = None
    sample_in: np.ndarray | None = None
    cover: torch.Tensor | None = None


def bootstrap_intervals(
    n: int,
    inputs: BootstrapInputs,
    replicates: int,
    *,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    device: str | torch.device | None = None,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    estimates: dict[str, float | None] | None = None,
) -> dict[str, list[float]]:
    """`{"fid_ci": [lo, hi], ...}` for every metric with inputs, from `replicates` draws of N of N
    samples; each interval centred on `estimates[metric]` (the reported value) when given."""
    if replicates < 1:
        raise ValueError(f"the bootstrap needs at least 1 replicate, got {replicates}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    frechet = {
        key: FrechetToReference(*args, device=device)
        for key, args in (("fid", inputs.fid), ("fd_dinov2", inputs.fd_dinov2))
        if args is not None
    }
    kid = None
    if inputs.kid is not None:
        rows, ref_rows, m = inputs.kid
        x = torch.as_tensor(np.asarray(rows, np.float64), device=device)
        y = torch.as_tensor(np.asarray(ref_rows, np.float64), device=device)
        a, b = kid_subset_indices(len(x), len(y), m, KID_SUBSETS, KID_SEED)
        kid = (x, a, KIDTerms(y, b))
    values: dict[str, list[float]] = {
        k: []
        for k, present in (
            ("fid", "fid" in frechet),
            ("fd_dinov2", "fd_dinov2" in frechet),
            ("kid", kid is not None),
            ("is", inputs.logits is not None),
            ("precision", inputs.sample_in is not None),
            ("recall", inputs.cover is not None),
        )
        if present
    }
    for idx in replicate_indices(n, replicates, seed):
        counts = np.bincount(idx, minlength=n)
        for key, fd in frechet.items():
            values[key].append(fd.value(counts))
        if kid is not None:
            x, a, terms = kid
            values["kid"].append(terms.value(x, idx[a]))
        if inputs.logits is not None:
            values["is"].append(inception_score(inputs.logits[idx])[0])
        if inputs.sample_in is not None:
            values["precision"].append(float(inputs.sample_in[idx].mean()))
        if inputs.cover is not None:
            present = torch.as_tensor(np.flatnonzero(counts), device=inputs.cover.device)
            values["recall"].append(float(inputs.cover.index_select(1, present).any(dim=1).double().mean()))
    estimates = estimates or {}
    return {
        key + CI_SUFFIX: percentile_interval(v, confidence, estimates.get(key), METRIC_BOUNDS.get(key, UNBOUNDED))
        for key, v in values.items()
    }
