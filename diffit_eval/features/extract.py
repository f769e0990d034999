"""Images -> features: one pass of the feature network over a sample source.

A :class:`FeatureSet` is everything the metrics need from one set of images, and nothing more:
float64 running statistics of pool_3 and of the sFID features, the unbiased logits (IS) and,
when precision/recall are wanted, the pool_3 rows themselves. The statistics are reduced in
fixed blocks of rows (:mod:`diffit_eval.features.stats`), so they depend on the rows and their order only.

A run's shards keep their features as float32 rows (:func:`save_feature_rows`): 2048 pool_3 +
2023 sFID + 1008 logits = 20,316 bytes an image, whatever the shard size. Replayed in seed order
into a FeatureSet, they give bit for bit the statistics of extracting the images again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffit_eval.assets.cache import atomic_path
from diffit_eval.errors import UserError
from diffit_eval.features.base import FeatureNetwork, Features
from diffit_eval.features.stats import RunningStats
from diffit_eval.protocol import LOGITS_DIM, POOL_DIM, ROW_DIMS, SPATIAL_DIM


def _float32(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


@dataclass
class FeatureSet:
    pool: RunningStats = field(default_factory=lambda: RunningStats(POOL_DIM))
    spatial: RunningStats | None = field(default_factory=lambda: RunningStats(SPATIAL_DIM))  # None: no sFID features
    logits: list[np.ndarray] = field(default_factory=list)
    pool_rows: list[np.ndarray] = field(default_factory=list)
    # DINOv2 CLS tokens (FD_DINOv2), when a DINOv2 network ran: statistics and rows (the bootstrap's).
    dinov2: RunningStats | None = None
    dinov2_rows: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def for_network(cls, net: FeatureNetwork) -> FeatureSet:
        """An empty set shaped like `net`'s features (InceptionV3: 2048 / 2023; the digits network: 64 / none)."""
        return cls(pool=RunningStats(net.pool_dim), spatial=RunningStats(net.spatial_dim) if net.spatial_dim else None)

    @property
    def count(self) -> int:
        return self.pool.count

    def add(self, pool, logits, spatial, keep_rows: bool = True) -> None:
        """Add a batch of rows (torch tensors or numpy arrays, float32)."""
        self.pool.update(pool)
        if self.spatial is not None:
            self.spatial.update(spatial)
        self.logits.append(_float32(logits))
        if keep_rows:
            self.pool_rows.append(_float32(pool))

    def add_dinov2(self, rows) -> None:
        """Add a batch of DINOv2 rows (the same images, in the same order, as the Inception rows)."""
        rows = _float32(rows)
        if self.dinov2 is None:
            self.dinov2 = RunningStats(rows.shape[1])
        self.dinov2.update(rows)
        self.dinov2_rows.append(rows)

    def all_dinov2_rows(self) -> np.ndarray | None:
        return np.concatenate(self.dinov2_rows) if self.dinov2_rows else None

    def merge(self, other: FeatureSet) -> FeatureSet:
        if other.dinov2 is not None:
            if self.dinov2 is None:
                self.dinov2 = RunningStats(other.dinov2.dim)
            self.dinov2.merge(other.dinov2)
            self.dinov2_rows.extend(other.dinov2_rows)
        self.pool.merge(other.pool)
        if self.spatial is not None:
            self.spatial.merge(other.spatial)
        self.logits.extend(other.logits)
        self.pool_rows.extend(other.pool_rows)
        return self

    def all_logits(self) -> np.ndarray:
        return np.concatenate(self.logits) if self.logits else np.zeros((0, LOGITS_DIM), np.float32)

    def all_pool_rows(self) -> np.ndarray | None:
        return np.concatenate(self.pool_rows) if self.pool_rows else None

    def add_rows(self, rows: dict[str, np.ndarray], keep_rows: bool = True) -> None:
        """Add saved float32 rows (see :func:`load_feature_rows`), as if they had just been extracted."""
        self.add(rows["pool"], rows["logits"], rows["spatial"], keep_rows=keep_rows)


ROW_KEYS = ROW_DIMS  # the row layout of a shard's feature file (diffit_eval.protocol)


def save_feature_rows(path: str | os.PathLike, rows: dict[str, np.ndarray]) -> None:
    """One npz of float32 rows `pool` [S, 2048], `spatial` [S, 2023], `logits` [S, 1008]; atomic."""
    arrays = {k: np.ascontiguousarray(rows[k], dtype=np.float32) for k in ROW_KEYS}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_feature_rows(path: str | os.PathLike, count: int | None = None) -> dict[str, np.ndarray]:
    """The rows :func:`save_feature_rows` wrote, checked (keys, float32, dimensions, `count` rows)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            rows = {k: z[k] for k in ROW_KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise UserError(
            f"cannot read features {path} ({type(e).__name__}); delete it and re-run the sample "
            "command to extract them again"
        ) from None
    for k, dim in ROW_KEYS.items():
        a = rows[k]
        if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] != dim or (count is not None and len(a) != count):
            raise UserError(
                f"features {path}: `{k}` is {a.dtype} {list(a.shape)}, expected float32 "
                f"[{count if count is not None else 'S'}, {dim}]; delete it and re-run the sample command"
            )
    return rows


def extract_batch(
    net: FeatureNetwork,
    images_nhwc: np.ndarray | torch.Tensor,
    into: FeatureSet,
    keep_rows: bool = True,
    dinov2=None,
) -> None:
    """Run one uint8 NHWC batch through the network (and `dinov2`, a
    :class:`~diffit_eval.features.dinov2.DINOv2Features`, when given) and add it to `into`."""
    f = batch_features(net, images_nhwc)
    into.add(f.pool, f.logits, f.spatial, keep_rows=keep_rows)
    if dinov2 is not None:
        into.add_dinov2(dinov2(images_nhwc))


def batch_features(net: FeatureNetwork, images_nhwc: np.ndarray | torch.Tensor) -> Features:
    """The network's Features of one uint8 NHWC batch (the one way every caller feeds it)."""
    device = next(net.parameters()).device
    x = torch.as_tensor(np.ascontiguousarray(images_nhwc) if isinstance(images_nhwc, np.ndarray) else images_nhwc)
    return net(x.to(device).permute(0, 3, 1, 2).contiguous())


def extract_features(
    source,
    net: FeatureNetwork,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    keep_rows: bool = True,
    progress: bool = True,
    description: str | None = None,
    dinov2=None,
) -> FeatureSet:
    """Extract a :class:`FeatureSet` from a sample source (see :mod:`diffit_eval.io.sources`); with
    `dinov2`, its features come from the same read of each batch (one pass over the images)."""
    from diffit_eval.progress import progress_bar

    total = source.num_images if limit is None else min(limit, source.num_images)
    fs = FeatureSet.for_network(net)
    with progress_bar(total, description or f"features {Path(source.path).name}", enabled=progress) as advance:
        for batch in source.iter_batches(batch_size, limit):
            extract_batch(net, batch, fs, keep_rows=keep_rows, dinov2=dinov2)
            advance(len(batch))
    return fs
