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
from diffit_eval.generate.shards import RunSource, features_path, shard_seeds

__all__ = ["FEATURE_BATCH", "run_folder_features", "write_shard_features"]

FEATURE_BATCH = 64  # images per Inception forward for the on-the-fly features


def write_shard_features(net: InceptionFeatures, images: np.ndarray, path: Path) -> None:
    """The shard's float32 feature rows (20,316 bytes an image; diffit_eval.protocol.ROW_BYTES), atomically."""
    parts: dict[str, list[np.ndarray]] = {"pool": [], "spatial": [], "logits": []}
    for start in range(0, len(images), FEATURE_BATCH):
        f = batch_features(net, images[start : start + FEATURE_BATCH])
        for key in parts:
            parts[key].append(getattr(f, key).float().cpu().numpy())
    save_feature_rows(path, {key: np.concatenate(v) for key, v in parts.items()})


def run_folder_features(
    run: RunSource, net: InceptionFeatures, limit: int | None = None, keep_rows: bool = True
) -> FeatureSet | None:
    """The per-shard feature rows replayed in seed order into one FeatureSet, when every shard has
    them for `net`'s weights and resize mode and the whole run is wanted; else None (the caller
    extracts from the images)."""
    if limit is not None and limit != run.num_images:
        return None
    paths = [features_path(run.path, k, net.weights_sha256, net.resize) for k in range(run.num_shards)]
    if not all(p.is_file() for p in paths):
        return None
    merged = FeatureSet()
    for k, p in enumerate(paths):
        merged.add_rows(load_feature_rows(p, len(shard_seeds(run.seeds, k, run.shard_size))), keep_rows=keep_rows)
    return merged
