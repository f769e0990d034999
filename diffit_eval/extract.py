"""Images -> features: one pass of the feature network over a sample source.

A :class:`FeatureSet` is everything the metrics need from one set of images, and nothing more:
float64 running statistics of pool_3 and of the sFID features, the unbiased logits (IS) and,
when precision/recall are wanted, the pool_3 rows themselves. Feature sets merge exactly, so
shards and ranks can be extracted apart and combined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffit_eval.cache import atomic_path
from diffit_eval.features import InceptionFeatures
from diffit_eval.stats import RunningStats

POOL_DIM, LOGITS_DIM, SPATIAL_DIM = 2048, 1008, 2023


@dataclass
class FeatureSet:
    pool: RunningStats = field(default_factory=lambda: RunningStats(POOL_DIM))
    spatial: RunningStats = field(default_factory=lambda: RunningStats(SPATIAL_DIM))
    logits: list[np.ndarray] = field(default_factory=list)
    pool_rows: list[np.ndarray] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.pool.count

    def add(self, pool: torch.Tensor, logits: torch.Tensor, spatial: torch.Tensor, keep_rows: bool = True) -> None:
        self.pool.update(pool)
        self.spatial.update(spatial)
        self.logits.append(logits.cpu().numpy().astype(np.float32))
        if keep_rows:
            self.pool_rows.append(pool.cpu().numpy().astype(np.float32))

    def merge(self, other: "FeatureSet") -> "FeatureSet":
        self.pool.merge(other.pool)
        self.spatial.merge(other.spatial)
        self.logits.extend(other.logits)
        self.pool_rows.extend(other.pool_rows)
        return self

    def all_logits(self) -> np.ndarray:
        return np.concatenate(self.logits) if self.logits else np.zeros((0, LOGITS_DIM), np.float32)

    def all_pool_rows(self) -> np.ndarray | None:
        return np.concatenate(self.pool_rows) if self.pool_rows else None

    def save(self, path: str | os.PathLike) -> None:
        """One npz: the float64 sums, the logits and the pool_3 rows; written atomically."""
        arrays = {**self.pool.to_arrays("pool"), **self.spatial.to_arrays("spatial"), "logits": self.all_logits()}
        rows = self.all_pool_rows()
        if rows is not None:
            arrays["pool_rows"] = rows
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        with np.load(path) as z:
            fs = cls(RunningStats.from_arrays(z, "pool"), RunningStats.from_arrays(z, "spatial"), [z["logits"]])
            if "pool_rows" in z:
                fs.pool_rows = [z["pool_rows"]]
        return fs


def extract_batch(net: InceptionFeatures, images_nhwc: np.ndarray | torch.Tensor, into: FeatureSet,
                  keep_rows: bool = True) -> None:
    """Run one uint8 NHWC batch through the network and add it to `into`."""
    device = next(net.parameters()).device
    x = torch.as_tensor(np.ascontiguousarray(images_nhwc) if isinstance(images_nhwc, np.ndarray) else images_nhwc)
    x = x.to(device).permute(0, 3, 1, 2).contiguous()
    f = net(x)
    into.add(f.pool, f.logits, f.spatial, keep_rows=keep_rows)


def extract_features(source, net: InceptionFeatures, *, batch_size: int = 64, limit: int | None = None,
                     keep_rows: bool = True, progress: bool = True, description: str | None = None) -> FeatureSet:
    """Extract a :class:`FeatureSet` from a sample source (see :mod:`diffit_eval.sources`)."""
    from diffit_eval.progress import progress_bar

    total = source.num_images if limit is None else min(limit, source.num_images)
    fs = FeatureSet()
    with progress_bar(total, description or f"features {Path(source.path).name}", enabled=progress) as advance:
        for batch in source.iter_batches(batch_size, limit):
            extract_batch(net, batch, fs, keep_rows=keep_rows)
            advance(len(batch))
    return fs
