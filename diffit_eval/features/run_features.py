"""Features of a run folder: each shard's float32 feature rows, written beside the shard, and read
back in seed order as one :class:`~diffit_eval.features.extract.FeatureSet`.

A shard's features are named by the feature network's sha256 and the resize mode
(:func:`diffit_eval.generate.shards.features_path`), so features of another network are never read.
The statistics of replayed rows equal those of extracting the images again bit for bit whenever
the float32 features do (see :mod:`diffit_eval.features.stats`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffit_eval.features.extract import FeatureSet, batch_features, load_feature_rows, save_feature_rows
from diffit_eval.features.network import InceptionFeatures
from diffit_eval.generate.shards import RunSource, dinov2_features_path, features_path, shard_seeds

__all__ = ["FEATURE_BATCH", "load_dinov2_rows", "run_folder_features", "write_dinov2_features", "write_shard_features"]

FEATURE_BATCH = 64  # images per Inception forward for the on-the-fly features


def write_shard_features(net: InceptionFeatures, images: np.ndarray, path: Path) -> None:
    """The shard's float32 feature rows (20,316 bytes an image; diffit_eval.protocol.ROW_BYTES), atomically."""
    parts: dict[str, list[np.ndarray]] = {"pool": [], "spatial": [], "logits": []}
    for start in range(0, len(images), FEATURE_BATCH):
        f = batch_features(net, images[start : start + FEATURE_BATCH])
        for key in parts:
            parts[key].append(getattr(f, key).float().cpu().numpy())
    save_feature_rows(path, {key: np.concatenate(v) for key, v in parts.items()})


def write_dinov2_features(net, images: np.ndarray, path: Path) -> None:
    """The shard's DINOv2 rows (`dinov2` float32 [S, d]), atomically."""
    from diffit_eval.assets.cache import atomic_path

    rows = [net(images[s : s + FEATURE_BATCH]).cpu().numpy() for s in range(0, len(images), FEATURE_BATCH)]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, dinov2=np.concatenate(rows).astype(np.float32))


def load_dinov2_rows(path: Path, count: int, dim: int) -> np.ndarray:
    """The rows :func:`write_dinov2_features` wrote, checked (float32 [count, dim])."""
    import zipfile

    from diffit_eval.errors import UserError

    try:
        with np.load(path, allow_pickle=False) as z:
            rows = z["dinov2"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise UserError(f"cannot read DINOv2 features {path} ({type(e).__name__}); delete it and re-run") from None
    if rows.dtype != np.float32 or rows.shape != (count, dim):
        raise UserError(
            f"DINOv2 features {path} are {rows.dtype} {list(rows.shape)}, expected float32 [{count}, {dim}]"
        )
    return rows


def run_folder_features(
    run: RunSource, net: InceptionFeatures, limit: int | None = None, keep_rows: bool = True, dinov2=None
) -> FeatureSet | None:
    """The per-shard feature rows replayed in seed order into one FeatureSet, when every shard has
    them for `net`'s weights and resize mode (and, with `dinov2`, that network's rows) and the whole
    run is wanted; else None (the caller extracts from the images)."""
    if limit is not None and limit != run.num_images:
        return None
    paths = [features_path(run.path, k, net.weights_sha256, net.resize) for k in range(run.num_shards)]
    if not all(p.is_file() for p in paths):
        return None
    dpaths = []
    if dinov2 is not None:
        dpaths = [dinov2_features_path(run.path, k, dinov2.weights_sha256) for k in range(run.num_shards)]
        if not all(p.is_file() for p in dpaths):
            return None
    merged = FeatureSet()
    for k, p in enumerate(paths):
        count = len(shard_seeds(run.seeds, k, run.shard_size))
        merged.add_rows(load_feature_rows(p, count), keep_rows=keep_rows)
        if dinov2 is not None:
            merged.add_dinov2(load_dinov2_rows(dpaths[k], count, dinov2.dim))
    return merged
