"""Frechet distance between two Gaussians (FID on pool_3, sFID on the spatial features).

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

ADM's evaluator takes tr sqrt(S1 S2) from `scipy.linalg.sqrtm` of the product. For symmetric
positive semi-definite S1 and S2, S1 S2 is similar to the symmetric matrix S1^1/2 S2 S1^1/2, so
the same trace is the sum of the square roots of that matrix's eigenvalues: two symmetric
eigendecompositions instead of a complex Schur form, many times faster, equal to ~1e-9
(`benchmarks/bench_fid.py`). Eigenvalues that are rounding noise are dropped (see
:func:`numerical_zeros_to_zero`), which only matters for covariances of fewer samples than
dimensions; those are factored by pivoted Cholesky instead, which skips the d x d
eigendecomposition (:func:`trace_sqrt_product`, docs/METRICS.md).

Two methods (`FID_METHODS`, `diffit-eval metrics --fid-method`): ``eigh`` (the default, above) and
``adm-sqrtm``, ADM's routine itself (:func:`frechet_distance_sqrtm`) for users who need its digits.
With full-rank statistics (N > dimension) they agree to ~1e-13 relative; with fewer samples than
dimensions sqrtm adds the roots of rounding-noise eigenvalues that eigh drops: a few 1e-5 of FID
on 2048-d features, ~1e-7 relative at FIDs of tens, large only when FID is near 0 (measured:
docs/METRICS.md, `benchmarks/fid_rank_deficient.py`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

ADM_EPS = 1e-6  # ADM adds eps * I to both covariances when the first try is not finite


def _as_stats(mu, sigma):
    return np.atleast_1d(np.asarray(mu, np.float64)), np.atleast_2d(np.asarray(sigma, np.float64))


def _check(mu1, sigma1, mu2, sigma2) -> None:
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in dimension: {mu1.shape[0]} vs {mu2.shape[0]}")


def numerical_zeros_to_zero(w: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Eigenvalues below the numerical-rank tolerance (max * n * eps, as numpy's matrix_rank) -> 0.

    A covariance of fewer samples than dimensions (tests, small regression runs) has a null space
    whose eigenvalues come out as rounding noise of either sign, ~1e-16 of the largest. Their
    square roots (~1e-8 each, up to 2000 of them) would add a few 1e-7 to tr sqrt, and that noise
    moves with the summation order: with it FID changed by 3e-9 between --batch-size 3 and 17 on 16
    samples. Genuine eigenvalues of full-rank statistics are orders of magnitude above the
    tolerance, so 50K-sample results are unchanged. `n`: the dimension of the matrix the
    eigenvalues belong to (default `len(w)`).
    """
    tol = max(float(w.max()), 0.0) * (n or len(w)) * float(np.finfo(np.float64).eps)
    return torch.where(w > tol, w, torch.zeros_like(w))


def sqrt_psd(sigma: torch.Tensor) -> torch.Tensor:
    """S^1/2 of a symmetric PSD matrix: V D^1/2 V^T from eigh, numerical zeros dropped as in
    :func:`trace_sqrt_product` (a reference's root, computed once and reused, as the bootstrap does)."""
    w, v = torch.linalg.eigh(sigma)
    return (v * numerical_zeros_to_zero(w).sqrt()) @ v.T


LOW_RANK_LIMIT = 256  # the largest rank factored by pivoted Cholesky (beyond it one eigh is cheaper)


def low_rank_factor(sigma: torch.Tensor, max_rank: int) -> torch.Tensor | None:
    """F [d, r] with F F^T = S to rounding, by pivoted Cholesky, or None when rank(S) > max_rank.

    The algorithm of LAPACK's dpstrf, one column at a time: take the largest remaining diagonal
    entry as the pivot, eliminate it, and stop once every remaining diagonal entry is at most
    d * eps * max(diag S) (LAPACK's default tolerance): the residual S - F F^T then has a trace of
    rounding size. A covariance of N samples has rank <= N - 1, so for the small runs of tests and
    regression suites r is tiny and this costs O(d r^2) instead of a d x d eigendecomposition.
    """
    d = sigma.shape[0]
    residual = torch.diagonal(sigma).clone()
    tol = d * float(np.finfo(np.float64).eps) * max(float(residual.max()), 0.0)
    f = sigma.new_zeros(d, max_rank)
    for k in range(max_rank + 1):
        p = int(torch.argmax(residual))
        if float(residual[p]) <= tol:
            return f[:, :k]
        if k == max_rank:
            return None
        column = sigma[:, p] - f[:, :k] @ f[p, :k]
        f[:, k] = column / column[p].sqrt()
        residual -= f[:, k] ** 2
        residual[p] = 0.0  # exactly eliminated; rounding must not make it a pivot again
    return None


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, max_rank: int | None = None) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 (float64 throughout).

    Full rank, via eigh of S1^1/2 S2 S1^1/2: with S1 = V D V^T (eigh) and only its r numerically
    non-zero eigenvalues kept, S1^1/2 = V_r D_r^1/2 V_r^T, so S1^1/2 S2 S1^1/2 = V_r M V_r^T with
    the r x r matrix M = D_r^1/2 V_r^T S2 V_r D_r^1/2. V_r has orthonormal columns, so the non-zero
    eigenvalues of the d x d product are those of M: the same trace from an r x r eigenproblem.

    Low rank (a covariance of fewer samples than `max_rank`, default min(LOW_RANK_LIMIT, d / 2):
    tests, small regression runs), without the d x d eigh: S = F F^T with F = [d, r]
    (:func:`low_rank_factor`, tried on S1, then on S2, since tr sqrt(S1 S2) = tr sqrt(S2 S1)), and
    S_other F F^T has the non-zero eigenvalues of the symmetric r x r matrix F^T S_other F. At d =
    2048 and 16 samples that is milliseconds instead of 0.8 s; equal to the eigh route to 1e-12
    relative (`tests/test_metrics.py`). Statistics of full rank (every 50K-sample run) take the
    eigh route unchanged; the two failed factorisations cost ~5% of it.

    Done in torch: its LAPACK/BLAS (MKL on x86) runs these 2048-d decompositions several times
    faster than the OpenBLAS bundled with numpy/scipy wheels, and staying in one thread pool avoids
    OpenBLAS's spinning threads slowing torch's on machines with few cores.
    """
    s1 = torch.from_numpy(np.ascontiguousarray(sigma1, dtype=np.float64))
    s2 = torch.from_numpy(np.ascontiguousarray(sigma2, dtype=np.float64))
    d = s1.shape[0]
    max_rank = min(LOW_RANK_LIMIT, d // 2) if max_rank is None else max_rank
    for low, other in ((s1, s2), (s2, s1)):
        f = low_rank_factor(low, max_rank) if max_rank > 0 else None
        if f is not None:
            m = f.T @ other @ f
            break
    else:
        w, v = torch.linalg.eigh(s1)
        w = numerical_zeros_to_zero(w)
        keep = w > 0
        b = v[:, keep] * w[keep].sqrt()  # V_r D_r^1/2, d x r
        m = b.T @ s2 @ b
    lam = torch.linalg.eigvalsh((m + m.T) / 2)
    # Rounding leaves tiny eigenvalues of either sign; sqrtm would give a negative one a purely
    # imaginary root whose real part (what ADM keeps) is 0. The tolerance is the d x d matrix's.
    return float(numerical_zeros_to_zero(lam, d).sqrt().sum()) if len(lam) else 0.0


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FD via symmetric eigendecomposition, with ADM's eps * I retry when the result is not finite."""
    mu1, sigma1 = _as_stats(mu1, sigma1)
    mu2, sigma2 = _as_stats(mu2, sigma2)
    _check(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise ValueError("covariance has non-finite entries")
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    if not np.isfinite(tr_covmean):
        offset = np.eye(sigma1.shape[0]) * ADM_EPS
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2, eps: float = ADM_EPS) -> float:
    """ADM's `FIDStatistics.frechet_distance`, step for step (guided-diffusion evaluations/evaluator.py).

    sqrtm of S1 S2; if any entry is not finite, again with eps * I added to both covariances;
    a complex result keeps its real part unless a diagonal imaginary part exceeds 1e-3. ADM
    passes `disp=False` to the first sqrtm, which only adds an error estimate (deprecated in
    SciPy 1.16); the matrix is the same, so it is not asked for. Its digits are those of the
    installed SciPy's sqrtm (SciPy 1.16 rewrote it), as ADM's were of the SciPy it ran.
    """
    mu1, sigma1 = _as_stats(mu1, sigma1)
    mu2, sigma2 = _as_stats(mu2, sigma2)
    _check(mu1, sigma1, mu2, sigma2)
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise ValueError("covariance has non-finite entries")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm's singular-matrix warnings: the eps retry is the remedy
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm (ADM's check)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


FID_METHODS = {"eigh": frechet_distance, "adm-sqrtm": frechet_distance_sqrtm}


def frechet_distance_by(method: str):
    """The Frechet-distance function named by `--fid-method`."""
    if method not in FID_METHODS:
        raise ValueError(f"unknown FID method {method!r}; choose one of {', '.join(FID_METHODS)}")
    return FID_METHODS[method]
