"""Feature statistics as float64 running sums, reduced in fixed blocks of rows.

Mean and covariance come from (count, sum, sum of outer products), all float64, so statistics
merged from any split of the data (batches, files, shards, ranks) equal one-shot statistics to
rounding; float32 accumulation would make FID depend on the batch size (docs/PROTOCOL.md).

Rows are added to the sums STATS_BLOCK at a time, counted from the first row, whatever batches
they arrive in, and the products are always formed by numpy on the CPU. The sums are therefore a
function of the ordered rows alone: features extracted batch by batch from an npz and the same
features read back from a run's shard files give bit-identical statistics.
"""

from __future__ import annotations

import numpy as np
import torch

STATS_BLOCK = 1000  # rows per float64 partial sum; part of what makes two reductions bit-identical


class RunningStats:
    """count, sum x and sum x x^T of D-dimensional features, in float64."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self.sum = np.zeros(dim, dtype=np.float64)  # over the folded blocks only
        self.sum_outer = np.zeros((dim, dim), dtype=np.float64)
        self._pending: list[np.ndarray] = []  # float64 rows of the block being filled
        self._pending_rows = 0
        self._totals: tuple[np.ndarray, np.ndarray] | None = None  # folded + pending, cached until the next update

    @staticmethod
    def _as_float64(x: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", torch.float64).numpy()
        return np.asarray(x, dtype=np.float64)

    def _fold(self, block: np.ndarray) -> None:
        self.sum += block.sum(0)
        self.sum_outer += block.T @ block

    def update(self, x: np.ndarray | torch.Tensor) -> RunningStats:
        """Add a batch of rows [N, D]."""
        x64 = self._as_float64(x)
        if x64.ndim != 2 or x64.shape[1] != self.dim:
            raise ValueError(f"feature dimension {x64.shape[-1] if x64.ndim else 0} != {self.dim}")
        self.count += x64.shape[0]
        self._totals = None
        while len(x64):
            take = min(STATS_BLOCK - self._pending_rows, len(x64))
            self._pending.append(x64[:take])
            self._pending_rows += take
            x64 = x64[take:]
            if self._pending_rows == STATS_BLOCK:
                self._fold(np.concatenate(self._pending))
                self._pending, self._pending_rows = [], 0
        return self

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """(sum x, sum x x^T) over every row added, the unfinished block included (nothing is mutated)."""
        if self._totals is None:
            s, so = self.sum.copy(), self.sum_outer.copy()
            if self._pending_rows:
                block = np.concatenate(self._pending)
                s += block.sum(0)
                so += block.T @ block
            self._totals = (s, so)
        return self._totals

    def merge(self, other: RunningStats) -> RunningStats:
        """Add another set's totals (exact to rounding; a sequence of updates is what is bit-reproducible)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        s, so = self.totals()
        t, to = other.totals()
        self.sum, self.sum_outer = s + t, so + to
        self.count += other.count
        self._pending, self._pending_rows, self._totals = [], 0, None
        return self

    @property
    def mean(self) -> np.ndarray:
        return self.totals()[0] / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (N - 1), as `np.cov(x, rowvar=False)` in ADM's evaluator."""
        if self.count < 2:
            raise ValueError("covariance needs at least 2 samples")
        s, so = self.totals()
        mu = s / self.count
        return (so - self.count * np.outer(mu, mu)) / (self.count - 1)
