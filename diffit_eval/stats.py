"""Feature statistics as float64 running sums.

Mean and covariance come from (count, sum, sum of outer products), all float64, so statistics
merged from any split of the data (batches, files, shards, ranks) equal one-shot statistics to
rounding; float32 accumulation would make FID depend on the batch size (SPEC 7).
"""

from __future__ import annotations

import numpy as np
import torch


class RunningStats:
    """count, sum x and sum x x^T of D-dimensional features, in float64."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sum_outer = np.zeros((dim, dim), dtype=np.float64)

    def update(self, x: np.ndarray | torch.Tensor) -> "RunningStats":
        """Add a batch of rows [N, D]."""
        if isinstance(x, torch.Tensor):
            x64 = x.detach().to(torch.float64)
            s, so = x64.sum(0).cpu().numpy(), (x64.T @ x64).cpu().numpy()
        else:
            x64 = np.asarray(x, dtype=np.float64)
            s, so = x64.sum(0), x64.T @ x64
        if x64.shape[1] != self.dim:
            raise ValueError(f"feature dimension {x64.shape[1]} != {self.dim}")
        self.count += x64.shape[0]
        self.sum += s
        self.sum_outer += so
        return self

    def merge(self, other: "RunningStats") -> "RunningStats":
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        self.count += other.count
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        return self

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (N - 1), as `np.cov(x, rowvar=False)` in ADM's evaluator."""
        if self.count < 2:
            raise ValueError("covariance needs at least 2 samples")
        mu = self.mean
        return (self.sum_outer - self.count * np.outer(mu, mu)) / (self.count - 1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_count": np.array(self.count, dtype=np.int64), f"{prefix}_sum": self.sum,
                f"{prefix}_sum_outer": self.sum_outer}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "RunningStats":
        s = cls(arrays[f"{prefix}_sum"].shape[0])
        s.count = int(arrays[f"{prefix}_count"])
        s.sum = np.array(arrays[f"{prefix}_sum"], dtype=np.float64)
        s.sum_outer = np.array(arrays[f"{prefix}_sum_outer"], dtype=np.float64)
        return s
