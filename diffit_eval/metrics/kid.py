"""Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs", ICLR 2018) with
torch-fidelity's protocol (docs/PROTOCOL.md, "KID").

KID is the squared maximum mean discrepancy between pool_3 features of the samples and of the
reference under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, estimated without bias
(the kernel's diagonal left out of the within-set sums) on `KID_SUBSETS` random subsets of
`KID_SUBSET_SIZE` rows from each set and averaged. Unlike FID it has no bias at small N, which is
why it is reported beside FID for small runs.

:func:`kid` is torch-fidelity's own `kid_features_to_metric` (the reference implementation, so the
value is torch-fidelity's by construction), fed the float32 rows `metrics` already extracted.
:func:`kid_from_indices` is the same estimator written out in float64 torch, for the bootstrap
(:mod:`diffit_eval.metrics.bootstrap`), which needs it with other sample indices and on a GPU;
`tests/test_kid.py` checks it against torch-fidelity.

When a set holds fewer than 1000 rows the subset size is min(1000, N_samples, N_reference)
(torch-fidelity would refuse); the JSON records the size used (`kid_subset_size`).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from diffit_eval.protocol import KID_COEF0, KID_DEGREE, KID_SEED, KID_SUBSET_SIZE, KID_SUBSETS

__all__ = ["kid", "kid_from_indices", "kid_subset_indices", "kid_subset_size"]


def kid_subset_size(n_samples: int, n_reference: int, size: int = KID_SUBSET_SIZE) -> int:
    """torch-fidelity's subset size, shrunk to the smaller set when either holds fewer rows."""
    return int(min(size, n_samples, n_reference))


def kid(
    sample_rows: np.ndarray,
    ref_rows: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = KID_SEED,
) -> tuple[float, float, int]:
    """(KID mean, std over subsets, subset size) by torch-fidelity's `kid_features_to_metric`.

    Sample rows are torch-fidelity's `input1`, the reference its `input2`, as in its
    `calculate_metrics(input1=samples, input2=reference, kid=True)`.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    m = subset_size or kid_subset_size(len(sample_rows), len(ref_rows))
    f1 = torch.from_numpy(np.ascontiguousarray(sample_rows, dtype=np.float32))
    f2 = torch.from_numpy(np.ascontiguousarray(ref_rows, dtype=np.float32))
    with contextlib.redirect_stdout(io.StringIO()):
        out = kid_features_to_metric(
            f1,
            f2,
            kid_subsets=subsets,
            kid_subset_size=m,
            kid_kernel="poly",
            kid_kernel_poly_degree=KID_DEGREE,
            kid_kernel_poly_gamma=None,
            kid_kernel_poly_coef0=KID_COEF0,
            rng_seed=seed,
            verbose=False,
        )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD]), m


def kid_subset_indices(
    n_samples: int, n_reference: int, subset_size: int, subsets: int = KID_SUBSETS, seed: int = KID_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The subsets torch-fidelity draws: per subset, `subset_size` sample then reference positions
    without replacement from one `RandomState(seed)`. Returns two int arrays [subsets, subset_size]."""
    rng = np.random.RandomState(seed)
    a = np.empty((subsets, subset_size), np.int64)
    b = np.empty((subsets, subset_size), np.int64)
    for i in range(subsets):
        a[i] = rng.choice(n_samples, subset_size, replace=False)
        b[i] = rng.choice(n_reference, subset_size, replace=False)
    return a, b


def _kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + KID_COEF0) ** KID_DEGREE


class KIDTerms:
    """The reference half of KID, computed once: each subset's reference rows and within-reference
    kernel sum, so a bootstrap replicate only forms the sample-side kernels."""

    def __init__(self, ref_rows: torch.Tensor, ref_idx: np.ndarray) -> None:
        self.ref_sub = [ref_rows[torch.as_tensor(i, device=ref_rows.device)] for i in ref_idx]
        self.yy = []
        for y in self.ref_sub:
            k = _kernel(y, y)
            self.yy.append(float(k.sum() - k.diagonal().sum()))

    def value(self, sample_rows: torch.Tensor, sample_idx: np.ndarray) -> float:
        """Mean unbiased MMD^2 over the subsets, the sample subsets being rows `sample_idx` [subsets, m]."""
        mmds = []
        for i, y in enumerate(self.ref_sub):
            x = sample_rows[torch.as_tensor(sample_idx[i], device=sample_rows.device)]
            m = x.shape[0]
            kxx = _kernel(x, x)
            xx = float(kxx.sum() - kxx.diagonal().sum())
            xy = float(_kernel(x, y).sum())
            mmds.append((xx + self.yy[i]) / (m * (m - 1)) - 2 * xy / (m * m))
        return float(np.mean(mmds))


def kid_from_indices(
    sample_rows: np.ndarray | torch.Tensor,
    ref_rows: np.ndarray | torch.Tensor,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int | None = None,
    seed: int = KID_SEED,
    device: str | torch.device = "cpu",
) -> float:
    """The KID mean of :func:`kid`, in float64 torch on `device` (torch-fidelity's subsets and formula)."""
    x = torch.as_tensor(np.asarray(sample_rows, np.float64), device=device)
    y = torch.as_tensor(np.asarray(ref_rows, np.float64), device=device)
    m = subset_size or kid_subset_size(len(x), len(y))
    a, b = kid_subset_indices(len(x), len(y), m, subsets, seed)
    return KIDTerms(y, b).value(x, a)
